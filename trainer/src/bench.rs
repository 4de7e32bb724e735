//! `pocketgan-train bench`: the median time of one reference DCGAN training iteration (batch 64)
//! on each compiled-in backend, beside PyTorch's figure on the same machine.

use std::time::Instant;

use crate::data::{BatchOrder, DataSource, LoadOptions};
use crate::device::DeviceKind;
use crate::loss::GanLoss;
use crate::model::Architecture;
use crate::train::{train_step, State, TrainConfig, TrainError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub backend: String,
    pub median_ms: f64,
    pub min_ms: f64,
}

/// Every compiled-in backend; on `cpu` (flex) also with Burn's own operators instead of those of
/// [`crate::ops`], the figure before that speed-up.
pub fn all(warmup: usize, iters: usize) -> Result<Vec<BenchRow>, TrainError> {
    let mut rows = Vec::new();
    for kind in DeviceKind::available() {
        rows.push(training_iteration(kind, warmup, iters)?);
        if kind == DeviceKind::Cpu {
            crate::ops::set_enabled(false);
            let row = training_iteration(kind, warmup, iters);
            crate::ops::set_enabled(true);
            rows.push(BenchRow {
                backend: "cpu, burn ops".into(),
                ..row?
            });
        }
    }
    Ok(rows)
}

/// Time `iters` iterations after `warmup` on `device` with the reference DCGAN on the built-in digits.
pub fn training_iteration(
    kind: DeviceKind,
    warmup: usize,
    iters: usize,
) -> Result<BenchRow, TrainError> {
    let config = TrainConfig::new(
        &DataSource::Digits,
        Architecture::Dcgan,
        GanLoss::Nonsaturating,
    );
    let ds = crate::data::load(&DataSource::Digits, &LoadOptions::default())?;
    let mut order = BatchOrder::new(ds.len(), config.batch, 0)?;
    let device = kind.device()?.autodiff();
    let mut state = State::new(&config, &device);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t = Instant::now();
        let (next, m) = train_step(state, &config, &ds, &mut order, &device);
        state = next;
        std::hint::black_box(m);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(BenchRow {
        backend: kind.name().into(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
    })
}
