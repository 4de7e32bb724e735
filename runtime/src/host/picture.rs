//! Images a user looks at: sample grids and latent-walk animations.

use image::{Rgb, RgbImage};

/// Lays out `samples` (`[N, C, H, W]` in `[-1, 1]`, C = 1 or 3) as a square-ish grid with 2 px
/// gutters.
pub fn image_grid(samples: &[f32], shape: (usize, usize, usize)) -> RgbImage {
    let n = samples.len() / (shape.0 * shape.1 * shape.2).max(1);
    image_grid_columns(samples, shape, (n as f64).sqrt().ceil() as usize)
}

/// [`image_grid`] with `cols` samples per row (a conditional generator's grid: a row per class).
pub fn image_grid_columns(
    samples: &[f32],
    (channels, height, width): (usize, usize, usize),
    cols: usize,
) -> RgbImage {
    let per = channels * height * width;
    let n = samples.len() / per;
    let cols = cols.max(1);
    let rows = n.div_ceil(cols).max(1);
    let gap = 2;
    let mut img = RgbImage::from_pixel(
        (cols * (width + gap) + gap) as u32,
        (rows * (height + gap) + gap) as u32,
        Rgb([40, 40, 40]),
    );
    for (i, s) in samples.chunks_exact(per).enumerate() {
        let (x0, y0) = (
            gap + (i % cols) * (width + gap),
            gap + (i / cols) * (height + gap),
        );
        let plane = height * width;
        for y in 0..height {
            for x in 0..width {
                let j = y * width + x;
                let px = if channels >= 3 {
                    Rgb([to_u8(s[j]), to_u8(s[plane + j]), to_u8(s[2 * plane + j])])
                } else {
                    let g = to_u8(s[j]);
                    Rgb([g, g, g])
                };
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, px);
            }
        }
    }
    img
}

/// Writes a latent walk: an animated GIF when `out` ends in `.gif`, else numbered PNG frames
/// (`walk.png` -> `walk_000.png`, `walk_001.png`, ...).
pub fn write_walk(
    frames: &[f32],
    shape: (usize, usize, usize),
    out: &std::path::Path,
) -> image::ImageResult<()> {
    let per = shape.0 * shape.1 * shape.2;
    let scale = (128 / shape.1.max(shape.2)).max(1) as u32;
    let big = |f: &[f32]| {
        let img = image_grid(f, shape);
        image::imageops::resize(
            &img,
            img.width() * scale,
            img.height() * scale,
            image::imageops::FilterType::Nearest,
        )
    };
    if out.extension().is_some_and(|e| e == "gif") {
        let file = std::fs::File::create(out)?;
        let mut gif = image::codecs::gif::GifEncoder::new_with_speed(file, 10);
        gif.set_repeat(image::codecs::gif::Repeat::Infinite)?;
        for f in frames.chunks_exact(per) {
            let rgba = image::DynamicImage::ImageRgb8(big(f)).to_rgba8();
            gif.encode_frame(image::Frame::from_parts(
                rgba,
                0,
                0,
                image::Delay::from_numer_denom_ms(80, 1),
            ))?;
        }
        Ok(())
    } else {
        let stem = out
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or("frame".into());
        for (i, f) in frames.chunks_exact(per).enumerate() {
            big(f).save(out.with_file_name(format!("{stem}_{i:03}.png")))?;
        }
        Ok(())
    }
}

/// Why an input picture cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("cannot read image {path}: {source}")]
    Read {
        path: String,
        source: image::ImageError,
    },
    #[error("the model takes {0} channels per image; pictures give 1 (gray) or 3 (RGB)")]
    Channels(usize),
    #[error("cannot list {path}: {source}")]
    List {
        path: String,
        source: std::io::Error,
    },
}

/// The PNG and JPEG files in `dir` (by extension, any case), sorted by name.
pub fn picture_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, PictureError> {
    let list = |source| PictureError::List {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list)? {
        let path = entry.map_err(list)?.path();
        let picture = path.extension().is_some_and(|e| {
            ["png", "jpg", "jpeg"].contains(&e.to_string_lossy().to_lowercase().as_str())
        });
        if picture && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Decodes a picture file (a corrupt or unknown one is an error, never a panic).
pub fn read_picture(path: &std::path::Path) -> Result<image::DynamicImage, PictureError> {
    image::open(path).map_err(|source| PictureError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a picture as one model input `[c, h, w]` in `[-1, 1]` ([`picture_input`]).
pub fn load_image(
    path: &std::path::Path,
    shape: (usize, usize, usize),
) -> Result<Vec<f32>, PictureError> {
    picture_input(&read_picture(path)?, shape)
}

/// A picture as one model input `[c, h, w]` in `[-1, 1]`: alpha composited on white (as
/// training does), resized to `w x h` when it differs (a triangle filter: bilinear, and an
/// area average when shrinking), gray (BT.601 luma of an RGB picture) or RGB (a gray picture's
/// level in all three) as `c` says; other channel counts are refused.
pub fn picture_input(
    img: &image::DynamicImage,
    (c, h, w): (usize, usize, usize),
) -> Result<Vec<f32>, PictureError> {
    if c != 1 && c != 3 {
        return Err(PictureError::Channels(c));
    }
    let mut rgba = img.to_rgba8();
    if rgba.dimensions() != (w as u32, h as u32) {
        rgba = image::imageops::resize(
            &rgba,
            w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        );
    }
    let mut out = vec![0.0; c * h * w];
    for (i, p) in rgba.pixels().enumerate() {
        let a = p[3] as f32 / 255.0;
        let rgb = [0, 1, 2].map(|k| p[k] as f32 * a + 255.0 * (1.0 - a));
        let to_unit = |v: f32| v / 127.5 - 1.0;
        if c == 1 {
            out[i] = to_unit(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]);
        } else {
            for k in 0..3 {
                out[k * h * w + i] = to_unit(rgb[k]);
            }
        }
    }
    Ok(out)
}

/// One model output `[c, h, w]` in `[-1, 1]` (c = 1 or 3) as a gray or RGB picture of its size.
pub fn output_picture(sample: &[f32], (c, h, w): (usize, usize, usize)) -> image::DynamicImage {
    let (wu, hu) = (w as u32, h as u32);
    let plane = h * w;
    if c == 1 {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(wu, hu, |x, y| {
            image::Luma([to_u8(sample[y as usize * w + x as usize])])
        }))
    } else {
        image::DynamicImage::ImageRgb8(RgbImage::from_fn(wu, hu, |x, y| {
            let j = y as usize * w + x as usize;
            Rgb([0, 1, 2].map(|k| to_u8(sample[k * plane + j])))
        }))
    }
}

/// A value in `[-1, 1]` as a pixel level (clamped).
fn to_u8(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}
