//! The 2-D Gaussian mixtures of the GAN literature (Unrolled GAN, VEEGAN, PacGAN), and a 1-D
//! mixture whose densities (the data's, the generator's, the optimal discriminator's) can be
//! drawn on one picture.

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// An equal-weight mixture of isotropic Gaussians of one standard deviation, in 1 or 2-D.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    pub name: &'static str,
    /// The modes' centres, each of [`Self::dim`] coordinates.
    pub centers: Vec<Vec<f32>>,
    pub std: f32,
}

impl Mixture {
    /// 8 modes evenly spaced on a circle of radius 2, std 0.02.
    pub fn ring8() -> Self {
        let centers = (0..8)
            .map(|k| {
                let a = k as f32 * std::f32::consts::TAU / 8.0;
                vec![2.0 * a.cos(), 2.0 * a.sin()]
            })
            .collect();
        Self {
            name: "toy:ring8",
            centers,
            std: 0.02,
        }
    }

    /// 25 modes on a 5x5 grid over -4..4, std 0.05.
    pub fn grid25() -> Self {
        let centers = (0..25)
            .map(|k| vec![-4.0 + 2.0 * (k % 5) as f32, -4.0 + 2.0 * (k / 5) as f32])
            .collect();
        Self {
            name: "toy:grid25",
            centers,
            std: 0.05,
        }
    }

    /// Three modes on a line at -2, 0 and 2, std 0.25: the optimal discriminator's picture.
    pub fn mix1d() -> Self {
        Self {
            name: "toy:mix1d",
            centers: vec![vec![-2.0], vec![0.0], vec![2.0]],
            std: 0.25,
        }
    }

    /// Coordinates of a point.
    pub fn dim(&self) -> usize {
        self.centers.first().map_or(0, Vec::len)
    }

    /// The mixture's density at point `x` (of [`Self::dim`] coordinates).
    pub fn density(&self, x: &[f32]) -> f64 {
        let var = (self.std as f64).powi(2);
        let norm = (std::f64::consts::TAU * var).powf(self.dim() as f64 / 2.0);
        let sum: f64 = self
            .centers
            .iter()
            .map(|c| {
                let d2: f64 = c
                    .iter()
                    .zip(x)
                    .map(|(c, x)| (*x as f64 - *c as f64).powi(2))
                    .sum();
                (-d2 / (2.0 * var)).exp()
            })
            .sum();
        sum / (norm * self.centers.len().max(1) as f64)
    }

    /// `n` points, mode chosen uniformly; returns (flattened points, mode labels).
    pub fn sample(&self, n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut points = Vec::with_capacity(self.dim() * n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let k = rng.random_range(0..self.centers.len());
            for d in 0..self.dim() {
                let e: f32 = rng.sample(StandardNormal);
                points.push(self.centers[k][d] + self.std * e);
            }
            labels.push(k as u8);
        }
        (points, labels)
    }

    /// Mode-coverage metrics of the literature: a sample is high quality when it lies within
    /// 3 std of its nearest mode; a mode is covered when it has at least one such sample.
    pub fn coverage(&self, points: &[f32]) -> MixtureCoverage {
        let mut hits = vec![0usize; self.centers.len()];
        let mut good = 0;
        let dim = self.dim().max(1);
        let n = points.len() / dim;
        for p in points.chunks_exact(dim) {
            let (k, d2) = self
                .centers
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    (
                        k,
                        c.iter().zip(p).map(|(c, x)| (x - c).powi(2)).sum::<f32>(),
                    )
                })
                .fold(
                    (0, f32::INFINITY),
                    |best, cur| if cur.1 < best.1 { cur } else { best },
                );
            if d2.sqrt() <= 3.0 * self.std {
                good += 1;
                hits[k] += 1;
            }
        }
        MixtureCoverage {
            modes_covered: hits.iter().filter(|&&h| h > 0).count(),
            modes: self.centers.len(),
            high_quality: if n == 0 { 0.0 } else { good as f32 / n as f32 },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixtureCoverage {
    pub modes_covered: usize,
    pub modes: usize,
    /// Fraction of samples within 3 std of a mode.
    pub high_quality: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_samples_cover_every_mode() {
        for m in [Mixture::ring8(), Mixture::grid25(), Mixture::mix1d()] {
            let (pts, _) = m.sample(5000, 1);
            let c = m.coverage(&pts);
            assert_eq!(c.modes_covered, c.modes);
            assert!(c.high_quality > 0.98, "{c:?}");
        }
    }

    #[test]
    fn a_collapsed_sampler_covers_one_mode() {
        let m = Mixture::ring8();
        let pts: Vec<f32> = (0..200).flat_map(|_| [2.0, 0.0]).collect();
        assert_eq!(m.coverage(&pts).modes_covered, 1);
        let far: Vec<f32> = (0..200).flat_map(|_| [0.0, 0.0]).collect();
        assert_eq!(m.coverage(&far).high_quality, 0.0);
    }

    /// The density integrates to one and peaks at the modes.
    #[test]
    fn the_1d_density_is_a_density() {
        let m = Mixture::mix1d();
        let dx = 0.001;
        let total: f64 = (-6000..6000)
            .map(|i| m.density(&[i as f32 * dx as f32]) * dx)
            .sum();
        assert!((total - 1.0).abs() < 1e-3, "{total}");
        assert!(m.density(&[2.0]) > 10.0 * m.density(&[1.0]));
    }

    #[test]
    fn sampling_is_seeded() {
        let m = Mixture::grid25();
        assert_eq!(m.sample(10, 3), m.sample(10, 3));
        assert_ne!(m.sample(10, 3).0, m.sample(10, 4).0);
    }
}
