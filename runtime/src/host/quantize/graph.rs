//! Post-training quantization of any float graph ([`FloatGraph`]) to an int8 `.pgq` graph.
//!
//! Every tensor gets a per-tensor asymmetric int8 quantization from its range over calibration
//! inputs, measured by running the float graph itself ([`FloatGraph::run`]); ops that only move
//! values (pad, reshape, flatten, upsample) keep their input's. Weights get per-output-channel
//! symmetric scales. A ReLU whose input feeds nothing else is fused into the matrix op before it
//! (its clamp). Each float op becomes the int8 op of the same meaning: lookups for elementwise
//! functions, fixed-point multipliers for `Add`, `Mul`, `Concat` and instance normalisation.

use super::{quant_for_range, range, Calibration, ChannelQuant, Fused, NodeCx, QuantizeError};
use crate::format::{Quant, Shape, TensorInfo, TensorKind};
use crate::import::{FloatGraph, FloatOp, InputKind};
use crate::ops;
use crate::write::{encode_graph, QuantGraph, QuantNode, QuantOp};
use std::collections::HashMap;

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
            // One class per sample, or a text's `T` token ids.
            InputKind::Class { classes } => TensorInfo {
                shape: Shape::Flat(i.shape.iter().product()),
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
    // token cell's, a text's, or one a cGAN multiplies with its latent) is an `Embed` of its own.
    let joined = |e: &str| {
        graph.nodes.iter().any(|m| {
            matches!(m.op, FloatOp::Concat { .. }) && m.inputs.len() == 2 && m.inputs[1] == e
        })
    };
    let one_class = |n: &crate::import::Node| {
        n.inputs
            .first()
            .and_then(|i| graph.shape_of(i))
            .is_some_and(|s| s.iter().product::<usize>() == 1)
    };
    let embeds: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, FloatOp::Embed { .. }) && one_class(n) && joined(&n.output))
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
        let q_out = match &n.op {
            _ if keeps => q_in[0],
            // A text's embedding covers its whole table: a prompt may hold any word, not only
            // those calibration drew.
            FloatOp::Embed { table, .. } if !one_class(n) => {
                let (lo, hi) = range(&mut table.clone(), Calibration::MinMax);
                quant_for_range(lo, hi)
            }
            _ => measured(relu_out.as_deref().unwrap_or(&out_name))?,
        };
        let act = if fused.contains_key(&k) {
            Fused::Relu
        } else {
            Fused::None
        };
        let cx = NodeCx {
            index: k,
            name,
            inputs: ins.iter().map(|&t| tensors[t]).collect(),
            output: q_out,
            act,
        };
        // A per-channel output quantization (a convolution read by an instance normalisation),
        // and the measured per-channel ranges an instance normalisation reads.
        let per_channel = channel_scales.get(&n.output);
        let input_channels = n.inputs.first().and_then(|i| channel_scales.get(i));
        let sequence_input = n
            .inputs
            .first()
            .and_then(|i| graph.shape_of(i))
            .is_some_and(|s| s.len() == 2);
        // An op that chooses its output's quantization itself (the GRU's is symmetric).
        let mut own_quant = None;
        // Each float op becomes the int8 op of the same meaning, quantized in that op's file.
        let op = match &n.op {
            FloatOp::Linear {
                k: kk,
                n: nn,
                weights,
                bias,
            } => ops::linear::quantize(&cx, *kk, *nn, weights, bias)?,
            FloatOp::Gru {
                input,
                hidden,
                w,
                r,
                b,
            } => {
                let (op, q) =
                    ops::gru::quantize(&cx, *input, *hidden, w, r, b, values.get(&n.output))?;
                own_quant = Some(q);
                op
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
            } => ops::conv::quantize(
                &cx,
                (*cin, *cout, *kh, *kw),
                *stride,
                *pad,
                weights,
                bias,
                per_channel,
            )?,
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
            } => ops::conv_transpose::quantize(
                &cx,
                (*cin, *cout, *kh, *kw),
                (*stride, *pad, *out_pad),
                weights,
                bias,
                per_channel,
            )?,
            FloatOp::Relu | FloatOp::LeakyRelu { .. } | FloatOp::Tanh | FloatOp::Sigmoid => {
                ops::lut::quantize(&cx, |x| n.op.activate(x).unwrap_or(x))
            }
            FloatOp::Add => ops::add::quantize(&cx)?,
            FloatOp::Mul => ops::mul::quantize(&cx)?,
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
            FloatOp::Concat { axis } => ops::concat::quantize(&cx, *axis)?,
            FloatOp::Pad { mode, pads } => ops::pad::quantize(&cx, *mode, *pads)?,
            FloatOp::InstanceNorm { scale, shift, eps } => {
                ops::instance_norm::quantize(&cx, scale, shift, *eps, input_channels)?
            }
            FloatOp::Reshape { shape } => ops::reshape::quantize(&cx, shape)?,
            FloatOp::Flatten => ops::flatten::quantize(&cx),
            FloatOp::Upsample { factor } => ops::upsample::quantize(&cx, *factor)?,
            // Not joined to a latent (those are skipped above): the row alone.
            FloatOp::Embed {
                classes,
                dim,
                table,
            } => ops::embed::quantize(&cx, *classes, *dim, table),
            FloatOp::Slice { start, len } => {
                ops::slice::quantize(&cx, *start, *len, sequence_input)?
            }
            FloatOp::PixelNorm { eps } => ops::pixel_norm::quantize(&cx, *eps)?,
            // A per-channel affine that nothing before it absorbs (after a Sigmoid, as TimeGAN's
            // scaling back to the data's units): a 1x1 convolution with diagonal weights.
            FloatOp::BatchNorm { scale, shift } => {
                let (c, h, w) = match cx.input_shape() {
                    Shape::Image { c, h, w } => (c, h, w),
                    Shape::Flat(c) => (c, 1, 1),
                };
                if scale.len() != c {
                    return Err(cx.fail(format!("{} scales for {c} channels", scale.len())));
                }
                let diagonal: Vec<f32> = (0..c * c)
                    .map(|i| if i / c == i % c { scale[i / c] } else { 0.0 })
                    .collect();
                ops::conv::pointwise(&cx, "BatchNorm", (c, c, h, w), &diagonal, shift)?
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
