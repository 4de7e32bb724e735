//! Engines that turn latents into images: our int8 interpreter, tract (f32) and onnxruntime.

use crate::format::{Model, Shape};
use crate::import::LatentGenerator;
use crate::interp::{check_classes, run_conditional, run_generator};
use crate::kernels::Isa;
use std::collections::HashMap;
use threads::int8_name;
use tract_onnx::prelude::*;

#[cfg(feature = "ort")]
pub mod ort;
pub mod pool;
pub mod runner;
pub mod threads;

/// Largest arena an engine allocates for one batch; larger batches are an error, not an abort.
/// 4 GiB on 64-bit machines, 1 GiB on 32-bit ones (where `4 << 30` would wrap to 0: the 32-bit
/// Raspberry Pi build refused every model before this was written so).
pub const MAX_ARENA_BYTES: usize = if usize::BITS >= 64 {
    (4u64 << 30) as usize
} else {
    1 << 30
};

/// Runs `f`, turning a panic inside tract into an error: tract can panic on hostile models,
/// and the engine boundary promises typed errors.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(EngineError::Tract(format!(
            "tract failed on this model: {msg}"
        )))
    })
}

/// Why an engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("tract: {0}")]
    Tract(String),
    #[error("onnxruntime: {0}")]
    Ort(String),
    #[error(transparent)]
    Run(#[from] crate::interp::RunError),
    #[error("{0}")]
    Inputs(String),
    #[error("node {node} would make a {shape:?} tensor of {bytes} bytes, over the limit of {} (see README, Limits)", crate::limits::MAX_TENSOR_BYTES)]
    TooLarge {
        node: String,
        shape: Vec<usize>,
        bytes: u128,
    },
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    #[error("{what} holds {value} at index {index}: inputs must be finite numbers")]
    NonFinite {
        what: &'static str,
        value: f32,
        index: usize,
    },
    #[error("the model's output {shape:?} is not a picture of 1 to 4 channels")]
    Shape { shape: (usize, usize, usize) },
    #[error("expected {expected} latent values (n x {latent}), got {actual}")]
    Latents {
        expected: usize,
        actual: usize,
        latent: usize,
    },
}

/// Refuses a typed plan with a tensor of more than [`crate::limits::MAX_TENSOR_BYTES`] at its
/// batch, before tract allocates anything (a `Resize` x10,000 would ask for terabytes, and
/// tract's allocator panics or aborts).
pub(crate) fn check_plan(model: &TypedModel) -> Result<(), EngineError> {
    let limit = crate::limits::MAX_TENSOR_BYTES as u128;
    for node in model.nodes() {
        for out in &node.outputs {
            let Some(dims) = out.fact.shape.as_concrete() else {
                continue;
            };
            let bytes = dims
                .iter()
                .fold(out.fact.datum_type.size_of() as u128, |a, &d| {
                    a.saturating_mul(d as u128)
                });
            if bytes > limit {
                return Err(EngineError::TooLarge {
                    node: node.name.clone(),
                    shape: dims.to_vec(),
                    bytes,
                });
            }
        }
    }
    Ok(())
}

fn tract_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tract(format!("{e:#}"))
}

/// A generator: `n` latents (and, if conditional, `n` classes) in, `n` images out (NCHW, float,
/// `[-1, 1]` for our generators).
pub trait Engine {
    fn name(&self) -> String;
    fn latent(&self) -> usize;
    /// `(c, h, w)` of one image.
    fn image_shape(&self) -> (usize, usize, usize);
    /// Class count of a conditional generator (a text-conditioned one's vocabulary size); 0 for
    /// an unconditional one.
    fn classes(&self) -> usize {
        0
    }
    /// Indices per sample of a conditional generator: 1 for a class, `T` for a text of `T`
    /// token ids.
    fn slots(&self) -> usize {
        1
    }
    /// `classes` holds [`Engine::slots`] indices in `0..self.classes()` per sample (one class,
    /// or a text's token ids), sample after sample, for a conditional generator and is empty
    /// for an unconditional one; anything else is an [`EngineError::Run`].
    fn generate_with(
        &mut self,
        z: &[f32],
        classes: &[u32],
        n: usize,
    ) -> Result<Vec<f32>, EngineError>;
    /// [`Engine::generate_with`] without classes (unconditional generators).
    fn generate(&mut self, z: &[f32], n: usize) -> Result<Vec<f32>, EngineError> {
        self.generate_with(z, &[], n)
    }
}

/// The checks of every engine's input: `n` in `1..=MAX_BATCH`, `n x latent` values, all finite.
fn check_latents(z: &[f32], n: usize, latent: usize) -> Result<(), EngineError> {
    crate::limits::check_batch("the batch", n, latent)?;
    if z.len() != n * latent || n == 0 {
        return Err(EngineError::Latents {
            expected: n * latent,
            actual: z.len(),
            latent,
        });
    }
    check_finite("the latents", z)
}

/// [`EngineError::NonFinite`] at the first NaN or infinity of `values`.
pub fn check_finite(what: &'static str, values: &[f32]) -> Result<(), EngineError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(EngineError::NonFinite {
            what,
            value: values[index],
            index,
        }),
        None => Ok(()),
    }
}

/// An engine's picture shape: 1 to 4 channels and a non-empty picture of at most
/// [`crate::limits::MAX_SAMPLE_ELEMENTS`] values.
pub fn check_image_shape(shape: (usize, usize, usize)) -> Result<(), EngineError> {
    let (c, h, w) = shape;
    let elements = (c as u128) * (h as u128) * (w as u128);
    if !(1..=4).contains(&c)
        || h == 0
        || w == 0
        || elements > crate::limits::MAX_SAMPLE_ELEMENTS as u128
    {
        return Err(EngineError::Shape { shape });
    }
    Ok(())
}

/// How an ONNX file takes its inputs as a latent generator ([`LatentGenerator`]), read by the
/// importer; the unconditional `z [N, latent]` if it does not import.
pub(crate) fn generator_inputs(onnx: &[u8]) -> LatentGenerator {
    latent_generator(onnx).unwrap_or_else(|_| LatentGenerator {
        latent_input: crate::ONNX_INPUT.into(),
        latent_at: 0,
        latent: 0,
        latent_rank: 2,
        class: None,
        classes: 0,
        class_shape: Vec::new(),
        image: (0, 0, 0),
    })
}

/// An ONNX file's signature as a latent generator: its latent and class inputs and the shape of
/// its image.
pub fn latent_generator(onnx: &[u8]) -> Result<LatentGenerator, crate::import::ImportError> {
    crate::import::FloatGraph::from_onnx_bytes(onnx)?.latent_generator()
}

/// Float inference through tract, one optimized plan per batch size.
pub struct TractEngine {
    bytes: Vec<u8>,
    latent: usize,
    inputs: LatentGenerator,
    image: (usize, usize, usize),
    outputs: Vec<String>,
    plans: HashMap<usize, std::sync::Arc<TypedRunnableModel>>,
}

impl TractEngine {
    /// Loads an ONNX generator whose input is `[N, latent]` (or `[N, latent, 1, 1]`), plus the
    /// classes `[N]` of a conditional one, and whose output is `[N, C, H, W]`.
    pub fn new(onnx: &[u8], latent: usize, image: (usize, usize, usize)) -> TractEngine {
        TractEngine {
            bytes: onnx.to_vec(),
            latent,
            inputs: generator_inputs(onnx),
            image,
            outputs: Vec::new(),
            plans: HashMap::new(),
        }
    }

    /// Also returns these ONNX tensors from [`TractEngine::run_outputs`] (for calibration).
    pub fn with_outputs(mut self, names: Vec<String>) -> TractEngine {
        self.outputs = names;
        self
    }

    fn input_fact(&self, n: usize) -> InferenceFact {
        if self.inputs.latent_rank == 4 {
            f32::fact([n, self.latent, 1, 1]).into()
        } else {
            f32::fact([n, self.latent]).into()
        }
    }

    fn plan(&mut self, n: usize) -> Result<&std::sync::Arc<TypedRunnableModel>, EngineError> {
        if !self.plans.contains_key(&n) {
            // The batch is fixed per plan; value_info that names it as a symbol (the dynamo
            // exporter writes it on every intermediate tensor) would not unify with it.
            let mut model = tract_onnx::onnx()
                .with_ignore_value_info(true)
                .model_for_read(&mut std::io::Cursor::new(&self.bytes))
                .map_err(tract_err)?
                .with_input_fact(self.inputs.latent_at, self.input_fact(n))
                .map_err(tract_err)?;
            if let Some((_, at)) = self.inputs.class {
                let shape: Vec<usize> = std::iter::once(n)
                    .chain(self.inputs.class_shape.iter().copied())
                    .collect();
                model = model
                    .with_input_fact(at, i64::fact(shape).into())
                    .map_err(tract_err)?;
            }
            if !self.outputs.is_empty() {
                model
                    .select_outputs_by_name(&self.outputs)
                    .map_err(tract_err)?;
            }
            let plan = guard(|| {
                let optimized = model.into_optimized().map_err(tract_err)?;
                check_plan(&optimized)?;
                optimized.into_runnable().map_err(tract_err)
            })?;
            self.plans.insert(n, plan);
        }
        Ok(&self.plans[&n])
    }

    /// Runs and returns every selected output, flattened (`classes` as in [`Engine::generate_with`]).
    pub fn run_outputs(
        &mut self,
        z: &[f32],
        classes: &[u32],
        n: usize,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        check_latents(z, n, self.latent)?;
        check_classes(self.inputs.classes, self.inputs.slots(), n, classes)?;
        let latent = self.latent;
        let plan = self.plan(n)?.clone();
        let input: Tensor = if self.inputs.latent_rank == 4 {
            tract_ndarray::Array4::from_shape_vec((n, latent, 1, 1), z.to_vec())
                .map_err(tract_err)?
                .into()
        } else {
            tract_ndarray::Array2::from_shape_vec((n, latent), z.to_vec())
                .map_err(tract_err)?
                .into()
        };
        let mut inputs = tvec!(input.into());
        if let Some((_, at)) = self.inputs.class {
            let shape: Vec<usize> = std::iter::once(n)
                .chain(self.inputs.class_shape.iter().copied())
                .collect();
            let labels: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
            let labels = Tensor::from_shape(&shape, &labels).map_err(tract_err)?;
            inputs.insert(at.min(inputs.len()), labels.into());
        }
        let outputs = guard(|| plan.run(inputs).map_err(tract_err))?;
        outputs
            .iter()
            .map(|t| {
                Ok(t.to_plain_array_view::<f32>()
                    .map_err(tract_err)?
                    .iter()
                    .copied()
                    .collect())
            })
            .collect()
    }
}

impl Engine for TractEngine {
    fn name(&self) -> String {
        "tract f32".into()
    }
    fn latent(&self) -> usize {
        self.latent
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.image
    }
    fn classes(&self) -> usize {
        self.inputs.classes
    }
    fn slots(&self) -> usize {
        self.inputs.slots()
    }
    fn generate_with(
        &mut self,
        z: &[f32],
        classes: &[u32],
        n: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let mut out = self.run_outputs(z, classes, n)?;
        Ok(out.swap_remove(0))
    }
}

/// Our int8 interpreter over a parsed `.pgq` model.
pub struct Int8Engine<'a> {
    model: Model<'a>,
    isa: Isa,
    threads: usize,
    /// One arena per thread.
    arenas: Vec<Vec<u8>>,
    /// How one sample's layers split over the threads.
    rows: threads::RowSplit,
    input: Vec<i8>,
    output: Vec<i8>,
}

impl<'a> Int8Engine<'a> {
    pub fn new(model: Model<'a>, isa: Isa) -> Int8Engine<'a> {
        Int8Engine {
            model,
            isa,
            threads: 1,
            arenas: Vec::new(),
            rows: threads::RowSplit::new(1),
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Runs a batch on up to `threads` threads, split by samples, and a single sample with its
    /// large layers split by output rows ([`threads`]): the same bytes as one thread.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self.rows = threads::RowSplit::new(self.threads);
        self
    }

    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    /// Runs `n` samples of an unconditional model and returns the quantized NHWC output.
    pub fn generate_quantized(&mut self, z: &[f32], n: usize) -> Result<&[i8], EngineError> {
        self.generate_quantized_with(z, &[], n)
    }

    /// [`Int8Engine::generate_quantized`] with classes, as in [`Engine::generate_with`].
    pub fn generate_quantized_with(
        &mut self,
        z: &[f32],
        classes: &[u32],
        n: usize,
    ) -> Result<&[i8], EngineError> {
        check_latents(z, n, self.model.latent)?;
        let q = self.model.input_quant;
        self.input.clear();
        self.input.extend(z.iter().map(|&v| q.quantize(v)));
        let slots = self.model.slots();
        check_classes(self.model.classes(), slots, n, classes)?;
        let (m, isa) = (self.model, self.isa);
        self.output.resize(n * m.output.elements(), 0);
        if n == 1 {
            self.arenas.resize_with(1, Vec::new);
            let arena = &mut self.arenas[0];
            arena.resize(m.arena_len(1), 0);
            let (z, out) = (&self.input, &mut self.output);
            run_generator(
                &m,
                isa,
                1,
                z,
                classes,
                arena,
                out,
                &mut self.rows,
                |_, _, _, _| {},
            )?;
            return Ok(&self.output);
        }
        let ranges = threads::parts(n, self.threads);
        let outputs = threads::split_samples(&mut self.output, n, &ranges);
        self.arenas.resize_with(ranges.len(), Vec::new);
        let mut jobs = Vec::with_capacity(ranges.len());
        for ((r, out), arena) in ranges.iter().zip(outputs).zip(self.arenas.iter_mut()) {
            arena.resize(m.arena_len(r.len()), 0);
            let z = (self.input)
                .get(r.start * m.latent..r.end * m.latent)
                .unwrap_or_default();
            let c = classes
                .get(r.start * slots..r.end * slots)
                .unwrap_or_default();
            jobs.push((r.len(), z, c, arena, out));
        }
        self.rows
            .pool()
            .for_each_job(jobs, |(len, z, c, arena, out)| {
                run_conditional(&m, isa, len, z, c, arena, out)
            })?;
        Ok(&self.output)
    }
}

/// Dequantizes NHWC int8 images into NCHW floats.
pub fn dequantize_nchw(model: &Model, q: &[i8]) -> Vec<f32> {
    runner::dequantize_out(model.output, model.output_quant, q, false)
}

impl Engine for Int8Engine<'_> {
    fn name(&self) -> String {
        int8_name(self.isa, self.threads)
    }
    fn latent(&self) -> usize {
        self.model.latent
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        match self.model.output {
            Shape::Image { c, h, w } => (c, h, w),
            Shape::Flat(n) => (n, 1, 1),
        }
    }
    fn classes(&self) -> usize {
        self.model.classes()
    }
    fn slots(&self) -> usize {
        self.model.slots().max(1)
    }
    fn generate_with(
        &mut self,
        z: &[f32],
        classes: &[u32],
        n: usize,
    ) -> Result<Vec<f32>, EngineError> {
        self.generate_quantized_with(z, classes, n)?;
        Ok(dequantize_nchw(&self.model, &self.output))
    }
}
