//! A run's history: `metrics.csv`, one row per iteration, and its picture, `loss_curve.png`.

use std::path::Path;

use crate::error::{io_err, TrainError};
use crate::render;

/// One row of `metrics.csv`: what an iteration reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMetrics {
    /// Iterations completed, this one included.
    pub step: u64,
    pub loss_d: f32,
    pub loss_g: f32,
    /// D's mean opinion of real samples (probability for BCE losses, raw score otherwise).
    pub d_real: f32,
    /// D's mean opinion of fakes, before D's update.
    pub d_fake: f32,
    pub grad_norm_d: f32,
    pub grad_norm_g: f32,
    /// Wall time of the iteration (set by the loop).
    pub seconds: f64,
    /// The family's own loss terms (its [`crate::family::Family::terms`]), after the common
    /// columns.
    pub terms: Terms,
}

pub const METRICS_HEADER: &str = "step,loss_d,loss_g,d_real,d_fake,grad_norm_d,grad_norm_g,seconds";
/// The common columns of `metrics.csv`, before a family's terms.
const METRICS_COLUMNS: usize = 8;

/// Most loss terms a family reports beside the common columns.
pub const MAX_TERMS: usize = 10;

/// A family's loss terms: a short list of values kept inline so that a row stays a plain `Copy`
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Terms {
    len: usize,
    values: [f32; MAX_TERMS],
}

impl Terms {
    /// The first [`MAX_TERMS`] of `values`.
    pub fn new(values: &[f32]) -> Self {
        let mut t = Self::default();
        t.len = values.len().min(MAX_TERMS);
        t.values[..t.len].copy_from_slice(&values[..t.len]);
        t
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.values[..self.len]
    }
}

impl StepMetrics {
    /// The row as written: floats in Rust's shortest round-trip form, so a row read back is the
    /// same bits; seconds to 0.1 ms.
    pub fn csv(&self) -> String {
        let terms: String = self
            .terms
            .as_slice()
            .iter()
            .map(|v| format!(",{v}"))
            .collect();
        format!(
            "{},{},{},{},{},{},{},{:.4}{terms}",
            self.step,
            self.loss_d,
            self.loss_g,
            self.d_real,
            self.d_fake,
            self.grad_norm_d,
            self.grad_norm_g,
            self.seconds
        )
    }

    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if !(METRICS_COLUMNS..=METRICS_COLUMNS + MAX_TERMS).contains(&f.len()) {
            return None;
        }
        let terms: Vec<f32> = f[METRICS_COLUMNS..]
            .iter()
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            step: f[0].parse().ok()?,
            loss_d: f[1].parse().ok()?,
            loss_g: f[2].parse().ok()?,
            d_real: f[3].parse().ok()?,
            d_fake: f[4].parse().ok()?,
            grad_norm_d: f[5].parse().ok()?,
            grad_norm_g: f[6].parse().ok()?,
            seconds: f[7].parse().ok()?,
            terms: Terms::new(&terms),
        })
    }
}

/// Read the metrics file `file`.
pub fn read(file: &Path) -> Result<Vec<StepMetrics>, TrainError> {
    let text = std::fs::read_to_string(file).map_err(io_err(file))?;
    // Every row is written with its newline in one write: a last line without one was cut by
    // a kill or a truncation mid-write (even if what is left parses, a number may be cut), so
    // it is dropped; its step is replayed from the checkpoint. Any other bad row is an error.
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    whole
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            StepMetrics::parse(l).ok_or_else(|| TrainError::BadRun {
                file: file.into(),
                reason: format!("bad row `{l}`"),
            })
        })
        .collect()
}

/// Write the header (the common columns, then `terms`, the family's own) and `rows` to `file`,
/// replacing it (atomically).
pub fn write(file: &Path, terms: &[&str], rows: &[StepMetrics]) -> Result<(), TrainError> {
    let header: String = std::iter::once(METRICS_HEADER)
        .chain(terms.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let text = std::iter::once(header)
        .chain(rows.iter().map(StepMetrics::csv))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    crate::checkpoint::write_atomic(file, text.as_bytes()).map_err(io_err(file))
}

/// Plot the metrics file `metrics` to `file`: the two losses; D's opinions of real and fake
/// batches; and, when the run judged its samples (`quality`, the watch's `quality.csv`), the share
/// of classes covered and the diversity relative to real images.
pub fn loss_curve(metrics: &Path, quality: &Path, file: &Path) -> Result<(), TrainError> {
    let rows = read(metrics)?;
    let col = |f: fn(&StepMetrics) -> f32| rows.iter().map(f).collect::<Vec<f32>>();
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    let (ld, lg, dr, df) = (
        col(|r| r.loss_d),
        col(|r| r.loss_g),
        col(|r| r.d_real),
        col(|r| r.d_fake),
    );
    fn series<'a>(name: &'a str, values: &'a [f32], color: [u8; 3]) -> render::Series<'a> {
        render::Series {
            name,
            values,
            color,
        }
    }
    let mut panels = vec![
        render::Panel {
            title: "losses",
            y_label: "loss",
            steps: &steps,
            series: vec![
                series("loss_d", &ld, [210, 40, 40]),
                series("loss_g", &lg, [40, 80, 210]),
            ],
            smooth: true,
        },
        render::Panel {
            title: "the discriminator's opinion",
            y_label: "D (mean)",
            steps: &steps,
            series: vec![
                series("D(x), real", &dr, [30, 150, 60]),
                series("D(G(z)), fake", &df, [240, 140, 20]),
            ],
            smooth: true,
        },
    ];
    // quality.csv: step, classes_covered, classes, kl_uniform, diversity, d_fake. A run without
    // a watch has none; a torn or foreign row is skipped (the picture is a view, not a record).
    let judged: Vec<[f64; 3]> = std::fs::read_to_string(quality)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let v: Vec<f64> = line
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() >= 5 && v[2] > 0.0).then(|| [v[0], v[1] / v[2], v[4]])
        })
        .collect();
    // SeqGAN's NLL-oracle, a family column logged every so many iterations (empty elsewhere),
    // in two panels: G's pre-training (thousands of steps) and the adversarial rounds (a few
    // hundred), which would be a sliver at the end of one axis. The rounds' panel starts from
    // pre-training's last value.
    let header = std::fs::read_to_string(metrics).unwrap_or_default();
    let column = |name: &str| {
        header
            .lines()
            .next()
            .and_then(|h| h.split(',').skip(METRICS_COLUMNS).position(|c| c == name))
    };
    let (nll_column, phase_column) = (column("nll_oracle"), column("phase"));
    let scored: Vec<(u64, f32, f32)> = nll_column
        .map(|k| {
            rows.iter()
                .filter_map(|r| {
                    let t = r.terms.as_slice();
                    let phase = phase_column.and_then(|p| t.get(p).copied()).unwrap_or(1.0);
                    Some((r.step, *t.get(k)?, phase))
                })
                .filter(|(_, v, _)| v.is_finite())
                .collect()
        })
        .unwrap_or_default();
    let pretraining = scored.iter().filter(|(_, _, p)| *p < 3.0).count();
    let adversarial = &scored[pretraining.saturating_sub(1)..];
    let (pre_steps, pre_nll): (Vec<u64>, Vec<f32>) = scored[..pretraining]
        .iter()
        .map(|(s, v, _)| (*s, *v))
        .unzip();
    let (adv_steps, adv_nll): (Vec<u64>, Vec<f32>) =
        adversarial.iter().map(|(s, v, _)| (*s, *v)).unzip();
    if !pre_nll.is_empty() {
        panels.push(render::Panel {
            title: "NLL-oracle of G's samples, pre-training (lower is better)",
            y_label: "nats per token",
            steps: &pre_steps,
            series: vec![series("NLL-oracle", &pre_nll, [120, 40, 160])],
            smooth: false,
        });
    }
    if adv_nll.len() > 1 {
        panels.push(render::Panel {
            title: "NLL-oracle of G's samples, adversarial rounds (one iteration each)",
            y_label: "nats per token",
            steps: &adv_steps,
            series: vec![series("NLL-oracle", &adv_nll, [200, 60, 60])],
            smooth: false,
        });
    }
    let quality_steps: Vec<u64> = judged.iter().map(|r| r[0] as u64).collect();
    let covered: Vec<f32> = judged.iter().map(|r| r[1] as f32).collect();
    let diversity: Vec<f32> = judged.iter().map(|r| r[2] as f32).collect();
    if !judged.is_empty() {
        panels.push(render::Panel {
            title: "judged samples (quality.csv)",
            y_label: "share",
            steps: &quality_steps,
            series: vec![
                series("classes covered", &covered, [120, 40, 160]),
                series("diversity vs real", &diversity, [20, 140, 150]),
            ],
            smooth: false,
        });
    }
    let title = format!(
        "{} ({} steps)",
        metrics
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        steps.last().copied().unwrap_or(0)
    );
    render::line_panels(&title, &panels, file).map_err(|reason| TrainError::BadRun {
        file: file.into(),
        reason,
    })
}
