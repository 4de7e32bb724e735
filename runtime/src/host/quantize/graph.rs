//! Post-training quantization of any float graph ([`FloatGraph`]) to an int8 `.pgq` graph.
//!
//! Every tensor gets a per-tensor asymmetric int8 quantization from its range over calibration
//! inputs, measured by running the float graph itself ([`FloatGraph::run`]); ops that only move
//! values (pad, reshape, flatten, upsample) keep their input's. Weights get per-output-channel
//! symmetric scales. A ReLU whose input feeds nothing else is fused into the matrix op before it
//! (its clamp). Each float op becomes the int8 op of the same meaning: lookups for elementwise
//! functions, fixed-point multipliers for `Add`, `Mul`, `Concat` and instance normalisation.

use super::{
    multiplier, quant_for_range, quantize_weights, range, requant_params, Calibration, Fused,
    QuantizeError,
};
use crate::format::{ConvGeometry, Quant, Shape, TensorInfo, TensorKind};
use crate::import::{FloatGraph, FloatOp, InputKind};
use crate::ops::concat::Part;
use crate::ops::instance_norm::Affine;
use crate::ops::pad::{Pad, PadMode};
use crate::ops::{Add, Mul};
use crate::write::{encode_graph, QuantGraph, QuantNode, QuantOp, RequantParams};
use std::collections::HashMap;

/// `m_i` as `mult_i * 2^-shift` with one shift for all, the largest multiplier in `[2^30, 2^31)`.
pub(crate) fn shared_multipliers(ms: &[f64]) -> Option<(Vec<i32>, u8)> {
    let top = ms.iter().fold(0f64, |a, m| a.max(m.abs()));
    let (_, shift) = multiplier(top)?;
    let mults = ms
        .iter()
        .map(|m| (m * 2f64.powi(shift as i32)).round() as i64)
        .map(|m| i32::try_from(m).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((mults, shift))
}

/// How a matrix op read only by an instance normalisation writes its output: channel `c` is
/// stored as `(x - centre[c]) / scale[c]` (zero point 0). The normalisation subtracts each
/// channel's mean and divides by its spread, so it is blind to both the centre and the scale
/// (but for its epsilon, which is recorded per channel).
struct ChannelQuant {
    scales: Vec<f32>,
    centres: Vec<f32>,
}

/// Requantization of a matrix op whose output channel `c` has its own scale and centre (see
/// [`ChannelQuant`]): `(bias[c] - centre[c]) / (s_in w[c])` and `s_in w[c] / scale[c]`.
fn per_channel_requant(
    bias: &[f32],
    w_scales: &[f32],
    input: Quant,
    out: &ChannelQuant,
) -> Option<RequantParams> {
    let mut p = RequantParams {
        bias: Vec::new(),
        mult: Vec::new(),
        shift: Vec::new(),
        zp_out: 0,
        min: -128,
        max: 127,
    };
    for (((b, sw), so), centre) in bias.iter().zip(w_scales).zip(&out.scales).zip(&out.centres) {
        let acc = input.scale as f64 * *sw as f64;
        let bq = ((*b as f64 - *centre as f64) / acc).round();
        if bq.abs() > (1u64 << 29) as f64 {
            return None;
        }
        let (m, s) = multiplier(acc / *so as f64)?;
        p.bias.push(bq as i32);
        p.mult.push(m);
        p.shift.push(s);
    }
    Some(p)
}

/// `m` (of either sign) as `mult * 2^-shift`.
fn signed_multiplier(m: f64) -> Option<(i32, u8)> {
    if m == 0.0 {
        return Some((0, 1));
    }
    let (q, s) = multiplier(m.abs())?;
    Some((if m < 0.0 { -q } else { q }, s))
}

/// The per-sample shape of a `[c, h, w]` or `[n]` tensor (`[n, 1, 1]`, pytorch/examples'
/// latent, is a vector: the same bytes).
fn shape_of(dims: &[usize]) -> Shape {
    match *dims {
        [n, 1, 1] => Shape::Flat(n),
        [c, h, w] => Shape::Image { c, h, w },
        // A sequence `[T, F]`: its rows, step after step, are the NHWC bytes of this image.
        [t, f] => Shape::Image { c: f, h: t, w: 1 },
        _ => Shape::Flat(dims.iter().product()),
    }
}

/// A 1x1 convolution of `[cin, h, w]` with float weights `[cout][cin]` (node `layer`, an `op`).
#[allow(clippy::too_many_arguments)]
fn pointwise(
    layer: usize,
    op: &'static str,
    (cin, cout, h, w): (usize, usize, usize, usize),
    weights: &[f32],
    bias: &[f32],
    q_in: Quant,
    q_out: Quant,
    act: Fused,
) -> Result<QuantOp, QuantizeError> {
    let geometry = ConvGeometry {
        cin,
        cout,
        h,
        w,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
        out_pad: 0,
    };
    let (wq, ws) = quantize_weights(weights, cout, |j| j / cin);
    Ok(QuantOp::Conv2d {
        geometry,
        zp_in: q_in.zero_point,
        requant: requant_params(layer, op, bias, &ws, q_in, q_out, act)?,
        weights: wq,
    })
}

/// A GRU layer (ONNX layouts, see [`FloatOp::Gru`]) on input `x`, its output `h` measured
/// (`values`) to choose the output's symmetric scale, which is also the scale at which the next
/// step's state-side product reads it (see [`crate::ops::gru`] for the arithmetic).
#[allow(clippy::too_many_arguments)]
fn quantize_gru(
    input: usize,
    hidden: usize,
    steps: usize,
    w: &[f32],
    r: &[f32],
    b: &[f32],
    x: Quant,
    values: Option<&Vec<f32>>,
) -> Result<(crate::ops::gru::GruParams, Quant), String> {
    use crate::ops::gru::{GateRow, GruParams, PRE_BITS, STATE_BITS};
    let top = values
        .map(|v| v.iter().fold(0f32, |m, x| m.max(x.abs())))
        .ok_or("its output was not measured")?;
    // The state is within (-1, 1); a state that never moved still needs a scale.
    let s_out = (top.clamp(1.0 / 128.0, 1.0) / 127.0) as f64;
    let n = 3 * hidden;
    let (wq, ws) = quantize_weights(w, n, |i| i / input);
    let (rq, rs) = quantize_weights(r, n, |i| i / hidden);
    let pre = (1u64 << PRE_BITS) as f64;
    let rows = (0..n)
        .map(|j| {
            let (x_mult, x_shift) = multiplier(x.scale as f64 * ws[j] as f64 * pre)
                .ok_or_else(|| format!("gate row {j}: input scale out of range"))?;
            let (h_mult, h_shift) = multiplier(s_out * rs[j] as f64 * pre)
                .ok_or_else(|| format!("gate row {j}: state scale out of range"))?;
            let bias = |v: f32| {
                let q = (v as f64 * pre).round();
                if q.abs() < (1u64 << 30) as f64 {
                    Ok(q as i32)
                } else {
                    Err(format!("gate row {j}: bias {v} out of range"))
                }
            };
            Ok(GateRow {
                x_mult,
                h_mult,
                x_bias: bias(b[j])?,
                h_bias: bias(b[n + j])?,
                x_shift,
                h_shift,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (out_mult, out_shift) = multiplier(1.0 / (s_out * (1u64 << STATE_BITS) as f64))
        .ok_or("output scale out of range")?;
    // `[3 hidden][in]` to the kernels' `[in][3 hidden]`.
    let transpose = |m: &[i8], k: usize| (0..m.len()).map(|i| m[(i % n) * k + i / n]).collect();
    let params = GruParams {
        input,
        hidden,
        steps,
        zp_in: x.zero_point,
        out_mult,
        out_shift,
        rows,
        w: transpose(&wq, input),
        r: transpose(&rq, hidden),
    };
    Ok((
        params,
        Quant {
            scale: s_out as f32,
            zero_point: 0,
        },
    ))
}

/// Quantizes `graph` with tensor ranges measured on `calib` (one batch of values per graph input,
/// in order, `calib_n` samples; class indices as whole floats).
pub fn quantize_graph(
    graph: &FloatGraph,
    calib: &[Vec<f32>],
    calib_n: usize,
    calibration: Calibration,
) -> Result<Quantized, QuantizeError> {
    let fail =
        |node: &str, reason: String| QuantizeError::Calibration(format!("node {node}: {reason}"));
    // Every tensor's float values over the calibration batch.
    let values = graph
        .run_ordered(calib, calib_n)
        .map_err(|e| QuantizeError::Calibration(e.to_string()))?;
    if values.values().any(|v| v.iter().any(|x| !x.is_finite())) {
        return Err(QuantizeError::Calibration(
            "the float model produced NaN or infinity".into(),
        ));
    }
    let measured = |name: &str| -> Result<Quant, QuantizeError> {
        let mut v = values
            .get(name)
            .cloned()
            .ok_or_else(|| QuantizeError::Calibration(format!("tensor {name} was not computed")))?;
        let (lo, hi) = range(&mut v, calibration);
        Ok(quant_for_range(lo, hi))
    };

    // Who reads each tensor: a ReLU fuses into its producer only when it is the sole reader.
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &graph.nodes {
        for i in &n.inputs {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &graph.outputs {
        *readers.entry(o.as_str()).or_default() += 1;
    }
    let by_output: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| (n.output.as_str(), k))
        .collect();
    // A ReLU is fused into the matrix op (or instance normalisation) whose output it alone
    // reads, directly or through a reshape or flatten (a permutation, which commutes with it):
    // the op clamps at the ReLU's zero point, with the quantization measured at the ReLU's
    // output, so that no code is spent on the negative values the ReLU discards (a separate
    // lookup would also round twice). Directly, the op writes the ReLU's tensor; through a
    // layout op, readers of the ReLU's tensor read the layout op's (`alias`).
    let matrix = |p: usize| {
        matches!(
            graph.nodes[p].op,
            FloatOp::Linear { .. }
                | FloatOp::Conv { .. }
                | FloatOp::ConvTranspose { .. }
                | FloatOp::InstanceNorm { .. }
        )
    };
    let sole = |t: &str| readers.get(t) == Some(&1);
    let mut fused: HashMap<usize, usize> = HashMap::new(); // matrix node -> relu node
    let mut direct: HashMap<usize, bool> = HashMap::new(); // matrix node -> writes the relu's tensor
    let mut alias: HashMap<String, String> = HashMap::new();
    for (k, n) in graph.nodes.iter().enumerate() {
        if n.op != FloatOp::Relu {
            continue;
        }
        let src = &n.inputs[0];
        let Some(&p) = by_output.get(src.as_str()) else {
            continue;
        };
        if matrix(p) && sole(src) {
            fused.insert(p, k);
            direct.insert(p, true);
        } else if matches!(
            graph.nodes[p].op,
            FloatOp::Reshape { .. } | FloatOp::Flatten
        ) && sole(src)
        {
            let inner = &graph.nodes[p].inputs[0];
            if let Some(&m) = by_output.get(inner.as_str()) {
                if matrix(m) && sole(inner) && !graph.outputs.contains(src) {
                    fused.insert(m, k);
                    direct.insert(m, false);
                    alias.insert(n.output.clone(), src.clone());
                }
            }
        }
    }
    let resolve = |t: &str| -> String { alias.get(t).cloned().unwrap_or_else(|| t.to_owned()) };

    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut quants: HashMap<String, Quant> = HashMap::new();
    let mut qin = Vec::new();
    for i in &graph.inputs {
        let info = match i.kind {
            InputKind::Class { classes } => TensorInfo {
                shape: Shape::Flat(1),
                quant: Quant::UNIT,
                kind: TensorKind::Index { classes },
            },
            _ => {
                let q = measured(&i.name)?;
                quants.insert(i.name.clone(), q);
                TensorInfo {
                    shape: shape_of(&i.shape),
                    quant: q,
                    kind: TensorKind::Int8,
                }
            }
        };
        index.insert(i.name.clone(), tensors.len());
        qin.push(tensors.len());
        tensors.push(info);
    }
    // A class embedding (`table[class]`) joined after a latent by a concatenation is one int8
    // `Embed`, which copies both in the concatenation's quantization. Any other embedding (a
    // token cell's, or one a cGAN multiplies with its latent) is an `Embed` of its own.
    let joined = |e: &str| {
        graph.nodes.iter().any(|m| {
            matches!(m.op, FloatOp::Concat { .. }) && m.inputs.len() == 2 && m.inputs[1] == e
        })
    };
    let embeds: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, FloatOp::Embed { .. }) && joined(&n.output))
        .map(|(k, n)| (n.output.as_str(), k))
        .collect();
    // A convolution read only by an instance normalisation writes each channel in its own
    // symmetric range around the channel's calibration midpoint ([`ChannelQuant`]): the
    // normalisation keeps only each channel's deviations from its mean, and a channel whose
    // values sit far from zero, or one far narrower than the tensor, would otherwise keep few
    // levels for them, which the normalisation then magnifies (on the CycleGAN-style ResNet
    // without affine parameters the centring gained 0.5 dB, 27.7 to 28.2).
    let mut channel_scales: HashMap<String, ChannelQuant> = HashMap::new();
    for (k, n) in graph.nodes.iter().enumerate() {
        let conv = matches!(n.op, FloatOp::Conv { .. } | FloatOp::ConvTranspose { .. });
        let normalised = graph
            .nodes
            .iter()
            .filter(|m| m.inputs.contains(&n.output))
            .all(|m| matches!(m.op, FloatOp::InstanceNorm { .. }));
        if !conv
            || fused.contains_key(&k)
            || !sole(&n.output)
            || !normalised
            || graph.outputs.contains(&n.output)
        {
            continue;
        }
        let (Some(v), &[c, h, w]) = (values.get(&n.output), &n.shape[..]) else {
            continue;
        };
        let (mut lo, mut hi) = (vec![f32::MAX; c], vec![f32::MIN; c]);
        for (i, x) in v.iter().enumerate() {
            let ch = (i / (h * w)) % c;
            lo[ch] = lo[ch].min(*x);
            hi[ch] = hi[ch].max(*x);
        }
        channel_scales.insert(
            n.output.clone(),
            ChannelQuant {
                scales: lo
                    .iter()
                    .zip(&hi)
                    .map(|(l, h)| ((h - l) / 254.0).max(1e-8))
                    .collect(),
                centres: lo.iter().zip(&hi).map(|(l, h)| (l + h) / 2.0).collect(),
            },
        );
    }
    let mut nodes = Vec::new();
    // The float tensor each int8 node computes (for the report's per-node SQNR).
    let mut node_names: Vec<(String, bool)> = Vec::new();
    for (k, n) in graph.nodes.iter().enumerate() {
        if fused.values().any(|&r| r == k) || embeds.contains_key(n.output.as_str()) {
            continue; // folded into its producer, or into the concatenation that reads it
        }
        let name = n.name.as_str();
        // An embedding's output is folded into the concatenation that reads it (below).
        let ins: Vec<usize> = n
            .inputs
            .iter()
            .filter(|i| !embeds.contains_key(i.as_str()))
            .map(|i| {
                index
                    .get(&resolve(i))
                    .copied()
                    .ok_or_else(|| fail(name, format!("reads {i}, not yet computed")))
            })
            .collect::<Result<_, _>>()?;
        let joins_latent = matches!(n.op, FloatOp::Concat { .. })
            && n.inputs.len() == 2
            && embeds.contains_key(n.inputs[1].as_str());
        if !joins_latent && n.inputs.iter().any(|i| embeds.contains_key(i.as_str())) {
            return Err(fail(
                name,
                "reads a class embedding: the int8 runtime takes an embedding concatenated after \
                 the latent (torch.cat([z, embed(c)], 1)), not combined otherwise (multiplied, \
                 as in PyTorch-GAN's cGAN and ACGAN, or added)"
                    .into(),
            ));
        }
        let q_in: Vec<Quant> = ins.iter().map(|&t| tensors[t].quant).collect();
        // The output's quantization: measured at the fused ReLU's output, kept for layout ops.
        let relu_out = fused.get(&k).map(|&r| graph.nodes[r].output.clone());
        let out_name = match (&relu_out, direct.get(&k)) {
            (Some(r), Some(true)) => r.clone(),
            _ => n.output.clone(),
        };
        let keeps = matches!(
            n.op,
            FloatOp::Pad { .. }
                | FloatOp::Slice { .. }
                | FloatOp::Reshape { .. }
                | FloatOp::Flatten
                | FloatOp::Upsample { .. }
        );
        let q_out = if keeps {
            q_in[0]
        } else {
            measured(relu_out.as_deref().unwrap_or(&out_name))?
        };
        let act = if fused.contains_key(&k) {
            Fused::Relu
        } else {
            Fused::None
        };
        let input_shape = |t: usize| tensors[t].shape;
        // An op that chooses its output's quantization itself (the GRU's is symmetric).
        let mut own_quant = None;
        let op = match &n.op {
            // Each step of a sequence: a 1x1 convolution of the image `[c = k, h = T, w = 1]`.
            FloatOp::Linear {
                k: kk,
                n: nn,
                weights,
                bias,
            } if matches!(input_shape(ins[0]), Shape::Image { w: 1, .. }) => {
                let Shape::Image { h, .. } = input_shape(ins[0]) else {
                    unreachable!()
                };
                // `[k][n]` to the convolution's `[cout][cin]`.
                let wt: Vec<f32> = (0..kk * nn)
                    .map(|i| weights[(i % kk) * nn + i / kk])
                    .collect();
                pointwise(
                    k,
                    "Linear",
                    (*kk, *nn, h, 1),
                    &wt,
                    bias,
                    q_in[0],
                    q_out,
                    act,
                )?
            }
            FloatOp::Gru {
                input,
                hidden,
                w,
                r,
                b,
            } => {
                let Shape::Image { h: steps, .. } = input_shape(ins[0]) else {
                    return Err(fail(name, "a GRU takes a sequence".into()));
                };
                let (p, q) = quantize_gru(
                    *input,
                    *hidden,
                    steps,
                    w,
                    r,
                    b,
                    q_in[0],
                    values.get(&n.output),
                )
                .map_err(|e| fail(name, e))?;
                own_quant = Some(q);
                QuantOp::Gru(p)
            }
            FloatOp::Linear {
                k: kk,
                n: nn,
                weights,
                bias,
            } => {
                let (w, ws) = quantize_weights(weights, *nn, |j| j % nn);
                QuantOp::Linear {
                    k: *kk,
                    n: *nn,
                    zp_in: q_in[0].zero_point,
                    requant: requant_params(k, "Linear", bias, &ws, q_in[0], q_out, act)?,
                    weights: w,
                }
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
                // A vector is a 1x1 image (pytorch/examples' `[N, nz, 1, 1]` latent).
                let (h, w) = match input_shape(ins[0]) {
                    Shape::Image { h, w, .. } => (h, w),
                    Shape::Flat(_) => (1, 1),
                };
                if stride.0 != stride.1 || pad[0] != pad[2] || pad[1] != pad[3] || pad[0] != pad[1]
                {
                    return Err(fail(
                        name,
                        format!("unequal strides {stride:?} or paddings {pad:?} are not supported"),
                    ));
                }
                let g = ConvGeometry {
                    cin: *cin,
                    cout: *cout,
                    h,
                    w,
                    kh: *kh,
                    kw: *kw,
                    stride: stride.0,
                    pad: pad[0],
                    out_pad: 0,
                };
                let per_out = cin * kh * kw;
                let (wq, ws) = quantize_weights(weights, *cout, |j| j / per_out);
                let requant = match channel_scales.get(&n.output) {
                    Some(out) => per_channel_requant(bias, &ws, q_in[0], out)
                        .ok_or_else(|| fail(name, "scales out of range".into()))?,
                    None => requant_params(k, "Conv2d", bias, &ws, q_in[0], q_out, act)?,
                };
                QuantOp::Conv2d {
                    geometry: g,
                    zp_in: q_in[0].zero_point,
                    requant,
                    weights: wq,
                }
            }
            FloatOp::ConvTranspose {
                cin,
                cout,
                kh,
                kw,
                stride,
                pad,
                out_pad,
                weights,
                bias,
            } => {
                // A vector is a 1x1 image (pytorch/examples' `[N, nz, 1, 1]` latent).
                let (h, w) = match input_shape(ins[0]) {
                    Shape::Image { h, w, .. } => (h, w),
                    Shape::Flat(_) => (1, 1),
                };
                if stride.0 != stride.1
                    || out_pad.0 != out_pad.1
                    || pad.iter().any(|&p| p != pad[0])
                {
                    return Err(fail(name, format!("unequal strides {stride:?}, paddings {pad:?} or output paddings {out_pad:?} are not supported")));
                }
                let g = ConvGeometry {
                    cin: *cin,
                    cout: *cout,
                    h,
                    w,
                    kh: *kh,
                    kw: *kw,
                    stride: stride.0,
                    pad: pad[0],
                    out_pad: out_pad.0,
                };
                let taps = kh * kw;
                let (wq, ws) = quantize_weights(weights, *cout, |j| (j / taps) % cout);
                let requant = match channel_scales.get(&n.output) {
                    Some(out) => per_channel_requant(bias, &ws, q_in[0], out)
                        .ok_or_else(|| fail(name, "scales out of range".into()))?,
                    None => requant_params(k, "ConvTranspose2d", bias, &ws, q_in[0], q_out, act)?,
                };
                QuantOp::ConvTranspose2d {
                    geometry: g,
                    zp_in: q_in[0].zero_point,
                    requant,
                    weights: wq,
                }
            }
            FloatOp::Relu | FloatOp::LeakyRelu { .. } | FloatOp::Tanh | FloatOp::Sigmoid => {
                let mut table = [0u8; 256];
                for (code, t) in table.iter_mut().enumerate() {
                    let x = q_in[0].dequantize(code as u8 as i8);
                    let y = n.op.activate(x).unwrap_or(x);
                    *t = q_out.quantize(y) as u8;
                }
                QuantOp::Lut { table }
            }
            FloatOp::Add => {
                let ms = [
                    q_in[0].scale as f64 / q_out.scale as f64,
                    q_in[1].scale as f64 / q_out.scale as f64,
                ];
                let (m, shift) = shared_multipliers(&ms)
                    .ok_or_else(|| fail(name, "scales out of range".into()))?;
                QuantOp::Add(Add {
                    zp: [q_in[0].zero_point, q_in[1].zero_point],
                    mult: [m[0], m[1]],
                    shift,
                    zp_out: q_out.zero_point,
                    min: -128,
                    max: 127,
                })
            }
            FloatOp::Mul => {
                let m = q_in[0].scale as f64 * q_in[1].scale as f64 / q_out.scale as f64;
                let (mult, shift) =
                    multiplier(m).ok_or_else(|| fail(name, "scales out of range".into()))?;
                QuantOp::Mul(Mul {
                    zp: [q_in[0].zero_point, q_in[1].zero_point],
                    mult,
                    shift,
                    zp_out: q_out.zero_point,
                    min: -128,
                    max: 127,
                })
            }
            FloatOp::Concat { .. }
                if n.inputs.len() == 2 && embeds.contains_key(n.inputs[1].as_str()) =>
            {
                let e = &graph.nodes[embeds[n.inputs[1].as_str()]];
                let (
                    FloatOp::Embed {
                        classes,
                        dim,
                        table,
                    },
                    Some(class),
                ) = (&e.op, e.inputs.first())
                else {
                    return Err(fail(name, "malformed embedding".into()));
                };
                let latent = ins[0];
                if !qin.contains(&latent) || !matches!(tensors[latent].shape, Shape::Flat(_)) {
                    return Err(fail(
                        name,
                        "a class embedding must be joined to a latent input".into(),
                    ));
                }
                let class_t = *index
                    .get(class.as_str())
                    .ok_or_else(|| fail(name, format!("reads {class}, not an input")))?;
                // The latent takes the concatenation's quantization: the embedding copies both.
                tensors[latent].quant = q_out;
                quants.insert(
                    graph.inputs[qin.iter().position(|&t| t == latent).unwrap_or(0)]
                        .name
                        .clone(),
                    q_out,
                );
                let op = QuantOp::Embed {
                    classes: *classes,
                    dim: *dim,
                    table: table.iter().map(|&v| q_out.quantize(v)).collect(),
                };
                quants.insert(out_name.clone(), q_out);
                index.insert(out_name.clone(), tensors.len());
                nodes.push(QuantNode {
                    op,
                    inputs: vec![latent, class_t],
                    output: tensors.len(),
                });
                tensors.push(TensorInfo {
                    shape: shape_of(&n.shape),
                    quant: q_out,
                    kind: TensorKind::Int8,
                });
                node_names.push((out_name.clone(), false));
                continue;
            }
            FloatOp::Concat { axis } => {
                if *axis != 0 {
                    return Err(fail(name, format!("concatenation on axis {axis}: only channels (axis 1 with the batch) are supported")));
                }
                let pixels = match input_shape(ins[0]) {
                    Shape::Image { h, w, .. } => h * w,
                    Shape::Flat(_) => 1,
                };
                let parts = ins
                    .iter()
                    .zip(&q_in)
                    .map(|(&t, q)| {
                        let channels = match tensors[t].shape {
                            Shape::Image { c, .. } => c,
                            Shape::Flat(c) => c,
                        };
                        if q == &q_out {
                            return Ok(Part::copy(channels, q.zero_point));
                        }
                        let (mult, shift) = multiplier(q.scale as f64 / q_out.scale as f64)
                            .ok_or_else(|| fail(name, "scales out of range".into()))?;
                        Ok(Part {
                            channels,
                            zp: q.zero_point,
                            shift,
                            mult,
                        })
                    })
                    .collect::<Result<Vec<_>, QuantizeError>>()?;
                QuantOp::Concat {
                    zp_out: q_out.zero_point,
                    pixels,
                    parts,
                }
            }
            FloatOp::Pad { mode, pads } => {
                let Shape::Image { c, h, w } = input_shape(ins[0]) else {
                    return Err(fail(name, "padding takes an image".into()));
                };
                let mode = match mode {
                    crate::import::PadMode::Zero => PadMode::Zero,
                    crate::import::PadMode::Reflect => PadMode::Reflect,
                };
                QuantOp::Pad(Pad {
                    mode,
                    zp: q_in[0].zero_point,
                    c,
                    h,
                    w,
                    pads: *pads,
                })
            }
            FloatOp::InstanceNorm { scale, shift, eps } => {
                let Shape::Image { c, h, w } = input_shape(ins[0]) else {
                    return Err(fail(name, "instance normalisation takes an image".into()));
                };
                let pixels = (h * w) as f64;
                let in_scales = channel_scales.get(&n.inputs[0]);
                let affine = (0..c)
                    .map(|ch| {
                        let (gm, gs) = signed_multiplier(scale[ch] as f64 / q_out.scale as f64)
                            .ok_or_else(|| fail(name, "scale out of range".into()))?;
                        let b16 = (shift[ch] as f64 / q_out.scale as f64 * 65536.0).round();
                        if b16.abs() >= i32::MAX as f64 {
                            return Err(fail(name, "shift out of range".into()));
                        }
                        let s_in = in_scales.map_or(q_in[0].scale, |s| s.scales[ch]) as f64;
                        let e = (pixels * pixels * *eps as f64 / (s_in * s_in))
                            .round()
                            .min((1u64 << 60) as f64);
                        Ok(Affine {
                            gm,
                            gs,
                            b16: b16 as i32,
                            eps: e as u64,
                        })
                    })
                    .collect::<Result<Vec<_>, QuantizeError>>()?;
                QuantOp::InstanceNorm {
                    c,
                    pixels: h * w,
                    zp_out: q_out.zero_point,
                    relu: act == Fused::Relu,
                    affine,
                }
            }
            FloatOp::Reshape { shape } => match (input_shape(ins[0]), &shape[..]) {
                (Shape::Flat(_), [c, h, w]) => QuantOp::Reshape {
                    c: *c,
                    h: *h,
                    w: *w,
                },
                (s, _) => {
                    return Err(fail(
                        name,
                        format!(
                            "reshape of {s:?} to {shape:?}: only a vector to an image is supported"
                        ),
                    ))
                }
            },
            FloatOp::Flatten => match input_shape(ins[0]) {
                Shape::Image { c, h, w } => QuantOp::Flatten { c, h, w },
                Shape::Flat(_) => QuantOp::Lut {
                    table: core::array::from_fn(|i| i as u8),
                },
            },
            FloatOp::Upsample { factor } => match input_shape(ins[0]) {
                Shape::Image { c, h, w } => QuantOp::Upsample {
                    c,
                    h,
                    w,
                    factor: *factor,
                },
                Shape::Flat(_) => return Err(fail(name, "upsampling takes an image".into())),
            },
            // Not joined to a latent (those are skipped above): the row alone, in its own
            // quantization.
            FloatOp::Embed {
                classes,
                dim,
                table,
            } => QuantOp::Embed {
                classes: *classes,
                dim: *dim,
                table: table.iter().map(|&v| q_out.quantize(v)).collect(),
            },
            FloatOp::Slice { start, len } => {
                let (channels, pixels) = match input_shape(ins[0]) {
                    _ if graph.shape_of(&n.inputs[0]).is_some_and(|s| s.len() == 2) => {
                        return Err(fail(name, "a slice of a sequence is not supported".into()))
                    }
                    Shape::Image { c, h, w } => (c, h * w),
                    Shape::Flat(c) => (c, 1),
                };
                QuantOp::Slice(crate::ops::Slice {
                    channels,
                    pixels,
                    start: *start,
                    len: *len,
                })
            }
            // A per-channel affine that nothing before it absorbs (after a Sigmoid, as TimeGAN's
            // scaling back to the data's units): a 1x1 convolution with diagonal weights.
            FloatOp::BatchNorm { scale, shift } => {
                let (c, h, w) = match input_shape(ins[0]) {
                    Shape::Image { c, h, w } => (c, h, w),
                    Shape::Flat(c) => (c, 1, 1),
                };
                if scale.len() != c {
                    return Err(fail(
                        name,
                        format!("{} scales for {c} channels", scale.len()),
                    ));
                }
                let diagonal: Vec<f32> = (0..c * c)
                    .map(|i| if i / c == i % c { scale[i / c] } else { 0.0 })
                    .collect();
                pointwise(
                    k,
                    "BatchNorm",
                    (c, c, h, w),
                    &diagonal,
                    shift,
                    q_in[0],
                    q_out,
                    act,
                )?
            }
        };
        let shape = shape_of(&n.shape);
        let q_out = own_quant.unwrap_or(q_out);
        // Per-channel scales are not one tensor quantization: recorded as scale 0.
        let q_out = if channel_scales.contains_key(&out_name) {
            Quant {
                scale: 0.0,
                zero_point: 0,
            }
        } else {
            q_out
        };
        if q_out.scale > 0.0 {
            quants.insert(out_name.clone(), q_out);
        }
        index.insert(out_name.clone(), tensors.len());
        // A matrix op whose ReLU is fused through a layout op computes ReLU(its float output).
        let through = relu_out.is_some() && direct.get(&k) == Some(&false);
        node_names.push((
            out_name.clone(),
            through || alias.values().any(|v| v == &n.output),
        ));
        nodes.push(QuantNode {
            op,
            inputs: ins,
            output: tensors.len(),
        });
        tensors.push(TensorInfo {
            shape,
            quant: q_out,
            kind: TensorKind::Int8,
        });
    }
    let outputs = graph
        .outputs
        .iter()
        .map(|o| {
            index
                .get(&resolve(o))
                .copied()
                .ok_or_else(|| QuantizeError::Calibration(format!("output {o} is not computed")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata: std::collections::BTreeMap<String, String> =
        graph.metadata.iter().cloned().collect();
    metadata.insert(
        "pocketgan.inputs".into(),
        graph
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    metadata.insert("pocketgan.outputs".into(), graph.outputs.join(","));
    let sequences: Vec<&str> = graph
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.outputs.iter().map(String::as_str))
        .filter(|t| graph.shape_of(t).is_some_and(|s| s.len() == 2))
        .collect();
    if !sequences.is_empty() {
        metadata.insert(crate::engine::runner::SEQUENCES.into(), sequences.join(","));
    }
    let qg = QuantGraph {
        tensors,
        inputs: qin,
        outputs,
        nodes,
        metadata: serde_json::to_string(&metadata).unwrap_or_else(|_| "{}".into()),
    };
    let bytes = encode_graph(&qg)?;
    Ok(Quantized {
        bytes,
        graph: qg,
        node_tensors: node_names,
        quants,
    })
}

/// A quantized graph, its `.pgq` bytes, and for each int8 node the float tensor it computes
/// (with `true` where it computes that tensor's ReLU).
pub struct Quantized {
    pub bytes: Vec<u8>,
    pub graph: QuantGraph,
    pub node_tensors: Vec<(String, bool)>,
    pub quants: HashMap<String, Quant>,
}
