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

/// Progressive GAN's sliced Wasserstein distance (x 1e3, per pyramid level, [`super::swd`])
/// between `reference` and each spoiling of `real`: the same sensitivity check for the metric
/// that needs no trained network. Empty for images too small for a 7x7 patch, or not images.
pub fn swd_table(
    reference: &Dataset,
    real: &Dataset,
    seed: u64,
) -> Result<Vec<(Spoil, Vec<f64>)>, String> {
    let SampleKind::Image {
        channels,
        height,
        width,
    } = reference.kind
    else {
        return Ok(Vec::new());
    };
    if height != width || super::swd::level_sizes(height, super::swd::MIN_SIZE).is_empty() {
        return Ok(Vec::new());
    }
    TABLE
        .iter()
        .map(|&s| {
            let spoiled = spoil(real, s, seed)?;
            let d = super::swd::of_sets(
                &reference.samples,
                &[&spoiled.samples],
                [channels, height, width],
                seed,
            )
            .map_err(|e| format!("{s}: {e}"))?;
            Ok((s, d.into_iter().next().unwrap_or_default()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::swd::SWD_IMAGES;
    use super::*;
    use crate::data::{self, DataSource, LoadOptions};

    /// The sliced Wasserstein distance ranks spoiled digits as a person would: real images it
    /// was not given score best, and each noise and blur worse the stronger it is.
    #[test]
    fn swd_ranks_spoiled_images_as_a_person_would() {
        let digits = data::load(&DataSource::Digits, &LoadOptions::default()).unwrap();
        // Spread over the dataset, which may be ordered by class; the two sets are disjoint.
        let step = digits.len() / SWD_IMAGES;
        let pick = |offset: usize| {
            (0..SWD_IMAGES)
                .map(|i| i * step + offset)
                .collect::<Vec<_>>()
        };
        let (reference, real) = (digits.subset(&pick(0)), digits.subset(&pick(1)));
        let rows = swd_table(&reference, &real, 0).unwrap();
        let at = |s: Spoil| rows.iter().find(|(r, _)| *r == s).unwrap().1[0];
        let [none, n1, n3, b1, b2] = [
            Spoil::None,
            Spoil::Noise { sigma: 0.1 },
            Spoil::Noise { sigma: 0.3 },
            Spoil::Blur { sigma: 0.7 },
            Spoil::Blur { sigma: 1.5 },
        ]
        .map(at);
        assert!(none < n1 && n1 < n3, "noise: {rows:?}");
        assert!(none < b1 && b1 < b2, "blur: {rows:?}");
        // 28 px images: one level (14 px would be below the authors' 16).
        assert!(rows.iter().all(|(_, d)| d.len() == 1), "{rows:?}");
    }

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
