//! Quality signals during training: every sampling interval the run's judge classifies a batch
//! of generated samples, `quality.csv` records class coverage, KL to uniform classes and sample
//! diversity, and warnings name the known failure modes as they appear.

use std::io::Write;
use std::path::Path;

use super::classifier::{self, Judge, FEATURES};
use crate::data::Dataset;

/// Steps before the first warning.
pub const WARMUP_STEPS: u64 = 200;

/// Samples judged per check.
pub const SAMPLES: usize = 500;

/// One check's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    pub step: u64,
    pub classes_covered: usize,
    pub classes: usize,
    pub kl_uniform: f64,
    /// Mean feature distance between generated samples over the same for real ones: near 1 for a
    /// healthy generator, near 0 when the samples collapse onto a few.
    pub diversity: f64,
    /// The step's D(G(z)), for losses where it is a probability.
    pub d_fake: Option<f32>,
}

pub struct Watch {
    judge: Judge,
    real_spread: f64,
    best_coverage: usize,
    csv: std::fs::File,
}

pub const HEADER: &str = "step,classes_covered,classes,kl_uniform,diversity,d_fake";

/// Mean distance between consecutive feature vectors (pairs of independent samples).
fn spread(features: &[[f32; FEATURES]]) -> f64 {
    let pairs = features.len() / 2;
    let total: f64 = features
        .chunks_exact(2)
        .map(|p| {
            p[0].iter()
                .zip(&p[1])
                .map(|(a, b)| ((a - b) * (a - b)) as f64)
                .sum::<f64>()
                .sqrt()
        })
        .sum();
    total / pairs.max(1) as f64
}

impl Watch {
    /// A watch for labelled image data, or `None` (toy data, unlabelled or small images). Its
    /// judge (the dataset's own split) is kept in `classifiers` like `eval`'s.
    pub fn new(ds: &Dataset, classifiers: &Path, csv: &Path, seed: u64) -> Option<Watch> {
        // The dataset's own split, always: its judge trains in seconds, where the official one
        // (eval's) takes minutes that would land on the first run after a fetch. The watch is a
        // diagnostic for the run's log, not a reported figure.
        let data = classifier::JudgeData::own_split(ds, seed);
        let judge = Judge::load_or_train(classifiers, &data, seed).ok()?;
        let idx: Vec<usize> = (0..ds.len().min(SAMPLES)).collect();
        let real_spread = spread(&judge.judge(&classifier::images(ds, &idx)).0);
        let exists = csv.exists();
        let mut csv = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(csv)
            .ok()?;
        if !exists {
            writeln!(csv, "{HEADER}").ok()?;
        }
        Some(Watch {
            judge,
            real_spread,
            best_coverage: 0,
            csv,
        })
    }

    /// Judges `samples`, records the signals and returns them with warnings for the log.
    pub fn check(
        &mut self,
        step: u64,
        samples: &[f32],
        d_fake: Option<f32>,
    ) -> (Signals, Vec<String>) {
        let (features, classes) = self.judge.judge(samples);
        let k = self.judge.shape[2];
        let (_, classes_covered, kl_uniform) = super::class_stats(&classes, k);
        let s = Signals {
            step,
            classes_covered,
            classes: k,
            kl_uniform,
            diversity: spread(&features) / self.real_spread.max(1e-9),
            d_fake,
        };
        let _ = writeln!(
            self.csv,
            "{},{},{},{:.5},{:.4},{}",
            s.step,
            s.classes_covered,
            s.classes,
            s.kl_uniform,
            s.diversity,
            s.d_fake.map(|d| format!("{d:.5}")).unwrap_or_default()
        );
        (s, warnings(&mut self.best_coverage, &s))
    }
}

/// The failure modes `s` shows; `best_coverage` is the best coverage seen so far.
fn warnings(best_coverage: &mut usize, s: &Signals) -> Vec<String> {
    let mut w = Vec::new();
    // A GAN's first few hundred steps are noise or a blur: nothing to warn about yet.
    if s.step < WARMUP_STEPS {
        return w;
    }
    if s.classes_covered + 2 <= *best_coverage {
        w.push(format!(
            "step {}: mode collapse? classes covered fell from {} to {}/{}",
            s.step, best_coverage, s.classes_covered, s.classes
        ));
    }
    *best_coverage = (*best_coverage).max(s.classes_covered);
    if s.diversity < 0.5 {
        w.push(format!(
            "step {}: sample diversity is collapsing ({:.2} of real data's)",
            s.step, s.diversity
        ));
    }
    if let Some(d) = s.d_fake.filter(|&d| d < 0.02) {
        w.push(format!(
            "step {}: the discriminator wins outright (D(G(z)) = {d:.4}); G's gradients vanish",
            s.step
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(step: u64, covered: usize, diversity: f64, d_fake: f32) -> Signals {
        let d_fake = Some(d_fake);
        Signals {
            step,
            classes_covered: covered,
            classes: 10,
            kl_uniform: 0.0,
            diversity,
            d_fake,
        }
    }

    #[test]
    fn warnings_name_collapse_lost_diversity_and_a_winning_discriminator() {
        let mut best = 0;
        assert!(
            warnings(&mut best, &signals(100, 1, 0.01, 0.0)).is_empty(),
            "warm-up"
        );
        assert!(warnings(&mut best, &signals(300, 10, 0.9, 0.3)).is_empty());
        let w = warnings(&mut best, &signals(400, 7, 0.9, 0.3));
        assert!(w.len() == 1 && w[0].contains("from 10 to 7/10"), "{w:?}");
        let w = warnings(&mut best, &signals(500, 10, 0.3, 0.3));
        assert!(w.len() == 1 && w[0].contains("diversity"), "{w:?}");
        let w = warnings(&mut best, &signals(600, 10, 0.9, 0.001));
        assert!(w.len() == 1 && w[0].contains("wins outright"), "{w:?}");
        // Scores without a probability scale (LSGAN, WGAN, hinge) never trigger it.
        let mut s = signals(700, 10, 0.9, 0.0);
        s.d_fake = None;
        assert!(warnings(&mut best, &s).is_empty());
    }
}
