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
}

pub const METRICS_HEADER: &str = "step,loss_d,loss_g,d_real,d_fake,grad_norm_d,grad_norm_g,seconds";

impl StepMetrics {
    /// The row as written: floats in Rust's shortest round-trip form, so a row read back is the
    /// same bits; seconds to 0.1 ms.
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{:.4}",
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
        if f.len() != 8 {
            return None;
        }
        Some(Self {
            step: f[0].parse().ok()?,
            loss_d: f[1].parse().ok()?,
            loss_g: f[2].parse().ok()?,
            d_real: f[3].parse().ok()?,
            d_fake: f[4].parse().ok()?,
            grad_norm_d: f[5].parse().ok()?,
            grad_norm_g: f[6].parse().ok()?,
            seconds: f[7].parse().ok()?,
        })
    }
}

/// Read the metrics file `file`.
pub fn read(file: &Path) -> Result<Vec<StepMetrics>, TrainError> {
    let text = std::fs::read_to_string(file).map_err(io_err(file))?;
    text.lines()
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

/// Write the header and `rows` to `file`, replacing it (atomically).
pub fn write(file: &Path, rows: &[StepMetrics]) -> Result<(), TrainError> {
    let text = std::iter::once(METRICS_HEADER.to_string())
        .chain(rows.iter().map(StepMetrics::csv))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    crate::checkpoint::write_atomic(file, text.as_bytes()).map_err(io_err(file))
}

/// Plot the metrics file `metrics` to `file`: top, loss_d (red) and loss_g (blue); bottom, D(x)
/// (green) and D(G(z)) (orange).
pub fn loss_curve(metrics: &Path, file: &Path) -> Result<(), TrainError> {
    let rows = read(metrics)?;
    let col = |f: fn(&StepMetrics) -> f32| rows.iter().map(f).collect::<Vec<f32>>();
    let (ld, lg, dr, df) = (
        col(|r| r.loss_d),
        col(|r| r.loss_g),
        col(|r| r.d_real),
        col(|r| r.d_fake),
    );
    fn series(values: &[f32], color: [u8; 3]) -> render::Series<'_> {
        render::Series { values, color }
    }
    let panels = vec![
        vec![series(&ld, [210, 40, 40]), series(&lg, [40, 80, 210])],
        vec![series(&dr, [30, 150, 60]), series(&df, [240, 140, 20])],
    ];
    render::line_panels(&panels, file).map_err(|e| TrainError::BadRun {
        file: file.into(),
        reason: e.to_string(),
    })
}
