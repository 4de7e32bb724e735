//! Image-to-image translation (Pix2Pix, CycleGAN): pictures in, pictures out, through any
//! [`Runner`] whose model has one image input `[N, C, H, W]` and one image output, both in
//! `[-1, 1]`.
//!
//! A picture of any size is fitted to the model's input by [`picture_input`] (alpha on white,
//! resized with a triangle filter, RGB to BT.601 luma for a 1-channel model, gray replicated
//! for a 3-channel one); the output is written at the model's output size, gray or RGB.

use crate::engine::runner::{Runner, TensorSpec, Values};
use crate::engine::EngineError;
use crate::picture::{output_picture, picture_files, picture_input, read_picture, PictureError};
use std::path::{Path, PathBuf};

/// Pictures per run of the model: bounds the memory a large folder takes.
pub const BATCH: usize = 16;

/// Why a translation failed.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error(transparent)]
    Picture(#[from] PictureError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("not an image-to-image model: {0}")]
    NotImageToImage(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: image::ImageError,
    },
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds no PNG or JPEG pictures")]
    NoPictures(String),
}

/// An image as a per-sample shape: `[c, h, w]` with `h, w > 1`.
fn image_shape(spec: &TensorSpec) -> Option<(usize, usize, usize)> {
    match spec.shape[..] {
        [c, h, w] if spec.classes.is_none() && h > 1 && w > 1 => Some((c, h, w)),
        _ => None,
    }
}

/// How a tensor reads to a person: `z [100]`, `class (index)`.
fn describe(spec: &TensorSpec) -> String {
    match spec.classes {
        Some(_) => format!("{} (a class index)", spec.name),
        None => format!("{} {:?}", spec.name, spec.shape),
    }
}

/// The model's input image shape `(c, h, w)`, or why it is not image-to-image (a latent
/// generator is named as one, with the command that runs it).
pub fn input_shape(runner: &dyn Runner) -> Result<(usize, usize, usize), TranslateError> {
    let (inputs, outputs) = (runner.inputs(), runner.outputs());
    let listed = |specs: &[TensorSpec]| specs.iter().map(describe).collect::<Vec<_>>().join(", ");
    let image = match &inputs[..] {
        [one] => image_shape(one),
        _ => None,
    };
    let Some(shape) = image else {
        let latent = inputs
            .iter()
            .any(|s| s.classes.is_none() && s.shape.iter().skip(1).all(|&d| d == 1));
        let hint = if latent {
            "it is a latent generator (noise in, images out): use `pocketgan generate`"
        } else {
            "use `pocketgan run`, which takes any inputs"
        };
        return Err(TranslateError::NotImageToImage(format!(
            "its inputs are {}, not one image [C, H, W]; {hint}",
            listed(&inputs)
        )));
    };
    // tract learns symbolic output sizes only from a plan: a rank-3 output is checked again
    // after the run ([`translate`]).
    match &outputs[..] {
        [one] if one.classes.is_none() && one.shape.len() == 3 => Ok(shape),
        _ => Err(TranslateError::NotImageToImage(format!(
            "its outputs are {}, not one image; use `pocketgan run`",
            listed(&outputs)
        ))),
    }
}

/// Translates `pictures` (any sizes, gray, RGB or with alpha) in batches of [`BATCH`]; returns
/// one picture per input at the model's output size.
pub fn translate(
    runner: &mut dyn Runner,
    pictures: &[image::DynamicImage],
) -> Result<Vec<image::DynamicImage>, TranslateError> {
    let shape = input_shape(runner)?;
    let mut out = Vec::with_capacity(pictures.len());
    for chunk in pictures.chunks(BATCH) {
        let mut x = Vec::with_capacity(chunk.len() * shape.0 * shape.1 * shape.2);
        for p in chunk {
            x.extend(picture_input(p, shape)?);
        }
        let y = match runner.run(&[Values::F32(x)], chunk.len())?.pop() {
            Some(Values::F32(y)) => y,
            _ => return Err(EngineError::Inputs("the model returned no image".into()).into()),
        };
        let spec = runner.outputs().pop();
        let (c, h, w) = match spec.as_ref().and_then(image_shape) {
            Some(s @ (1 | 3, _, _)) if y.len() == chunk.len() * s.0 * s.1 * s.2 => s,
            _ => {
                return Err(TranslateError::NotImageToImage(format!(
                    "its output {} is not a gray or RGB image",
                    spec.as_ref().map_or("?".into(), describe)
                )))
            }
        };
        out.extend(
            y.chunks_exact(c * h * w)
                .map(|s| output_picture(s, (c, h, w))),
        );
    }
    Ok(out)
}

/// Where each input picture's translation goes: `input` is a picture file (written to `out`)
/// or a folder (every PNG/JPEG in it, written under `out` with the same file names).
pub fn plan_paths(input: &Path, out: &Path) -> Result<Vec<(PathBuf, PathBuf)>, TranslateError> {
    if !input.is_dir() {
        return Ok(vec![(input.to_path_buf(), out.to_path_buf())]);
    }
    let files = picture_files(input)?;
    if files.is_empty() {
        return Err(TranslateError::NoPictures(input.display().to_string()));
    }
    Ok(files
        .into_iter()
        .filter_map(|f| {
            let o = out.join(f.file_name()?);
            Some((f, o))
        })
        .collect())
}

/// Translates a picture file or a folder of them ([`plan_paths`]); returns the files written.
/// Every picture is read before the model runs, so a corrupt one writes nothing.
pub fn translate_paths(
    runner: &mut dyn Runner,
    input: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>, TranslateError> {
    input_shape(runner)?;
    let paths = plan_paths(input, out)?;
    let pictures = paths
        .iter()
        .map(|(i, _)| read_picture(i))
        .collect::<Result<Vec<_>, _>>()?;
    let translated = translate(runner, &pictures)?;
    if input.is_dir() {
        std::fs::create_dir_all(out).map_err(|source| TranslateError::CreateDir {
            path: out.display().to_string(),
            source,
        })?;
    }
    for ((_, o), picture) in paths.iter().zip(&translated) {
        // JPEG has no alpha and no 16-bit: the outputs are 8-bit gray or RGB, which any format takes.
        picture.save(o).map_err(|source| TranslateError::Write {
            path: o.display().to_string(),
            source,
        })?;
    }
    Ok(paths.into_iter().map(|(_, o)| o).collect())
}
