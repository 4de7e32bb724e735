//! `pocketgan bench`: latency and throughput per engine, measured in one process so that the
//! ratios (not the absolute times) are what a reader compares across machines.

use crate::engine::{Engine, EngineError};
use crate::format::Model;
use crate::interp::run_conditional_observed;
use crate::kernels::Isa;
use crate::quantize::{classes, latents};
use std::time::Instant;

/// One engine's figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub engine: String,
    /// Median batch-1 latency, microseconds.
    pub batch1_us: f64,
    /// Median batch-64 time per sample, microseconds.
    pub batch64_us: f64,
}

/// The int8 kernels on the largest layer.
#[derive(Debug, Clone)]
pub struct LayerFigure {
    pub op: &'static str,
    pub index: usize,
    pub macs_per_sample: usize,
    /// Median time of this op for a batch of 64, microseconds.
    pub batch64_us: f64,
    pub gmacs: f64,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub rows: Vec<Row>,
    pub macs_per_sample: usize,
    pub largest_layer: Option<LayerFigure>,
    pub reps: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `f` over `reps` runs after one warm-up run.
fn time<E>(reps: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64());
    }
    Ok(median(t))
}

pub const BATCH: usize = 64;

/// Measures every engine on the same seeded latents (and classes, for a conditional model).
pub fn run(
    engines: &mut [Box<dyn Engine + '_>],
    model: &Model,
    reps: usize,
) -> Result<Table, EngineError> {
    let mut rows = Vec::new();
    for e in engines.iter_mut() {
        let latent = e.latent();
        let (z1, c1) = (latents(1, 1, latent), classes(1, 1, e.classes()));
        let (z64, c64) = (latents(2, BATCH, latent), classes(2, BATCH, e.classes()));
        let batch1 = time(reps, || e.generate_with(&z1, &c1, 1).map(|_| ()))?;
        let batch64 = time(reps.div_ceil(4), || {
            e.generate_with(&z64, &c64, BATCH).map(|_| ())
        })?;
        rows.push(Row {
            engine: e.name(),
            batch1_us: batch1 * 1e6,
            batch64_us: batch64 * 1e6 / BATCH as f64,
        });
    }
    let macs_per_sample = model.ops().map(|op| op.macs()).sum();
    Ok(Table {
        rows,
        macs_per_sample,
        largest_layer: largest_layer(model, reps)?,
        reps,
    })
}

/// Times each op of the int8 model at batch 64 through the interpreter's observer.
fn largest_layer(model: &Model, reps: usize) -> Result<Option<LayerFigure>, EngineError> {
    let Some((index, op)) = model.ops().enumerate().max_by_key(|(_, op)| op.macs()) else {
        return Ok(None);
    };
    let input: Vec<i8> = latents(3, BATCH, model.latent)
        .iter()
        .map(|&v| model.input_quant.quantize(v))
        .collect();
    let labels = classes(3, BATCH, model.classes());
    let mut arena = vec![0u8; model.arena_len(BATCH)];
    let mut out = vec![0i8; BATCH * model.output.elements()];
    let mut samples = Vec::new();
    for _ in 0..reps.div_ceil(4).max(3) {
        let mut last = Instant::now();
        let mut took = 0.0;
        run_conditional_observed(
            model,
            Isa::detect(),
            BATCH,
            &input,
            &labels,
            &mut arena,
            &mut out,
            |i, _, _, _| {
                let now = Instant::now();
                if i == index {
                    took = (now - last).as_secs_f64();
                }
                last = Instant::now();
            },
        )?;
        samples.push(took);
    }
    let t = median(samples);
    Ok(Some(LayerFigure {
        op: op.name(),
        index,
        macs_per_sample: op.macs(),
        batch64_us: t * 1e6,
        gmacs: (op.macs() * BATCH) as f64 / t / 1e9,
    }))
}

impl Table {
    fn reference(&self) -> Option<&Row> {
        self.find("tract")
    }

    fn find(&self, engine: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.engine.starts_with(engine))
    }

    /// Speed-ups of `r` at batch 1 and 64 against the engine named `engine` (NaN without it).
    fn ratios(&self, r: &Row, engine: &str) -> (f64, f64) {
        self.find(engine).map_or((f64::NAN, f64::NAN), |t| {
            (t.batch1_us / r.batch1_us, t.batch64_us / r.batch64_us)
        })
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let ort = self.find("onnxruntime").is_some();
        let _ = write!(
            s,
            "{:<22} {:>14} {:>10}",
            "engine", "batch 1 (us)", "x tract"
        );
        if ort {
            let _ = write!(s, " {:>8}", "x ort");
        }
        let _ = write!(s, " {:>20} {:>10}", "batch 64 (us/sample)", "x tract");
        let _ = writeln!(
            s,
            "{}",
            if ort {
                format!(" {:>8}", "x ort")
            } else {
                String::new()
            }
        );
        for r in &self.rows {
            let (t1, t64) = self.ratios(r, "tract");
            let (o1, o64) = self.ratios(r, "onnxruntime");
            let _ = write!(s, "{:<22} {:>14.1} {:>9.2}x", r.engine, r.batch1_us, t1);
            if ort {
                let _ = write!(s, " {o1:>7.2}x");
            }
            let _ = write!(s, " {:>20.1} {:>9.2}x", r.batch64_us, t64);
            if ort {
                let _ = write!(s, " {o64:>7.2}x");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "model: {} int8 multiply-adds per sample; medians of {} runs (batch 64: {})",
            self.macs_per_sample,
            self.reps,
            self.reps.div_ceil(4)
        );
        if let Some(l) = &self.largest_layer {
            let _ = writeln!(
                s,
                "largest layer: op {} {} ({} MACs/sample), batch 64 in {:.0} us = {:.1} GMAC/s on the {} kernels",
                l.index,
                l.op,
                l.macs_per_sample,
                l.batch64_us,
                l.gmacs,
                Isa::detect().name()
            );
        }
        s
    }

    pub fn json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| serde_json::json!({"engine": r.engine, "batch1_us": r.batch1_us, "batch64_us_per_sample": r.batch64_us,
                "speedup_batch1_vs_tract": self.reference().map(|t| t.batch1_us / r.batch1_us),
                "speedup_batch64_vs_tract": self.reference().map(|t| t.batch64_us / r.batch64_us),
                "speedup_batch1_vs_onnxruntime": self.find("onnxruntime").map(|t| t.batch1_us / r.batch1_us),
                "speedup_batch64_vs_onnxruntime": self.find("onnxruntime").map(|t| t.batch64_us / r.batch64_us)}))
            .collect();
        let layer = self.largest_layer.as_ref().map(|l| {
            serde_json::json!({"index": l.index, "op": l.op, "macs_per_sample": l.macs_per_sample, "batch64_us": l.batch64_us, "gmacs": l.gmacs, "isa": Isa::detect().name()})
        });
        serde_json::json!({"engines": rows, "macs_per_sample": self.macs_per_sample, "reps": self.reps, "largest_layer": layer}).to_string()
    }
}
