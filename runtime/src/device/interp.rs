//! The integer interpreter: runs a validated [`Model`] graph inside a caller-provided arena.
//!
//! Arena layout, for a batch of `B` samples:
//! `[ tensors: B * plan bytes | tile: TILE_ROWS * max_kp | tile out: TILE_ROWS * max_n ]`.
//! Each tensor lives at the offset the planner gave it ([`crate::plan`]); a node reads its
//! inputs and writes its output there, in node order. Convolutions gather `TILE_ROWS` output
//! positions' receptive fields at a time into the tile and run one GEMM over them; positions of
//! all samples in the batch share the GEMM.

use crate::format::{Model, Node, Shape, TensorKind, MAX_MODEL_IO, MAX_NODE_INPUTS};
use crate::kernels::Isa;
use crate::ops::{copy, part, part_mut, split_mut, Cx, Op};

/// Output positions gathered per GEMM call. On x86-64 a multiple of the AVX2 micro-tile's 6 rows,
/// and large enough that a 7x7 layer of one sample (49 positions) is one call; microcontrollers
/// keep a smaller tile to save RAM, the Cortex-M0 class (no Thumb-2: micro:bit, RP2040) the
/// smallest, for the micro:bit's 16 KB.
pub const TILE_ROWS: usize = if cfg!(target_arch = "x86_64") {
    60
} else if cfg!(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi"
)) {
    // thumbv6m-none-eabi; the M4/M33 targets are `eabihf`.
    16
} else {
    32
};

/// Why a run could not start. Runs themselves cannot fail once sizes are right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("arena has {actual} bytes, the model needs {needed} for a batch of {batch}")]
    Arena {
        needed: usize,
        actual: usize,
        batch: usize,
    },
    #[error("input {index} has {actual} values, expected {expected} (batch x its size)")]
    Input {
        index: usize,
        expected: usize,
        actual: usize,
    },
    #[error("the model takes {expected} inputs ({what}), {actual} given")]
    InputCount {
        expected: usize,
        actual: usize,
        what: &'static str,
    },
    #[error("input {index} is {expected}, but {given} was given")]
    InputKind {
        index: usize,
        expected: &'static str,
        given: &'static str,
    },
    #[error("output buffer {index} has {actual} values, expected {expected} (batch x its size)")]
    Output {
        index: usize,
        expected: usize,
        actual: usize,
    },
    #[error("the model has {expected} outputs, {actual} buffers given")]
    OutputCount { expected: usize, actual: usize },
    #[error("batch must be at least 1")]
    EmptyBatch,
    #[error("the model is conditional: give one class in 0..{classes} per sample")]
    MissingClasses { classes: usize },
    #[error("the model is unconditional: it takes no classes")]
    UnexpectedClasses,
    #[error(
        "{actual} indices given, {expected} needed: one class (or a text's token ids) per sample"
    )]
    ClassCount { expected: usize, actual: usize },
    #[error("sample {sample}: index {class} is out of range (the model has {classes} classes or tokens)")]
    ClassRange {
        sample: usize,
        class: u32,
        classes: usize,
    },
    /// A slice of the arena, the input or the model does not have the size the validated model
    /// implies. Never happens: every size follows from what [`Model::parse`] checked. It is an
    /// error rather than a panic so that no panic is reachable in inference (see
    /// `tests/tests/no_panic.rs`).
    #[error("internal error: {0} does not fit (a bug: validated models cannot cause this)")]
    Internal(&'static str),
}

impl From<crate::kernels::TileError> for RunError {
    fn from(_: crate::kernels::TileError) -> Self {
        RunError::Internal("a GEMM tile")
    }
}

/// Checks `classes` (`slots` per sample: one class, or a text's token ids; empty for an
/// unconditional model) against a model with `model_classes` classes (0: unconditional) and a
/// batch of `batch`.
pub fn check_classes(
    model_classes: usize,
    slots: usize,
    batch: usize,
    classes: &[u32],
) -> Result<(), RunError> {
    let expected = batch.saturating_mul(slots);
    match (model_classes, classes.len()) {
        (0, 0) => return Ok(()),
        (0, _) => return Err(RunError::UnexpectedClasses),
        (k, 0) => return Err(RunError::MissingClasses { classes: k }),
        (_, n) if n != expected => {
            return Err(RunError::ClassCount {
                expected,
                actual: n,
            })
        }
        _ => {}
    }
    match classes
        .iter()
        .enumerate()
        .find(|(_, &c)| c as usize >= model_classes)
    {
        Some((at, &class)) => Err(RunError::ClassRange {
            sample: at / slots.max(1),
            class,
            classes: model_classes,
        }),
        None => Ok(()),
    }
}

/// One model input's values for a batch, in [`Model::inputs`] order.
#[derive(Clone, Copy, Debug)]
pub enum Input<'i> {
    /// Quantized values, `batch x size` (images NHWC).
    Int8(&'i [i8]),
    /// Indices, as many per sample as the input tensor's length (one class, or a text's token
    /// ids), sample after sample.
    Index(&'i [u32]),
}

impl Input<'_> {
    fn name(&self) -> &'static str {
        match self {
            Input::Int8(_) => "int8 values",
            Input::Index(_) => "class indices",
        }
    }
}

/// Arena sizes of one model.
impl Model<'_> {
    /// Bytes of the tensor region for `batch` samples (saturating: an arena that large cannot be
    /// given).
    pub fn tensor_bytes(&self, batch: usize) -> usize {
        self.plan.bytes().saturating_mul(batch)
    }
    /// Bytes of the GEMM tiles (independent of the batch).
    pub fn scratch_bytes(&self) -> usize {
        self.scratch_bytes_for(TILE_ROWS)
    }
    /// Bytes of the GEMM tiles on a machine whose tiles are `tile_rows` tall (see [`TILE_ROWS`]):
    /// lets a host check a microcontroller's arena.
    pub fn scratch_bytes_for(&self, tile_rows: usize) -> usize {
        tile_rows * (self.max_kp + self.max_n)
    }
    /// Total arena bytes for `batch` samples.
    pub fn arena_len(&self, batch: usize) -> usize {
        self.tensor_bytes(batch)
            .saturating_add(self.scratch_bytes())
    }
}

fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut i8, b.len()) }
}

/// Position of tensor `t` among the model's inputs.
fn input_position(model: &Model, t: usize) -> Option<usize> {
    model.inputs().position(|i| i == t)
}

/// Checks the caller's inputs against the model's declarations.
fn check_inputs(model: &Model, batch: usize, inputs: &[Input]) -> Result<(), RunError> {
    let expected = model.inputs().count();
    if inputs.len() != expected {
        return Err(RunError::InputCount {
            expected,
            actual: inputs.len(),
            what: "see `pocketgan inspect`",
        });
    }
    for (index, (t, given)) in model.inputs().zip(inputs).enumerate() {
        let info = model
            .tensor(t)
            .ok_or(RunError::Internal("an input tensor"))?;
        match (info.kind, given) {
            (TensorKind::Int8, Input::Int8(x)) => {
                let expected = batch.saturating_mul(info.shape.elements());
                if x.len() != expected {
                    return Err(RunError::Input {
                        index,
                        expected,
                        actual: x.len(),
                    });
                }
            }
            (TensorKind::Index { classes }, Input::Index(c)) => {
                check_classes(classes, info.shape.elements(), batch, c)?
            }
            (kind, given) => {
                return Err(RunError::InputKind {
                    index,
                    expected: match kind {
                        TensorKind::Int8 => "int8 values",
                        TensorKind::Index { .. } => "class indices",
                    },
                    given: given.name(),
                })
            }
        }
    }
    Ok(())
}

/// How the interpreter runs one node's op: [`Whole`] on the calling thread (the `no_std`
/// core's way), or split by a std engine over threads (`engine::threads::RowSplit`).
pub trait RunNode {
    /// Computes `y` from `x` as [`Op::run`] does, byte for byte.
    fn run_node(&mut self, op: &Op, cx: &mut Cx, x: &[&[i8]], y: &mut [i8])
        -> Result<(), RunError>;
}

/// Every op whole, on the calling thread.
pub struct Whole;

impl RunNode for Whole {
    #[inline]
    fn run_node(
        &mut self,
        op: &Op,
        cx: &mut Cx,
        x: &[&[i8]],
        y: &mut [i8],
    ) -> Result<(), RunError> {
        op.run(cx, x, y)
    }
}

/// Runs `model` on a batch: `inputs` in [`Model::inputs`] order, one output buffer per
/// [`Model::outputs`] (`batch x size` int8 values, images NHWC). `observe(index, node, shape,
/// values)` sees every node's output. Wrong counts, sizes and classes are errors, checked before
/// anything runs.
pub fn run_graph(
    model: &Model,
    isa: Isa,
    batch: usize,
    inputs: &[Input],
    arena: &mut [u8],
    outputs: &mut [&mut [i8]],
    observe: impl FnMut(usize, &Node, Shape, &[i8]),
) -> Result<(), RunError> {
    run_graph_with(
        model, isa, batch, inputs, arena, outputs, &mut Whole, observe,
    )
}

/// [`run_graph`], each node's op run by `nodes`.
#[allow(clippy::too_many_arguments)]
pub fn run_graph_with(
    model: &Model,
    isa: Isa,
    batch: usize,
    inputs: &[Input],
    arena: &mut [u8],
    outputs: &mut [&mut [i8]],
    nodes: &mut impl RunNode,
    mut observe: impl FnMut(usize, &Node, Shape, &[i8]),
) -> Result<(), RunError> {
    if batch == 0 {
        return Err(RunError::EmptyBatch);
    }
    check_inputs(model, batch, inputs)?;
    let expected = model.outputs().count();
    if outputs.len() != expected {
        return Err(RunError::OutputCount {
            expected,
            actual: outputs.len(),
        });
    }
    for (index, (t, out)) in model.outputs().zip(outputs.iter()).enumerate() {
        let size = model.tensor(t).map_or(0, |i| i.bytes());
        let expected = batch.saturating_mul(size);
        if out.len() != expected {
            return Err(RunError::Output {
                index,
                expected,
                actual: out.len(),
            });
        }
    }
    let needed = model.arena_len(batch);
    if arena.len() < needed || model.tensor_bytes(batch) == usize::MAX {
        return Err(RunError::Arena {
            needed,
            actual: arena.len(),
            batch,
        });
    }
    let arena = as_i8_mut(part_mut(arena, ..needed, "the arena")?);
    let (region, scratch) = split_mut(arena, model.tensor_bytes(batch), "the tensor region")?;
    let (tile, tile_out) = split_mut(scratch, TILE_ROWS * model.max_kp, "the tile")?;
    // Where tensor `t` lives for this batch.
    let span = |t: usize| {
        let size = model.tensor(t).map_or(0, |i| i.bytes()) * batch;
        let at = model.plan.offset(t) * batch;
        at..at + size
    };
    for (t, given) in model.inputs().zip(inputs) {
        if let Input::Int8(x) = given {
            copy(part_mut(region, span(t), "an input")?, x, "an input")?;
        }
    }
    for (index, node) in model.nodes().enumerate() {
        let out = span(node.output());
        let mut indices: &[u32] = &[];
        let mut reads: [core::ops::Range<usize>; MAX_NODE_INPUTS] = Default::default();
        let mut n = 0;
        for t in node.inputs() {
            match input_position(model, t).and_then(|p| inputs.get(p)) {
                Some(Input::Index(c)) => indices = c,
                _ => {
                    *reads
                        .get_mut(n)
                        .ok_or(RunError::Internal("a node's inputs"))? = span(t);
                    n += 1;
                }
            }
        }
        let mut cx = Cx {
            isa,
            batch,
            tile: &mut *tile,
            tile_out: &mut *tile_out,
            indices,
        };
        // An op that runs in place finds its first input's values in `y` (the planner gave both
        // one buffer) and gets an empty slice for it; any other input lies wholly below or
        // above the output, since tensors alive together never overlap.
        let in_place = node.op.in_place() && reads.first() == Some(&out);
        let (lo, rest) = split_mut(region, out.start, "an op's output")?;
        let (y, hi) = split_mut(rest, out.len(), "an op's output")?;
        let (lo, hi): (&[i8], &[i8]) = (lo, hi);
        let mut xs: [&[i8]; MAX_NODE_INPUTS] = [&[]; MAX_NODE_INPUTS];
        for (i, (x, r)) in xs.iter_mut().zip(reads.iter().take(n)).enumerate() {
            *x = if in_place && i == 0 {
                &[]
            } else if r.end <= out.start {
                part(lo, r.clone(), "an op's input")?
            } else if r.start >= out.end {
                part(hi, r.start - out.end..r.end - out.end, "an op's input")?
            } else {
                return Err(RunError::Internal("an op's input overlaps its output"));
            };
        }
        nodes.run_node(&node.op, &mut cx, xs.get(..n).unwrap_or_default(), y)?;
        let shape = model
            .tensor(node.output())
            .map_or(Shape::Flat(0), |i| i.shape);
        observe(index, &node, shape, part(region, out, "a tensor")?);
    }
    for (t, dst) in model.outputs().zip(outputs.iter_mut()) {
        copy(dst, part(region, span(t), "an output")?, "an output")?;
    }
    Ok(())
}

/// The inputs of a latent generator: the latent, and the classes where the model takes them.
fn generator_inputs<'i>(
    model: &Model,
    batch: usize,
    latent: &'i [i8],
    classes: &'i [u32],
) -> Result<[Input<'i>; 2], RunError> {
    let has_classes = model.inputs().any(|t| {
        model
            .tensor(t)
            .is_some_and(|i| matches!(i.kind, TensorKind::Index { .. }))
    });
    let n_inputs = model.inputs().count();
    if n_inputs > 2 || (n_inputs == 2 && !has_classes) || model.latent == 0 {
        return Err(RunError::InputCount {
            expected: n_inputs,
            actual: 1 + classes.len().min(1),
            what: "not a latent generator: use `run_graph`",
        });
    }
    check_classes(model.classes(), model.slots(), batch, classes)?;
    let mut out = [Input::Int8(latent), Input::Index(classes)];
    // Inputs in the model's order: the class index may come first.
    if has_classes
        && model
            .inputs()
            .next()
            .is_some_and(|t| model.tensor(t).is_some_and(|i| i.kind != TensorKind::Int8))
    {
        out.swap(0, 1);
    }
    Ok(out)
}

/// Runs a latent generator (inputs: the latent `batch x latent`, quantized with
/// [`Model::input_quant`], and for a conditional model one class, or a text's
/// [`Model::slots`] token ids, per sample; one image output) and writes `batch` quantized
/// images in NHWC order to `output`. `observe(index, op, shape, values)` sees every node's
/// output.
#[allow(clippy::too_many_arguments)]
pub fn run_conditional_observed(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    classes: &[u32],
    arena: &mut [u8],
    output: &mut [i8],
    observe: impl FnMut(usize, &Op, Shape, &[i8]),
) -> Result<(), RunError> {
    run_generator(
        model, isa, batch, input, classes, arena, output, &mut Whole, observe,
    )
}

/// [`run_conditional_observed`], each node's op run by `nodes`.
#[allow(clippy::too_many_arguments)]
pub fn run_generator(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    classes: &[u32],
    arena: &mut [u8],
    output: &mut [i8],
    nodes: &mut impl RunNode,
    mut observe: impl FnMut(usize, &Op, Shape, &[i8]),
) -> Result<(), RunError> {
    if batch == 0 {
        return Err(RunError::EmptyBatch);
    }
    let inputs = generator_inputs(model, batch, input, classes)?;
    let n = model.inputs().count().min(MAX_MODEL_IO).min(inputs.len());
    run_graph_with(
        model,
        isa,
        batch,
        inputs.get(..n).unwrap_or_default(),
        arena,
        &mut [output],
        nodes,
        |i, node, shape, y| observe(i, &node.op, shape, y),
    )
}

/// [`run_conditional_observed`] for an unconditional generator.
pub fn run_observed(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    arena: &mut [u8],
    output: &mut [i8],
    observe: impl FnMut(usize, &Op, Shape, &[i8]),
) -> Result<(), RunError> {
    run_conditional_observed(model, isa, batch, input, &[], arena, output, observe)
}

/// [`run_observed`] without an observer (unconditional models).
pub fn run(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    arena: &mut [u8],
    output: &mut [i8],
) -> Result<(), RunError> {
    run_observed(model, isa, batch, input, arena, output, |_, _, _, _| {})
}

/// [`run_conditional_observed`] without an observer: one class (or a text's token ids) per
/// sample for a conditional model, none for an unconditional one.
pub fn run_conditional(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    classes: &[u32],
    arena: &mut [u8],
    output: &mut [i8],
) -> Result<(), RunError> {
    run_conditional_observed(
        model,
        isa,
        batch,
        input,
        classes,
        arena,
        output,
        |_, _, _, _| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ConvGeometry, Quant};
    use crate::kernels::requantize;
    use crate::ops::conv_transpose::SAMPLE_BLOCK_BYTES;
    use crate::write::{encode, QuantModel, QuantOp, RequantParams};

    /// A small deterministic generator of test values.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn i8s(&mut self, n: usize, lo: i32, hi: i32) -> Vec<i8> {
            (0..n)
                .map(|_| (lo + (self.next() % (hi - lo + 1) as u32) as i32) as i8)
                .collect()
        }
        fn requant(&mut self, n: usize, relu: bool) -> RequantParams {
            let zp_out = self.i8s(1, -20, 20)[0];
            RequantParams {
                bias: (0..n)
                    .map(|_| (self.next() % 20001) as i32 - 10000)
                    .collect(),
                mult: (0..n)
                    .map(|_| (1 << 30) + (self.next() >> 2) as i32)
                    .collect(),
                shift: (0..n).map(|_| 38 + (self.next() % 4) as u8).collect(),
                zp_out,
                min: if relu { zp_out } else { -128 },
                max: 127,
            }
        }
    }

    fn rq(p: &RequantParams, acc: i64, n: usize) -> i8 {
        requantize(acc as i32, 0, p.mult[n], p.shift[n], p.zp_out, p.min, p.max)
    }

    /// Reference semantics on NCHW tensors, straight from the ONNX definitions (a transposed
    /// convolution scatters each input pixel; padding contributes nothing).
    fn reference(model: &QuantModel, batch: usize, input: &[i8]) -> Vec<i8> {
        reference_conditional(model, batch, input, &[])
    }

    fn reference_conditional(
        model: &QuantModel,
        batch: usize,
        input: &[i8],
        classes: &[u32],
    ) -> Vec<i8> {
        let mut x: Vec<i8> = input.to_vec();
        let mut chw = (model.latent, 1, 1);
        for op in &model.ops {
            match op {
                QuantOp::Embed { dim, table, .. } => {
                    let k = chw.0;
                    x = (0..batch)
                        .flat_map(|b| {
                            let row = classes[b] as usize * dim;
                            x[b * k..(b + 1) * k]
                                .iter()
                                .chain(&table[row..row + dim])
                                .copied()
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    chw = (k + dim, 1, 1);
                }
                QuantOp::Linear {
                    k,
                    n,
                    zp_in,
                    requant,
                    weights,
                } => {
                    let mut y = vec![0; batch * n];
                    for b in 0..batch {
                        for j in 0..*n {
                            let acc: i64 = (0..*k)
                                .map(|i| {
                                    (x[b * k + i] as i64 - *zp_in as i64)
                                        * weights[i * n + j] as i64
                                })
                                .sum::<i64>()
                                + requant.bias[j] as i64;
                            y[b * n + j] = rq(requant, acc, j);
                        }
                    }
                    x = y;
                    chw = (*n, 1, 1);
                }
                QuantOp::Reshape { c, h, w } => chw = (*c, *h, *w),
                QuantOp::Flatten { c, h, w } => chw = (c * h * w, 1, 1),
                QuantOp::Lut { table } => x
                    .iter_mut()
                    .for_each(|v| *v = table[*v as u8 as usize] as i8),
                QuantOp::Upsample { c, h, w, factor: f } => {
                    let (ho, wo) = (h * f, w * f);
                    let mut y = vec![0; batch * c * ho * wo];
                    for b in 0..batch {
                        for ch in 0..*c {
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    y[((b * c + ch) * ho + oy) * wo + ox] =
                                        x[((b * c + ch) * h + oy / f) * w + ox / f];
                                }
                            }
                        }
                    }
                    x = y;
                    chw = (*c, ho, wo);
                }
                QuantOp::Conv2d {
                    geometry: g,
                    zp_in,
                    requant,
                    weights,
                } => {
                    let (ho, wo) = g.conv_out();
                    let mut y = vec![0; batch * g.cout * ho * wo];
                    for b in 0..batch {
                        for co in 0..g.cout {
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    let mut acc = requant.bias[co] as i64;
                                    for ci in 0..g.cin {
                                        for ky in 0..g.kh {
                                            for kx in 0..g.kw {
                                                let iy =
                                                    (oy * g.stride + ky) as isize - g.pad as isize;
                                                let ix =
                                                    (ox * g.stride + kx) as isize - g.pad as isize;
                                                if iy < 0
                                                    || ix < 0
                                                    || iy as usize >= g.h
                                                    || ix as usize >= g.w
                                                {
                                                    continue;
                                                }
                                                let v = x[((b * g.cin + ci) * g.h + iy as usize)
                                                    * g.w
                                                    + ix as usize];
                                                let wv = weights
                                                    [((co * g.cin + ci) * g.kh + ky) * g.kw + kx];
                                                acc += (v as i64 - *zp_in as i64) * wv as i64;
                                            }
                                        }
                                    }
                                    y[((b * g.cout + co) * ho + oy) * wo + ox] =
                                        rq(requant, acc, co);
                                }
                            }
                        }
                    }
                    x = y;
                    chw = (g.cout, ho, wo);
                }
                QuantOp::ConvTranspose2d {
                    geometry: g,
                    zp_in,
                    requant,
                    weights,
                } => {
                    let (ho, wo) = g.transpose_out();
                    let mut acc = vec![0i64; batch * g.cout * ho * wo];
                    for b in 0..batch {
                        for co in 0..g.cout {
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    acc[((b * g.cout + co) * ho + oy) * wo + ox] =
                                        requant.bias[co] as i64;
                                }
                            }
                            for ci in 0..g.cin {
                                for iy in 0..g.h {
                                    for ix in 0..g.w {
                                        let v = x[((b * g.cin + ci) * g.h + iy) * g.w + ix] as i64
                                            - *zp_in as i64;
                                        for ky in 0..g.kh {
                                            for kx in 0..g.kw {
                                                let oy =
                                                    (iy * g.stride + ky) as isize - g.pad as isize;
                                                let ox =
                                                    (ix * g.stride + kx) as isize - g.pad as isize;
                                                if oy < 0
                                                    || ox < 0
                                                    || oy as usize >= ho
                                                    || ox as usize >= wo
                                                {
                                                    continue;
                                                }
                                                let wv = weights
                                                    [((ci * g.cout + co) * g.kh + ky) * g.kw + kx]
                                                    as i64;
                                                acc[((b * g.cout + co) * ho + oy as usize) * wo
                                                    + ox as usize] += v * wv;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    x = (0..acc.len())
                        .map(|i| rq(requant, acc[i], (i / (ho * wo)) % g.cout))
                        .collect();
                    chw = (g.cout, ho, wo);
                }
                // Ops with several inputs are graph ops, tested in `ops::tests`.
                _ => unreachable!("not a chain op"),
            }
        }
        // NCHW -> NHWC to compare with the interpreter.
        let (c, h, w) = chw;
        let mut y = vec![0; x.len()];
        for b in 0..batch {
            for ch in 0..c {
                for p in 0..h * w {
                    y[(b * h * w + p) * c + ch] = x[(b * c + ch) * h * w + p];
                }
            }
        }
        y
    }

    fn geometry(
        cin: usize,
        cout: usize,
        hw: usize,
        k: usize,
        stride: usize,
        pad: usize,
        out_pad: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            cin,
            cout,
            h: hw,
            w: hw,
            kh: k,
            kw: k,
            stride,
            pad,
            out_pad,
        }
    }

    /// Linear -> Reshape -> ConvTranspose -> Lut -> Upsample -> Conv2d -> ConvTranspose, with
    /// kernels, strides and paddings that exercise every phase shape.
    fn test_model(rng: &mut Lcg, (k, s, p, op): (usize, usize, usize, usize)) -> QuantModel {
        let latent = 7;
        // 48 = 3 blocks of NR columns: the Linear splits by columns in the band tests too.
        let t1 = geometry(3, 6, 4, k, s, p, op);
        let (h1, _) = t1.transpose_out();
        let c2 = geometry(6, 4, h1 * 2, 3, 2, 1, 0);
        let (h2, _) = c2.conv_out();
        let t3 = geometry(4, 3, h2, 4, 2, 1, 0);
        let (h3, _) = t3.transpose_out();
        let mut table = [0u8; 256];
        table.iter_mut().for_each(|v| *v = rng.next() as u8);
        let zp = |rng: &mut Lcg| rng.i8s(1, -30, 30)[0];
        QuantModel {
            latent,
            output: (3, h3, h3),
            input_quant: Quant {
                scale: 0.05,
                zero_point: 0,
            },
            output_quant: Quant {
                scale: 1.0 / 127.0,
                zero_point: 0,
            },
            metadata: "{}".into(),
            quants: vec![],
            ops: vec![
                QuantOp::Linear {
                    k: latent,
                    n: 48,
                    zp_in: zp(rng),
                    requant: rng.requant(48, true),
                    weights: rng.i8s(latent * 48, -127, 127),
                },
                QuantOp::Reshape { c: 3, h: 4, w: 4 },
                QuantOp::ConvTranspose2d {
                    geometry: t1,
                    zp_in: zp(rng),
                    requant: rng.requant(6, true),
                    weights: rng.i8s(3 * 6 * k * k, -127, 127),
                },
                QuantOp::Lut { table },
                QuantOp::Upsample {
                    c: 6,
                    h: h1,
                    w: h1,
                    factor: 2,
                },
                QuantOp::Conv2d {
                    geometry: c2,
                    zp_in: zp(rng),
                    requant: rng.requant(4, false),
                    weights: rng.i8s(6 * 4 * 9, -127, 127),
                },
                QuantOp::ConvTranspose2d {
                    geometry: t3,
                    zp_in: zp(rng),
                    requant: rng.requant(3, false),
                    weights: rng.i8s(4 * 3 * 16, -127, 127),
                },
            ],
        }
    }

    #[test]
    fn interpreter_matches_reference_semantics() {
        let mut rng = Lcg(7);
        for conv in [
            (4, 2, 1, 0),
            (3, 2, 0, 1),
            (5, 3, 2, 2),
            (3, 1, 1, 0),
            (4, 2, 0, 0),
        ] {
            let qm = test_model(&mut rng, conv);
            let bytes = encode(&qm).expect("encodes");
            let model = Model::parse(&bytes).expect("parses");
            for batch in [1, 3] {
                let input = rng.i8s(batch * qm.latent, -128, 127);
                let expected = reference(&qm, batch, &input);
                for isa in Isa::available() {
                    let mut arena = vec![0u8; model.arena_len(batch)];
                    let mut out = vec![0i8; expected.len()];
                    run(&model, isa, batch, &input, &mut arena, &mut out).unwrap();
                    assert_eq!(
                        out,
                        expected,
                        "conv {conv:?} batch {batch} isa {}",
                        isa.name()
                    );
                }
            }
        }
    }

    /// Runs every op that has rows in `bands` bands of output rows one after the other, as a
    /// std engine's threads run them side by side (the same tiles serve each band in turn).
    struct Bands {
        bands: usize,
        split: usize,
    }

    impl RunNode for Bands {
        fn run_node(
            &mut self,
            op: &Op,
            cx: &mut Cx,
            x: &[&[i8]],
            y: &mut [i8],
        ) -> Result<(), RunError> {
            let rows = op.rows(cx.isa);
            if cx.batch != 1 || rows < 2 {
                return op.run(cx, x, y);
            }
            self.split += 1;
            let per_row = y.len() / rows;
            let mut start = 0;
            for i in 0..self.bands {
                // Uneven bands, some of them empty when there are more bands than rows.
                let end = rows * (i + 1) / self.bands;
                let band = &mut y[start * per_row..end * per_row];
                op.run_rows(cx, x, band, start..end)?;
                start = end;
            }
            Ok(())
        }
    }

    /// One sample's convolutions computed in bands of output rows write the reference's bytes,
    /// on every kernel family (under qemu-aarch64 too: the Pi's kernels), for every geometry.
    #[test]
    fn row_bands_match_reference_semantics() {
        let mut rng = Lcg(13);
        for conv in [(4, 2, 1, 0), (3, 2, 0, 1), (5, 3, 2, 2), (3, 1, 1, 0)] {
            let qm = test_model(&mut rng, conv);
            let bytes = encode(&qm).expect("encodes");
            let model = Model::parse(&bytes).expect("parses");
            let input = rng.i8s(qm.latent, -128, 127);
            let expected = reference(&qm, 1, &input);
            for isa in Isa::available() {
                for bands in [2, 3, 40] {
                    let mut arena = vec![0u8; model.arena_len(1)];
                    let mut out = vec![0i8; expected.len()];
                    let mut nodes = Bands { bands, split: 0 };
                    let inputs = [Input::Int8(&input)];
                    run_graph_with(
                        &model,
                        isa,
                        1,
                        &inputs,
                        &mut arena,
                        &mut [&mut out],
                        &mut nodes,
                        |_, _, _, _| {},
                    )
                    .unwrap();
                    assert!(nodes.split >= 1, "conv {conv:?}: no layer split");
                    assert_eq!(
                        out,
                        expected,
                        "conv {conv:?} bands {bands} isa {}",
                        isa.name()
                    );
                }
            }
        }
    }

    /// A batch large enough that transposed convolutions run in several sample blocks, the last
    /// one partial.
    #[test]
    fn sample_blocks_match_reference_semantics() {
        let mut rng = Lcg(11);
        let qm = test_model(&mut rng, (4, 2, 1, 0));
        let bytes = encode(&qm).expect("encodes");
        let model = Model::parse(&bytes).expect("parses");
        let batch = 700;
        for op in model.ops() {
            if let Op::ConvTranspose2d(ct) = op {
                let g = ct.geometry;
                let (ho, wo) = g.transpose_out();
                let pair = g.h * g.w * g.cin + ho * wo * g.cout;
                assert!(
                    SAMPLE_BLOCK_BYTES / pair < batch && batch % (SAMPLE_BLOCK_BYTES / pair) != 0
                );
            }
        }
        let input = rng.i8s(batch * qm.latent, -128, 127);
        let expected = reference(&qm, batch, &input);
        for isa in Isa::available() {
            let mut arena = vec![0u8; model.arena_len(batch)];
            let mut out = vec![0i8; expected.len()];
            run(&model, isa, batch, &input, &mut arena, &mut out).unwrap();
            assert_eq!(out, expected, "isa {}", isa.name());
        }
    }

    /// [`test_model`] behind a class embedding of `classes` rows.
    fn conditional_model(rng: &mut Lcg, classes: usize) -> QuantModel {
        let mut qm = test_model(rng, (4, 2, 1, 0));
        let dim = 5;
        let QuantOp::Linear { k, weights, .. } = &mut qm.ops[0] else {
            unreachable!("test_model starts with a Linear")
        };
        *k += dim;
        *weights = rng.i8s(*k * 48, -127, 127);
        qm.ops.insert(
            0,
            QuantOp::Embed {
                classes,
                dim,
                table: rng.i8s(classes * dim, -128, 127),
            },
        );
        qm
    }

    #[test]
    fn embedding_matches_reference_semantics() {
        let mut rng = Lcg(5);
        let qm = conditional_model(&mut rng, 10);
        let bytes = encode(&qm).expect("encodes");
        let model = Model::parse(&bytes).expect("parses");
        assert_eq!((model.classes(), model.latent), (10, qm.latent));
        for batch in [1, 4, 70] {
            let input = rng.i8s(batch * qm.latent, -128, 127);
            let classes: Vec<u32> = (0..batch).map(|_| rng.next() % 10).collect();
            let expected = reference_conditional(&qm, batch, &input, &classes);
            for isa in Isa::available() {
                let mut arena = vec![0u8; model.arena_len(batch)];
                let mut out = vec![0i8; expected.len()];
                run_conditional(&model, isa, batch, &input, &classes, &mut arena, &mut out)
                    .unwrap();
                assert_eq!(out, expected, "batch {batch} isa {}", isa.name());
            }
        }
        // The class changes the image: same latent, classes 0 and 1.
        let input = rng.i8s(qm.latent, -128, 127);
        let image = |class: u32| reference_conditional(&qm, 1, &input, &[class]);
        assert_ne!(image(0), image(1));
    }

    #[test]
    fn classes_are_checked_before_running() {
        let mut rng = Lcg(6);
        let qm = conditional_model(&mut rng, 3);
        let bytes = encode(&qm).unwrap();
        let model = Model::parse(&bytes).unwrap();
        let mut arena = vec![0u8; model.arena_len(2)];
        let mut out = vec![0i8; 2 * model.output.elements()];
        let input = vec![0i8; 2 * qm.latent];
        let mut go = |classes: &[u32]| {
            run_conditional(
                &model,
                Isa::Scalar,
                2,
                &input,
                classes,
                &mut arena,
                &mut out,
            )
        };
        assert_eq!(
            go(&[0, 3]),
            Err(RunError::ClassRange {
                sample: 1,
                class: 3,
                classes: 3
            })
        );
        assert_eq!(
            go(&[u32::MAX, 0]),
            Err(RunError::ClassRange {
                sample: 0,
                class: u32::MAX,
                classes: 3
            })
        );
        assert_eq!(
            go(&[1]),
            Err(RunError::ClassCount {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(go(&[]), Err(RunError::MissingClasses { classes: 3 }));
        assert_eq!(go(&[2, 0]), Ok(()));
        // The unconditional entry points refuse a conditional model, and the other way round.
        let mut arena = vec![0u8; model.arena_len(2)];
        assert_eq!(
            run(&model, Isa::Scalar, 2, &input, &mut arena, &mut out),
            Err(RunError::MissingClasses { classes: 3 })
        );
        let plain = test_model(&mut rng, (4, 2, 1, 0));
        let bytes = encode(&plain).unwrap();
        let plain = Model::parse(&bytes).unwrap();
        let mut arena = vec![0u8; plain.arena_len(2)];
        let mut out = vec![0i8; 2 * plain.output.elements()];
        assert_eq!(
            run_conditional(
                &plain,
                Isa::Scalar,
                2,
                &vec![0; 2 * plain.latent],
                &[0, 0],
                &mut arena,
                &mut out
            ),
            Err(RunError::UnexpectedClasses)
        );
    }

    /// The class input and the embedding must agree, and an embedding reads a latent and a
    /// class index.
    #[test]
    fn embedding_inputs_are_validated() {
        use crate::format::{FormatError, TensorKind};
        use crate::write::encode_graph;
        let mut rng = Lcg(8);
        let graph = conditional_model(&mut rng, 4).to_graph();
        encode_graph(&graph).expect("the conditional model encodes");
        // The class input declares another class count than the table.
        for classes in [3, 5] {
            let mut g = graph.clone();
            g.tensors[1].kind = TensorKind::Index { classes };
            assert!(
                matches!(
                    encode_graph(&g),
                    Err(crate::write::EncodeError::Invalid(FormatError::Op {
                        index: 0,
                        ..
                    }))
                ),
                "class input of {classes} classes"
            );
        }
        // An embedding whose second input is the latent, not a class index.
        let mut g = graph.clone();
        g.nodes[0].inputs = vec![0, 0];
        assert!(matches!(
            encode_graph(&g),
            Err(crate::write::EncodeError::Invalid(FormatError::Op {
                index: 0,
                ..
            }))
        ));
    }

    #[test]
    fn arena_is_the_largest_pair_plus_tiles() {
        let qm = test_model(&mut Lcg(1), (4, 2, 1, 0));
        let bytes = encode(&qm).unwrap();
        let model = Model::parse(&bytes).unwrap();
        // The chain's largest input + output pair, but for lookups, which run in place.
        let graph = qm.to_graph();
        let pair = graph
            .nodes
            .iter()
            .filter(|n| !matches!(n.op, QuantOp::Lut { .. }))
            .map(|n| graph.tensors[n.inputs[0]].bytes() + graph.tensors[n.output].bytes())
            .max()
            .unwrap();
        assert_eq!(model.tensor_bytes(1), pair);
        // A smaller arena is refused, not overrun.
        let mut arena = vec![0u8; model.arena_len(2) - 1];
        let mut out = vec![0i8; 2 * model.output.elements()];
        let err = run(
            &model,
            Isa::Scalar,
            2,
            &vec![0; 2 * qm.latent],
            &mut arena,
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Arena { .. }));
    }
}

/// A committed translation, byte for byte on every kernel family of every architecture: the
/// U-Net fixture quantized (`tests/fixtures/translate/unet.pgq`) turns a 32x32 picture into the
/// picture `pocketgan translate` wrote on x86-64 (`unet-x86.ppm`). scripts/test-aarch64.sh runs
/// it under qemu for a Pi 4, a Pi 5 and `-cpu max`. Regenerate both files with the commands in
/// `tests/fixtures/translate/README.md`.
#[cfg(test)]
mod translate_fixture {
    use super::*;

    const MODEL: &[u8] = include_bytes!("../../tests/fixtures/translate/unet.pgq");
    const PICTURE: &[u8] = include_bytes!("../../tests/fixtures/translate/picture.ppm");
    const EXPECTED: &[u8] = include_bytes!("../../tests/fixtures/translate/unet-x86.ppm");
    const PIXELS: usize = 32 * 32 * 3;

    /// A binary PNM's pixels: its last `PIXELS` bytes (RGB, row-major; P6 or PAM alike).
    fn pixels(file: &[u8]) -> &[u8] {
        assert!(file.starts_with(b"P") && file.len() > PIXELS);
        &file[file.len() - PIXELS..]
    }

    #[test]
    fn unet_translates_the_committed_picture_exactly() {
        let model = Model::parse(MODEL).unwrap();
        let mut ins = model.inputs();
        let input = model.tensor(ins.next().unwrap()).unwrap();
        // The picture as `picture::picture_input` reads it: level / 127.5 - 1, quantized (NHWC,
        // the order of the file's RGB triples).
        let x: Vec<i8> = pixels(PICTURE)
            .iter()
            .map(|&p| input.quant.quantize(p as f32 / 127.5 - 1.0))
            .collect();
        let out_t = model.tensor(model.outputs().next().unwrap()).unwrap();
        let mut arena = vec![0u8; model.arena_len(1)];
        for isa in Isa::available() {
            let mut y = vec![0i8; out_t.bytes()];
            run_graph(
                &model,
                isa,
                1,
                &[Input::Int8(&x)],
                &mut arena,
                &mut [&mut y[..]],
                |_, _, _, _| {},
            )
            .unwrap();
            // As `picture::output_picture` writes it.
            let got: Vec<u8> = y
                .iter()
                .map(|&q| {
                    ((out_t.quant.dequantize(q).clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                })
                .collect();
            let differ = got
                .iter()
                .zip(pixels(EXPECTED))
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differ,
                0,
                "{}: {differ} of {PIXELS} bytes differ",
                isa.name()
            );
        }
    }
}
