//! `pocketgan-train bench`: the median time of one reference DCGAN training iteration (batch 64)
//! on each compiled-in backend, beside PyTorch's figure on the same machine.

use std::time::Instant;

use crate::config::TrainConfig;
use crate::data::{BatchOrder, DataSource, LoadOptions};
use crate::device::DeviceKind;
use crate::error::TrainError;
use crate::family::{self, Iteration};
use crate::loss::GanLoss;
use crate::model::Architecture;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub backend: String,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Process CPU time (all threads) per timed iteration, where the OS reports it (Linux):
    /// unlike wall time it barely moves when other jobs share the cores.
    pub cpu_ms: Option<f64>,
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (Linux; `None` elsewhere).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // In clock ticks of USER_HZ, which Linux fixes at 100 per second for user space.
    Some((utime + stime) * 10.0)
}

/// A backend that [`all`] could not time, and why (not compiled in, or no such hardware).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unavailable {
    pub backend: String,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bench {
    pub rows: Vec<BenchRow>,
    pub unavailable: Vec<Unavailable>,
}

/// The backends in `kinds` (every compiled-in one if empty); on `cpu` (flex) also with Burn's own
/// operators instead of those of [`crate::ops`], the figure before that speed-up.
pub fn all(kinds: &[DeviceKind], warmup: usize, iters: usize) -> Result<Bench, TrainError> {
    let kinds = if kinds.is_empty() {
        DeviceKind::compiled()
    } else {
        kinds.to_vec()
    };
    let mut bench = Bench {
        rows: Vec::new(),
        unavailable: Vec::new(),
    };
    for kind in kinds {
        if let Err(e) = kind.device() {
            bench.unavailable.push(Unavailable {
                backend: kind.name().into(),
                reason: e.to_string(),
            });
            continue;
        }
        bench.rows.push(training_iteration(kind, warmup, iters)?);
        if kind == DeviceKind::Cpu {
            crate::ops::set_enabled(false);
            let row = training_iteration(kind, warmup, iters);
            crate::ops::set_enabled(true);
            bench.rows.push(BenchRow {
                backend: "cpu, burn ops".into(),
                ..row?
            });
        }
    }
    Ok(bench)
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
    let mut family = family::init(&config, &device)?;
    let mut times = Vec::with_capacity(iters);
    let mut cpu_start = None;
    for i in 0..warmup + iters {
        if i == warmup {
            cpu_start = process_cpu_ms();
        }
        let t = Instant::now();
        let m = family.step(&mut Iteration {
            config: &config,
            data: &ds,
            target: None,
            order: &mut order,
            device: &device,
            step: i as u64,
        });
        std::hint::black_box(m);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let cpu_ms = cpu_start
        .zip(process_cpu_ms())
        .map(|(a, b)| (b - a) / iters.max(1) as f64);
    times.sort_by(f64::total_cmp);
    Ok(BenchRow {
        backend: kind.name().into(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        cpu_ms,
    })
}
