//! Pictures a user looks at: sample grids, toy-data scatter plots and loss curves.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::data::SampleKind;

/// Lay out `samples` (`[N, C, H, W]` in `[-1, 1]`) as a grid (toy points as a scatter plot).
pub fn sample_grid(samples: &[f32], kind: SampleKind) -> RgbImage {
    match kind {
        SampleKind::Image {
            channels,
            height,
            width,
        } => pocketgan_runtime::picture::image_grid(samples, (channels, height, width)),
        SampleKind::Points { .. } => scatter(samples, &[]),
    }
}

/// 2-D points (xy pairs) on a 400x400 canvas over [-5, 5]^2, with optional mode centres in red.
pub fn scatter(points: &[f32], centers: &[[f32; 2]]) -> RgbImage {
    let size = 400u32;
    let mut img = RgbImage::from_pixel(size, size, Rgb([255, 255, 255]));
    let to_px = |v: f32| ((v + 5.0) / 10.0 * size as f32) as i64;
    for axis in 0..size {
        img.put_pixel(axis, size / 2, Rgb([220, 220, 220]));
        img.put_pixel(size / 2, axis, Rgb([220, 220, 220]));
    }
    let mut dot = |x: f32, y: f32, r: i64, c: Rgb<u8>| {
        let (cx, cy) = (to_px(x), size as i64 - 1 - to_px(y));
        for dy in -r..=r {
            for dx in -r..=r {
                let (px, py) = (cx + dx, cy + dy);
                if px >= 0 && py >= 0 && px < size as i64 && py < size as i64 {
                    img.put_pixel(px as u32, py as u32, c);
                }
            }
        }
    };
    for p in points.chunks_exact(2) {
        dot(p[0], p[1], 0, Rgb([30, 60, 200]));
    }
    for c in centers {
        dot(c[0], c[1], 2, Rgb([220, 30, 30]));
    }
    img
}

/// Series to plot against the step: (values, colour).
pub struct Series<'a> {
    pub values: &'a [f32],
    pub color: [u8; 3],
}

/// Panels stacked vertically, each with its own y range and light grid lines.
/// Colours are documented where the plot is written (README: loss_d red, loss_g blue,
/// D(x) green, D(G(z)) orange).
pub fn line_panels(panels: &[Vec<Series>], path: &Path) -> image::ImageResult<()> {
    let (w, ph) = (800u32, 300u32);
    let mut img = RgbImage::from_pixel(w, ph * panels.len() as u32, Rgb([255, 255, 255]));
    for (k, panel) in panels.iter().enumerate() {
        let y0 = k as u32 * ph;
        let finite = panel
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if !lo.is_finite() {
            continue;
        }
        let span = (hi - lo).max(1e-6);
        let (left, right, top, bottom) = (40u32, w - 10, y0 + 10, y0 + ph - 20);
        for g in 0..=4 {
            let y = top + (bottom - top) * g / 4;
            for x in left..right {
                img.put_pixel(x, y, Rgb([225, 225, 225]));
            }
        }
        for y in top..=bottom {
            img.put_pixel(left, y, Rgb([0, 0, 0]));
        }
        for s in panel {
            let n = s.values.len();
            if n == 0 {
                continue;
            }
            let mut prev: Option<(i64, i64)> = None;
            for (i, &v) in s.values.iter().enumerate() {
                if !v.is_finite() {
                    prev = None;
                    continue;
                }
                let x =
                    left as i64 + ((right - left) as f64 * i as f64 / (n.max(2) - 1) as f64) as i64;
                let y = bottom as i64 - (((v - lo) / span) * (bottom - top) as f32) as i64;
                if let Some((px, py)) = prev {
                    draw_line(&mut img, (px, py), (x, y), Rgb(s.color));
                }
                prev = Some((x, y));
            }
        }
    }
    img.save(path)
}

fn draw_line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for t in 0..=steps {
        let x = x0 + (x1 - x0) * t / steps;
        let y = y0 + (y1 - y0) * t / steps;
        if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_each_sample() {
        // Four 2x2 grayscale samples: -1, -1/3, 1/3, 1.
        let s: Vec<f32> = [-1.0f32, -1.0 / 3.0, 1.0 / 3.0, 1.0]
            .iter()
            .flat_map(|&v| [v; 4])
            .collect();
        let img = sample_grid(
            &s,
            SampleKind::Image {
                channels: 1,
                height: 2,
                width: 2,
            },
        );
        assert_eq!((img.width(), img.height()), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(img.get_pixel(2, 2)[0], 0);
        assert_eq!(img.get_pixel(6, 6)[0], 255);
        assert_eq!(img.get_pixel(0, 0)[0], 40);
    }
}
