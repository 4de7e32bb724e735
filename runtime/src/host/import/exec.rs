//! The float reference executor: the direct f32 definition of every [`FloatOp`], NCHW,
//! batch-major, every node's output kept (the quantizer calibrates on them, tests compare
//! against them). Plain loops, written for clarity rather than speed.

use super::{FloatGraph, FloatOp, InputKind, PadMode};
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

type In<'a> = (&'a [f32], &'a [usize]);

/// `[C, H, W]` of a 3-D per-sample shape.
fn chw(shape: &[usize]) -> Result<(usize, usize, usize), String> {
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
    let out_size: usize = out_shape.iter().product();
    Ok(match op {
        FloatOp::Relu | FloatOp::LeakyRelu { .. } | FloatOp::Tanh | FloatOp::Sigmoid => x
            .iter()
            .map(|&v| op.activate(v).expect("elementwise"))
            .collect(),
        FloatOp::Linear {
            k,
            n,
            weights,
            bias,
        } => {
            // A vector, or each step of a sequence.
            let step = matches!(xs, [_, f] if f == k);
            if xs.iter().product::<usize>() != *k && !step {
                return Err(format!("Linear of {k} inputs gets {xs:?}"));
            }
            let mut y = Vec::with_capacity(batch * n);
            for s in x.chunks(*k) {
                let mut row = bias.clone();
                for (i, &v) in s.iter().enumerate() {
                    for (r, w) in row.iter_mut().zip(&weights[i * n..(i + 1) * n]) {
                        *r += v * w;
                    }
                }
                y.extend(row);
            }
            y
        }
        FloatOp::Conv {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            weights,
            bias,
        } => {
            let (c, h, w) = chw(xs)?;
            let (_, ho, wo) = chw(out_shape)?;
            if c != *cin {
                return Err(format!("Conv of {cin} channels gets {c}"));
            }
            let mut y = vec![0.0; batch * cout * ho * wo];
            for b in 0..batch {
                let xb = &x[b * c * h * w..(b + 1) * c * h * w];
                for o in 0..*cout {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut acc = bias[o];
                            for i in 0..c {
                                for ky in 0..*kh {
                                    let iy = (oy * stride.0 + ky) as isize - pad[0] as isize;
                                    if iy < 0 || iy >= h as isize {
                                        continue;
                                    }
                                    for kx in 0..*kw {
                                        let ix = (ox * stride.1 + kx) as isize - pad[1] as isize;
                                        if ix < 0 || ix >= w as isize {
                                            continue;
                                        }
                                        acc += xb[(i * h + iy as usize) * w + ix as usize]
                                            * weights[((o * c + i) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                            y[((b * cout + o) * ho + oy) * wo + ox] = acc;
                        }
                    }
                }
            }
            y
        }
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
        } => {
            let (c, h, w) = chw(xs)?;
            let (_, ho, wo) = chw(out_shape)?;
            if c != *cin {
                return Err(format!("ConvTranspose of {cin} channels gets {c}"));
            }
            let mut y = vec![0.0; batch * cout * ho * wo];
            for b in 0..batch {
                let yb = &mut y[b * cout * ho * wo..(b + 1) * cout * ho * wo];
                for (o, plane) in yb.chunks_mut(ho * wo).enumerate() {
                    plane.iter_mut().for_each(|v| *v = bias[o]);
                }
                for i in 0..c {
                    for iy in 0..h {
                        for ix in 0..w {
                            let v = x[((b * c + i) * h + iy) * w + ix];
                            for o in 0..*cout {
                                for ky in 0..*kh {
                                    let oy = (iy * stride.0 + ky) as isize - pad[0] as isize;
                                    if oy < 0 || oy >= ho as isize {
                                        continue;
                                    }
                                    for kx in 0..*kw {
                                        let ox = (ix * stride.1 + kx) as isize - pad[1] as isize;
                                        if ox < 0 || ox >= wo as isize {
                                            continue;
                                        }
                                        yb[(o * ho + oy as usize) * wo + ox as usize] +=
                                            v * weights[((i * cout + o) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            }
            y
        }
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
            x.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = (i / inner) % channels;
                    v * scale[ch] + shift[ch]
                })
                .collect()
        }
        FloatOp::InstanceNorm { scale, shift, eps } => {
            let (c, h, w) = chw(xs)?;
            let hw = h * w;
            let mut y = Vec::with_capacity(x.len());
            for (plane_at, plane) in x.chunks(hw).enumerate() {
                let ch = plane_at % c;
                let mean = plane.iter().sum::<f32>() / hw as f32;
                let var = plane.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / hw as f32;
                let inv = 1.0 / (var + eps).sqrt();
                y.extend(
                    plane
                        .iter()
                        .map(|v| (v - mean) * inv * scale[ch] + shift[ch]),
                );
            }
            y
        }
        FloatOp::Add | FloatOp::Mul => {
            let (b, bs) = ins[1];
            if xs != bs {
                return Err(format!("{} of {xs:?} and {bs:?}", op.kind()));
            }
            let f = if *op == FloatOp::Add {
                |a: f32, b: f32| a + b
            } else {
                |a: f32, b: f32| a * b
            };
            x.iter().zip(b).map(|(&a, &b)| f(a, b)).collect()
        }
        FloatOp::Concat { axis } => {
            // Each sample: for every index before `axis`, each input's block in turn.
            let outer: usize = out_shape[..*axis].iter().product();
            let mut y = Vec::with_capacity(batch * out_size);
            let blocks: Vec<usize> = ins
                .iter()
                .map(|(_, s)| s[*axis..].iter().product::<usize>())
                .collect();
            for b in 0..batch {
                for o in 0..outer {
                    for ((v, s), block) in ins.iter().zip(&blocks) {
                        let per = s.iter().product::<usize>();
                        let at = b * per + o * block;
                        y.extend_from_slice(&v[at..at + block]);
                    }
                }
            }
            y
        }
        FloatOp::Pad { mode, pads } => {
            let (c, h, w) = chw(xs)?;
            let (_, ho, wo) = chw(out_shape)?;
            let [top, left, ..] = *pads;
            if *mode == PadMode::Reflect && (pads[0].max(pads[2]) >= h || pads[1].max(pads[3]) >= w)
            {
                return Err(format!(
                    "reflect pads {pads:?} need an input larger than {h}x{w}"
                ));
            }
            let reflect = |i: isize, n: usize| -> Option<usize> {
                let n = n as isize;
                let j = if i < 0 {
                    -i
                } else if i >= n {
                    2 * (n - 1) - i
                } else {
                    i
                };
                (0..n).contains(&j).then_some(j as usize)
            };
            let mut y = Vec::with_capacity(batch * c * ho * wo);
            for plane in x.chunks(h * w) {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let (iy, ix) = (oy as isize - top as isize, ox as isize - left as isize);
                        let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                        y.push(match mode {
                            _ if inside => plane[iy as usize * w + ix as usize],
                            PadMode::Zero => 0.0,
                            PadMode::Reflect => match (reflect(iy, h), reflect(ix, w)) {
                                (Some(ry), Some(rx)) => plane[ry * w + rx],
                                _ => return Err("reflect pad out of range".into()),
                            },
                        });
                    }
                }
            }
            y
        }
        FloatOp::Reshape { .. } | FloatOp::Flatten => {
            if xs.iter().product::<usize>() != out_size {
                return Err(format!("reshape of {xs:?} to {out_shape:?}"));
            }
            x.to_vec()
        }
        FloatOp::Gru {
            input,
            hidden,
            w,
            r,
            b,
        } => gru(*input, *hidden, w, r, b, x, xs[0]),
        FloatOp::Upsample { factor } => {
            let (c, h, w) = chw(xs)?;
            let f = *factor;
            let mut y = Vec::with_capacity(batch * c * h * w * f * f);
            for plane in x.chunks(h * w) {
                for oy in 0..h * f {
                    for ox in 0..w * f {
                        y.push(plane[(oy / f) * w + ox / f]);
                    }
                }
            }
            y
        }
        FloatOp::PixelNorm { eps } => {
            // Per sample, per pixel: the channels are axis 0, `inner` values apart.
            let channels = xs.first().copied().unwrap_or(0);
            let inner: usize = xs.iter().skip(1).product();
            let per = channels * inner;
            let mut y = x.to_vec();
            for b in 0..batch {
                for p in 0..inner {
                    let at = |ch: usize| b * per + ch * inner + p;
                    let ms = (0..channels).map(|ch| x[at(ch)] * x[at(ch)]).sum::<f32>()
                        / channels.max(1) as f32;
                    let r = 1.0 / (ms + eps).sqrt();
                    for ch in 0..channels {
                        y[at(ch)] = x[at(ch)] * r;
                    }
                }
            }
            y
        }
        FloatOp::Slice { start, len } => {
            // Axis 0 of each sample: one contiguous block of `len` channels.
            let channels = xs.first().copied().unwrap_or(0);
            if start + len > channels {
                return Err(format!("Slice {start}..{} of {xs:?}", start + len));
            }
            let inner: usize = xs[1..].iter().product();
            let per: usize = xs.iter().product();
            let mut y = Vec::with_capacity(batch * len * inner);
            for b in 0..batch {
                let at = b * per + start * inner;
                y.extend_from_slice(&x[at..at + len * inner]);
            }
            y
        }
        FloatOp::Embed {
            classes,
            dim,
            table,
        } => {
            // Each index's row in order: `[T]` token ids give `[T * dim]`.
            let mut y = Vec::with_capacity(x.len() * dim);
            for &class in x {
                let c = class as usize;
                if class.fract() != 0.0 || class < 0.0 || c >= *classes {
                    return Err(format!("class {class} out of 0..{classes}"));
                }
                y.extend_from_slice(&table[c * dim..(c + 1) * dim]);
            }
            y
        }
    })
}

/// [`FloatOp::Gru`] on every sample of `x` (`steps` rows of `input` each).
fn gru(
    input: usize,
    hidden: usize,
    w: &[f32],
    r: &[f32],
    b: &[f32],
    x: &[f32],
    steps: usize,
) -> Vec<f32> {
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    let dot = |m: &[f32], row: usize, v: &[f32]| -> f32 {
        m[row * v.len()..(row + 1) * v.len()]
            .iter()
            .zip(v)
            .map(|(a, b)| a * b)
            .sum()
    };
    let mut y = Vec::with_capacity(x.len() / input.max(1) * hidden);
    for sample in x.chunks(steps * input) {
        let mut h = vec![0f32; hidden];
        for xt in sample.chunks(input) {
            let next: Vec<f32> = (0..hidden)
                .map(|j| {
                    let gx = |g: usize| dot(w, g * hidden + j, xt) + b[g * hidden + j];
                    let gh = |g: usize| dot(r, g * hidden + j, &h) + b[(3 + g) * hidden + j];
                    let z = sigmoid(gx(0) + gh(0));
                    let rr = sigmoid(gx(1) + gh(1));
                    let n = (gx(2) + rr * gh(2)).tanh();
                    (1.0 - z) * n + z * h[j]
                })
                .collect();
            y.extend_from_slice(&next);
            h = next;
        }
    }
    y
}
