//! `pocketgan bench`: latency and throughput per engine, measured in one process so that the
//! ratios (not the absolute times) are what a reader compares across machines. Latent
//! generators run through [`Engine`] ([`run`]), image-to-image models through [`Runner`]
//! ([`run_images`], on seeded pictures).

use crate::engine::runner::{Int8Runner, Runner, Values};
use crate::engine::{Engine, EngineError};
use crate::format::Model;
use crate::interp::run_conditional_observed;
use crate::kernels::Isa;
use crate::quantize::{indices, latents};
use std::time::Instant;

/// One engine's figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub engine: String,
    /// Median batch-1 latency, microseconds.
    pub batch1_us: f64,
    /// Median time per sample of a batch of [`Table::batch`], microseconds.
    pub batch_us: f64,
}

/// The int8 kernels on the largest layer.
#[derive(Debug, Clone)]
pub struct LayerFigure {
    pub op: &'static str,
    pub index: usize,
    pub macs_per_sample: usize,
    /// Median time of this op for a batch of [`Table::batch`], microseconds.
    pub batch_us: f64,
    /// Median time of this op for one sample, microseconds (one thread: where batch 1 loses
    /// against the batch, op by op).
    pub batch1_us: f64,
    pub gmacs: f64,
    /// `gmacs` as a share of the kernel family's measured peak ([`crate::peak`]), if known.
    pub peak_share: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub rows: Vec<Row>,
    pub macs_per_sample: usize,
    /// Every op of the int8 model at [`Table::batch`], in order.
    pub layers: Vec<LayerFigure>,
    pub reps: usize,
    /// The batch of the throughput column.
    pub batch: usize,
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
/// The throughput batch of image-to-image models (their samples are far larger).
pub const IMAGE_BATCH: usize = 16;

/// One row: the median batch-1 latency and per-sample time at `batch` of `f(n)`.
fn measure(
    engine: String,
    reps: usize,
    batch: usize,
    mut f: impl FnMut(usize) -> Result<(), EngineError>,
) -> Result<Row, EngineError> {
    let batch1 = time(reps, || f(1))?;
    let many = time(reps.div_ceil(4), || f(batch))?;
    Ok(Row {
        engine,
        batch1_us: batch1 * 1e6,
        batch_us: many * 1e6 / batch as f64,
    })
}

/// Measures every engine on the same seeded latents (and classes, for a conditional model).
pub fn run(
    engines: &mut [Box<dyn Engine + '_>],
    model: &Model,
    reps: usize,
) -> Result<Table, EngineError> {
    let mut rows = Vec::new();
    for e in engines.iter_mut() {
        let latent = e.latent();
        let (k, slots) = (e.classes(), e.slots());
        let (z1, c1) = (latents(1, 1, latent), indices(1, 1, k, slots));
        let (z64, c64) = (latents(2, BATCH, latent), indices(2, BATCH, k, slots));
        let name = e.name();
        rows.push(measure(name, reps, BATCH, |n| {
            let (z, c) = if n == 1 { (&z1, &c1) } else { (&z64, &c64) };
            e.generate_with(z, c, n).map(|_| ())
        })?);
    }
    let input: Vec<i8> = latents(3, BATCH, model.latent)
        .iter()
        .map(|&v| model.input_quant.quantize(v))
        .collect();
    let slots = model.slots();
    let labels = indices(3, BATCH, model.classes(), slots);
    let mut arena = vec![0u8; model.arena_len(BATCH)];
    let mut out = vec![0i8; BATCH * model.output.elements()];
    let layers = layers(model, reps, BATCH, |n, tick| {
        run_conditional_observed(
            model,
            Isa::detect(),
            n,
            &input[..n * model.latent],
            labels.get(..n * slots).unwrap_or_default(),
            &mut arena[..model.arena_len(n)],
            &mut out[..n * model.output.elements()],
            |i, _, _, _| tick(i),
        )
        .map_err(EngineError::from)
    })?;
    Ok(table(rows, model, layers, reps, BATCH))
}

/// Seeded pictures `[n, c, h, w]` in `[-1, 1]` (a timing input: the values do not matter, only
/// that every engine sees the same ones).
pub fn pictures(seed: u64, n: usize, (c, h, w): (usize, usize, usize)) -> Vec<f32> {
    latents(seed, n * c * h * w, 1)
        .iter()
        .map(|v| (v * 0.5).tanh())
        .collect()
}

/// Measures image-to-image runners (one image input of shape `image`) on the same seeded
/// pictures at batch 1 and `batch`; `model` is the int8 model, for its MACs and largest layer.
pub fn run_images(
    runners: &mut [Box<dyn Runner + '_>],
    model: &Model,
    image: (usize, usize, usize),
    reps: usize,
    batch: usize,
) -> Result<Table, EngineError> {
    let one = Values::F32(pictures(1, 1, image));
    let many = Values::F32(pictures(2, batch, image));
    run_inputs(runners, model, [one, many], reps, batch)
}

/// [`run_images`] for a generator whose one input is noise of `size` values per sample (a
/// recurrent generator's noise sequence), drawn as `noise`.
pub fn run_noise(
    runners: &mut [Box<dyn Runner + '_>],
    model: &Model,
    noise: crate::latent::Noise,
    size: usize,
    reps: usize,
    batch: usize,
) -> Result<Table, EngineError> {
    let draw = |seed: u64, n: usize| {
        let mut z = vec![0.0; n * size];
        noise.fill(seed, &mut z);
        Values::F32(z)
    };
    run_inputs(runners, model, [draw(1, 1), draw(2, batch)], reps, batch)
}

/// Times sampling whole token sequences from each runner's one-step cell ([`crate::tokens`]):
/// one sequence, and a batch of `batch`. There are no int8 layers to time (the runtime has no
/// int8 cell yet): the table's layers are empty and its multiply-adds are the float cell's.
pub fn run_tokens(
    runners: &mut [Box<dyn Runner + '_>],
    spec: &crate::tokens::TokenSpec,
    macs_per_sequence: usize,
    reps: usize,
    batch: usize,
) -> Result<Table, EngineError> {
    let mut rows = Vec::new();
    for r in runners.iter_mut() {
        let name = r.name();
        rows.push(measure(name, reps, batch, |n| {
            crate::tokens::sample_tokens(r.as_mut(), spec, n, 1)
                .map(|_| ())
                .map_err(|e| EngineError::Inputs(e.to_string()))
        })?);
    }
    Ok(Table {
        rows,
        macs_per_sample: macs_per_sequence,
        layers: Vec::new(),
        reps,
        batch,
    })
}

/// Times every runner on `one` sample and on a batch of `many`, then the int8 model's layers.
fn run_inputs(
    runners: &mut [Box<dyn Runner + '_>],
    model: &Model,
    [one, many]: [Values; 2],
    reps: usize,
    batch: usize,
) -> Result<Table, EngineError> {
    let (one, many) = ([one], [many]);
    let mut rows = Vec::new();
    for r in runners.iter_mut() {
        let name = r.name();
        rows.push(measure(name, reps, batch, |n| {
            r.run(if n == 1 { &one } else { &many }, n).map(|_| ())
        })?);
    }
    let mut int8 = Int8Runner::new(*model, Isa::detect());
    let layers = layers(model, reps, batch, |n, tick| {
        let inputs = if n == 1 { &one } else { &many };
        int8.run_observed(inputs, n, |i, _, _, _| tick(i))
            .map(|_| ())
    })?;
    Ok(table(rows, model, layers, reps, batch))
}

fn table(
    rows: Vec<Row>,
    model: &Model,
    layers: Vec<LayerFigure>,
    reps: usize,
    batch: usize,
) -> Table {
    Table {
        rows,
        macs_per_sample: model.ops().map(|op| op.macs()).sum(),
        layers,
        reps,
        batch,
    }
}

/// Times every op at batch 1 and at `batch`: `run(n, tick)` runs the int8 model once on `n`
/// samples, calling `tick(i)` as node `i` finishes; a node's time is the time since the previous
/// one finished (the first's includes staging the input). Medians over the runs, per node.
fn layers(
    model: &Model,
    reps: usize,
    batch: usize,
    mut run: impl FnMut(usize, &mut dyn FnMut(usize)) -> Result<(), EngineError>,
) -> Result<Vec<LayerFigure>, EngineError> {
    let ops: Vec<_> = model.ops().collect();
    let mut per_op = |n: usize, runs: usize| -> Result<Vec<Vec<f64>>, EngineError> {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
        for _ in 0..runs {
            let mut last = Instant::now();
            run(n, &mut |i| {
                let now = Instant::now();
                if let Some(t) = samples.get_mut(i) {
                    t.push((now - last).as_secs_f64());
                }
                last = Instant::now();
            })?;
        }
        Ok(samples)
    };
    let one = per_op(1, reps.max(3))?;
    let samples = per_op(batch, reps.div_ceil(4).max(3))?;
    let peak = crate::peak::int8_macs_per_sec(Isa::detect());
    Ok(ops
        .iter()
        .zip(samples.into_iter().zip(one))
        .enumerate()
        .filter(|(_, (_, (t, _)))| !t.is_empty())
        .map(|(index, (op, (t, t1)))| {
            let t1 = if t1.is_empty() { f64::NAN } else { median(t1) };
            let t = median(t);
            let gmacs = (op.macs() * batch) as f64 / t.max(1e-12) / 1e9;
            LayerFigure {
                op: op.name(),
                index,
                macs_per_sample: op.macs(),
                batch_us: t * 1e6,
                batch1_us: t1 * 1e6,
                gmacs,
                peak_share: peak.filter(|_| op.macs() > 0).map(|p| gmacs * 1e9 / p),
            }
        })
        .collect())
}

impl Table {
    /// The op with the most multiply-adds.
    pub fn largest_layer(&self) -> Option<&LayerFigure> {
        self.layers.iter().max_by_key(|l| l.macs_per_sample)
    }

    fn reference(&self) -> Option<&Row> {
        self.find("tract")
    }

    fn find(&self, engine: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.engine.starts_with(engine))
    }

    /// Speed-ups of `r` at batch 1 and [`Table::batch`] against the engine named `engine` (NaN without it).
    fn ratios(&self, r: &Row, engine: &str) -> (f64, f64) {
        self.find(engine).map_or((f64::NAN, f64::NAN), |t| {
            (t.batch1_us / r.batch1_us, t.batch_us / r.batch_us)
        })
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let ort = self.find("onnxruntime").is_some();
        let width = self
            .rows
            .iter()
            .map(|r| r.engine.len())
            .max()
            .unwrap_or(0)
            .max(22);
        let _ = write!(
            s,
            "{:<width$} {:>14} {:>10}",
            "engine", "batch 1 (us)", "x tract"
        );
        if ort {
            let _ = write!(s, " {:>8}", "x ort");
        }
        let _ = write!(
            s,
            " {:>20} {:>10}",
            format!("batch {} (us/sample)", self.batch),
            "x tract"
        );
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
            let _ = write!(s, "{:<width$} {:>14.1} {:>9.2}x", r.engine, r.batch1_us, t1);
            if ort {
                let _ = write!(s, " {o1:>7.2}x");
            }
            let _ = write!(s, " {:>20.1} {:>9.2}x", r.batch_us, t64);
            if ort {
                let _ = write!(s, " {o64:>7.2}x");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "model: {} {}multiply-adds per sample; medians of {} runs (batch {}: {})",
            self.macs_per_sample,
            if self.layers.is_empty() { "" } else { "int8 " },
            self.reps,
            self.batch,
            self.reps.div_ceil(4)
        );
        if let Some(l) = self.largest_layer() {
            let _ = writeln!(
                s,
                "largest layer: op {} {} ({} MACs/sample), batch {} in {:.0} us = {:.1} GMAC/s on the {} kernels{}",
                l.index,
                l.op,
                l.macs_per_sample,
                self.batch,
                l.batch_us,
                l.gmacs,
                Isa::detect().name(),
                l.peak_share.map_or(String::new(), |p| format!(", {:.0}% of its measured peak", p * 100.0))
            );
        }
        s += &self.layer_text();
        s
    }

    /// Every op's time at [`Table::batch`], its share of the run, its rate and its share of the
    /// kernels' measured peak: where the time goes, without a profiler.
    pub fn layer_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if self.layers.is_empty() {
            return s;
        }
        let total: f64 = self.layers.iter().map(|l| l.batch_us).sum();
        let peak = crate::peak::int8_macs_per_sec(Isa::detect())
            .map_or("not measured".into(), |p| format!("{:.0} GMAC/s", p / 1e9));
        let _ = writeln!(
            s,
            "per op, int8 at batch {} on the {} kernels (measured peak {peak}), one thread; and at batch 1:",
            self.batch,
            Isa::detect().name()
        );
        let _ = writeln!(
            s,
            "{:>4} {:<18} {:>12} {:>10} {:>7} {:>9} {:>7} {:>10} {:>9}",
            "op", "kind", "MACs/sample", "us", "time", "GMAC/s", "peak", "b1 us", "b1 GMAC/s"
        );
        for l in &self.layers {
            let rate = |v: String| if l.macs_per_sample > 0 { v } else { "-".into() };
            let _ = writeln!(
                s,
                "{:>4} {:<18} {:>12} {:>10.1} {:>6.1}% {:>9} {:>7} {:>10.1} {:>9}",
                l.index,
                l.op,
                l.macs_per_sample,
                l.batch_us,
                100.0 * l.batch_us / total.max(1e-12),
                rate(format!("{:.1}", l.gmacs)),
                l.peak_share
                    .map_or("-".into(), |p| format!("{:.0}%", 100.0 * p)),
                l.batch1_us,
                rate(format!(
                    "{:.1}",
                    l.macs_per_sample as f64 / l.batch1_us.max(1e-9) / 1e3
                )),
            );
        }
        s
    }

    pub fn json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| serde_json::json!({"engine": r.engine, "batch1_us": r.batch1_us, "batch": self.batch, "batch_us_per_sample": r.batch_us,
                "speedup_batch1_vs_tract": self.reference().map(|t| t.batch1_us / r.batch1_us),
                "speedup_batch_vs_tract": self.reference().map(|t| t.batch_us / r.batch_us),
                "speedup_batch1_vs_onnxruntime": self.find("onnxruntime").map(|t| t.batch1_us / r.batch1_us),
                "speedup_batch_vs_onnxruntime": self.find("onnxruntime").map(|t| t.batch_us / r.batch_us)}))
            .collect();
        let figure = |l: &LayerFigure| serde_json::json!({"index": l.index, "op": l.op, "macs_per_sample": l.macs_per_sample, "batch_us": l.batch_us, "batch1_us": l.batch1_us, "gmacs": l.gmacs, "peak_share": l.peak_share, "isa": Isa::detect().name()});
        let layer = self.largest_layer().map(figure);
        let layers: Vec<_> = self.layers.iter().map(figure).collect();
        serde_json::json!({"engines": rows, "macs_per_sample": self.macs_per_sample, "reps": self.reps, "largest_layer": layer, "layers": layers}).to_string()
    }
}
