//! How close translated images are to their true targets, on the held-out test pairs: the
//! paper's per-pixel distances (L1, PSNR), structural similarity (SSIM), and a sharpness ratio
//! that tells a sharp output from a blurred one of the same L1.

use std::path::Path;

use burn::prelude::*;

use crate::data::pairs::{self, Split};
use crate::data::Dataset;
use crate::error::TrainError;
use crate::family::pix2pix::load_options;
use crate::run::RunDir;

/// Test pairs translated per forward pass.
const CHUNK: usize = 32;

/// Scores of a set of outputs against their targets, each averaged over the images.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TranslationScores {
    pub name: String,
    pub images: usize,
    /// Mean absolute difference, pixel values in [0, 1].
    pub l1: f64,
    /// Peak signal-to-noise ratio in dB (peak 1), averaged over the images.
    pub psnr: f64,
    /// SSIM on luma (image-compare's MSSIM, 8x8 windows), averaged over the images.
    pub ssim: f64,
    /// Mean gradient magnitude of the outputs' luma over the targets': 1 is as sharp as the
    /// targets, below 1 blurrier.
    pub sharpness: f64,
}

/// Score `outputs` (`[N, C, H, W]` in [-1, 1]) against `targets`.
pub fn score(name: &str, outputs: &[f32], targets: &Dataset) -> TranslationScores {
    let [_, c, h, w] = targets.kind.batch_dims(1);
    let per = c * h * w;
    let n = targets.len().min(outputs.len() / per.max(1));
    let (mut l1, mut psnr, mut ssim, mut grad_out, mut grad_target) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        let (out, target) = (&outputs[i * per..(i + 1) * per], targets.sample(i));
        let (mut abs, mut sq) = (0.0f64, 0.0f64);
        for (&o, &t) in out.iter().zip(target) {
            // [-1, 1] -> [0, 1]: half the difference.
            let d = ((o.clamp(-1.0, 1.0) - t) * 0.5) as f64;
            abs += d.abs();
            sq += d * d;
        }
        l1 += abs / per as f64;
        psnr += 10.0 * (1.0 / (sq / per as f64).max(1e-10)).log10();
        let (lo, lt) = (luma(out, c, h, w), luma(target, c, h, w));
        ssim += image_compare::gray_similarity_structure(
            &image_compare::Algorithm::MSSIMSimple,
            &lo,
            &lt,
        )
        .map(|s| s.score)
        .unwrap_or(f64::NAN);
        grad_out += gradient(&lo);
        grad_target += gradient(&lt);
    }
    let mean = |x: f64| x / n.max(1) as f64;
    TranslationScores {
        name: name.into(),
        images: n,
        l1: mean(l1),
        psnr: mean(psnr),
        ssim: mean(ssim),
        sharpness: grad_out / grad_target.max(1e-12),
    }
}

/// The luma of one `[C, H, W]` sample in [-1, 1], as an 8-bit image.
fn luma(x: &[f32], c: usize, h: usize, w: usize) -> image::GrayImage {
    let plane = h * w;
    image::GrayImage::from_fn(w as u32, h as u32, |px, py| {
        let j = py as usize * w + px as usize;
        let v = |ch: usize| (x[ch * plane + j].clamp(-1.0, 1.0) + 1.0) * 127.5;
        let y = if c == 3 {
            0.299 * v(0) + 0.587 * v(1) + 0.114 * v(2)
        } else {
            v(0)
        };
        image::Luma([y.round() as u8])
    })
}

/// Mean magnitude of the forward differences of an image (0-255 units).
fn gradient(img: &image::GrayImage) -> f64 {
    let (w, h) = img.dimensions();
    let at = |x: u32, y: u32| img.get_pixel(x, y)[0] as f64;
    let mut total = 0.0;
    for y in 0..h.saturating_sub(1) {
        for x in 0..w.saturating_sub(1) {
            let (dx, dy) = (at(x + 1, y) - at(x, y), at(x, y + 1) - at(x, y));
            total += (dx * dx + dy * dy).sqrt();
        }
    }
    total / ((w.saturating_sub(1) * h.saturating_sub(1)).max(1)) as f64
}

/// What `eval` can score: a training run (Burn, its newest checkpoint), an exported `.onnx`
/// translator (tract) or a quantized `.pgq` one (the int8 engine, this CPU's kernels). Returns
/// the row's name, the translations and, for a CycleGAN run, each input's reconstruction A->B->A
/// (empty otherwise).
fn translate_all(
    path: &Path,
    inputs: &Dataset,
) -> Result<(String, Vec<f32>, Vec<f32>), TrainError> {
    use pocketgan_runtime::engine::runner::{Int8Runner, Runner, TractRunner, Values};
    let label = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let bad = |reason: String| TrainError::Config(format!("{}: {reason}", path.display()));
    let mut outputs = Vec::with_capacity(inputs.samples.len());
    let mut cycled = Vec::new();
    let all: Vec<usize> = (0..inputs.len()).collect();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if path.is_dir() {
        let dir = RunDir(path.to_path_buf());
        let config = dir.read_config()?;
        let restored = dir.load_latest(&config, &Device::flex().autodiff())?;
        for chunk in all.chunks(CHUNK) {
            let x = inputs.batch(chunk, &Device::flex());
            outputs.extend(
                restored
                    .family
                    .translate(x.clone())
                    .ok_or_else(|| bad("not an image-to-image run".into()))?,
            );
            cycled.extend(restored.family.reconstruct(x).unwrap_or_default());
        }
        let kind = if config.gan_weight == 0.0 {
            "L1 only".to_string()
        } else {
            format!("{:?}", config.family).to_lowercase()
        };
        let name = format!("{label} ({kind}, step {})", restored.step);
        return Ok((name, outputs, cycled));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let model;
    let (mut runner, engine): (Box<dyn Runner + '_>, &str) = match ext {
        "onnx" => (
            Box::new(TractRunner::new(&bytes).map_err(|e| bad(e.to_string()))?),
            "tract f32",
        ),
        "pgq" => {
            model =
                pocketgan_runtime::format::Model::parse(&bytes).map_err(|e| bad(e.to_string()))?;
            let isa = pocketgan_runtime::kernels::Isa::detect();
            (Box::new(Int8Runner::new(model, isa)), "int8")
        }
        _ => return Err(bad("expected a run folder, an .onnx or a .pgq file".into())),
    };
    let per = inputs.samples.len() / inputs.len().max(1);
    for chunk in all.chunks(CHUNK) {
        let x = inputs.samples[chunk[0] * per..(chunk[chunk.len() - 1] + 1) * per].to_vec();
        match runner
            .run(&[Values::F32(x)], chunk.len())
            .map_err(|e| bad(e.to_string()))?
            .pop()
        {
            Some(Values::F32(y)) if y.len() == chunk.len() * per => outputs.extend(y),
            _ => return Err(bad("its output is not an image of the input's shape".into())),
        }
    }
    Ok((format!("{label} ({engine})"), outputs, cycled))
}

/// The identity baseline and each translator (a run, an `.onnx` or a `.pgq`, see
/// [`translate_all`]), scored on the held-out test pairs of `run`'s data.
pub fn evaluate(run: &Path, others: &[&Path]) -> Result<Vec<TranslationScores>, TrainError> {
    let config = RunDir(run.to_path_buf()).read_config()?;
    let test = pairs::load(&config.source()?, &load_options(&config), Split::Test)?;
    let mut rows = vec![score("identity (input)", &test.a.samples, &test.b)];
    for path in std::iter::once(&run).chain(others) {
        if let Ok(other) = RunDir(path.to_path_buf()).read_config() {
            if (&other.data, other.model.sample) != (&config.data, config.model.sample) {
                return Err(TrainError::Config(format!(
                    "{} translates {} at {:?}, not {} at {:?}",
                    path.display(),
                    other.data,
                    other.model.sample,
                    config.data,
                    config.model.sample
                )));
            }
        }
        let (name, outputs, cycled) = translate_all(path, &test.a)?;
        rows.push(score(&name, &outputs, &test.b));
        if !cycled.is_empty() {
            // CycleGAN: how well A comes back through B, scored against A itself.
            rows.push(score(&format!("{name} cycle A->B->A"), &cycled, &test.a));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SampleKind;

    /// The scores tell a perfect, a blurred and a wrong output apart.
    #[test]
    fn scores_order_perfect_blurred_and_wrong() {
        let kind = SampleKind::Image {
            channels: 1,
            height: 16,
            width: 16,
        };
        let mut targets = Dataset::empty("t".into(), kind);
        // A checkerboard of 4x4 squares.
        targets.samples = (0..256)
            .map(|i| {
                if ((i % 16) / 4 + (i / 64)) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        targets.labels.push(0);
        let perfect = score("p", &targets.samples, &targets);
        assert_eq!(perfect.l1, 0.0);
        assert!(perfect.psnr >= 99.0 && (perfect.ssim - 1.0).abs() < 1e-9);
        assert!((perfect.sharpness - 1.0).abs() < 1e-9);
        let blurred: Vec<f32> = targets.samples.iter().map(|v| v * 0.3).collect();
        let b = score("b", &blurred, &targets);
        assert!(
            b.l1 > 0.0 && b.psnr < 20.0 && b.ssim < 1.0 && b.sharpness < 0.5,
            "{b:?}"
        );
        let inverted: Vec<f32> = targets.samples.iter().map(|v| -v).collect();
        let w = score("w", &inverted, &targets);
        assert!((w.l1 - 1.0).abs() < 1e-9 && w.ssim < b.ssim, "{w:?}");
    }
}
