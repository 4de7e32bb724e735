//! Sampling a generator whose one input is noise (a latent vector, or a noise sequence as
//! TimeGAN's): seeded draws in, the output's values out, written as `.npy` or `.csv`.
//!
//! The noise's distribution is the model's (its metadata key [`crate::latent::NOISE_KEY`], written by the
//! exporter), else normal; the draws are [`crate::latent`]'s, the same on every machine.

use crate::engine::runner::{Runner, TensorSpec, Values};
use crate::engine::EngineError;
use crate::latent::Noise;
use std::collections::HashMap;
use std::path::Path;

/// Samples per run of the model: bounds the memory a large `n` takes.
pub const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("not a generator of noise: {0}")]
    NotNoiseModel(String),
    #[error("--n must be at least 1")]
    NoSamples,
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: write .npy or .csv")]
    Format(String),
    #[error("not a token cell: {0}")]
    NotTokenModel(String),
    #[error("the model's metadata: {0}")]
    Metadata(String),
}

/// A model file's metadata (key, value pairs): a `.pgq`'s, or an ONNX file's `metadata_props`
/// (read from the protobuf, without importing the graph); empty if it has none or is neither.
pub fn model_metadata(bytes: &[u8]) -> Vec<(String, String)> {
    if let Ok(model) = crate::Model::parse(bytes) {
        let metadata: HashMap<String, String> =
            serde_json::from_str(model.metadata).unwrap_or_default();
        return metadata.into_iter().collect();
    }
    crate::engine::runner::onnx_proto(bytes)
        .map(|proto| {
            proto
                .metadata_props
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect()
        })
        .unwrap_or_default()
}

/// The noise a model file names in its metadata, if any.
pub fn model_noise(bytes: &[u8]) -> Option<Noise> {
    let metadata = model_metadata(bytes);
    Noise::from_metadata(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `n` samples of `runner`'s first output from noise drawn from `seed`, run in batches of
/// [`BATCH`] (sample `k` is the same whatever the batches: its noise is drawn alone, from
/// `seed` and `k`). Returns the output's per-sample shape and the values, `[n, ...]` row-major.
pub fn sample(
    runner: &mut dyn Runner,
    noise: Noise,
    n: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<f32>), SampleError> {
    let (input, output) = noise_model(runner)?;
    if n == 0 {
        return Err(SampleError::NoSamples);
    }
    let size: usize = input.shape.iter().product();
    let mut out = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let m = (n - start).min(BATCH);
        let mut z = vec![0.0; m * size];
        for (k, zk) in z.chunks_exact_mut(size.max(1)).enumerate() {
            noise.fill(seed_of(seed, (start + k) as u64), zk);
        }
        let y = runner.run(&[Values::F32(z)], m)?;
        match y.into_iter().next() {
            Some(Values::F32(v)) => out.extend(v),
            _ => {
                return Err(SampleError::NotNoiseModel(
                    "its first output is not float".into(),
                ))
            }
        }
    }
    Ok((output.shape, out))
}

/// Sample `k`'s own seed.
pub(crate) fn seed_of(seed: u64, k: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// The one float input and the first output of a noise generator.
fn noise_model(runner: &dyn Runner) -> Result<(TensorSpec, TensorSpec), SampleError> {
    let (inputs, outputs) = (runner.inputs(), runner.outputs());
    match (&inputs[..], outputs.first()) {
        ([i], Some(o)) if i.classes.is_none() => Ok((i.clone(), o.clone())),
        _ => Err(SampleError::NotNoiseModel(format!(
            "{} inputs ({}); sample takes models with one noise input",
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Writes `n` samples of per-sample `shape` to `path`: `.npy` (float32 `[n, ...shape]`) or
/// `.csv` (a header, then for a sequence `[T, F]` one row per step, `sample,step,f0,f1,...`;
/// otherwise one row per sample, `sample,v0,v1,...`).
pub fn write(path: &Path, shape: &[usize], values: &[f32]) -> Result<(), SampleError> {
    let size: usize = shape.iter().product::<usize>().max(1);
    let n = values.len() / size;
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            let dims: Vec<usize> = std::iter::once(n).chain(shape.iter().copied()).collect();
            crate::npy::encode(&dims, values)
        }
        Some("csv") => csv(shape, values, size).into_bytes(),
        _ => return Err(SampleError::Format(path.display().to_string())),
    };
    std::fs::write(path, bytes).map_err(|source| SampleError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn csv(shape: &[usize], values: &[f32], size: usize) -> String {
    use std::fmt::Write;
    let row = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut s = String::new();
    match *shape {
        [steps, f] => {
            let names: Vec<String> = (0..f).map(|k| format!("f{k}")).collect();
            let _ = writeln!(s, "sample,step,{}", names.join(","));
            for (k, sample) in values.chunks_exact(size).enumerate() {
                for (t, step) in sample.chunks_exact(f.max(1)).take(steps).enumerate() {
                    let _ = writeln!(s, "{k},{t},{}", row(step));
                }
            }
        }
        _ => {
            let names: Vec<String> = (0..size).map(|k| format!("v{k}")).collect();
            let _ = writeln!(s, "sample,{}", names.join(","));
            for (k, sample) in values.chunks_exact(size).enumerate() {
                let _ = writeln!(s, "{k},{}", row(sample));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_csv_has_one_row_per_step() {
        let v: Vec<f32> = (0..12).map(|x| x as f32 / 2.0).collect();
        let text = csv(&[3, 2], &v, 6);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "sample,step,f0,f1");
        assert_eq!(lines[1], "0,0,0,0.5");
        assert_eq!(lines[6], "1,2,5,5.5");
        assert_eq!(lines.len(), 7);
    }
}
