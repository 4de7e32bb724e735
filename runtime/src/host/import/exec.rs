//! The float reference executor: runs a [`FloatGraph`] in f32, NCHW, batch-major, every node's
//! output kept (the quantizer calibrates on them, tests compare against them). Each op's direct
//! f32 definition is in the file of the int8 op it becomes (`crate::ops::NAME::reference`, plain
//! loops written for clarity rather than speed); here are the checks of a node's inputs and
//! parameters, the dispatch, and `BatchNorm`, which has no int8 op of its own.

use super::{FloatGraph, FloatOp, InputKind};
use crate::ops;
use std::collections::HashMap;

/// Why a float run failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunError {
    #[error("batch size 0")]
    EmptyBatch,
    #[error("input {0} is missing")]
    MissingInput(String),
    #[error("{0} is not an input of the graph")]
    UnknownInput(String),
    #[error("input {name}: expected {expected} values (batch x per-sample size), got {actual}")]
    InputSize {
        name: String,
        expected: usize,
        actual: usize,
    },
    #[error("input {name}, sample {sample}: index {value} is not a whole number in 0..{classes}")]
    Class {
        name: String,
        sample: usize,
        value: f32,
        classes: usize,
    },
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
}

impl FloatGraph {
    /// [`FloatGraph::run`] on one batch of values per graph input, in the inputs' order.
    pub fn run_ordered(
        &self,
        values: &[Vec<f32>],
        batch: usize,
    ) -> Result<HashMap<String, Vec<f32>>, RunError> {
        let named: Vec<(&str, &[f32])> = self
            .inputs
            .iter()
            .zip(values)
            .map(|(i, v)| (i.name.as_str(), v.as_slice()))
            .collect();
        self.run(&named, batch)
    }

    /// Runs `batch` samples. `inputs` gives every graph input by name, batch-major (class
    /// inputs as f32 indices). Returns every tensor: the inputs and each node's output.
    pub fn run(
        &self,
        inputs: &[(&str, &[f32])],
        batch: usize,
    ) -> Result<HashMap<String, Vec<f32>>, RunError> {
        if batch == 0 {
            return Err(RunError::EmptyBatch);
        }
        let mut values: HashMap<String, Vec<f32>> = HashMap::new();
        for (name, _) in inputs {
            if !self.inputs.iter().any(|i| i.name == *name) {
                return Err(RunError::UnknownInput(name.to_string()));
            }
        }
        for input in &self.inputs {
            let data = inputs
                .iter()
                .find(|(n, _)| *n == input.name)
                .map(|(_, d)| *d)
                .ok_or_else(|| RunError::MissingInput(input.name.clone()))?;
            let expected = batch * input.shape.iter().product::<usize>();
            if data.len() != expected {
                return Err(RunError::InputSize {
                    name: input.name.clone(),
                    expected,
                    actual: data.len(),
                });
            }
            if let InputKind::Class { classes } = input.kind {
                if let Some((at, &value)) = data
                    .iter()
                    .enumerate()
                    .find(|(_, &v)| v.fract() != 0.0 || v < 0.0 || v >= classes as f32)
                {
                    return Err(RunError::Class {
                        name: input.name.clone(),
                        sample: at / input.shape.iter().product::<usize>().max(1),
                        value,
                        classes,
                    });
                }
            }
            values.insert(input.name.clone(), data.to_vec());
        }
        for node in &self.nodes {
            let fail = |reason: String| RunError::Node {
                node: node.name.clone(),
                reason,
            };
            let mut ins = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                let v = values
                    .get(name)
                    .ok_or_else(|| fail(format!("reads {name} before it is written")))?;
                let shape = self
                    .shape_of(name)
                    .ok_or_else(|| fail(format!("{name} has no shape")))?;
                if v.len() != batch * shape.iter().product::<usize>() {
                    return Err(fail(format!("{name} has {} values for {shape:?}", v.len())));
                }
                ins.push((v.as_slice(), shape));
            }
            let out = eval(&node.op, &ins, &node.shape, batch).map_err(fail)?;
            if out.len() != batch * node.shape.iter().product::<usize>() {
                return Err(fail(format!(
                    "wrote {} values for {:?}",
                    out.len(),
                    node.shape
                )));
            }
            values.insert(node.output.clone(), out);
        }
        Ok(values)
    }
}

/// One input of a node: its values (batch-major) and its per-sample shape.
pub(crate) type In<'a> = (&'a [f32], &'a [usize]);

/// What an op's float definition (`crate::ops::NAME::reference`) reads: the node's inputs, the
/// first of them apart, its output's per-sample shape and the batch.
#[derive(Clone, Copy)]
pub(crate) struct Eval<'a> {
    pub(crate) ins: &'a [In<'a>],
    pub(crate) x: &'a [f32],
    pub(crate) xs: &'a [usize],
    pub(crate) out: &'a [usize],
    pub(crate) batch: usize,
}

impl Eval<'_> {
    /// `[C, H, W]` of the first input and of the output, for the ops from image to image.
    pub(crate) fn images(&self) -> Result<((usize, usize, usize), (usize, usize, usize)), String> {
        Ok((chw(self.xs)?, chw(self.out)?))
    }
}

/// `[C, H, W]` of a 3-D per-sample shape.
pub(crate) fn chw(shape: &[usize]) -> Result<(usize, usize, usize), String> {
    match shape {
        [c, h, w] => Ok((*c, *h, *w)),
        _ => Err(format!("expects [C, H, W], got {shape:?}")),
    }
}

/// Parameter sizes and shapes the loops below index by, so a hand-built graph with wrong ones
/// is an error rather than an out-of-bounds panic.
fn check_params(op: &FloatOp, xs: &[usize], ins: &[In], out: &[usize]) -> Result<(), String> {
    let want = |what: &str, len: usize, expected: usize| {
        if len == expected {
            Ok(())
        } else {
            Err(format!(
                "{} has {len} {what}, expects {expected}",
                op.kind()
            ))
        }
    };
    match op {
        FloatOp::Linear {
            k,
            n,
            weights,
            bias,
        } => {
            want("weights", weights.len(), k * n)?;
            want("biases", bias.len(), *n)
        }
        FloatOp::Conv {
            cin,
            cout,
            kh,
            kw,
            weights,
            bias,
            ..
        }
        | FloatOp::ConvTranspose {
            cin,
            cout,
            kh,
            kw,
            weights,
            bias,
            ..
        } => {
            want("weights", weights.len(), cin * cout * kh * kw)?;
            want("biases", bias.len(), *cout)?;
            want("output channels", out.first().copied().unwrap_or(0), *cout)
        }
        FloatOp::InstanceNorm { scale, shift, .. } => {
            let c = xs.first().copied().unwrap_or(0);
            want("scales", scale.len(), c)?;
            want("shifts", shift.len(), c)
        }
        FloatOp::Embed {
            classes,
            dim,
            table,
        } => {
            // One row per index: a class's, or each of a text's token ids in order.
            want("table values", table.len(), classes * dim)?;
            want(
                "outputs",
                out.iter().product(),
                xs.iter().product::<usize>() * dim,
            )
        }
        FloatOp::Gru {
            input,
            hidden,
            w,
            r,
            b,
        } => {
            want("input-side weights", w.len(), 3 * hidden * input)?;
            want("state-side weights", r.len(), 3 * hidden * hidden)?;
            want("biases", b.len(), 6 * hidden)?;
            match (xs, out) {
                ([t, i], [to, h]) if i == input && h == hidden && t == to && *t > 0 => Ok(()),
                _ => Err(format!(
                    "GRU of {input} -> {hidden} reads {xs:?} and writes {out:?}"
                )),
            }
        }
        FloatOp::Concat { axis } => {
            let mut total = 0;
            for (_, s) in ins {
                let same_rank = s.len() == out.len() && *axis < out.len();
                if !same_rank || (0..out.len()).any(|a| a != *axis && s[a] != out[a]) {
                    return Err(format!("Concat of {s:?} into {out:?} on axis {axis}"));
                }
                total += s[*axis];
            }
            want(
                "values along the axis",
                total,
                out.get(*axis).copied().unwrap_or(0),
            )
        }
        _ => Ok(()),
    }
}

fn eval(op: &FloatOp, ins: &[In], out_shape: &[usize], batch: usize) -> Result<Vec<f32>, String> {
    let arity = match op {
        FloatOp::Add | FloatOp::Mul => 2,
        FloatOp::Concat { .. } => ins.len().max(1),
        _ => 1,
    };
    if ins.len() != arity {
        return Err(format!(
            "{} takes {arity} inputs, got {}",
            op.kind(),
            ins.len()
        ));
    }
    let (x, xs) = ins[0];
    check_params(op, xs, ins, out_shape)?;
    let e = Eval {
        ins,
        x,
        xs,
        out: out_shape,
        batch,
    };
    // Each op's float definition is in the file of the int8 op it becomes, next to its import
    // and quantization; the per-channel affine, which has no int8 op of its own (folded into
    // the layer before it, or quantized as a diagonal 1x1 convolution), is here.
    match op {
        FloatOp::Relu | FloatOp::LeakyRelu { .. } | FloatOp::Tanh | FloatOp::Sigmoid => {
            ops::lut::reference(&e, op)
        }
        FloatOp::Linear {
            k,
            n,
            weights,
            bias,
        } => ops::linear::reference(&e, *k, *n, weights, bias),
        FloatOp::Conv {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            weights,
            bias,
        } => ops::conv::reference(&e, (*cin, *cout, *kh, *kw), *stride, *pad, weights, bias),
        FloatOp::ConvTranspose {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            weights,
            bias,
            ..
        } => ops::conv_transpose::reference(
            &e,
            (*cin, *cout, *kh, *kw),
            *stride,
            *pad,
            weights,
            bias,
        ),
        FloatOp::BatchNorm { scale, shift } => {
            // A sequence's channel is its feature, the last axis.
            let (channels, inner) = match xs {
                [_, f] => (*f, 1),
                _ => (
                    xs.first().copied().unwrap_or(1),
                    xs.iter().skip(1).product::<usize>(),
                ),
            };
            if scale.len() != channels || shift.len() != channels {
                return Err(format!("{} channels of parameters for {xs:?}", scale.len()));
            }
            Ok(x.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = (i / inner) % channels;
                    v * scale[ch] + shift[ch]
                })
                .collect())
        }
        FloatOp::InstanceNorm { scale, shift, eps } => {
            ops::instance_norm::reference(&e, scale, shift, *eps)
        }
        FloatOp::Add => ops::add::reference(&e),
        FloatOp::Mul => ops::mul::reference(&e),
        FloatOp::Concat { axis } => ops::concat::reference(&e, *axis),
        FloatOp::Pad { mode, pads } => ops::pad::reference(&e, *mode, *pads),
        FloatOp::Reshape { .. } | FloatOp::Flatten => ops::reshape::reference(&e),
        FloatOp::Gru {
            input,
            hidden,
            w,
            r,
            b,
        } => ops::gru::reference(&e, *input, *hidden, w, r, b),
        FloatOp::Upsample { factor } => ops::upsample::reference(&e, *factor),
        FloatOp::PixelNorm { eps } => ops::pixel_norm::reference(&e, *eps),
        FloatOp::Slice { start, len } => ops::slice::reference(&e, *start, *len),
        FloatOp::Embed {
            classes,
            dim,
            table,
        } => ops::embed::reference(&e, *classes, *dim, table),
    }
}
