//! Any model, any engine: named inputs in, named outputs out.
//!
//! [`Runner`] is the general form of [`super::Engine`]: a model declares its inputs (a latent,
//! a class index, an image, a sequence) and outputs with per-sample shapes, and `run` maps a
//! batch of values to a batch of values. Images are NCHW floats as ONNX has them; class inputs
//! are indices. The int8 engine quantizes each input with its tensor's quantization and
//! dequantizes each output; tract and onnxruntime run the float ONNX.

use super::threads::{int8_name, parts, split_samples, RowSplit};
use super::{tract_err, EngineError};
use crate::format::{Model, Shape, TensorKind};
use crate::interp::{run_graph, run_graph_with, Input};
use crate::kernels::Isa;
use std::collections::HashMap;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// One input or output: its name and per-sample shape (`[c, h, w]` or `[n]`), or a class index
/// (shape `[]`) or a text's token ids (shape `[T]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// `Some(k)` for indices in `0..k` (an int64 input in ONNX).
    pub classes: Option<usize>,
}

/// A batch of one tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Row-major (NCHW) floats, `batch x` the per-sample shape.
    F32(Vec<f32>),
    /// Indices, `batch x` the per-sample shape's count: one class per sample, or a text's `T`
    /// token ids.
    Index(Vec<u32>),
}

/// A model that maps named inputs to named outputs.
pub trait Runner {
    fn name(&self) -> String;
    fn inputs(&self) -> Vec<TensorSpec>;
    fn outputs(&self) -> Vec<TensorSpec>;
    /// Runs a batch of `n`: one [`Values`] per input, in [`Runner::inputs`] order; returns one
    /// per output.
    fn run(&mut self, inputs: &[Values], n: usize) -> Result<Vec<Values>, EngineError>;
}

fn elements(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Checks `inputs` against `specs` for a batch of `n`.
pub(crate) fn check(specs: &[TensorSpec], inputs: &[Values], n: usize) -> Result<(), EngineError> {
    if inputs.len() != specs.len() || n == 0 {
        return Err(EngineError::Inputs(format!(
            "{} inputs for a batch of {n}; the model takes {} ({})",
            inputs.len(),
            specs.len(),
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (s, v) in specs.iter().zip(inputs) {
        match (s.classes, v) {
            (None, Values::F32(x)) if x.len() == n * elements(&s.shape) => {}
            (Some(k), Values::Index(c)) if c.len() == n * elements(&s.shape) => {
                if let Some(bad) = c.iter().find(|&&c| c as usize >= k) {
                    return Err(EngineError::Inputs(format!(
                        "input {}: class {bad} is out of range 0..{k}",
                        s.name
                    )));
                }
            }
            _ => {
                return Err(EngineError::Inputs(format!(
                    "input {} takes {} per sample for {n} samples",
                    s.name,
                    match (s.classes, elements(&s.shape)) {
                        (Some(k), 1) => format!("one class index in 0..{k}"),
                        (Some(k), t) => format!("{t} token ids in 0..{k}"),
                        (None, _) => format!("{:?} float values", s.shape),
                    }
                )))
            }
        }
    }
    Ok(())
}

/// `[c, h, w]` or `[n]` of a tensor shape.
fn dims(shape: Shape) -> Vec<usize> {
    match shape {
        Shape::Flat(n) => vec![n],
        Shape::Image { c, h, w } => vec![c, h, w],
    }
}

/// The metadata key listing the graph's inputs and outputs that are sequences `[T, F]`: stored
/// as the image `[c = F, h = T, w = 1]`, whose NHWC bytes are the float rows in their own order
/// (an image's floats are NCHW and are transposed).
pub const SEQUENCES: &str = "pocketgan.sequences";

/// The per-sample float shape of a tensor: a sequence's `[T, F]`, else [`dims`].
fn float_dims(shape: Shape, sequence: bool) -> Vec<usize> {
    match shape {
        Shape::Image { c, h, w: 1 } if sequence => vec![h, c],
        s => dims(s),
    }
}

/// NCHW floats to quantized NHWC (images) or quantized vectors; a sequence's rows as they are.
fn quantize_in(shape: Shape, q: crate::Quant, x: &[f32], sequence: bool) -> Vec<i8> {
    match shape {
        Shape::Image { c, h, w } if !sequence => {
            let mut out = vec![0; x.len()];
            for (src, dst) in x
                .chunks_exact(c * h * w)
                .zip(out.chunks_exact_mut(c * h * w))
            {
                for ch in 0..c {
                    for p in 0..h * w {
                        dst[p * c + ch] = q.quantize(src[ch * h * w + p]);
                    }
                }
            }
            out
        }
        _ => x.iter().map(|&v| q.quantize(v)).collect(),
    }
}

/// Quantized NHWC (or vectors) back to NCHW floats; a sequence's rows as they are.
pub fn dequantize_out(shape: Shape, q: crate::Quant, y: &[i8], sequence: bool) -> Vec<f32> {
    match shape {
        Shape::Image { c, h, w } if !sequence => {
            let mut out = vec![0.0; y.len()];
            for (src, dst) in y
                .chunks_exact(c * h * w)
                .zip(out.chunks_exact_mut(c * h * w))
            {
                for p in 0..h * w {
                    for ch in 0..c {
                        dst[ch * h * w + p] = q.dequantize(src[p * c + ch]);
                    }
                }
            }
            out
        }
        _ => y.iter().map(|&v| q.dequantize(v)).collect(),
    }
}

/// Names the quantizer recorded in the metadata (`"pocketgan.inputs": "z,class"`), else
/// `input0`, `input1`... .
fn names(model: &Model, key: &str, default: &str, count: usize) -> Vec<String> {
    let recorded = serde_json::from_str::<HashMap<String, String>>(model.metadata)
        .ok()
        .and_then(|m| m.get(key).cloned())
        .map(|s| s.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|v| v.len() == count);
    recorded.unwrap_or_else(|| (0..count).map(|i| format!("{default}{i}")).collect())
}

/// Our int8 interpreter over any `.pgq` graph.
pub struct Int8Runner<'a> {
    model: Model<'a>,
    isa: Isa,
    threads: usize,
    /// One arena per thread.
    arenas: Vec<Vec<u8>>,
    /// How one sample's layers split over the threads.
    rows: RowSplit,
    /// The model's inputs and outputs, and which are sequences, read from its metadata once (a
    /// token cell runs once per token: parsing the JSON per run cost more than its layers).
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    input_sequences: Vec<bool>,
    output_sequences: Vec<bool>,
}

/// Whether each of `tensors` (named by the metadata's `key`) is a sequence.
fn sequences(model: &Model, tensors: &[usize], key: &str, default: &str) -> Vec<bool> {
    let listed = serde_json::from_str::<HashMap<String, String>>(model.metadata)
        .ok()
        .and_then(|m| m.get(SEQUENCES).cloned())
        .unwrap_or_default();
    let listed: Vec<&str> = listed.split(',').collect();
    names(model, key, default, tensors.len())
        .iter()
        .map(|n| listed.contains(&n.as_str()))
        .collect()
}

fn specs(
    model: &Model,
    tensors: &[usize],
    sequences: &[bool],
    key: &str,
    default: &str,
) -> Vec<TensorSpec> {
    let names = names(model, key, default, tensors.len());
    tensors
        .iter()
        .zip(names)
        .zip(sequences)
        .filter_map(|((&t, name), &sequence)| {
            let info = model.tensor(t)?;
            Some(match info.kind {
                // A class is `[]`, as ONNX's `[N]`; a text's token ids `[T]`.
                TensorKind::Index { classes } => TensorSpec {
                    name,
                    shape: match info.shape.elements() {
                        1 => vec![],
                        t => vec![t],
                    },
                    classes: Some(classes),
                },
                TensorKind::Int8 => TensorSpec {
                    name,
                    shape: float_dims(info.shape, sequence),
                    classes: None,
                },
            })
        })
        .collect()
}

impl<'a> Int8Runner<'a> {
    pub fn new(model: Model<'a>, isa: Isa) -> Self {
        let (ins, outs): (Vec<usize>, Vec<usize>) =
            (model.inputs().collect(), model.outputs().collect());
        let input_sequences = sequences(&model, &ins, "pocketgan.inputs", "input");
        let output_sequences = sequences(&model, &outs, "pocketgan.outputs", "output");
        Int8Runner {
            model,
            isa,
            threads: 1,
            arenas: Vec::new(),
            rows: RowSplit::new(1),
            inputs: specs(&model, &ins, &input_sequences, "pocketgan.inputs", "input"),
            outputs: specs(
                &model,
                &outs,
                &output_sequences,
                "pocketgan.outputs",
                "output",
            ),
            input_sequences,
            output_sequences,
        }
    }

    /// Runs a batch on up to `threads` threads, split by samples, and a single sample with its
    /// large layers split by output rows ([`super::threads`]): the same bytes as one thread.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self.rows = RowSplit::new(self.threads);
        self
    }
}

impl Runner for Int8Runner<'_> {
    fn name(&self) -> String {
        int8_name(self.isa, self.threads)
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        self.inputs.clone()
    }
    fn outputs(&self) -> Vec<TensorSpec> {
        self.outputs.clone()
    }
    fn run(&mut self, inputs: &[Values], n: usize) -> Result<Vec<Values>, EngineError> {
        if self.threads <= 1 || n <= 1 {
            return self.run_observed(inputs, n, |_, _, _, _| {});
        }
        let ranges = parts(n, self.threads);
        let (m, isa) = (self.model, self.isa);
        let (given, mut outs, out_tensors) = self.prepare(inputs, n)?;
        let mut per_output: Vec<Vec<&mut [i8]>> = outs
            .iter_mut()
            .map(|o| split_samples(o, n, &ranges))
            .collect();
        self.arenas.resize_with(ranges.len(), Vec::new);
        let mut jobs = Vec::with_capacity(ranges.len());
        for (k, (r, arena)) in ranges.iter().zip(self.arenas.iter_mut()).enumerate() {
            arena.resize(m.arena_len(r.len()), 0);
            let part: Vec<Input> = given.iter().map(|g| g.samples(n, r.clone())).collect();
            let views: Vec<&mut [i8]> = per_output
                .iter_mut()
                .map(|chunks| std::mem::take(&mut chunks[k]))
                .collect();
            jobs.push((r.len(), part, arena, views));
        }
        self.rows
            .pool()
            .for_each_job(jobs, |(len, part, arena, mut views)| {
                run_graph(&m, isa, len, &part, arena, &mut views, |_, _, _, _| {})
            })?;
        Ok(dequantize_all(&outs, &out_tensors))
    }
}

impl Int8Runner<'_> {
    /// [`Runner::run`], with `observe(index, node, shape, values)` seeing every node's int8
    /// output (NHWC) as it is computed.
    pub fn run_observed(
        &mut self,
        inputs: &[Values],
        n: usize,
        observe: impl FnMut(usize, &crate::format::Node, Shape, &[i8]),
    ) -> Result<Vec<Values>, EngineError> {
        let (m, isa) = (self.model, self.isa);
        let (given, mut outs, out_tensors) = self.prepare(inputs, n)?;
        self.arenas.resize_with(1, Vec::new);
        let arena = &mut self.arenas[0];
        arena.resize(m.arena_len(n), 0);
        let mut views: Vec<&mut [i8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        let given: Vec<Input> = given.iter().map(Given::all).collect();
        run_graph_with(
            &m,
            isa,
            n,
            &given,
            arena,
            &mut views,
            &mut self.rows,
            observe,
        )?;
        Ok(dequantize_all(&outs, &out_tensors))
    }

    /// Checks a batch of `n` and quantizes its inputs; zeroed int8 outputs and their tensors.
    fn prepare(&self, inputs: &[Values], n: usize) -> Result<Prepared, EngineError> {
        check(&self.inputs, inputs, n)?;
        let m = self.model;
        let needed = m.arena_len(n);
        if needed == usize::MAX || needed > crate::engine::MAX_ARENA_BYTES {
            return Err(EngineError::Inputs(format!(
                "a batch of {n} needs {needed} bytes of arena, over the {} limit: use smaller batches",
                crate::engine::MAX_ARENA_BYTES
            )));
        }
        let given: Vec<Given> = m
            .inputs()
            .zip(inputs)
            .zip(self.input_sequences.iter().copied())
            .map(|((t, v), seq)| match (m.tensor(t), v) {
                (Some(info), Values::F32(x)) => {
                    Given::Int8(quantize_in(info.shape, info.quant, x, seq))
                }
                (_, Values::Index(c)) => Given::Index(c.clone()),
                (None, Values::F32(_)) => Given::Int8(Vec::new()),
            })
            .collect();
        let out_tensors: Vec<_> = m
            .outputs()
            .zip(self.output_sequences.iter().copied())
            .filter_map(|(t, seq)| Some((m.tensor(t)?, seq)))
            .collect();
        let outs = out_tensors
            .iter()
            .map(|(i, _)| vec![0; n * i.bytes()])
            .collect();
        Ok((given, outs, out_tensors))
    }
}

/// A checked batch: its quantized inputs, zeroed outputs and the outputs' tensors.
type Prepared = (
    Vec<Given>,
    Vec<Vec<i8>>,
    Vec<(crate::format::TensorInfo, bool)>,
);

/// One input of a batch, owned: quantized values or indices.
enum Given {
    Int8(Vec<i8>),
    Index(Vec<u32>),
}

impl Given {
    /// The whole batch.
    fn all(&self) -> Input<'_> {
        match self {
            Given::Int8(q) => Input::Int8(q),
            Given::Index(c) => Input::Index(c),
        }
    }

    /// The samples `r` of this input (of a batch of `n`).
    fn samples(&self, n: usize, r: std::ops::Range<usize>) -> Input<'_> {
        // Each sample holds `len / n` values (indices: one class, or a text's token ids).
        fn rows<T>(v: &[T], n: usize, r: std::ops::Range<usize>) -> &[T] {
            let per = v.len() / n.max(1);
            v.get(r.start * per..r.end * per).unwrap_or_default()
        }
        match self {
            Given::Int8(q) => Input::Int8(rows(q, n, r)),
            Given::Index(c) => Input::Index(rows(c, n, r)),
        }
    }
}

fn dequantize_all(outs: &[Vec<i8>], tensors: &[(crate::format::TensorInfo, bool)]) -> Vec<Values> {
    outs.iter()
        .zip(tensors)
        .map(|(y, (info, seq))| Values::F32(dequantize_out(info.shape, info.quant, y, *seq)))
        .collect()
}

/// The batch an ONNX graph's first input declares as a number (an export without a dynamic
/// batch axis), if any.
pub fn fixed_batch(onnx: &[u8]) -> Option<usize> {
    let proto = onnx_proto(onnx).ok()?;
    let g = proto.graph.as_ref()?;
    let input = g
        .input
        .iter()
        .find(|i| !g.initializer.iter().any(|t| t.name == i.name))?;
    declared_batch(input)
}

/// The first axis of a graph input, where the file declares it as a number.
pub(crate) fn declared_batch(input: &tract_onnx::pb::ValueInfoProto) -> Option<usize> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    use tract_onnx::pb::type_proto::Value as TypeValue;
    let Some(TypeValue::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    match t.shape.as_ref()?.dim.first()?.value {
        Some(Dim::DimValue(v)) if v > 0 => Some(v as usize),
        _ => None,
    }
}

pub(crate) fn onnx_proto(onnx: &[u8]) -> Result<tract_onnx::pb::ModelProto, EngineError> {
    tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(onnx))
        .map_err(tract_err)
}

/// The checks of an ONNX file's weights that the importer makes, for the engines that run the
/// file without importing it (tract, onnxruntime): a negative BatchNorm variance runs silently
/// in both (NaN out).
pub(crate) fn check_weights(onnx: &[u8]) -> Result<(), EngineError> {
    crate::import::check_batch_norms(&onnx_proto(onnx)?)
        .map_err(|e| EngineError::Inputs(e.to_string()))
}

/// An ONNX graph's inputs and outputs as declared (batch axis first, dropped).
pub fn onnx_specs(onnx: &[u8]) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), EngineError> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    use tract_onnx::pb::type_proto::Value as TypeValue;
    let proto = onnx_proto(onnx)?;
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| EngineError::Tract("the ONNX file has no graph".into()))?;
    // Outputs may name any axis symbolically (the dynamo exporter does): their shapes are read
    // from tract's plan instead (`TractRunner::plan`).
    let spec =
        |v: &tract_onnx::pb::ValueInfoProto, output: bool| -> Result<TensorSpec, EngineError> {
            let Some(TypeValue::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(EngineError::Tract(format!("{} is not a tensor", v.name)));
            };
            let shape: Vec<usize> = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .skip(1)
                        .map(|d| match d.value {
                            Some(Dim::DimValue(v)) if v > 0 => Ok(v as usize),
                            _ if output => Ok(0),
                            _ => Err(EngineError::Tract(format!(
                                "{}: only the batch axis may be symbolic",
                                v.name
                            ))),
                        })
                        .collect::<Result<_, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            // int64 inputs are class indices; their count is not in the graph.
            let classes = (t.elem_type == 7).then_some(usize::MAX);
            Ok(TensorSpec {
                name: v.name.clone(),
                shape,
                classes,
            })
        };
    let inputs = g
        .input
        .iter()
        .filter(|i| !g.initializer.iter().any(|t| t.name == i.name))
        .map(|v| spec(v, false))
        .collect::<Result<_, _>>()?;
    let outputs = g
        .output
        .iter()
        .map(|v| spec(v, true))
        .collect::<Result<_, _>>()?;
    Ok((inputs, outputs))
}

/// Float inference of any ONNX graph through tract, one optimized plan per batch size.
pub struct TractRunner {
    bytes: Vec<u8>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    plans: HashMap<usize, Arc<TypedRunnableModel>>,
}

impl TractRunner {
    pub fn new(onnx: &[u8]) -> Result<Self, EngineError> {
        check_weights(onnx)?;
        let (inputs, outputs) = onnx_specs(onnx)?;
        Ok(TractRunner {
            bytes: onnx.to_vec(),
            inputs,
            outputs,
            plans: HashMap::new(),
        })
    }

    fn plan(&mut self, n: usize) -> Result<Arc<TypedRunnableModel>, EngineError> {
        if let Some(p) = self.plans.get(&n) {
            return Ok(p.clone());
        }
        // The batch is fixed per plan; value_info that names it as a symbol (the dynamo
        // exporter writes it on every intermediate tensor) would not unify with it.
        let mut model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_read(&mut std::io::Cursor::new(&self.bytes))
            .map_err(tract_err)?;
        for (i, s) in self.inputs.iter().enumerate() {
            let shape: Vec<usize> = std::iter::once(n).chain(s.shape.iter().copied()).collect();
            let fact: InferenceFact = match s.classes {
                Some(_) => i64::fact(&shape).into(),
                None => f32::fact(&shape).into(),
            };
            model = model.with_input_fact(i, fact).map_err(tract_err)?;
        }
        let plan = super::guard(|| {
            let optimized = model.into_optimized().map_err(tract_err)?;
            super::check_plan(&optimized)?;
            optimized.into_runnable().map_err(tract_err)
        })?;
        // Output shapes as tract computed them for this batch.
        for (spec, outlet) in self
            .outputs
            .iter_mut()
            .zip(plan.model().output_outlets().map_err(tract_err)?)
        {
            if let Some(dims) = plan
                .model()
                .outlet_fact(*outlet)
                .map_err(tract_err)?
                .shape
                .as_concrete()
            {
                spec.shape = dims.iter().skip(1).copied().collect();
            }
        }
        self.plans.insert(n, plan.clone());
        Ok(plan)
    }
}

impl Runner for TractRunner {
    fn name(&self) -> String {
        "tract f32".into()
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        self.inputs.clone()
    }
    fn outputs(&self) -> Vec<TensorSpec> {
        self.outputs.clone()
    }
    fn run(&mut self, inputs: &[Values], n: usize) -> Result<Vec<Values>, EngineError> {
        check(&self.inputs, inputs, n)?;
        let plan = self.plan(n)?;
        let mut tensors = TVec::new();
        for (s, v) in self.inputs.iter().zip(inputs) {
            let shape: Vec<usize> = std::iter::once(n).chain(s.shape.iter().copied()).collect();
            let t = match v {
                Values::F32(x) => Tensor::from_shape(&shape, x).map_err(tract_err)?,
                Values::Index(c) => {
                    let c: Vec<i64> = c.iter().map(|&c| c as i64).collect();
                    Tensor::from_shape(&shape, &c).map_err(tract_err)?
                }
            };
            tensors.push(t.into());
        }
        let outs = super::guard(|| plan.run(tensors).map_err(tract_err))?;
        outs.iter()
            .map(|t| {
                // As at import: a model with an output of no values is broken, not a result.
                if t.len() == 0 {
                    return Err(EngineError::Inputs(format!(
                        "the model's output {:?} is an empty tensor",
                        t.shape()
                    )));
                }
                Ok(Values::F32(
                    t.to_plain_array_view::<f32>()
                        .map_err(tract_err)?
                        .iter()
                        .copied()
                        .collect(),
                ))
            })
            .collect()
    }
}
