//! Progressive GAN's own metric: the sliced Wasserstein distance between local image patches of
//! two sets, level by level of a Laplacian pyramid (Karras et al. 2018, appendix D; the authors'
//! `metrics/sliced_wasserstein.py`). It needs no trained network, so it cannot have been tuned
//! on the training data: a judge independent of every model here.
//!
//! Per level (from the full size down to 16 px): 7x7 patches of every channel around 128 random
//! centres per image; each set's patches normalised on their own, per channel; then, for random
//! unit directions, both sets' projections sorted and their mean absolute difference taken (the
//! 1-D Wasserstein distance), averaged over directions. Reported x 1e3, as the paper does.
//! Images go in as the authors feed them: pixel values 0..=255.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The pyramid's smallest level, as the authors stop.
pub const MIN_SIZE: usize = 16;

/// The authors' settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwdConfig {
    /// Side of a patch.
    pub patch: usize,
    pub patches_per_image: usize,
    pub repeats: usize,
    pub dirs_per_repeat: usize,
    /// The pyramid's smallest level.
    pub min_size: usize,
}

impl Default for SwdConfig {
    fn default() -> Self {
        SwdConfig {
            patch: 7,
            patches_per_image: 128,
            repeats: 4,
            dirs_per_repeat: 128,
            min_size: MIN_SIZE,
        }
    }
}

/// A batch of NCHW images, values 0..=255.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub data: Vec<f32>,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Images {
    /// Images in `[-1, 1]` (the trainer's and the engines' range) as 0..=255 pixel values,
    /// rounded as a PNG would store them.
    pub fn from_signed(data: &[f32], n: usize, c: usize, h: usize, w: usize) -> Images {
        let data = data
            .iter()
            .map(|v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round())
            .collect();
        Images { data, n, c, h, w }
    }

    fn at(&self, i: usize, ch: usize, y: usize, x: usize) -> f32 {
        self.data[((i * self.c + ch) * self.h + y) * self.w + x]
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SwdError {
    #[error("the two sets differ in shape: {0:?} against {1:?}")]
    Shapes((usize, usize, usize, usize), (usize, usize, usize, usize)),
    #[error("images of {h}x{w}: SWD needs square images of at least {min} px whose side halves down to it")]
    Size { h: usize, w: usize, min: usize },
    #[error("{0} values for {1} images")]
    Values(usize, usize),
    #[error("no images")]
    Empty,
}

/// The binomial filter `[1 4 6 4 1] / 16` (the 5x5 kernel is its outer product).
const TAPS: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];

/// scipy's "mirror" boundary: reflected about the edge pixel, which is not repeated.
fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let i = i.rem_euclid(period);
    (if i < n { i } else { period - i }) as usize
}

/// Each channel convolved with `gain` x the 5x5 binomial kernel, mirror boundary (separable:
/// rows, then columns; the kernel is symmetric, so convolution and correlation agree).
fn blur(x: &Images, gain: f32) -> Images {
    let (h, w) = (x.h, x.w);
    let mut rows = vec![0.0f32; x.data.len()];
    for (plane, out) in x.data.chunks(h * w).zip(rows.chunks_mut(h * w)) {
        for y in 0..h {
            for xx in 0..w {
                out[y * w + xx] = (0..5)
                    .map(|t| TAPS[t] * plane[y * w + mirror(xx as isize + t as isize - 2, w)])
                    .sum();
            }
        }
    }
    let mut data = vec![0.0f32; x.data.len()];
    for (plane, out) in rows.chunks(h * w).zip(data.chunks_mut(h * w)) {
        for y in 0..h {
            for xx in 0..w {
                out[y * w + xx] = gain
                    * (0..5)
                        .map(|t| TAPS[t] * plane[mirror(y as isize + t as isize - 2, h) * w + xx])
                        .sum::<f32>();
            }
        }
    }
    Images { data, ..*x }
}

fn pyr_down(x: &Images) -> Images {
    let b = blur(x, 1.0);
    let (h, w) = (x.h.div_ceil(2), x.w.div_ceil(2));
    let mut data = Vec::with_capacity(x.n * x.c * h * w);
    for plane in b.data.chunks(x.h * x.w) {
        for y in 0..h {
            for xx in 0..w {
                data.push(plane[2 * y * x.w + 2 * xx]);
            }
        }
    }
    Images { data, h, w, ..*x }
}

fn pyr_up(x: &Images) -> Images {
    let (h, w) = (x.h * 2, x.w * 2);
    let mut data = vec![0.0f32; x.n * x.c * h * w];
    for (plane, out) in x.data.chunks(x.h * x.w).zip(data.chunks_mut(h * w)) {
        for y in 0..x.h {
            for xx in 0..x.w {
                out[2 * y * w + 2 * xx] = plane[y * x.w + xx];
            }
        }
    }
    blur(&Images { data, h, w, ..*x }, 4.0)
}

/// The Laplacian pyramid of `levels` levels: each level but the last holds what the next one
/// up-sampled misses; the last is the blurred, down-sampled image.
pub fn pyramid(images: &Images, levels: usize) -> Vec<Images> {
    let mut p = vec![images.clone()];
    for _ in 1..levels {
        let down = pyr_down(p.last().expect("one level at least"));
        let up = pyr_up(&down);
        let last = p.last_mut().expect("one level at least");
        for (v, u) in last.data.iter_mut().zip(&up.data) {
            *v -= u;
        }
        p.push(down);
    }
    p
}

/// The `patch x patch` neighbourhoods of every channel around `centres` (image, y, x), one row
/// each, normalised per channel over all of them (mean 0, population standard deviation 1).
pub fn descriptors(
    level: &Images,
    centres: &[(usize, usize, usize)],
    patch: usize,
) -> DMatrix<f32> {
    let (r, c) = (patch / 2, level.c);
    let dim = c * patch * patch;
    let mut d = DMatrix::<f32>::zeros(centres.len(), dim);
    for (row, &(i, y, x)) in centres.iter().enumerate() {
        for ch in 0..c {
            for dy in 0..patch {
                for dx in 0..patch {
                    d[(row, (ch * patch + dy) * patch + dx)] =
                        level.at(i, ch, y + dy - r, x + dx - r);
                }
            }
        }
    }
    let per_channel = patch * patch;
    for ch in 0..c {
        let cols = ch * per_channel..(ch + 1) * per_channel;
        let count = (centres.len() * per_channel) as f64;
        let sum: f64 = cols
            .clone()
            .map(|j| d.column(j).iter().map(|&v| v as f64).sum::<f64>())
            .sum();
        let mean = sum / count;
        let var: f64 = cols
            .clone()
            .map(|j| {
                d.column(j)
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / count;
        // A flat channel (std 0) would divide by zero, as the authors' code does; leave it centred.
        let scale = if var > 0.0 { 1.0 / var.sqrt() } else { 1.0 };
        for j in cols {
            for v in d.column_mut(j).iter_mut() {
                *v = ((*v as f64 - mean) * scale) as f32;
            }
        }
    }
    d
}

/// The mean, over the columns of `dirs` (unit directions), of the 1-D Wasserstein distance
/// between the projections of `a`'s and `b`'s rows (as many rows each).
pub fn sliced_wasserstein(a: &DMatrix<f32>, b: &DMatrix<f32>, dirs: &DMatrix<f32>) -> f64 {
    let (pa, pb) = (a * dirs, b * dirs);
    let mut total = 0.0f64;
    for j in 0..dirs.ncols() {
        let mut x: Vec<f32> = pa.column(j).iter().copied().collect();
        let mut y: Vec<f32> = pb.column(j).iter().copied().collect();
        x.sort_by(f32::total_cmp);
        y.sort_by(f32::total_cmp);
        total += x
            .iter()
            .zip(&y)
            .map(|(u, v)| (u - v).abs() as f64)
            .sum::<f64>()
            / x.len() as f64;
    }
    total / dirs.ncols().max(1) as f64
}

/// `dim x count` standard normal directions, each column scaled to unit length.
fn directions(rng: &mut impl Rng, dim: usize, count: usize) -> DMatrix<f32> {
    let mut d = DMatrix::<f32>::from_fn(dim, count, |_, _| StandardNormal.sample(rng));
    for mut col in d.column_iter_mut() {
        let norm = col.norm();
        if norm > 0.0 {
            col /= norm;
        }
    }
    d
}

/// Sizes of the pyramid's levels for images of side `side`: halving down to `min_size`.
pub fn level_sizes(side: usize, min_size: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut s = side;
    while s >= min_size.max(1) {
        sizes.push(s);
        if s % 2 == 1 {
            break;
        }
        s /= 2;
    }
    sizes
}

/// SWD x 1e3 between `real` and `fake` at each level of the pyramid (full size first), seeded.
/// The two sets must have the same shape (the authors compare equal counts).
pub fn swd(real: &Images, fake: &Images, cfg: &SwdConfig, seed: u64) -> Result<Vec<f64>, SwdError> {
    let shape = |x: &Images| (x.n, x.c, x.h, x.w);
    if shape(real) != shape(fake) {
        return Err(SwdError::Shapes(shape(real), shape(fake)));
    }
    for x in [real, fake] {
        if x.data.len() != x.n * x.c * x.h * x.w {
            return Err(SwdError::Values(x.data.len(), x.n));
        }
    }
    if real.n == 0 {
        return Err(SwdError::Empty);
    }
    let sizes = level_sizes(real.h, cfg.min_size);
    if real.h != real.w || sizes.is_empty() || *sizes.last().unwrap_or(&0) < cfg.patch {
        return Err(SwdError::Size {
            h: real.h,
            w: real.w,
            min: cfg.min_size.max(cfg.patch),
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (pr, pf) = (pyramid(real, sizes.len()), pyramid(fake, sizes.len()));
    let r = cfg.patch / 2;
    let mut out = Vec::with_capacity(sizes.len());
    for (lr, lf) in pr.iter().zip(&pf) {
        let mut centres = |n: usize| -> Vec<(usize, usize, usize)> {
            (0..n)
                .flat_map(|i| std::iter::repeat_n(i, cfg.patches_per_image))
                .map(|i| {
                    (
                        i,
                        rng.random_range(r..lr.h - r),
                        rng.random_range(r..lr.w - r),
                    )
                })
                .collect()
        };
        let (cr, cf) = (centres(real.n), centres(fake.n));
        let (da, db) = (
            descriptors(lr, &cr, cfg.patch),
            descriptors(lf, &cf, cfg.patch),
        );
        let mut d = 0.0;
        for _ in 0..cfg.repeats {
            let dirs = directions(&mut rng, da.ncols(), cfg.dirs_per_repeat);
            d += sliced_wasserstein(&da, &db, &dirs);
        }
        out.push(d / cfg.repeats.max(1) as f64 * 1e3);
    }
    Ok(out)
}

/// Images per set that [`of_sets`] compares (the first of each; the authors use 16,384 at
/// 1024 px, where each image gives far more distinct patches than a 28 or 64 px one).
pub const SWD_IMAGES: usize = 512;

/// What `eval` reports: SWD x 1e3 per level, for the generated images and for real images the
/// reference does not hold (the floor), both against the reference images.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SwdReport {
    /// Pyramid levels, full size first.
    pub sizes: Vec<usize>,
    pub generated: Vec<f64>,
    pub held_out_real: Vec<f64>,
}

/// SWD x 1e3 per level of each of `sets` against `reference`, all NCHW in `[-1, 1]` with
/// `[c, h, w]` per image: the first [`SWD_IMAGES`] images of each, equal counts per pair.
pub fn of_sets(
    reference: &[f32],
    sets: &[&[f32]],
    [c, h, w]: [usize; 3],
    seed: u64,
) -> Result<Vec<Vec<f64>>, SwdError> {
    let per = (c * h * w).max(1);
    let cfg = SwdConfig::default();
    sets.iter()
        .map(|set| {
            let n = SWD_IMAGES.min(reference.len() / per).min(set.len() / per);
            let a = Images::from_signed(&reference[..n * per], n, c, h, w);
            let b = Images::from_signed(&set[..n * per], n, c, h, w);
            swd(&a, &b, &cfg, seed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n: usize, side: usize, seed: u64, shift: usize) -> Images {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut data = vec![0.0; n * 3 * side * side];
        for plane in data.chunks_mut(side * side) {
            let (cy, cx): (f32, f32) = (rng.random_range(8.0..24.0), rng.random_range(8.0..24.0));
            let s: f32 = rng.random_range(20.0..80.0);
            for y in 0..side {
                for x in 0..side {
                    let xs = (x + shift) % side;
                    let d = (y as f32 - cy).powi(2) + (xs as f32 - cx).powi(2);
                    plane[y * side + x] = (255.0 * (-d / s).exp()).round();
                }
            }
        }
        Images {
            data,
            n,
            c: 3,
            h: side,
            w: side,
        }
    }

    #[test]
    fn mirror_reflects_about_the_edge_pixel() {
        let got: Vec<usize> = (-3..8).map(|i| mirror(i, 5)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
    }

    #[test]
    fn a_pyramid_reconstructs_its_image() {
        let x = blobs(2, 32, 1, 0);
        let p = pyramid(&x, 3);
        assert_eq!(p.iter().map(|l| l.h).collect::<Vec<_>>(), [32, 16, 8]);
        let mut back = p[2].clone();
        for level in p[..2].iter().rev() {
            back = pyr_up(&back);
            for (v, l) in back.data.iter_mut().zip(&level.data) {
                *v += l;
            }
        }
        let worst = back
            .data
            .iter()
            .zip(&x.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-3, "{worst}");
    }

    #[test]
    fn a_set_is_at_distance_zero_from_itself_and_further_from_a_worse_one() {
        let cfg = SwdConfig {
            patches_per_image: 64,
            dirs_per_repeat: 64,
            repeats: 2,
            ..Default::default()
        };
        let real = blobs(16, 32, 2, 0);
        let same = swd(&real, &real, &cfg, 5).unwrap();
        // The same images, but the centres are drawn again for the second set: not exactly 0.
        let other = blobs(16, 32, 3, 0);
        let near = swd(&real, &other, &cfg, 5).unwrap();
        let mut noisy = other.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for v in &mut noisy.data {
            *v = (*v + rng.random_range(-60.0..60.0f32))
                .clamp(0.0, 255.0)
                .round();
        }
        let far = swd(&real, &noisy, &cfg, 5).unwrap();
        assert_eq!(same.len(), 2);
        // Pixel noise is fine detail: the full-size level sees it (the 16 px level, blurred and
        // sub-sampled, hardly does, and its estimate from 16 images is too noisy to rank).
        assert!(near[0] < far[0], "{near:?} against {far:?}");
        assert!(same[0] < far[0], "{same:?} against {far:?}");
        assert!(far[0] > 2.0 * near[0], "{near:?} against {far:?}");
    }

    #[test]
    fn bad_sets_are_errors() {
        let cfg = SwdConfig::default();
        let a = blobs(2, 32, 1, 0);
        let b = blobs(3, 32, 1, 0);
        assert!(matches!(swd(&a, &b, &cfg, 0), Err(SwdError::Shapes(..))));
        let tiny = Images {
            data: vec![0.0; 3 * 8 * 8],
            n: 1,
            c: 3,
            h: 8,
            w: 8,
        };
        assert!(matches!(
            swd(&tiny, &tiny, &cfg, 0),
            Err(SwdError::Size { .. })
        ));
        let short = Images {
            data: vec![0.0; 5],
            ..a.clone()
        };
        assert!(matches!(
            swd(&short, &a, &cfg, 0),
            Err(SwdError::Values(..))
        ));
    }
}
