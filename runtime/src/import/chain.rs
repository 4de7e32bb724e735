//! A [`FloatGraph`] that is a chain, as today's [`Graph`] of [`Layer`]s, so the current
//! quantizer and int8 format take real PyTorch exports while the graph runtime is being built.
//! A graph with a skip connection, a residual or an op the chain format lacks is refused with
//! the node that makes it so.

use super::{FloatGraph, FloatOp, InputKind};
use crate::format::{ConvGeometry, Shape};
use crate::graph::{self, Fused, Graph, ImportError, Layer};

/// Why the int8 chain cannot take the graph yet, naming the node.
fn not_yet(what: String) -> ImportError {
    ImportError::NotAChain(format!(
        "{what}: the int8 runtime's graph support is in progress"
    ))
}

impl FloatGraph {
    /// The chain form of this graph (before simplification: [`Graph::simplify`] folds it as
    /// for any other import). Layer tensors are the graph's tensor names, ONNX's own where tract
    /// kept them, so tract can be asked for the same values at calibration.
    pub fn to_chain(&self) -> Result<Graph, ImportError> {
        if let Some(e) = self.first_branch() {
            return Err(e);
        }
        let latent_inputs: Vec<_> = self
            .inputs
            .iter()
            .filter(|i| i.kind != InputKind::Latent && !matches!(i.kind, InputKind::Class { .. }))
            .collect();
        if let Some(i) = latent_inputs.first() {
            return Err(not_yet(format!(
                "input {} is {:?} {:?}, the int8 chain takes a latent vector",
                i.name, i.kind, i.shape
            )));
        }
        let (latents, classes): (Vec<_>, Vec<_>) = self
            .inputs
            .iter()
            .partition(|i| i.kind == InputKind::Latent);
        let ([z], class) = (latents.as_slice(), classes.first()) else {
            return Err(ImportError::Input(format!(
                "found {} latent inputs and {} class inputs",
                latents.len(),
                classes.len()
            )));
        };
        if classes.len() > 1 {
            return Err(ImportError::Input("more than one class input".into()));
        }
        let (latent, input_rank) = match z.shape[..] {
            [n] => (n, 2),
            [n, 1, 1] => (n, 4),
            _ => {
                return Err(ImportError::Input(format!(
                    "{} has shape {:?}",
                    z.name, z.shape
                )))
            }
        };
        let mut g = Graph {
            input: z.name.clone(),
            latent,
            input_rank,
            class_input: class.map(|c| c.name.clone()),
            classes: 0,
            layers: Vec::new(),
            metadata: self.metadata.clone(),
        };
        let mut shape = if input_rank == 4 {
            Shape::Image {
                c: latent,
                h: 1,
                w: 1,
            }
        } else {
            Shape::Flat(latent)
        };
        let mut current = z.name.clone();
        // The output of an embedding lookup waiting for its Concat with the latent.
        let mut embedded: Option<(&str, usize, usize, &[f32])> = None;
        for node in &self.nodes {
            let reads_current = node.inputs == [current.clone()];
            if let FloatOp::Embed {
                classes,
                dim,
                table,
            } = &node.op
            {
                if class.is_some_and(|c| node.inputs == [c.name.clone()]) && embedded.is_none() {
                    embedded = Some((&node.output, *classes, *dim, table));
                    continue;
                }
            }
            if let (FloatOp::Concat { axis: 0 }, Some((emb, classes, dim, table))) =
                (&node.op, embedded)
            {
                if node.inputs == [z.name.clone(), emb.to_string()] && current == z.name {
                    if input_rank != 2 {
                        return Err(not_yet(format!(
                            "node {}: a class embedding joined to a [latent, 1, 1] input",
                            node.name
                        )));
                    }
                    shape = Shape::Flat(latent + dim);
                    g.classes = classes;
                    g.layers.push(Layer {
                        op: graph::FloatOp::Embed {
                            classes,
                            dim,
                            table: table.to_vec(),
                        },
                        tensor: node.output.clone(),
                        output: shape,
                    });
                    current = node.output.clone();
                    embedded = None;
                    continue;
                }
            }
            if !reads_current {
                // first_branch found none; an embedding lookup in the wrong place lands here.
                return Err(not_yet(format!("node {} is off the chain", node.name)));
            }
            if let Some(op) = self.chain_op(node, &mut shape)? {
                g.layers.push(Layer {
                    op,
                    tensor: node.output.clone(),
                    output: shape,
                });
            } else if let Some(last) = g.layers.last_mut() {
                // A reshape that changes nothing: the previous layer's values carry its name.
                last.tensor = node.output.clone();
            }
            current = node.output.clone();
        }
        if self.outputs != [current.clone()] {
            return Err(not_yet(format!(
                "graph outputs {:?}, the chain ends at {current}",
                self.outputs
            )));
        }
        g.check_ends(shape)
    }

    /// The first node that makes the graph more than a chain from its first non-class input
    /// (a node reading two values or a value other than its predecessor's), the class
    /// embedding's lookup and join excepted.
    fn first_branch(&self) -> Option<ImportError> {
        let is_class = |t: &str| {
            self.inputs
                .iter()
                .any(|i| i.name == t && matches!(i.kind, InputKind::Class { .. }))
        };
        let start = self.inputs.iter().find(|i| !is_class(&i.name))?;
        let mut current = start.name.clone();
        let mut embedded: Option<&str> = None;
        for node in &self.nodes {
            match &node.op {
                FloatOp::Embed { .. } if node.inputs.len() == 1 && is_class(&node.inputs[0]) => {
                    embedded = Some(&node.output);
                    continue;
                }
                FloatOp::Concat { .. }
                    if embedded
                        .is_some_and(|e| node.inputs == [current.clone(), e.to_string()]) =>
                {
                    embedded = None;
                }
                _ if node.inputs == [current.clone()] => {}
                _ if node.inputs.len() > 1 => {
                    return Some(not_yet(format!(
                        "skip connection at node {} ({} of {})",
                        node.name,
                        node.op.kind(),
                        node.inputs.join(", ")
                    )))
                }
                _ => {
                    return Some(not_yet(format!(
                        "branch at node {}: it reads {}, not the previous node's output {current}",
                        node.name,
                        node.inputs.join(", ")
                    )))
                }
            }
            current = node.output.clone();
        }
        None
    }

    /// One chain node as a chain layer (`None` for a reshape that changes nothing), updating
    /// the running shape.
    fn chain_op(
        &self,
        node: &super::Node,
        shape: &mut Shape,
    ) -> Result<Option<graph::FloatOp>, ImportError> {
        let fail = |reason: String| ImportError::Node {
            node: node.name.clone(),
            op: node.op.kind().into(),
            reason,
        };
        let out_shape = match node.shape[..] {
            [n] => Shape::Flat(n),
            [c, h, w] => Shape::Image { c, h, w },
            _ => {
                return Err(fail(format!(
                    "shape {:?} is neither [F] nor [C, H, W]",
                    node.shape
                )))
            }
        };
        let op = match &node.op {
            FloatOp::Linear {
                k,
                n,
                weights,
                bias,
            } => {
                if *shape != Shape::Flat(*k) {
                    return Err(fail(format!("expects [{k}] features, gets {shape:?}")));
                }
                graph::FloatOp::Linear {
                    k: *k,
                    n: *n,
                    weights: weights.clone(),
                    bias: bias.clone(),
                    act: Fused::None,
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
                let geometry =
                    square(shape, *cin, *cout, *kh, *kw, *stride, *pad, (0, 0)).map_err(fail)?;
                if *kh > geometry.h + 2 * geometry.pad || *kw > geometry.w + 2 * geometry.pad {
                    return Err(fail("kernel larger than the padded input".into()));
                }
                same_size(geometry.conv_out(), out_shape).map_err(fail)?;
                graph::FloatOp::Conv2d {
                    geometry,
                    weights: weights.clone(),
                    bias: bias.clone(),
                    act: Fused::None,
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
                let g =
                    square(shape, *cin, *cout, *kh, *kw, *stride, *pad, *out_pad).map_err(fail)?;
                // The int8 kernels' own preconditions, as the ONNX reader checked them.
                if g.kh < g.stride
                    || g.kw < g.stride
                    || g.out_pad >= g.stride
                    || (g.h - 1) * g.stride + g.kh + g.out_pad <= 2 * g.pad
                {
                    return Err(fail(
                        "needs kernel >= stride > output_padding and a non-empty output".into(),
                    ));
                }
                same_size(g.transpose_out(), out_shape).map_err(fail)?;
                graph::FloatOp::ConvTranspose2d {
                    geometry: g,
                    weights: weights.clone(),
                    bias: bias.clone(),
                    act: Fused::None,
                }
            }
            FloatOp::BatchNorm { scale, shift } => graph::FloatOp::BatchNorm {
                scale: scale.clone(),
                shift: shift.clone(),
            },
            FloatOp::Relu => graph::FloatOp::Relu,
            FloatOp::LeakyRelu { alpha } => graph::FloatOp::LeakyRelu { alpha: *alpha },
            FloatOp::Tanh => graph::FloatOp::Tanh,
            FloatOp::Sigmoid => graph::FloatOp::Sigmoid,
            FloatOp::Reshape { .. } | FloatOp::Flatten => match (*shape, out_shape) {
                (Shape::Flat(_), Shape::Image { c, h, w }) => graph::FloatOp::Reshape { c, h, w },
                (Shape::Image { c, h, w }, Shape::Flat(_)) => graph::FloatOp::Flatten { c, h, w },
                (a, b) if a == b => return Ok(None),
                (a, b) => return Err(fail(format!("reshape of {a:?} to {b:?}"))),
            },
            FloatOp::Upsample { factor } => {
                let Shape::Image { c, h, w } = *shape else {
                    return Err(fail("expects an image".into()));
                };
                graph::FloatOp::Upsample {
                    c,
                    h,
                    w,
                    factor: *factor,
                }
            }
            other => return Err(not_yet(format!("{} at node {}", other.kind(), node.name))),
        };
        *shape = out_shape;
        Ok(Some(op))
    }
}

/// The int8 kernels' output size must be the one tract worked out.
fn same_size(kernel: (usize, usize), tract: Shape) -> Result<(), String> {
    match tract {
        Shape::Image { h, w, .. } if (h, w) == kernel => Ok(()),
        _ => Err(format!(
            "the int8 kernels would write {kernel:?}, the model {tract:?}"
        )),
    }
}

/// The chain's convolution geometry: one stride and one pad for both axes.
#[allow(clippy::too_many_arguments)]
fn square(
    shape: &Shape,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    pad: [usize; 4],
    out_pad: (usize, usize),
) -> Result<ConvGeometry, String> {
    let Shape::Image { c, h, w } = *shape else {
        return Err(format!("expects an image input, gets {shape:?}"));
    };
    if c != cin {
        return Err(format!("weights expect {cin} input channels, gets {c}"));
    }
    if stride.0 != stride.1 || pad.iter().any(|&p| p != pad[0]) || out_pad.0 != out_pad.1 {
        return Err(format!(
            "the int8 chain needs equal strides and pads on both axes (stride {stride:?}, pads {pad:?}, output padding {out_pad:?})"
        ));
    }
    if stride.0 == 0 {
        return Err("stride 0".into());
    }
    Ok(ConvGeometry {
        cin,
        cout,
        h,
        w,
        kh,
        kw,
        stride: stride.0,
        pad: pad[0],
        out_pad: out_pad.0,
    })
}
