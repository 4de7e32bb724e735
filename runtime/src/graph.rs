//! The float generator graph read from ONNX, simplified for quantization.
//!
//! Import keeps only a chain of the operators a generator needs; anything else is reported by
//! name. Simplification then folds BatchNorm into the preceding Linear/Conv/ConvTranspose (also
//! through a Reshape), drops Identity/Dropout, moves elementwise activations ahead of reshapes
//! and fuses ReLU into the layer before it.
//!
//! A class-conditional generator has a second input, `class` (int64 `[N]`), used exactly as
//! PyTorch exports `torch.cat([z, nn.Embedding(K, E)(class)], 1)`: `Gather(table [K, E], class,
//! axis=0)` then `Concat(z, gathered, axis=1)`. That pair becomes one [`FloatOp::Embed`] layer.

use crate::format::{ConvGeometry, Shape};
use std::collections::HashMap;
use tract_onnx::pb;

/// Why an ONNX file cannot become a generator graph.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read ONNX protobuf: {0}")]
    Protobuf(String),
    #[error("ONNX model has no graph")]
    NoGraph,
    #[error("unsupported operators: {}", .0.join(", "))]
    Unsupported(Vec<String>),
    #[error("node {node} ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("the model must have an input [N, latent] (float) and, if conditional, an input [N] (int64 classes); {0}")]
    Input(String),
    #[error("the graph is not a single chain from input to output: {0}")]
    NotAChain(String),
    /// From the tract-based importer ([`crate::import`]), which reads the file first.
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
}

/// Activation fused into a matrix layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fused {
    None,
    Relu,
}

/// A float layer.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatOp {
    /// `weights[k][n]`.
    Linear {
        k: usize,
        n: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
        act: Fused,
    },
    /// `weights[cout][cin][kh][kw]`.
    Conv2d {
        geometry: ConvGeometry,
        weights: Vec<f32>,
        bias: Vec<f32>,
        act: Fused,
    },
    /// `weights[cin][cout][kh][kw]`.
    ConvTranspose2d {
        geometry: ConvGeometry,
        weights: Vec<f32>,
        bias: Vec<f32>,
        act: Fused,
    },
    /// `y = x * scale[c] + shift[c]` (folded away by [`Graph::simplify`] when possible).
    BatchNorm {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    Sigmoid,
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
    /// `[z, table[class]]`: the latent followed by the class's row of `table[classes][dim]`.
    Embed {
        classes: usize,
        dim: usize,
        table: Vec<f32>,
    },
}

impl FloatOp {
    pub fn name(&self) -> &'static str {
        match self {
            FloatOp::Linear { .. } => "Linear",
            FloatOp::Conv2d { .. } => "Conv2d",
            FloatOp::ConvTranspose2d { .. } => "ConvTranspose2d",
            FloatOp::BatchNorm { .. } => "BatchNorm",
            FloatOp::Relu => "Relu",
            FloatOp::LeakyRelu { .. } => "LeakyRelu",
            FloatOp::Tanh => "Tanh",
            FloatOp::Sigmoid => "Sigmoid",
            FloatOp::Reshape { .. } => "Reshape",
            FloatOp::Flatten { .. } => "Flatten",
            FloatOp::Upsample { .. } => "Upsample",
            FloatOp::Embed { .. } => "Embed",
        }
    }

    /// Applies an elementwise activation.
    pub fn activate(&self, x: f32) -> Option<f32> {
        Some(match self {
            FloatOp::Relu => x.max(0.0),
            FloatOp::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            FloatOp::Tanh => x.tanh(),
            FloatOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            _ => return None,
        })
    }

    fn is_elementwise(&self) -> bool {
        self.activate(0.0).is_some()
    }
}

/// A layer and the ONNX tensor that holds its output (for calibration with tract).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub op: FloatOp,
    pub tensor: String,
    pub output: Shape,
}

/// A generator as a chain of float layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub input: String,
    pub latent: usize,
    /// 2 for `[N, latent]`, 4 for `[N, latent, 1, 1]` (pytorch/examples' DCGAN).
    pub input_rank: usize,
    /// The int64 class input of a conditional generator (its first layer is then an `Embed`).
    pub class_input: Option<String>,
    /// Class count of a conditional generator, 0 for an unconditional one.
    pub classes: usize,
    pub layers: Vec<Layer>,
    pub metadata: Vec<(String, String)>,
}

/// A constant tensor from an initializer or a Constant node.
#[derive(Debug, Clone)]
struct Constant {
    dims: Vec<usize>,
    floats: Vec<f32>,
    ints: Vec<i64>,
}

/// A float tensor's values, from `float_data` or little-endian `raw_data`.
pub(crate) fn float_values(t: &pb::TensorProto) -> Vec<f32> {
    if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn constant(t: &pb::TensorProto) -> Result<Constant, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dim in {}", t.name)))
        .collect::<Result<_, _>>()?;
    let count: usize = dims.iter().product();
    if !t.external_data.is_empty() {
        return Err(format!(
            "tensor {} uses external data, which is not supported",
            t.name
        ));
    }
    let (mut floats, mut ints) = (Vec::new(), Vec::new());
    match t.data_type {
        1 => {
            floats = float_values(t);
        }
        7 => {
            ints = if t.raw_data.is_empty() {
                t.int64_data.clone()
            } else {
                t.raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect()
            }
        }
        6 => {
            ints = if t.raw_data.is_empty() {
                t.int32_data.iter().map(|&v| v as i64).collect()
            } else {
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect()
            }
        }
        other => {
            return Err(format!(
                "tensor {} has unsupported data type {other}",
                t.name
            ))
        }
    }
    if floats.len() + ints.len() != count {
        return Err(format!(
            "tensor {} holds {} values for shape {dims:?}",
            t.name,
            floats.len() + ints.len()
        ));
    }
    if floats.iter().any(|v| !v.is_finite()) {
        return Err(format!("tensor {} holds NaN or infinite values", t.name));
    }
    Ok(Constant { dims, floats, ints })
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints(node: &pb::NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map_or(Vec::new(), |a| a.ints.clone())
}

impl Graph {
    /// Reads an ONNX file's bytes through the tract-based importer ([`crate::import`]), which
    /// folds what PyTorch's exporter writes around the layers (shape arithmetic for
    /// `x.view(-1, ...)`, Identity and Constant chains, Dropout), then takes its graph as a
    /// chain ([`crate::import::FloatGraph::to_chain`]).
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Graph, ImportError> {
        crate::import::import_onnx(bytes)?.to_chain()
    }

    /// Builds the graph from a decoded ONNX model by reading the protobuf directly (the reader
    /// before [`crate::import`]: it takes only plain chains, without PyTorch's shape arithmetic
    /// or Identity nodes; kept until the graph runtime replaces the chain).
    pub fn from_proto(proto: &pb::ModelProto) -> Result<Graph, ImportError> {
        let graph = proto.graph.as_ref().ok_or(ImportError::NoGraph)?;
        let mut consts: HashMap<String, Constant> = HashMap::new();
        for t in &graph.initializer {
            let c = constant(t).map_err(|reason| ImportError::Node {
                node: t.name.clone(),
                op: "initializer".into(),
                reason,
            })?;
            consts.insert(t.name.clone(), c);
        }
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !consts.contains_key(&i.name))
            .collect();
        let (input, class_input) = match inputs.as_slice() {
            [input] => (*input, None),
            [a, b] if is_class_input(b) => (*a, Some(b.name.clone())),
            [a, b] if is_class_input(a) => (*b, Some(a.name.clone())),
            _ => {
                return Err(ImportError::Input(format!(
                    "found {} inputs: {}",
                    inputs.len(),
                    inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let (latent, input_rank) = latent_size(input)?;
        // Report every unsupported operator at once.
        let supported = [
            "Gemm",
            "MatMul",
            "Add",
            "Reshape",
            "Flatten",
            "BatchNormalization",
            "Relu",
            "LeakyRelu",
            "Tanh",
            "Sigmoid",
            "ConvTranspose",
            "Conv",
            "Upsample",
            "Resize",
            "Constant",
            "Identity",
            "Dropout",
        ];
        // Gather and Concat only as a conditional generator's class embedding.
        let conditional = ["Gather", "Concat"];
        let mut unsupported: Vec<String> = graph
            .node
            .iter()
            .filter(|n| {
                let op = n.op_type.as_str();
                !(supported.contains(&op) || class_input.is_some() && conditional.contains(&op))
            })
            .map(|n| n.op_type.clone())
            .collect();
        unsupported.dedup();
        if !unsupported.is_empty() {
            unsupported.sort();
            unsupported.dedup();
            return Err(ImportError::Unsupported(unsupported));
        }

        let mut g = Graph {
            input: input.name.clone(),
            latent,
            input_rank,
            class_input: class_input.clone(),
            classes: 0,
            layers: Vec::new(),
            metadata: proto
                .metadata_props
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
        };
        let mut current = input.name.clone();
        // The pending class-embedding lookup: (output, classes, size, table).
        let mut gathered: Option<(String, usize, usize, Vec<f32>)> = None;
        let mut shape = if input_rank == 4 {
            Shape::Image {
                c: latent,
                h: 1,
                w: 1,
            }
        } else {
            Shape::Flat(latent)
        };
        for node in &graph.node {
            let fail = |reason: String| ImportError::Node {
                node: node.name.clone(),
                op: node.op_type.clone(),
                reason,
            };
            if node.op_type == "Constant" {
                let t = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| fail("Constant without a tensor value".into()))?;
                let out = node
                    .output
                    .first()
                    .ok_or_else(|| fail("no output".into()))?;
                consts.insert(out.clone(), constant(t).map_err(fail)?);
                continue;
            }
            if node.op_type == "Gather" {
                // Import admits Gather only when there is a class input.
                let class = class_input.as_deref().unwrap_or_default();
                if node.input.len() != 2
                    || node.input[1] != class
                    || attr_i(node, "axis", 0) != 0
                    || gathered.is_some()
                    || g.classes > 0
                {
                    return Err(fail(format!(
                        "Gather is supported only once, as the class embedding Gather(table, {class}, axis=0)"
                    )));
                }
                let table = consts
                    .get(&node.input[0])
                    .ok_or_else(|| fail("the embedding table must be a constant".into()))?;
                let [classes, dim] = table.dims[..] else {
                    return Err(fail(format!(
                        "the embedding table has shape {:?}, not [classes, size]",
                        table.dims
                    )));
                };
                if classes == 0 || dim == 0 || table.floats.len() != classes * dim {
                    return Err(fail(
                        "the embedding table must be a non-empty float tensor".into(),
                    ));
                }
                let out = node
                    .output
                    .first()
                    .ok_or_else(|| fail("no output".into()))?;
                gathered = Some((out.clone(), classes, dim, table.floats.clone()));
                continue;
            }
            if node.op_type == "Concat" {
                let axis = attr_i(node, "axis", 0);
                let Some((embedding, classes, dim, table)) = gathered.take() else {
                    return Err(fail(
                        "Concat is supported only to join the latent and the class embedding"
                            .into(),
                    ));
                };
                if node.input != [input.name.clone(), embedding.clone()]
                    || current != input.name
                    || input_rank != 2
                    || !(axis == 1 || axis == -1)
                {
                    return Err(fail(format!(
                        "expected Concat({}, {embedding}, axis=1) on a [N, latent] input, before any layer",
                        input.name
                    )));
                }
                let out = node
                    .output
                    .first()
                    .ok_or_else(|| fail("no output".into()))?;
                shape = Shape::Flat(latent + dim);
                g.classes = classes;
                g.layers.push(Layer {
                    op: FloatOp::Embed {
                        classes,
                        dim,
                        table,
                    },
                    tensor: out.clone(),
                    output: shape,
                });
                current = out.clone();
                continue;
            }
            let data = node.input.first().ok_or_else(|| fail("no input".into()))?;
            if *data != current {
                return Err(ImportError::NotAChain(format!(
                    "node {} ({}) reads {data}, expected the previous output {current}",
                    node.name, node.op_type
                )));
            }
            let get = |i: usize| -> Result<&Constant, ImportError> {
                let name = node
                    .input
                    .get(i)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| fail(format!("missing input {i}")))?;
                consts
                    .get(name)
                    .ok_or_else(|| fail(format!("input {name} must be a constant")))
            };
            let out_name = node
                .output
                .first()
                .ok_or_else(|| fail("no output".into()))?
                .clone();
            let op = match node.op_type.as_str() {
                "Identity" | "Dropout" => None,
                "Gemm" | "MatMul" => {
                    let Shape::Flat(k) = shape else {
                        return Err(fail("expects a [N, features] input".into()));
                    };
                    let b = get(1)?;
                    let trans_b = node.op_type == "Gemm" && attr_i(node, "transB", 0) != 0;
                    if node.op_type == "Gemm" && attr_i(node, "transA", 0) != 0 {
                        return Err(fail("transA is not supported".into()));
                    }
                    let (rows, cols) = match b.dims.as_slice() {
                        [r, c] => (*r, *c),
                        _ => return Err(fail(format!("weight shape {:?} is not 2-D", b.dims))),
                    };
                    let (bk, n) = if trans_b { (cols, rows) } else { (rows, cols) };
                    if bk != k {
                        return Err(fail(format!("weight has {bk} inputs, the layer gets {k}")));
                    }
                    if b.floats.len() != k * n {
                        return Err(fail("weight is not a float tensor".into()));
                    }
                    let alpha = attr_f(node, "alpha", 1.0);
                    let weights: Vec<f32> = (0..k * n)
                        .map(|i| {
                            let (kk, nn) = (i / n, i % n);
                            alpha
                                * if trans_b {
                                    b.floats[nn * k + kk]
                                } else {
                                    b.floats[kk * n + nn]
                                }
                        })
                        .collect();
                    let mut bias = vec![0.0; n];
                    if node.op_type == "Gemm" && node.input.len() > 2 && !node.input[2].is_empty() {
                        let c = get(2)?;
                        let beta = attr_f(node, "beta", 1.0);
                        match c.floats.len() {
                            1 => bias.iter_mut().for_each(|v| *v = beta * c.floats[0]),
                            len if len == n => bias
                                .iter_mut()
                                .zip(&c.floats)
                                .for_each(|(v, c)| *v = beta * c),
                            _ => {
                                return Err(fail(format!(
                                    "bias shape {:?} does not broadcast to [{n}]",
                                    c.dims
                                )))
                            }
                        }
                    }
                    shape = Shape::Flat(n);
                    Some(FloatOp::Linear {
                        k,
                        n,
                        weights,
                        bias,
                        act: Fused::None,
                    })
                }
                "Add" => {
                    // A bias after MatMul or Conv: fold it into the previous layer.
                    let c = get(1)?;
                    let channels = match shape {
                        Shape::Flat(n) => n,
                        Shape::Image { c, .. } => c,
                    };
                    let last = g.layers.last_mut().map(|l| &mut l.op);
                    let bias = match last {
                        Some(FloatOp::Linear { bias, .. })
                        | Some(FloatOp::Conv2d { bias, .. })
                        | Some(FloatOp::ConvTranspose2d { bias, .. }) => bias,
                        _ => {
                            return Err(fail(
                                "Add is supported only as the bias of a Gemm/MatMul/Conv".into(),
                            ))
                        }
                    };
                    if c.floats.len() != channels {
                        return Err(fail(format!(
                            "addend of shape {:?} is not a per-channel bias",
                            c.dims
                        )));
                    }
                    bias.iter_mut().zip(&c.floats).for_each(|(b, c)| *b += c);
                    let last = g.layers.last_mut().expect("checked above");
                    last.tensor = out_name.clone();
                    current = out_name;
                    continue;
                }
                "Reshape" | "Flatten" => {
                    let total = shape.elements();
                    let target: Vec<i64> = if node.op_type == "Flatten" {
                        if attr_i(node, "axis", 1) != 1 {
                            return Err(fail("only axis 1 is supported".into()));
                        }
                        vec![-1, total as i64]
                    } else {
                        get(1)?.ints.clone()
                    };
                    match (shape, target.as_slice()) {
                        (Shape::Flat(n), [_, c, h, w])
                            if *c > 0 && *h > 0 && *w > 0 && (c * h * w) as usize == n =>
                        {
                            shape = Shape::Image {
                                c: *c as usize,
                                h: *h as usize,
                                w: *w as usize,
                            };
                            Some(FloatOp::Reshape {
                                c: *c as usize,
                                h: *h as usize,
                                w: *w as usize,
                            })
                        }
                        (Shape::Image { c, h, w }, [_, n]) if *n == -1 || *n as usize == total => {
                            shape = Shape::Flat(total);
                            Some(FloatOp::Flatten { c, h, w })
                        }
                        (Shape::Flat(n), [_, m]) if *m == -1 || *m as usize == n => None,
                        _ => {
                            return Err(fail(format!(
                                "reshape of {shape:?} to {target:?} is not supported"
                            )))
                        }
                    }
                }
                "BatchNormalization" => {
                    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
                    let eps = attr_f(node, "epsilon", 1e-5);
                    let channels = match shape {
                        Shape::Image { c, .. } => c,
                        Shape::Flat(n) => n,
                    };
                    if [gamma, beta, mean, var]
                        .iter()
                        .any(|t| t.floats.len() != channels)
                    {
                        return Err(fail(format!("parameters do not have {channels} channels")));
                    }
                    let scale: Vec<f32> = (0..channels)
                        .map(|c| gamma.floats[c] / (var.floats[c] + eps).sqrt())
                        .collect();
                    let shift = (0..channels)
                        .map(|c| beta.floats[c] - mean.floats[c] * scale[c])
                        .collect();
                    Some(FloatOp::BatchNorm { scale, shift })
                }
                "Relu" => Some(FloatOp::Relu),
                "LeakyRelu" => Some(FloatOp::LeakyRelu {
                    alpha: attr_f(node, "alpha", 0.01),
                }),
                "Tanh" => Some(FloatOp::Tanh),
                "Sigmoid" => Some(FloatOp::Sigmoid),
                "Conv" | "ConvTranspose" => {
                    let Shape::Image { c: cin, h, w } = shape else {
                        return Err(fail("expects an image input".into()));
                    };
                    let wt = get(1)?;
                    let [d0, d1, kh, kw] = wt.dims.as_slice() else {
                        return Err(fail(format!("weight shape {:?} is not 4-D", wt.dims)));
                    };
                    let transpose = node.op_type == "ConvTranspose";
                    let (wcin, cout) = if transpose { (*d0, *d1) } else { (*d1, *d0) };
                    if attr_i(node, "group", 1) != 1 {
                        return Err(fail("grouped convolutions are not supported".into()));
                    }
                    if wcin != cin {
                        return Err(fail(format!(
                            "weight expects {wcin} input channels, gets {cin}"
                        )));
                    }
                    let strides = attr_ints(node, "strides");
                    let pads = attr_ints(node, "pads");
                    let dil = attr_ints(node, "dilations");
                    let out_pad = attr_ints(node, "output_padding");
                    let auto_pad =
                        attr(node, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).to_string());
                    if auto_pad.as_deref().is_some_and(|p| p != "NOTSET")
                        || attr(node, "output_shape").is_some()
                    {
                        return Err(fail(
                            "auto_pad and output_shape are not supported; use explicit pads".into(),
                        ));
                    }
                    let same = |v: &[i64], default: i64| -> Option<usize> {
                        let first = v.first().copied().unwrap_or(default);
                        (v.iter().all(|&x| x == first) && first >= 0).then_some(first as usize)
                    };
                    let (Some(stride), Some(pad), Some(1), Some(out_pad)) = (
                        same(&strides, 1),
                        same(&pads, 0),
                        same(&dil, 1),
                        same(&out_pad, 0),
                    ) else {
                        return Err(fail(
                            "only equal strides and symmetric equal pads without dilation".into(),
                        ));
                    };
                    let geometry = ConvGeometry {
                        cin,
                        cout,
                        h,
                        w,
                        kh: *kh,
                        kw: *kw,
                        stride,
                        pad,
                        out_pad,
                    };
                    let mut bias = vec![0.0; cout];
                    if node.input.len() > 2 && !node.input[2].is_empty() {
                        let b = get(2)?;
                        if b.floats.len() != cout {
                            return Err(fail("bias length differs from output channels".into()));
                        }
                        bias.copy_from_slice(&b.floats);
                    }
                    if wt.floats.len() != cin * cout * kh * kw {
                        return Err(fail("weight is not a float tensor".into()));
                    }
                    let weights = wt.floats.clone();
                    if transpose {
                        if *kh < stride
                            || *kw < stride
                            || out_pad >= stride
                            || (h - 1) * stride + kh + out_pad <= 2 * pad
                        {
                            return Err(fail(
                                "needs kernel >= stride > output_padding and a non-empty output"
                                    .into(),
                            ));
                        }
                        let (ho, wo) = geometry.transpose_out();
                        shape = Shape::Image {
                            c: cout,
                            h: ho,
                            w: wo,
                        };
                        Some(FloatOp::ConvTranspose2d {
                            geometry,
                            weights,
                            bias,
                            act: Fused::None,
                        })
                    } else {
                        if *kh > h + 2 * pad || *kw > w + 2 * pad || stride == 0 {
                            return Err(fail("kernel larger than the padded input".into()));
                        }
                        let (ho, wo) = geometry.conv_out();
                        shape = Shape::Image {
                            c: cout,
                            h: ho,
                            w: wo,
                        };
                        Some(FloatOp::Conv2d {
                            geometry,
                            weights,
                            bias,
                            act: Fused::None,
                        })
                    }
                }
                "Upsample" | "Resize" => {
                    let Shape::Image { c, h, w } = shape else {
                        return Err(fail("expects an image input".into()));
                    };
                    let mode = attr(node, "mode")
                        .map(|a| String::from_utf8_lossy(&a.s).to_string())
                        .unwrap_or("nearest".into());
                    if mode != "nearest" {
                        return Err(fail(format!("mode {mode} is not supported (nearest only)")));
                    }
                    // Upsample(X, scales); Resize(X, roi, scales[, sizes]).
                    let scale_input = if node.op_type == "Upsample" { 1 } else { 2 };
                    let factor = if node.input.get(scale_input).is_some_and(|s| !s.is_empty()) {
                        let s = &get(scale_input)?.floats;
                        match s.as_slice() {
                            [1.0, 1.0, a, b] if a == b && a.fract() == 0.0 && *a >= 2.0 => {
                                *a as usize
                            }
                            _ => {
                                return Err(fail(format!(
                                    "scales {s:?} are not an integer spatial factor"
                                )))
                            }
                        }
                    } else {
                        let sizes = &get(3)?.ints;
                        match sizes.as_slice() {
                            [_, cc, hh, ww]
                                if *cc as usize == c
                                    && (*hh as usize).is_multiple_of(h)
                                    && (*hh as usize / h) == (*ww as usize / w)
                                    && (*ww as usize).is_multiple_of(w) =>
                            {
                                *hh as usize / h
                            }
                            _ => {
                                return Err(fail(format!(
                                    "sizes {sizes:?} are not an integer spatial factor"
                                )))
                            }
                        }
                    };
                    shape = Shape::Image {
                        c,
                        h: h * factor,
                        w: w * factor,
                    };
                    Some(FloatOp::Upsample { c, h, w, factor })
                }
                other => unreachable!("{other} was checked as supported"),
            };
            if let Some(op) = op {
                g.layers.push(Layer {
                    op,
                    tensor: out_name.clone(),
                    output: shape,
                });
            }
            current = out_name;
        }
        let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        if outputs != [current.as_str()] {
            return Err(ImportError::NotAChain(format!(
                "graph outputs {outputs:?}, the chain ends at {current}"
            )));
        }
        g.check_ends(shape)
    }

    /// What every chain must end with, whichever reader built it: an image output, at least
    /// one layer, a used class input and a class count that agrees with the metadata.
    pub(crate) fn check_ends(self, shape: Shape) -> Result<Graph, ImportError> {
        if !matches!(shape, Shape::Image { .. }) {
            return Err(ImportError::NotAChain(format!(
                "the output is {shape:?}, not an image [N, C, H, W]"
            )));
        }
        if self.layers.is_empty() {
            return Err(ImportError::NotAChain("no layers".into()));
        }
        if let Some(class) = &self.class_input {
            if self.classes == 0 {
                return Err(ImportError::NotAChain(format!(
                    "the class input {class} must feed Gather(table, {class}) -> Concat({}, ...)",
                    self.input
                )));
            }
        }
        // The exporter also records the class count; a different one means a broken export.
        if let Some((_, declared)) = self.metadata.iter().find(|(k, _)| k == "pocketgan.classes") {
            if declared.trim().parse::<usize>().ok() != Some(self.classes) {
                return Err(ImportError::Input(format!(
                    "metadata pocketgan.classes = {declared:?}, the embedding has {} classes",
                    self.classes
                )));
            }
        }
        Ok(self)
    }

    /// Output image shape `(c, h, w)`.
    pub fn output_shape(&self) -> (usize, usize, usize) {
        match self.layers.last().map(|l| l.output) {
            Some(Shape::Image { c, h, w }) => (c, h, w),
            _ => unreachable!("import guarantees an image output"),
        }
    }

    /// Folds BatchNorm, moves activations ahead of reshapes and fuses ReLU (see module docs).
    /// Every layer keeps the ONNX tensor of the value it now produces.
    pub fn simplify(&mut self) -> Result<(), ImportError> {
        // Fold BatchNorm into the matrix layer before it, looking through one Reshape.
        let mut i = 0;
        while i < self.layers.len() {
            if let FloatOp::BatchNorm { scale, shift } = self.layers[i].op.clone() {
                let through_reshape =
                    i >= 2 && matches!(self.layers[i - 1].op, FloatOp::Reshape { .. });
                let target = if through_reshape {
                    i - 2
                } else {
                    i.wrapping_sub(1)
                };
                let per_column = match (target < i, through_reshape) {
                    (true, true) => match self.layers[i - 1].op {
                        FloatOp::Reshape { h, w, .. } => h * w,
                        _ => unreachable!(),
                    },
                    _ => 1,
                };
                if target < i
                    && fold_batchnorm(&mut self.layers[target].op, &scale, &shift, per_column)
                {
                    // The BatchNorm's output tensor now holds the folded layer's values (and the
                    // reshaped ones, in the same CHW order).
                    let tensor = self.layers.remove(i).tensor;
                    self.layers[target].tensor = tensor.clone();
                    self.layers[i - 1].tensor = tensor;
                    continue;
                }
                return Err(ImportError::NotAChain(
                    "a BatchNormalization that does not follow Gemm/Conv/ConvTranspose cannot be folded".into(),
                ));
            }
            i += 1;
        }
        // Elementwise ops commute with Reshape/Flatten: move them before, next to their layer.
        let mut moved = true;
        while moved {
            moved = false;
            for i in 1..self.layers.len() {
                let is_reshape = matches!(
                    self.layers[i - 1].op,
                    FloatOp::Reshape { .. } | FloatOp::Flatten { .. }
                );
                if is_reshape && self.layers[i].op.is_elementwise() {
                    // The activation now acts on the pre-reshape value. Its ONNX tensor holds the
                    // same values in the same (CHW) order, so it still calibrates it, and the
                    // reshape now produces that tensor.
                    let before = if i >= 2 {
                        self.layers[i - 2].output
                    } else {
                        Shape::Flat(self.latent)
                    };
                    let tensor = self.layers[i].tensor.clone();
                    self.layers.swap(i - 1, i);
                    self.layers[i - 1].output = before;
                    self.layers[i].tensor = tensor;
                    moved = true;
                }
            }
        }
        // Fuse ReLU into the matrix layer before it.
        let mut i = 1;
        while i < self.layers.len() {
            if self.layers[i].op == FloatOp::Relu {
                if let FloatOp::Linear { act, .. }
                | FloatOp::Conv2d { act, .. }
                | FloatOp::ConvTranspose2d { act, .. } = &mut self.layers[i - 1].op
                {
                    if *act == Fused::None {
                        *act = Fused::Relu;
                        self.layers[i - 1].tensor = self.layers[i].tensor.clone();
                        self.layers.remove(i);
                        continue;
                    }
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// Scales output column `j` of a matrix layer by `scale[j / per_column]` and adds the shift.
fn fold_batchnorm(op: &mut FloatOp, scale: &[f32], shift: &[f32], per_column: usize) -> bool {
    match op {
        FloatOp::Linear {
            n,
            weights,
            bias,
            act: Fused::None,
            ..
        } => {
            if *n != scale.len() * per_column {
                return false;
            }
            for (j, b) in bias.iter_mut().enumerate() {
                *b = *b * scale[j / per_column] + shift[j / per_column];
            }
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[(i % *n) / per_column];
            }
            true
        }
        FloatOp::Conv2d {
            geometry: g,
            weights,
            bias,
            act: Fused::None,
        } if per_column == 1 && scale.len() == g.cout => {
            let per_out = g.cin * g.kh * g.kw;
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[i / per_out];
            }
            bias.iter_mut()
                .enumerate()
                .for_each(|(c, b)| *b = *b * scale[c] + shift[c]);
            true
        }
        FloatOp::ConvTranspose2d {
            geometry: g,
            weights,
            bias,
            act: Fused::None,
        } if per_column == 1 && scale.len() == g.cout => {
            let taps = g.kh * g.kw;
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[(i / taps) % g.cout];
            }
            bias.iter_mut()
                .enumerate()
                .for_each(|(c, b)| *b = *b * scale[c] + shift[c]);
            true
        }
        _ => false,
    }
}

/// Is `input` an int64 vector (a conditional generator's classes)?
fn is_class_input(input: &pb::ValueInfoProto) -> bool {
    use pb::type_proto::Value as TypeValue;
    match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => {
            t.elem_type == 7 && t.shape.as_ref().is_some_and(|s| s.dim.len() == 1)
        }
        None => false,
    }
}

/// Latent size and rank of the input: `[N, latent]` or `[N, latent, 1, 1]`.
fn latent_size(input: &pb::ValueInfoProto) -> Result<(usize, usize), ImportError> {
    use pb::tensor_shape_proto::dimension::Value;
    use pb::type_proto::Value as TypeValue;
    let Some(TypeValue::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(ImportError::Input(format!(
            "{} is not a tensor",
            input.name
        )));
    };
    if t.elem_type != 1 {
        return Err(ImportError::Input(format!(
            "{} has element type {}, not float",
            input.name, t.elem_type
        )));
    }
    let dims: Vec<Option<&Value>> = t.shape.as_ref().map_or(Vec::new(), |s| {
        s.dim.iter().map(|d| d.value.as_ref()).collect()
    });
    match dims.as_slice() {
        [_, Some(Value::DimValue(n))] if *n > 0 => Ok((*n as usize, 2)),
        [_, Some(Value::DimValue(n)), Some(Value::DimValue(1)), Some(Value::DimValue(1))]
            if *n > 0 =>
        {
            Ok((*n as usize, 4))
        }
        _ => Err(ImportError::Input(format!(
            "{} has shape {dims:?}",
            input.name
        ))),
    }
}
