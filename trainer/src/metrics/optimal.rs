//! The optimal discriminator on a 1-D mixture (Goodfellow et al. 2014, proposition 1; the GAN
//! tutorial's section 3.2): for a fixed G, the D that minimises the BCE loss is
//! `D*(x) = p_data(x) / (p_data(x) + p_g(x))`, and at `D*` the minimax value is
//! `V(D*, G) = -log 4 + 2 JSD(p_data || p_g)`.
//!
//! On toy:mix1d the data density is known exactly; G's is a kernel density estimate from its
//! samples. [`analyse`] puts both, D and D* on one grid, and measures how far D is from its
//! optimum (the mean `|D - D*|` over the points D trains on) and what the minimax value says the
//! Jensen-Shannon divergence is, beside the divergence computed from the densities.

use burn::prelude::*;
use burn::tensor::TensorData;

use super::EvalError;
use crate::config::TrainConfig;
use crate::data::Mixture;
use crate::family::samples;
use crate::model::{Discriminator, Generator};
use crate::run::RunDir;

/// The picture `eval` draws in a 1-D run's folder.
pub const PICTURE: &str = "optimal-discriminator.png";

/// Points of the grid the densities and D are drawn on.
pub const GRID: usize = 600;
/// G's samples behind the density estimate and the minimax value.
pub const SAMPLES: usize = 20_000;
/// Samples the bandwidth is cross-validated on (the estimate's cost is quadratic in them).
const BANDWIDTH_SAMPLES: usize = 2_000;

/// The data's and G's densities, D and D* on a grid, and the numbers they imply.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub x: Vec<f64>,
    pub p_data: Vec<f64>,
    /// G's density: a Gaussian kernel estimate from [`SAMPLES`] samples.
    pub p_g: Vec<f64>,
    /// D's belief that each grid point is real ([`crate::loss::GanLoss::belief`]); `None` for a
    /// loss whose optimal D is not a density ratio (the critics, hinge).
    pub d: Option<Vec<f64>>,
    /// `t p_data / (p_data + p_g)`, `t` the real samples' target; 0 where both densities vanish.
    pub d_star: Vec<f64>,
    pub numbers: OptimalNumbers,
}

/// What [`Analysis`] reports.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OptimalNumbers {
    /// The kernel estimate's bandwidth (leave-one-out likelihood cross-validation).
    pub bandwidth: f64,
    /// Mean `|D - D*|` under `(p_data + p_g) / 2`, the distribution of the points D trains on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<f64>,
    /// `JSD(p_data || p_g)` in nats (at most ln 2 = 0.693) from the two densities.
    pub jsd: f64,
    /// `(V(D, G) + log 4) / 2`: the divergence the minimax value implies, exact at `D = D*` and
    /// below it otherwise (in expectation). Only for the BCE losses with real target 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsd_from_value: Option<f64>,
}

/// D's belief that each of a list of points is real.
pub type Belief<'a> = &'a dyn Fn(&[f32]) -> Vec<f64>;

/// The analysis for `mixture` (1-D) of G's samples `generated`, with `belief` giving D's belief
/// that each of a list of points is real (`None`: no optimal-D form for the loss), `real_target`
/// the real samples' label, `minimax_value` whether D's beliefs define the minimax value (BCE
/// with target 1), and `real` data samples for that value.
pub fn analyse(
    mixture: &Mixture,
    generated: &[f32],
    real: &[f32],
    belief: Option<Belief<'_>>,
    real_target: f64,
    minimax_value: bool,
) -> Result<Analysis, String> {
    if mixture.dim() != 1 {
        return Err(format!(
            "the optimal discriminator is drawn for a 1-D mixture, not {}",
            mixture.name
        ));
    }
    let generated: Vec<f64> = generated
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .collect();
    if generated.len() < 2 {
        return Err("G made fewer than two finite samples".into());
    }
    let bandwidth = bandwidth(&generated);
    // The grid spans the data's modes and nearly all of G's samples, within [-10, 10].
    let std = mixture.std as f64;
    let centres = mixture.centers.iter().map(|c| c[0] as f64);
    let (lo, hi) = centres.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), c| {
        (a.min(c - 5.0 * std), b.max(c + 5.0 * std))
    });
    let mut sorted = generated.clone();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let lo = lo.min(quantile(0.002) - 3.0 * bandwidth).max(-10.0);
    let hi = hi.max(quantile(0.998) + 3.0 * bandwidth).min(10.0);
    let dx = (hi - lo) / (GRID - 1) as f64;
    let x: Vec<f64> = (0..GRID).map(|i| lo + dx * i as f64).collect();
    let p_data: Vec<f64> = x.iter().map(|&v| mixture.density(&[v as f32])).collect();
    let p_g = kde(&sorted, bandwidth, &x);
    let d_star: Vec<f64> = p_data
        .iter()
        .zip(&p_g)
        .map(|(p, q)| {
            if p + q > 0.0 {
                real_target * p / (p + q)
            } else {
                0.0
            }
        })
        .collect();
    let grid32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let d = belief.map(|belief| belief(&grid32));

    // Mean |D - D*| under the mixture of the two densities, by the rectangle rule.
    let weights: Vec<f64> = p_data
        .iter()
        .zip(&p_g)
        .map(|(p, q)| (p + q) / 2.0)
        .collect();
    let total: f64 = weights.iter().sum();
    let gap = d.as_ref().map(|d| {
        let sum: f64 = (0..GRID)
            .map(|i| weights[i] * (d[i] - d_star[i]).abs())
            .sum();
        sum / total.max(f64::MIN_POSITIVE)
    });
    let jsd = (0..GRID)
        .map(|i| {
            let (p, q) = (p_data[i], p_g[i]);
            let m = (p + q) / 2.0;
            let term = |a: f64| if a > 0.0 { a * (a / m).ln() } else { 0.0 };
            (term(p) + term(q)) / 2.0 * dx
        })
        .sum::<f64>()
        .clamp(0.0, std::f64::consts::LN_2);
    let jsd_from_value = match belief {
        Some(belief) if minimax_value => {
            let clamp = |b: f64| b.clamp(1e-7, 1.0 - 1e-7);
            let generated32: Vec<f32> = generated.iter().map(|&v| v as f32).collect();
            let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let on_real = mean(belief(real).into_iter().map(|b| clamp(b).ln()).collect());
            let on_fake = mean(
                belief(&generated32)
                    .into_iter()
                    .map(|b| (1.0 - clamp(b)).ln())
                    .collect(),
            );
            Some((on_real + on_fake + 4f64.ln()) / 2.0)
        }
        _ => None,
    };
    Ok(Analysis {
        x,
        p_data,
        p_g,
        d,
        d_star,
        numbers: OptimalNumbers {
            bandwidth,
            gap,
            jsd,
            jsd_from_value,
        },
    })
}

/// The analysis of a pair's raw G (the one D trains against) and D, for a run on a 1-D mixture
/// configured by `config`.
pub fn of_pair(
    mixture: &Mixture,
    generator: &Generator,
    discriminator: &Discriminator,
    config: &TrainConfig,
    device: &Device,
) -> Result<Analysis, String> {
    let generated = samples::generate(generator, config, SAMPLES, config.seed, device);
    let (real, _) = mixture.sample(SAMPLES, config.seed ^ 0x0D57_A12E);
    let loss = config.loss;
    let d = discriminator.valid();
    let inference = device.clone().without_autodiff();
    let belief = move |points: &[f32]| -> Vec<f64> {
        let n = points.len();
        let x = Tensor::<4>::from_data(TensorData::new(points.to_vec(), [n, 1, 1, 1]), &inference);
        let scores: Vec<f32> = d
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_else(|_| vec![f32::NAN; n]);
        scores
            .into_iter()
            .map(|s| loss.belief(s as f64).unwrap_or(f64::NAN))
            .collect()
    };
    let has_belief = loss.belief(0.0).is_some();
    let target = config.real_target() as f64;
    analyse(
        mixture,
        &generated,
        &real,
        has_belief.then_some(&belief as Belief<'_>),
        target,
        loss.opinion_is_probability() && target == 1.0,
    )
}

/// The analysis of a run's latest checkpoint on a 1-D mixture (its raw G and its D), with the
/// checkpoint's step; `None` for a run on other data or without one G and one D.
pub fn of_run(run: &RunDir) -> Result<Option<(Analysis, u64)>, EvalError> {
    let config = run.read_config()?;
    let Some(mixture) = config.source()?.mixture().filter(|m| m.dim() == 1) else {
        return Ok(None);
    };
    let device = config.device.device().map_err(|e| EvalError::Model {
        file: run.0.clone(),
        reason: e.to_string(),
    })?;
    let restored = run.load_latest(&config, &device.clone().autodiff())?;
    let family = &restored.family;
    let (Some(g), Some(d)) = (family.raw_generator(), family.discriminator()) else {
        return Ok(None);
    };
    let analysis = of_pair(&mixture, g, d, &config, &device).map_err(EvalError::Request)?;
    Ok(Some((analysis, restored.step)))
}

/// The caption of an analysis' picture after `step` iterations.
pub fn caption(numbers: &OptimalNumbers, step: u64) -> String {
    let mut s = format!("step {step}: JSD {:.3} nats", numbers.jsd);
    if let Some(v) = numbers.jsd_from_value {
        s += &format!(" (minimax value's estimate {v:.3})");
    }
    if let Some(gap) = numbers.gap {
        s += &format!(", mean |D - D*| {gap:.3}");
    }
    s
}

/// The Gaussian kernel density estimate of `sorted` samples at points `x`.
fn kde(sorted: &[f64], h: f64, x: &[f64]) -> Vec<f64> {
    let norm = 1.0 / (sorted.len() as f64 * h * std::f64::consts::TAU.sqrt());
    x.iter()
        .map(|&at| {
            // Only samples within 8 bandwidths count (the rest add less than 1e-14 each).
            let from = sorted.partition_point(|&s| s < at - 8.0 * h);
            let to = sorted.partition_point(|&s| s <= at + 8.0 * h);
            let sum: f64 = sorted[from..to]
                .iter()
                .map(|&s| (-0.5 * ((at - s) / h).powi(2)).exp())
                .sum();
            sum * norm
        })
        .collect()
}

/// The bandwidth for `samples`: the candidate (Silverman's rule times powers of sqrt 2) with the
/// largest leave-one-out log-likelihood on a strided subset of at most [`BANDWIDTH_SAMPLES`],
/// scaled to the full count by the kernel estimate's `n^(-1/5)` rate. Silverman's rule alone
/// oversmooths a multimodal density (it sees one wide spread).
fn bandwidth(samples: &[f64]) -> f64 {
    let n = samples.len();
    let stride = n.div_ceil(BANDWIDTH_SAMPLES).max(1);
    let subset: Vec<f64> = samples.iter().step_by(stride).copied().collect();
    let m = subset.len() as f64;
    let mean = subset.iter().sum::<f64>() / m;
    let spread = (subset.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m).sqrt();
    let silverman = 1.06 * spread.max(1e-6) * m.powf(-0.2);
    let log_likelihood = |h: f64| -> f64 {
        subset
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let others: f64 = subset
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &b)| (-0.5 * ((a - b) / h).powi(2)).exp())
                    .sum();
                (others / ((m - 1.0).max(1.0) * h * std::f64::consts::TAU.sqrt()))
                    .max(1e-300)
                    .ln()
            })
            .sum()
    };
    let best = (-12..=2)
        .map(|k| silverman * 2f64.powf(k as f64 / 2.0))
        .map(|h| (h, log_likelihood(h)))
        .fold((silverman, f64::NEG_INFINITY), |best, cur| {
            if cur.1 > best.1 {
                cur
            } else {
                best
            }
        })
        .0;
    best * (m / n as f64).powf(0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G drawing from the data's own mixture: D* is a half everywhere, the divergence is zero,
    /// and a D that says a half has no gap and a minimax value of -log 4.
    #[test]
    fn a_perfect_generator_has_a_half_everywhere() {
        let m = Mixture::mix1d();
        let (generated, _) = m.sample(SAMPLES, 1);
        let (real, _) = m.sample(SAMPLES, 2);
        let half = |p: &[f32]| vec![0.5; p.len()];
        let a = analyse(&m, &generated, &real, Some(&half), 1.0, true).unwrap();
        let n = a.numbers;
        assert!(n.jsd < 0.01, "{n:?}");
        assert!(n.gap.unwrap() < 0.03, "{n:?}");
        assert!(n.jsd_from_value.unwrap().abs() < 1e-9, "{n:?}");
        // The estimate of G's density is close to the data's at the modes.
        let at = |v: f64| a.x.iter().position(|&x| x >= v).unwrap();
        let i = at(0.0);
        assert!(
            (a.p_g[i] / a.p_data[i] - 1.0).abs() < 0.1,
            "{} {}",
            a.p_g[i],
            a.p_data[i]
        );
    }

    /// G collapsed onto one of the three modes: D* is 1 on the two it misses and a quarter
    /// (p / (p + 3p)) on the one it covers; the optimal D's minimax value gives the divergence.
    #[test]
    fn a_collapsed_generator_shows_the_missing_modes() {
        let m = Mixture::mix1d();
        let one = Mixture {
            name: "one",
            centers: vec![vec![2.0]],
            std: m.std,
        };
        let (generated, _) = one.sample(SAMPLES, 3);
        let (real, _) = m.sample(SAMPLES, 4);
        // D = D* from the true densities.
        let optimal = |p: &[f32]| -> Vec<f64> {
            p.iter()
                .map(|&v| {
                    let (a, b) = (m.density(&[v]), one.density(&[v]));
                    if a + b > 0.0 {
                        a / (a + b)
                    } else {
                        0.5
                    }
                })
                .collect()
        };
        let a = analyse(&m, &generated, &real, Some(&optimal), 1.0, true).unwrap();
        let n = a.numbers;
        let at = |v: f64| a.x.iter().position(|&x| x >= v).unwrap();
        assert!(a.d_star[at(-2.0)] > 0.99 && a.d_star[at(0.0)] > 0.99);
        assert!(
            (a.d_star[at(2.0)] - 0.25).abs() < 0.03,
            "{}",
            a.d_star[at(2.0)]
        );
        assert!(n.gap.unwrap() < 0.03, "{n:?}");
        // Exactly: the missed modes (p's mass 2/3, q = 0) add 1/2 (2/3) ln 2; on the kept mode
        // (p = phi/3, q = phi, m = 2 phi/3) 1/2 [1/3 ln(1/2) + ln(3/2)].
        let exact = 0.5 * ((2.0 / 3.0) * 2f64.ln() + (1.0 / 3.0) * 0.5f64.ln())
            + 0.5 * (1.0f64 / (2.0 / 3.0)).ln();
        assert!((n.jsd - exact).abs() < 0.02, "{} vs {exact}", n.jsd);
        assert!((n.jsd_from_value.unwrap() - exact).abs() < 0.02, "{n:?}");
        // A D that says a half everywhere is far from D*, and its value says nothing.
        let half = |p: &[f32]| vec![0.5; p.len()];
        let b = analyse(&m, &generated, &real, Some(&half), 1.0, true).unwrap();
        assert!(b.numbers.gap.unwrap() > 0.3, "{:?}", b.numbers);
        assert!(b.numbers.jsd_from_value.unwrap().abs() < 1e-9);
    }

    #[test]
    fn two_dimensional_mixtures_are_refused() {
        let e = analyse(&Mixture::ring8(), &[0.0; 4], &[0.0; 4], None, 1.0, false).unwrap_err();
        assert!(e.contains("1-D"), "{e}");
    }
}
