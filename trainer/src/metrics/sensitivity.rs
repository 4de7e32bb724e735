//! Is the judge sensitive? Real images it has not seen, then the same images spoiled in ways a
//! person can rank (mild and strong noise, mild and strong blur, one class missing), each scored as
//! if a generator had drawn them. A judge worth trusting orders them as a person would: the untouched
//! images best, each spoiling worse the stronger it is, and the missing class visible in coverage.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::{ImageMetrics, Reference};
use crate::data::{Dataset, SampleKind};

/// One way of spoiling real images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spoil {
    /// The real images as they are.
    None,
    /// Gaussian noise of this standard deviation added to pixels in `[-1, 1]` (then clamped).
    Noise { sigma: f32 },
    /// A Gaussian blur of this standard deviation, in pixels.
    Blur { sigma: f32 },
    /// The images of one class left out.
    WithoutClass { class: u8 },
}

impl std::fmt::Display for Spoil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spoil::None => f.write_str("real, unseen"),
            Spoil::Noise { sigma } => write!(f, "noise sigma {sigma}"),
            Spoil::Blur { sigma } => write!(f, "blur sigma {sigma} px"),
            Spoil::WithoutClass { class } => write!(f, "class {class} removed"),
        }
    }
}

/// The spoilings of the sensitivity table, mild before strong.
pub const TABLE: [Spoil; 6] = [
    Spoil::None,
    Spoil::Noise { sigma: 0.1 },
    Spoil::Noise { sigma: 0.3 },
    Spoil::Blur { sigma: 0.7 },
    Spoil::Blur { sigma: 1.5 },
    Spoil::WithoutClass { class: 1 },
];

/// `real` spoiled by `spoil` (seeded where random). A noise or blur sigma that is not a positive
/// number is an error (the blur would panic on it).
pub fn spoil(real: &Dataset, spoil: Spoil, seed: u64) -> Result<Dataset, String> {
    if let Spoil::Noise { sigma } | Spoil::Blur { sigma } = spoil {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(format!("{spoil}: sigma must be a positive number"));
        }
    }
    Ok(match spoil {
        Spoil::None => real.clone(),
        Spoil::Noise { sigma } => {
            let mut out = real.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x0015e);
            let normal = Normal::new(0.0, sigma).map_err(|e| format!("{spoil}: {e}"))?;
            for v in &mut out.samples {
                *v = (*v + normal.sample(&mut rng)).clamp(-1.0, 1.0);
            }
            out
        }
        Spoil::Blur { sigma } => {
            let mut out = real.clone();
            let SampleKind::Image { height, width, .. } = real.kind else {
                return Ok(out);
            };
            for plane in out.samples.chunks_exact_mut(height * width) {
                // Always an image: the chunk is exactly one plane.
                let Some(img) = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(
                    width as u32,
                    height as u32,
                    plane.to_vec(),
                ) else {
                    continue;
                };
                let blurred = imageproc::filter::gaussian_blur_f32(&img, sigma);
                plane.copy_from_slice(blurred.as_raw());
            }
            out
        }
        Spoil::WithoutClass { class } => {
            let keep: Vec<usize> = (0..real.len())
                .filter(|&i| real.labels[i] != class)
                .collect();
            real.subset(&keep)
        }
    })
}

/// The judge's metrics for each spoiling of `real` (images the reference does not hold).
pub fn table(
    reference: &Reference,
    real: &Dataset,
    seed: u64,
) -> Result<Vec<(Spoil, ImageMetrics)>, String> {
    TABLE
        .iter()
        .map(|&s| Ok((s, reference.measure(&spoil(real, s, seed)?.samples))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{self, DataSource, LoadOptions};

    /// A sigma that is not a positive number is an error, not a panic inside the blur.
    #[test]
    fn bad_sigmas_are_errors() {
        let digits = data::load(&DataSource::Digits, &LoadOptions::default()).unwrap();
        let few = digits.subset(&[0, 1]);
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(spoil(&few, Spoil::Blur { sigma: bad }, 0).is_err());
            assert!(spoil(&few, Spoil::Noise { sigma: bad }, 0).is_err());
        }
        let blurred = spoil(&few, Spoil::Blur { sigma: 1.0 }, 0).unwrap();
        assert_eq!(blurred.samples.len(), few.samples.len());
        assert_ne!(blurred.samples, few.samples);
    }
}
