//! Encoding a quantized model as `.pgq` bytes (the inverse of [`crate::format::Model::parse`]).

use crate::format::{
    ConvGeometry, FormatError, Model, Quant, Shape, TensorInfo, TensorKind, HEADER_LEN, MAGIC,
    TENSOR_LEN, VERSION,
};
use crate::kernels::{pack, packed_len, MAX_BIAS};

/// Per-output-channel requantization parameters (see [`crate::kernels::Requant`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RequantParams {
    /// Quantized bias `round(b / (s_in * s_w))`; the encoder folds in `-zp_in * column_sum`.
    pub bias: Vec<i32>,
    pub mult: Vec<i32>,
    pub shift: Vec<u8>,
    pub zp_out: i8,
    pub min: i8,
    pub max: i8,
}

/// One quantized op, with weights in their natural (ONNX-like) layouts.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantOp {
    /// `weights[k][n]`, row-major.
    Linear {
        k: usize,
        n: usize,
        zp_in: i8,
        requant: RequantParams,
        weights: Vec<i8>,
    },
    /// `weights[cout][cin][kh][kw]` (ONNX Conv).
    Conv2d {
        geometry: ConvGeometry,
        zp_in: i8,
        requant: RequantParams,
        weights: Vec<i8>,
    },
    /// `weights[cin][cout][kh][kw]` (ONNX ConvTranspose).
    ConvTranspose2d {
        geometry: ConvGeometry,
        zp_in: i8,
        requant: RequantParams,
        weights: Vec<i8>,
    },
    Lut {
        table: [u8; 256],
    },
    Reshape {
        c: usize,
        h: usize,
        w: usize,
    },
    Flatten {
        c: usize,
        h: usize,
        w: usize,
    },
    Upsample {
        c: usize,
        h: usize,
        w: usize,
        factor: usize,
    },
    /// A class embedding, `table[classes][dim]` row-major, quantized like the model's input
    /// (first op only; the header's class count comes from it).
    Embed {
        classes: usize,
        dim: usize,
        table: Vec<i8>,
    },
    Add(crate::ops::Add),
    Mul(crate::ops::Mul),
    Concat {
        zp_out: i8,
        pixels: usize,
        parts: Vec<crate::ops::concat::Part>,
    },
    Pad(crate::ops::Pad),
    InstanceNorm {
        c: usize,
        pixels: usize,
        zp_out: i8,
        /// A fused ReLU (clamps at `zp_out`).
        relu: bool,
        affine: Vec<crate::ops::instance_norm::Affine>,
    },
    Gru(crate::ops::gru::GruParams),
    Slice(crate::ops::Slice),
    PixelNorm(crate::ops::PixelNorm),
}

/// A node of a quantized graph: its op and the tensors it reads and writes (indices into
/// [`QuantGraph::tensors`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantNode {
    pub op: QuantOp,
    pub inputs: Vec<usize>,
    pub output: usize,
}

/// Everything a `.pgq` file holds: tensors, the graph's inputs and outputs, nodes in
/// topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantGraph {
    pub tensors: Vec<TensorInfo>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub nodes: Vec<QuantNode>,
    /// UTF-8 JSON object (provenance: dataset, class names, source file...).
    pub metadata: String,
}

/// A latent generator as a chain of ops: the latent (and, if the first op is an [`QuantOp::Embed`],
/// a class index) in, one tensor out. Converted to a [`QuantGraph`] by [`QuantModel::to_graph`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantModel {
    pub latent: usize,
    pub output: (usize, usize, usize),
    pub input_quant: Quant,
    pub output_quant: Quant,
    /// UTF-8 JSON object (provenance: dataset, class names, source file...).
    pub metadata: String,
    pub ops: Vec<QuantOp>,
    /// The quantization of each op's output (the last is `output_quant`). Empty in tests that
    /// compare integers only: intermediate tensors then record the zero points their readers
    /// expect and scale 0 (not recorded).
    pub quants: Vec<Quant>,
}

impl QuantOp {
    /// Shape of one sample of the output, given the input's.
    fn out_shape(&self, input: Shape) -> Shape {
        match self {
            QuantOp::Linear { n, .. } => Shape::Flat(*n),
            QuantOp::Conv2d { geometry: g, .. } => {
                let (h, w) = g.conv_out();
                Shape::Image { c: g.cout, h, w }
            }
            QuantOp::ConvTranspose2d { geometry: g, .. } => {
                let (h, w) = g.transpose_out();
                Shape::Image { c: g.cout, h, w }
            }
            QuantOp::Lut { .. } => input,
            QuantOp::Reshape { c, h, w } => Shape::Image {
                c: *c,
                h: *h,
                w: *w,
            },
            QuantOp::Flatten { c, h, w } => Shape::Flat(c * h * w),
            QuantOp::Upsample { c, h, w, factor } => Shape::Image {
                c: *c,
                h: h * factor,
                w: w * factor,
            },
            QuantOp::Embed { dim, .. } => Shape::Flat(input.elements() + dim),
            QuantOp::Pad(p) => Shape::Image {
                c: p.c,
                h: p.h + p.pads[0] + p.pads[2],
                w: p.w + p.pads[1] + p.pads[3],
            },
            // The rest keep the first input's shape, or join several (graphs only).
            QuantOp::Add(_)
            | QuantOp::Mul(_)
            | QuantOp::InstanceNorm { .. }
            | QuantOp::PixelNorm(_) => input,
            QuantOp::Gru(g) => Shape::Image {
                c: g.hidden,
                h: g.steps,
                w: 1,
            },
            QuantOp::Slice(op) => match input {
                Shape::Image { h, w, .. } => Shape::Image { c: op.len, h, w },
                Shape::Flat(_) => Shape::Flat(op.len),
            },
            QuantOp::Concat { parts, .. } => match input {
                Shape::Image { h, w, .. } => Shape::Image {
                    c: parts.iter().map(|p| p.channels).sum(),
                    h,
                    w,
                },
                Shape::Flat(_) => Shape::Flat(parts.iter().map(|p| p.channels).sum()),
            },
        }
    }
}

impl QuantModel {
    /// The chain as a graph: tensor 0 is the latent, then (conditional) the class index, then
    /// each op's output in order.
    pub fn to_graph(&self) -> QuantGraph {
        let int8 = |shape, quant| TensorInfo {
            shape,
            quant,
            kind: TensorKind::Int8,
        };
        let mut tensors = vec![int8(Shape::Flat(self.latent), self.input_quant)];
        let mut inputs = vec![0];
        if let Some(QuantOp::Embed { classes, .. }) = self.ops.first() {
            tensors.push(TensorInfo {
                shape: Shape::Flat(1),
                quant: Quant::UNIT,
                kind: TensorKind::Index { classes: *classes },
            });
            inputs.push(1);
        }
        let mut nodes = Vec::new();
        let (mut x, mut shape) = (0, Shape::Flat(self.latent));
        for (i, op) in self.ops.iter().enumerate() {
            shape = op.out_shape(shape);
            let quant = if i + 1 == self.ops.len() {
                self.output_quant
            } else {
                self.quants.get(i).copied().unwrap_or(Quant {
                    scale: 0.0,
                    zero_point: 0,
                })
            };
            let node_inputs = match op {
                QuantOp::Embed { .. } => vec![x, 1],
                _ => vec![x],
            };
            tensors.push(int8(shape, quant));
            x = tensors.len() - 1;
            nodes.push(QuantNode {
                op: op.clone(),
                inputs: node_inputs,
                output: x,
            });
        }
        if self.quants.is_empty() {
            // Zero points the ops read, carried back through the ops that keep their input's
            // quantization, so that integer-only test models still agree with their tensors.
            for node in nodes.iter().rev() {
                let zp = match &node.op {
                    QuantOp::Linear { zp_in, .. }
                    | QuantOp::Conv2d { zp_in, .. }
                    | QuantOp::ConvTranspose2d { zp_in, .. } => Some(*zp_in),
                    QuantOp::Reshape { .. }
                    | QuantOp::Flatten { .. }
                    | QuantOp::Upsample { .. }
                    | QuantOp::Embed { .. } => Some(tensors[node.output].quant.zero_point),
                    _ => None,
                };
                if let Some(zp) = zp {
                    tensors[node.inputs[0]].quant.zero_point = zp;
                }
            }
        }
        let (c, h, w) = self.output;
        if let Some(last) = tensors.last_mut() {
            if (Shape::Image { c, h, w }).same_layout(last.shape) {
                last.shape = Shape::Image { c, h, w };
            }
        }
        QuantGraph {
            tensors,
            inputs,
            outputs: vec![x],
            nodes,
            metadata: self.metadata.clone(),
        }
    }
}

/// Appends `v` as a little-endian integer of `width` bytes, or says which field does not fit.
pub(crate) fn put_uint(
    out: &mut Vec<u8>,
    v: usize,
    width: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if width < 8 && (v as u64) >> (8 * width) != 0 {
        return Err(EncodeError::Range { what, value: v });
    }
    out.extend_from_slice(&(v as u64).to_le_bytes()[..width]);
    Ok(())
}

/// Writes biases folded with the zero-point correction of each packed matrix (`columns[m][n]` is
/// matrix m's column sum), then multipliers and shifts.
pub(crate) fn put_requant(
    out: &mut Vec<u8>,
    rq: &RequantParams,
    zp_in: i8,
    column_sums: &[Vec<i64>],
) -> Result<(), EncodeError> {
    for sums in column_sums {
        for (n, (b, sum)) in rq.bias.iter().zip(sums).enumerate() {
            let folded = *b as i64 - zp_in as i64 * sum;
            if folded.abs() > MAX_BIAS as i64 {
                return Err(EncodeError::BiasRange {
                    channel: n,
                    value: folded,
                });
            }
            out.extend_from_slice(&(folded as i32).to_le_bytes());
        }
    }
    rq.mult
        .iter()
        .for_each(|m| out.extend_from_slice(&m.to_le_bytes()));
    out.extend_from_slice(&rq.shift);
    pad4(out);
    Ok(())
}

/// Column sums of a `[k x n]` matrix given by `w(k, n)`.
pub(crate) fn column_sums(k: usize, n: usize, w: &impl Fn(usize, usize) -> i8) -> Vec<i64> {
    (0..n)
        .map(|nn| (0..k).map(|kk| w(kk, nn) as i64).sum())
        .collect()
}

pub(crate) fn put_packed(out: &mut Vec<u8>, k: usize, n: usize, w: impl Fn(usize, usize) -> i8) {
    let mut packed = vec![0i8; packed_len(k, n)];
    pack(k, n, w, &mut packed);
    out.extend(packed.iter().map(|&v| v as u8));
}

pub(crate) fn put_geometry(
    out: &mut Vec<u8>,
    g: &ConvGeometry,
    zp_in: i8,
    rq: &RequantParams,
) -> Result<(), EncodeError> {
    // Requantization follows, written by the caller with the matrices' column sums.
    for d in [g.cin, g.cout, g.h, g.w] {
        put_uint(out, d, 2, "convolution dimension")?;
    }
    for d in [g.kh, g.kw, g.stride, g.pad, g.out_pad] {
        put_uint(out, d, 1, "kernel size, stride or padding")?;
    }
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&[zp_in as u8, rq.zp_out as u8, rq.min as u8, rq.max as u8]);
    Ok(())
}

pub(crate) fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn encode_op(op: &QuantOp) -> Result<(u8, Vec<u8>), EncodeError> {
    use crate::ops::*;
    Ok(match op {
        QuantOp::Linear {
            k,
            n,
            zp_in,
            requant,
            weights,
        } => (
            tag::Linear,
            linear::encode(*k, *n, *zp_in, requant, weights)?,
        ),
        QuantOp::Conv2d {
            geometry,
            zp_in,
            requant,
            weights,
        } => (
            tag::Conv2d,
            conv::encode(geometry, *zp_in, requant, weights)?,
        ),
        QuantOp::ConvTranspose2d {
            geometry,
            zp_in,
            requant,
            weights,
        } => (
            tag::ConvTranspose2d,
            conv_transpose::encode(geometry, *zp_in, requant, weights)?,
        ),
        QuantOp::Lut { table } => (tag::Lut, table.to_vec()),
        QuantOp::Reshape { c, h, w } => (tag::Reshape, reshape::encode_dims(*c, *h, *w, 0)?),
        QuantOp::Flatten { c, h, w } => (tag::Flatten, reshape::encode_dims(*c, *h, *w, 0)?),
        QuantOp::Upsample { c, h, w, factor } => {
            (tag::Upsample, reshape::encode_dims(*c, *h, *w, *factor)?)
        }
        QuantOp::Embed {
            classes,
            dim,
            table,
        } => (tag::Embed, embed::encode(*classes, *dim, table)?),
        QuantOp::Add(op) => (tag::Add, op.encode()),
        QuantOp::Mul(op) => (tag::Mul, op.encode()),
        QuantOp::Concat {
            zp_out,
            pixels,
            parts,
        } => (tag::Concat, Concat::encode(*zp_out, *pixels, parts)),
        QuantOp::Pad(op) => (tag::Pad, op.encode()),
        QuantOp::InstanceNorm {
            c,
            pixels,
            zp_out,
            relu,
            affine,
        } => (
            tag::InstanceNorm,
            InstanceNorm::encode(*c, *pixels, *zp_out, *relu, affine),
        ),
        QuantOp::Gru(g) => (tag::Gru, g.encode()),
        QuantOp::Slice(op) => (tag::Slice, op.encode()?),
        QuantOp::PixelNorm(op) => (tag::PixelNorm, op.encode()?),
    })
}

/// Why a quantized model cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("channel {channel}: folded bias {value} exceeds the format's range; the layer's scales are too small")]
    BiasRange { channel: usize, value: i64 },
    #[error("the encoded model does not validate: {0}")]
    Invalid(#[from] FormatError),
    #[error("{what} {value} does not fit the format")]
    Range { what: &'static str, value: usize },
}

/// Serializes a chain model (see [`QuantModel::to_graph`]) and checks that the bytes parse back.
pub fn encode(model: &QuantModel) -> Result<Vec<u8>, EncodeError> {
    encode_graph(&model.to_graph())
}

fn put_u16s(out: &mut Vec<u8>, values: &[usize], what: &'static str) -> Result<(), EncodeError> {
    for &v in values {
        put_uint(out, v, 2, what)?;
    }
    pad4(out);
    Ok(())
}

/// Serializes `graph` and checks that the bytes parse back.
pub fn encode_graph(graph: &QuantGraph) -> Result<Vec<u8>, EncodeError> {
    let bodies = graph
        .nodes
        .iter()
        .map(|n| encode_op(&n.op))
        .collect::<Result<Vec<_>, _>>()?;
    let nodes: Vec<RawNode> = graph
        .nodes
        .iter()
        .zip(&bodies)
        .map(|(n, (tag, body))| RawNode {
            tag: *tag,
            inputs: &n.inputs,
            output: n.output,
            body,
        })
        .collect();
    encode_raw(
        &graph.tensors,
        &graph.inputs,
        &graph.outputs,
        &nodes,
        &graph.metadata,
    )
}

/// A node with its op already encoded.
pub(crate) struct RawNode<'b> {
    pub tag: u8,
    pub inputs: &'b [usize],
    pub output: usize,
    pub body: &'b [u8],
}

/// Writes the container around encoded op bodies and checks that the bytes parse back.
pub(crate) fn encode_raw(
    tensors: &[TensorInfo],
    inputs: &[usize],
    outputs: &[usize],
    nodes: &[RawNode],
    metadata: &str,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // length and checksum, filled in below
    put_uint(&mut out, tensors.len(), 2, "tensor count")?;
    put_uint(&mut out, nodes.len(), 2, "node count")?;
    put_uint(&mut out, inputs.len(), 2, "input count")?;
    put_uint(&mut out, outputs.len(), 2, "output count")?;
    put_uint(&mut out, metadata.len(), 4, "metadata length")?;
    out.extend_from_slice(&[0; 4]);
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(metadata.as_bytes());
    pad4(&mut out);
    for t in tensors {
        let start = out.len();
        let (c, h, w, kind) = match (t.kind, t.shape) {
            (TensorKind::Int8, Shape::Flat(n)) => (n, 1, 1, 0),
            (TensorKind::Int8, Shape::Image { c, h, w }) => (c, h, w, 1),
            // Slots (indices per sample) in `h`: 1 for a class, as every file before texts.
            (TensorKind::Index { classes }, shape) => (classes, shape.elements(), 1, 2),
        };
        put_uint(&mut out, c, 4, "tensor size")?;
        for d in [h, w] {
            put_uint(&mut out, d, 2, "tensor dimension")?;
        }
        out.extend_from_slice(&[kind, t.quant.zero_point as u8, 0, 0]);
        out.extend_from_slice(&t.quant.scale.to_le_bytes());
        debug_assert_eq!(out.len() - start, TENSOR_LEN);
    }
    put_u16s(&mut out, inputs, "input tensor index")?;
    put_u16s(&mut out, outputs, "output tensor index")?;
    for node in nodes {
        out.push(node.tag);
        put_uint(&mut out, node.inputs.len(), 1, "node input count")?;
        out.extend_from_slice(&[1, 0]);
        put_uint(&mut out, node.body.len(), 4, "op length")?;
        let mut ios = node.inputs.to_vec();
        ios.push(node.output);
        put_u16s(&mut out, &ios, "node tensor index")?;
        out.extend_from_slice(node.body);
    }
    let mut len = Vec::new();
    put_uint(&mut len, out.len(), 4, "file length")?;
    out[8..12].copy_from_slice(&len);
    let crc = crate::format::crc32(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Model::parse(&out)?;
    Ok(out)
}
