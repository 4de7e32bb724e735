//! Loading with tract and reading its decluttered model into a [`FloatGraph`].
//!
//! Each tract op is read by one function, listed in [`Walker::map`]: most are in the file of the
//! int8 op they become (`crate::ops::NAME::import`, next to its `quantize`); what stays here is
//! about the graph: loading, the batch symbol and the rewrites of the ONNX file before tract
//! types it, the walk, the tract ops that become several of ours or none (the binary ops, the
//! LSTM epilogue, aliases), and the rewrites of the float graph after it. tract's decluttered
//! forms are not ONNX's: a Gemm is an `EinSum` plus an `Add` of the bias, BatchNormalization a
//! `Mul` and an `Add` of constants, Relu a `Max` with 0, ConvTranspose a `Deconv` whose kernel is
//! reordered to `[cout][cin]`, InstanceNormalization a chain of `Reduce`/`Sub`/`Rsqrt`/`Mul`
//! (matched back in its op's file), and a Concat feeding a Gemm is split into one `EinSum` per
//! part (joined back in [`rejoin_split_linear`]).

use super::{FloatGraph, FloatOp, GraphInput, ImportError, InputKind, Node, UnsupportedOp};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::ops;
use tract_onnx::tract_hir::infer::Factoid;

/// Reads an ONNX file into a float graph. Never panics: tract's own panics on broken or
/// hostile files are caught here and returned as [`ImportError::Panic`].
pub fn import_onnx(bytes: &[u8]) -> Result<FloatGraph, ImportError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| import(bytes))) {
        Ok(result) => result,
        Err(payload) => Err(ImportError::Panic(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into()),
        )),
    }
}

fn tract_err(e: impl std::fmt::Display) -> ImportError {
    ImportError::Tract(format!("{e:#}"))
}

fn import(bytes: &[u8]) -> Result<FloatGraph, ImportError> {
    let onnx = tract_onnx::onnx();
    let mut proto = onnx
        .proto_model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| ImportError::Onnx(format!("{e:#}")))?;
    check_batch_norms(&proto)?;
    expand_uniform_scalars(&mut proto);
    unfix_batch_shapes(&mut proto);
    let metadata = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    let mut model = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| ImportError::Onnx(format!("{e:#}")))?;
    // The ONNX op type of each node, to name unsupported ops as the user wrote them (tract
    // expands some, e.g. Softplus into Exp and Ln, under names that start with the node's).
    let onnx_ops: Vec<(String, String)> = proto
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .map(|n| (n.name.clone(), n.op_type.clone()))
        .collect();
    // The batch becomes a symbol whatever the file declares (PyTorch writes a fixed 1 or 2
    // without `dynamic_axes`), so decluttering folds the shape arithmetic for any batch. A
    // symbol the file already uses for it is kept: its intermediate shapes may name it too.
    let declared = (0..model.inputs.len()).find_map(|i| {
        let fact = model.input_fact(i).ok()?;
        match fact.shape.dims().next()?.concretize()? {
            TDim::Sym(s) => Some(s),
            _ => None,
        }
    });
    let batch = declared.unwrap_or_else(|| model.symbols.sym("N"));
    let mut inputs = Vec::new();
    for i in 0..model.inputs.len() {
        let name = model.node(model.inputs[i].node).name.clone();
        let fail = |reason: String| ImportError::Input {
            name: name.clone(),
            reason,
        };
        let fact = model.input_fact(i).map_err(tract_err)?.clone();
        if fact.shape.is_open() {
            return Err(fail("its rank is unknown".into()));
        }
        let dims: Vec<Option<i64>> = fact
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.as_i64()))
            .collect();
        let mut shape = Vec::new();
        for (axis, d) in dims.iter().enumerate().skip(1) {
            match d {
                Some(d) if *d > 0 => shape.push(*d as usize),
                _ => return Err(fail(format!("axis {axis} has no fixed size ({d:?})"))),
            }
        }
        if dims.is_empty() {
            return Err(fail("a scalar input has no batch axis".into()));
        }
        let mut full: TVec<TDim> = tvec![batch.clone().into()];
        full.extend(shape.iter().map(|&d| TDim::from(d)));
        let dt = fact.datum_type.concretize();
        let (typed, kind) = match dt {
            Some(DatumType::F32) => {
                let kind = match shape.as_slice() {
                    [_] | [_, 1, 1] => InputKind::Latent,
                    [_, _, _] => InputKind::Image,
                    [_, _] => InputKind::Sequence,
                    _ => return Err(fail(format!("per-sample shape {shape:?} is not supported"))),
                };
                (f32::fact(&full), kind)
            }
            // Class indices `[N]`, or a text's token ids `[N, T]`; the class count (the
            // vocabulary's size) comes from the embedding that reads them.
            Some(dt @ (DatumType::I64 | DatumType::I32)) if shape.len() <= 1 => {
                (dt.fact(&full), InputKind::Class { classes: 0 })
            }
            other => {
                return Err(fail(format!(
                    "element type {other:?} with per-sample shape {shape:?} (expected float, integer classes [N] or token ids [N, T])"
                )))
            }
        };
        model.set_input_fact(i, typed.into()).map_err(tract_err)?;
        inputs.push(GraphInput { name, shape, kind });
    }
    let typed = model.into_typed().map_err(tract_err)?;
    check_sizes(&typed, &batch.clone().into())?;
    let typed = typed.into_decluttered().map_err(tract_err)?;
    let mut w = Walker::new(&typed, batch.into(), inputs);
    if let Err(e) = w.walk() {
        return Err(match e {
            ImportError::Unsupported(list) => ImportError::Unsupported(as_onnx(list, &onnx_ops)),
            e => e,
        });
    }
    let Walker {
        inputs,
        nodes,
        names,
        ..
    } = w;
    let mut outputs = Vec::new();
    for o in typed.output_outlets().map_err(tract_err)? {
        outputs.push(names.get(o).cloned().ok_or_else(|| ImportError::Node {
            node: typed.node(o.node).name.clone(),
            op: typed.node(o.node).op.name().to_string(),
            reason: "a graph output is a constant".into(),
        })?);
    }
    if outputs.is_empty() {
        return Err(ImportError::NoOutput);
    }
    let mut g = FloatGraph {
        inputs,
        outputs,
        nodes,
        metadata,
    };
    // The ONNX Concat nodes, so a rejoined one gets its ONNX output name back.
    let concats: Vec<(Vec<String>, String)> = proto
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.op_type == "Concat" && n.output.len() == 1)
        .map(|n| (n.input.clone(), n.output[0].clone()))
        .collect();
    rejoin_split_linear(&mut g, &concats);
    mark_states(&mut g);
    Ok(g)
}

/// Marks the state inputs of a token cell: one token (class) input and vectors, returning the
/// logits, then a vector of each state's shape per state, in order (SeqGAN's `h` and `c`). The
/// vectors are then [`InputKind::State`], not latents to draw.
fn mark_states(g: &mut FloatGraph) {
    let tokens = g
        .inputs
        .iter()
        .filter(|i| matches!(i.kind, InputKind::Class { .. }))
        .count();
    let states: Vec<usize> = (0..g.inputs.len())
        .filter(|&k| !matches!(g.inputs[k].kind, InputKind::Class { .. }))
        .collect();
    let cell = tokens == 1
        && !states.is_empty()
        && g.outputs.len() == states.len() + 1
        && states.iter().zip(&g.outputs[1..]).all(|(&k, o)| {
            let input = &g.inputs[k];
            input.kind == InputKind::Latent
                && input.shape.len() == 1
                && g.shape_of(o) == Some(input.shape.as_slice())
        });
    if cell {
        for k in states {
            g.inputs[k].kind = InputKind::State;
        }
    }
}

/// The values of a float initializer (raw little-endian bytes or the repeated field).
fn float_values(t: &tract_onnx::pb::TensorProto) -> Vec<f32> {
    if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

/// Refuses a BatchNormalization whose variance initializer holds a negative number or NaN:
/// decluttering folds it into a Mul and an Add, after which no engine could tell.
pub(crate) fn check_batch_norms(proto: &tract_onnx::pb::ModelProto) -> Result<(), ImportError> {
    let Some(g) = proto.graph.as_ref() else {
        return Ok(());
    };
    for node in g.node.iter().filter(|n| n.op_type == "BatchNormalization") {
        let Some(var) = node.input.get(4) else {
            continue;
        };
        let Some(t) = g.initializer.iter().find(|t| &t.name == var) else {
            continue;
        };
        let values = float_values(t);
        if let Some(&value) = values.iter().find(|v| !(**v >= 0.0)) {
            return Err(ImportError::Variance {
                node: node.name.clone(),
                input: var.clone(),
                value,
            });
        }
    }
    Ok(())
}

/// Makes `Expand(c, shape)` of a constant `c` whose values are all equal expand that one value
/// instead: the same tensor wherever the original broadcast. PyTorch's exporter without
/// `dynamic_axes` writes a recurrent layer's zero initial state as zeros of the traced batch
/// expanded to the batch of the run, which conflicts with the symbolic batch the importer types
/// the graph with.
fn expand_uniform_scalars(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::{tensor_proto::DataType, TensorProto};
    let Some(g) = proto.graph.as_mut() else {
        return;
    };
    let uniform = |t: &TensorProto| -> Option<f32> {
        if t.data_type != DataType::Float as i32 {
            return None;
        }
        let v = float_values(t);
        let first = *v.first()?;
        v.iter().all(|&x| x == first).then_some(first)
    };
    let mut scalars = Vec::new();
    for k in 0..g.node.len() {
        if g.node[k].op_type != "Expand" {
            continue;
        }
        let Some(src) = g.node[k].input.first().cloned() else {
            continue;
        };
        if let Some(value) = constant_tensor(g, &src).and_then(uniform) {
            let name = format!("{src}.pocketgan_scalar");
            g.node[k].input[0] = name.clone();
            scalars.push(TensorProto {
                name,
                data_type: DataType::Float as i32,
                float_data: vec![value],
                ..Default::default()
            });
        }
    }
    g.initializer.extend(scalars);
}

/// The constant tensor named `name`: an initializer, or the value of a Constant node.
fn constant_tensor<'g>(
    g: &'g tract_onnx::pb::GraphProto,
    name: &str,
) -> Option<&'g tract_onnx::pb::TensorProto> {
    g.initializer.iter().find(|t| t.name == name).or_else(|| {
        g.node
            .iter()
            .find(|n| n.op_type == "Constant" && n.output.first().is_some_and(|o| o == name))?
            .attribute
            .iter()
            .find(|a| a.name == "value")?
            .t
            .as_ref()
    })
}

/// The int64 values of an integer initializer (raw little-endian bytes or the repeated field).
fn int64_values(t: &tract_onnx::pb::TensorProto) -> Option<Vec<i64>> {
    use tract_onnx::pb::tensor_proto::DataType;
    if t.data_type != DataType::Int64 as i32 {
        return None;
    }
    Some(if t.raw_data.is_empty() {
        t.int64_data.clone()
    } else {
        t.raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect()
    })
}

/// Makes the shapes a file exported without a dynamic batch axis fixes to its traced batch
/// `B` follow the batch instead: a Reshape to a constant `[B, ...]` (PyTorch's `x.view(n,
/// ...)` with `n = x.shape[0]`) reshapes to `[0, ...]` (ONNX's "as the input's axis"), an
/// Expand to `[B, ...]` (`x.expand(n, ...)`) expands to `[1, ...]` (keep the input's). The same
/// tensors at batch `B`, and right at any other, which the importer's symbolic batch needs.
fn unfix_batch_shapes(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::TensorProto;
    let Some(g) = proto.graph.as_mut() else {
        return;
    };
    let batches: Vec<Option<i64>> = g
        .input
        .iter()
        .filter(|i| !g.initializer.iter().any(|t| t.name == i.name))
        .map(|i| crate::engine::runner::declared_batch(i).map(|b| b as i64))
        .collect();
    let Some(&Some(batch)) = batches.first() else {
        return;
    };
    if batches.iter().any(|b| *b != Some(batch)) {
        return;
    }
    let mut shapes = Vec::new();
    for k in 0..g.node.len() {
        let keep = match g.node[k].op_type.as_str() {
            "Reshape" => 0,
            "Expand" => 1,
            _ => continue,
        };
        let (Some(data), Some(shape)) = (g.node[k].input.first(), g.node[k].input.get(1)) else {
            continue;
        };
        // Only the shape of a value (a constant's reshape folds whatever its shape).
        if constant_tensor(g, data).is_some() {
            continue;
        }
        let Some(mut dims) = constant_tensor(g, shape).and_then(int64_values) else {
            continue;
        };
        if dims.first() != Some(&batch) {
            continue;
        }
        dims[0] = keep;
        let name = format!("{shape}.pocketgan_batch");
        g.node[k].input[1] = name.clone();
        shapes.push(TensorProto {
            name,
            data_type: DataType::Int64 as i32,
            dims: vec![dims.len() as i64],
            int64_data: dims,
            ..Default::default()
        });
    }
    g.initializer.extend(shapes);
}

/// Refuses a model with an empty tensor or one larger than
/// [`crate::limits::MAX_SAMPLE_ELEMENTS`] per sample (the batch symbol taken as 1), before any
/// engine allocates it: a `Resize` x10,000 would otherwise ask for terabytes.
fn check_sizes(m: &TypedModel, batch: &TDim) -> Result<(), ImportError> {
    let limit = crate::limits::MAX_SAMPLE_ELEMENTS;
    for node in m.nodes() {
        for out in &node.outputs {
            let dims = out.fact.shape.dims();
            let rest = match dims.first() {
                Some(d) if d == batch => &dims[1..],
                _ => dims,
            };
            let Ok(shape) = rest
                .iter()
                .map(|d| d.to_usize())
                .collect::<Result<Vec<_>, _>>()
            else {
                continue; // not fixed: the walker names it
            };
            let fail = |reason: String| ImportError::Size {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                shape: shape.clone(),
                reason,
            };
            let elements = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&e| e <= limit);
            match elements {
                // Empty constants are legitimate (a Resize's unused `roi`); empty values are not.
                Some(0) if !shape.is_empty() && node.op.name() != "Const" => {
                    return Err(fail("an empty tensor (a zero-sized axis)".into()))
                }
                None => {
                    return Err(fail(format!(
                        "over the limit of {limit} values per sample (see README, Limits)"
                    )))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Names each unsupported tract node by the ONNX node it came from (the longest ONNX node name
/// that is its name or a `.`-separated prefix of it), once per ONNX node.
fn as_onnx(list: Vec<UnsupportedOp>, onnx_ops: &[(String, String)]) -> Vec<UnsupportedOp> {
    let mut out: Vec<UnsupportedOp> = Vec::new();
    for u in list {
        let source = onnx_ops
            .iter()
            .filter(|(name, _)| {
                !name.is_empty()
                    && (u.node == *name
                        || u.node
                            .strip_prefix(name.as_str())
                            .is_some_and(|r| r.starts_with('.')))
            })
            .max_by_key(|(name, _)| name.len());
        let u = match source {
            Some((name, op)) => UnsupportedOp {
                op: op.clone(),
                node: name.clone(),
                tract_op: u.tract_op,
            },
            None => u,
        };
        if !out.iter().any(|o| o.node == u.node) {
            out.push(u);
        }
    }
    out
}

/// Reads the decluttered model in evaluation order: the context each op file's `import` gets
/// (`crate::ops::NAME::import`), with what it needs of the model and of the float graph so far.
pub(crate) struct Walker<'a> {
    pub(crate) m: &'a TypedModel,
    batch: TDim,
    /// The graph inputs (an embedding sets its class input's class count).
    pub(crate) inputs: Vec<GraphInput>,
    nodes: Vec<Node>,
    /// Outlet -> tensor name, for every non-constant value.
    pub(crate) names: HashMap<OutletId, String>,
    used: HashSet<String>,
    /// tract nodes already consumed by a pattern (InstanceNormalization's chain).
    absorbed: HashSet<usize>,
    unsupported: Vec<UnsupportedOp>,
    errors: Vec<ImportError>,
    /// Set by a pattern whose op writes another node's outlet (the end of the chain it absorbs).
    output_override: Option<OutletId>,
}

/// The result of mapping one node: an op and its value inputs, or nothing (an alias: the
/// output is the named input itself).
pub(crate) enum Mapped {
    Op(FloatOp, Vec<OutletId>),
    /// Several float nodes for one tract node, named and shaped (an LSTM cell's epilogue).
    Nodes(Vec<Node>),
    Alias(OutletId),
    Unsupported,
}

/// What an op file's `import` returns: [`Mapped`], or why the node cannot be read.
pub(crate) type MapResult = Result<Mapped, String>;

impl<'a> Walker<'a> {
    fn new(m: &'a TypedModel, batch: TDim, inputs: Vec<GraphInput>) -> Self {
        Walker {
            m,
            batch,
            inputs,
            nodes: Vec::new(),
            names: HashMap::new(),
            used: HashSet::new(),
            absorbed: HashSet::new(),
            unsupported: Vec::new(),
            errors: Vec::new(),
            output_override: None,
        }
    }

    /// The tensor name for an outlet: its ONNX name when tract kept it as a label.
    pub(crate) fn name_outlet(&mut self, o: OutletId) -> String {
        let node = self.m.node(o.node);
        let base = match self.m.outlet_label(o) {
            Some(l) => l.to_string(),
            None if o.slot == 0 => node.name.clone(),
            None => format!("{}:{}", node.name, o.slot),
        };
        let mut name = base.clone();
        let mut i = 1;
        while !self.used.insert(name.clone()) {
            name = format!("{base}#{i}");
            i += 1;
        }
        self.names.insert(o, name.clone());
        name
    }

    pub(crate) fn konst(&self, o: OutletId) -> Option<&Arc<Tensor>> {
        self.m
            .node(o.node)
            .op_as::<ops::konst::Const>()
            .map(|k| k.val())
    }

    /// Per-sample shape of an outlet: the batch symbol first, then fixed sizes.
    pub(crate) fn shape(&self, o: OutletId) -> Result<Vec<usize>, String> {
        let fact = self.m.outlet_fact(o).map_err(|e| format!("{e:#}"))?;
        let dims = fact.shape.dims();
        if dims.first() != Some(&self.batch) {
            return Err(format!(
                "shape {:?} does not start with the batch axis",
                fact.shape
            ));
        }
        dims[1..]
            .iter()
            .map(|d| {
                d.to_usize()
                    .map_err(|_| format!("shape {:?} is not fixed past the batch", fact.shape))
            })
            .collect()
    }

    /// Marks absorbed the nodes that compute nothing but recurrent ops' initial states (the
    /// zeros PyTorch writes as `ConstantOfShape` of the batch, which tract makes a broadcast, a
    /// slice per layer and an axis move): [`crate::ops::gru::import`] checks they are zeros.
    fn absorb_initial_states(&mut self, order: &[usize]) {
        let is_state_slot = |node: usize, slot: usize| {
            let n = self.m.node(node);
            n.op_is::<ops::gru_seq::GruSeq>() && slot + 1 == n.inputs.len()
        };
        for &id in order.iter().rev() {
            let node = self.m.node(id);
            if node.op_is::<ops::source::TypedSource>() {
                continue;
            }
            let mut readers = node.outputs.iter().flat_map(|o| &o.successors).peekable();
            if readers.peek().is_some()
                && readers.all(|i| is_state_slot(i.node, i.slot) || self.absorbed.contains(&i.node))
            {
                self.absorbed.insert(id);
            }
        }
    }

    /// Whether `o`, computed by absorbed nodes from constants, is all zeros: every float constant
    /// it is made from is.
    pub(crate) fn zeros(&self, o: OutletId) -> bool {
        let node = self.m.node(o.node);
        if let Some(k) = self.konst(o) {
            return !k.datum_type().is_float()
                || floats(k).is_ok_and(|v| v.iter().all(|&x| x == 0.0));
        }
        self.absorbed.contains(&o.node) && node.inputs.iter().all(|&i| self.zeros(i))
    }

    fn walk(&mut self) -> Result<(), ImportError> {
        let order = self.m.eval_order().map_err(tract_err)?;
        self.absorb_initial_states(&order);
        for &id in &order {
            let node = self.m.node(id);
            if self.absorbed.contains(&id) || node.op_is::<ops::konst::Const>() {
                continue;
            }
            if node.op_is::<ops::source::TypedSource>() {
                let name = self.name_outlet(OutletId::new(id, 0));
                // The source keeps the ONNX input's name (tract names it so, and labels it).
                if let Some(i) = self.inputs.iter_mut().find(|i| i.name == node.name) {
                    i.name = name;
                }
                continue;
            }
            let op = node.op.name().to_string();
            let mapped = self.map(node);
            let fail = |reason: String| ImportError::Node {
                node: node.name.clone(),
                op: op.clone(),
                reason,
            };
            match mapped {
                Ok(Mapped::Op(float_op, ins)) => {
                    let out = self.output_override.take().unwrap_or(OutletId::new(id, 0));
                    let shape = match self.shape(out) {
                        Ok(s) => s,
                        Err(e) => {
                            self.errors.push(fail(e));
                            Vec::new()
                        }
                    };
                    let mut inputs = Vec::new();
                    for i in ins {
                        match self.names.get(&i) {
                            Some(n) => inputs.push(n.clone()),
                            None => self.errors.push(fail(format!(
                                "input {} is not a value the importer knows",
                                self.m.node(i.node).name
                            ))),
                        }
                    }
                    let output = self.name_outlet(out);
                    self.nodes.push(Node {
                        name: node.name.clone(),
                        op: float_op,
                        inputs,
                        output,
                        shape,
                    });
                }
                Ok(Mapped::Nodes(nodes)) => self.nodes.extend(nodes),
                Ok(Mapped::Alias(of)) => {
                    if let Some(n) = self.names.get(&of).cloned() {
                        self.names.insert(OutletId::new(id, 0), n);
                    }
                }
                Ok(Mapped::Unsupported) => {
                    self.unsupported.push(UnsupportedOp {
                        op: op.clone(),
                        node: node.name.clone(),
                        tract_op: op,
                    });
                    // Name its outputs anyway, so every other unsupported node is found too.
                    for slot in 0..node.outputs.len() {
                        self.name_outlet(OutletId::new(id, slot));
                    }
                }
                Err(reason) => {
                    self.errors.push(fail(reason));
                    for slot in 0..node.outputs.len() {
                        self.name_outlet(OutletId::new(id, slot));
                    }
                }
            }
        }
        if !self.unsupported.is_empty() {
            return Err(ImportError::Unsupported(std::mem::take(
                &mut self.unsupported,
            )));
        }
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        Ok(())
    }

    /// Marks read the tract nodes of a chain that an op file's `import` matched from the node
    /// it was given (`chain`: the others, in order). The op writes the chain's last value: its
    /// readers read the op.
    pub(crate) fn absorb_chain(&mut self, chain: Vec<usize>) {
        let out = *chain.last().expect("a chain of one node at least");
        self.absorbed.extend(chain);
        self.output_override = Some(OutletId::new(out, 0));
    }

    /// The importers' registry: each tract op and the function that reads it. Those in
    /// `crate::ops::NAME` (`import`, next to the op's `quantize`) read it into the float op of
    /// that int8 op; the ones here are about the graph rather than one op: [`Walker::binary`]
    /// (one tract op, four of ours), [`Walker::reduce`] (the first node of two patterns),
    /// [`Walker::lstm_epilogue`] (one tract op, a dozen of ours), and the aliases (`Cast`,
    /// `Identity`, the LSTM's directions axis in [`Walker::directions_axis`]). tract's op types
    /// are distinct, so the order does not matter.
    fn map(&mut self, node: &TypedNode) -> MapResult {
        use crate::ops::{
            concat, conv, conv_transpose, embed, gru, linear, lut, pad, pixel_norm, reshape,
            upsample,
        };
        if self.directions_axis(node) {
            return Ok(Mapped::Alias(node.inputs[0]));
        }
        macro_rules! registry {
            ($($tract:ty => $import:expr,)*) => {
                $(if let Some(op) = node.op_as::<$tract>() {
                    return $import(self, node, op);
                })*
            };
        }
        registry! {
            ops::einsum::EinSum => linear::import,
            ops::binary::TypedBinOp => Self::binary,
            ops::element_wise::ElementWiseOp => lut::import,
            ops::cnn::Conv => conv::import,
            ops::cnn::Deconv => conv_transpose::import,
            ops::change_axes::AxisOp => reshape::import,
            ops::array::TypedConcat => concat::import,
            ops::array::Pad => pad::import,
            ops::nn::NearestUpsample => upsample::import,
            ops::array::Gather => embed::import,
            ops::array::MultiBroadcastTo => upsample::import_replicate,
            ops::array::Tile => upsample::import_replicate,
            ops::nn::Reduce => Self::reduce,
            ops::cast::Cast => Self::cast,
            ops::gru_seq::GruSeq => gru::import,
            ops::lstm_cell::LstmEpilogue => Self::lstm_epilogue,
            ops::nn::RmsNorm => pixel_norm::import,
            ops::identity::Identity => Self::identity,
        }
        Ok(Mapped::Unsupported)
    }

    /// A `Reduce` starts two patterns that span nodes, each matched in its op's file: pixel
    /// normalisation's (`MeanOfSquares` over the channels) and instance normalisation's.
    fn reduce(&mut self, node: &TypedNode, op: &ops::nn::Reduce) -> MapResult {
        if op.reducer == ops::nn::Reducer::MeanOfSquares && op.axes.as_slice() == [1] {
            return crate::ops::pixel_norm::import_chain(self, node, op);
        }
        crate::ops::instance_norm::import(self, node, op)
    }

    fn identity(&mut self, node: &TypedNode, _: &ops::identity::Identity) -> MapResult {
        Ok(Mapped::Alias(node.inputs[0]))
    }

    /// ONNX's LSTM adds a directions axis to its outputs (`Y_h` `[1, N, H]`) that PyTorch's
    /// export then takes away again with a `Gather` at index 0: both nodes are aliases (a
    /// pattern of two nodes, so here rather than in `reshape` or `embed`).
    fn directions_axis(&self, node: &TypedNode) -> bool {
        use ops::change_axes::AxisOp;
        if node.op_as::<AxisOp>() == Some(&AxisOp::Add(0)) {
            return self.only_read_by_first_entry(node);
        }
        if !node.op_is::<ops::array::Gather>() {
            return false;
        }
        let added = self.m.node(node.inputs[0].node);
        self.takes_first_entry(node)
            && added.op_as::<AxisOp>() == Some(&AxisOp::Add(0))
            && self.only_read_by_first_entry(added)
    }

    /// The constant matrix at `outlet` as `(rows, cols, values)` row-major, transposed from its
    /// stored layout when `transposed` (an EinSum names either order of its two axes).
    pub(crate) fn weight_matrix(
        &self,
        outlet: OutletId,
        transposed: bool,
    ) -> Result<(usize, usize, Vec<f32>), String> {
        let c = self.konst(outlet).ok_or("the weights are not a constant")?;
        let shape = c.shape().to_vec();
        let w = floats(c)?;
        if shape.len() != 2 || w.len() != shape[0] * shape[1] {
            return Err(format!("weights of shape {shape:?} are not a matrix"));
        }
        if !transposed {
            return Ok((shape[0], shape[1], w));
        }
        let (rows, cols) = (shape[1], shape[0]);
        let t = (0..rows * cols)
            .map(|i| w[(i % cols) * rows + i / cols])
            .collect();
        Ok((rows, cols, t))
    }

    /// Binary ops: between two values (residual Add, gating Mul), or with a constant, which
    /// decluttering leaves for biases, BatchNorm and Relu (`Max(x, 0)`). Here rather than in an
    /// op's file: one tract op becomes four of ours (`Add`, `Mul`, a ReLU's `Lut`, and the
    /// per-channel affine `BatchNorm`, which has no int8 op of its own: `simplify` folds it into
    /// the layer before it, or the quantizer makes it a diagonal 1x1 convolution).
    fn binary(&self, node: &TypedNode, op: &ops::binary::TypedBinOp) -> MapResult {
        let kind = op.0.name();
        let (a, b) = (node.inputs[0], node.inputs[1]);
        match (self.konst(a), self.konst(b)) {
            (None, None) => {
                let (sa, sb) = (self.shape(a)?, self.shape(b)?);
                let float_op = match kind {
                    "Add" => FloatOp::Add,
                    "Mul" => FloatOp::Mul,
                    _ => return Ok(Mapped::Unsupported),
                };
                if sa != sb {
                    return Err(format!(
                        "{kind} broadcasts {sa:?} with {sb:?}; only equal shapes are supported"
                    ));
                }
                Ok(Mapped::Op(float_op, vec![a, b]))
            }
            (Some(c), None) | (None, Some(c)) => {
                let const_first = self.konst(a).is_some();
                let x = if const_first { b } else { a };
                let full = self.m.outlet_fact(x).map_err(|e| format!("{e:#}"))?;
                // A sequence `[N, T, F]`'s channel is its feature, the last axis.
                let per_sample = self.shape(x)?;
                let (channels, axis) = match per_sample[..] {
                    [_, f] => (f, 2),
                    _ => (per_sample.first().copied().unwrap_or(1), 1),
                };
                let v = per_channel(c, full.rank(), channels, axis)?;
                let ones = vec![1.0; channels];
                let zeros = vec![0.0; channels];
                let affine = |scale: Vec<f32>, shift: Vec<f32>| {
                    Ok(Mapped::Op(FloatOp::BatchNorm { scale, shift }, vec![x]))
                };
                match kind {
                    "Max" if v.iter().all(|&c| c == 0.0) => Ok(Mapped::Op(FloatOp::Relu, vec![x])),
                    "Add" => affine(ones, v),
                    "Mul" => affine(v, zeros),
                    "Sub" if !const_first => affine(ones, v.iter().map(|c| -c).collect()),
                    "Sub" => affine(vec![-1.0; channels], v),
                    "Div" if !const_first && v.iter().all(|&c| c != 0.0) => {
                        affine(v.iter().map(|c| 1.0 / c).collect(), zeros)
                    }
                    _ => Ok(Mapped::Unsupported),
                }
            }
            (Some(_), Some(_)) => Err("both operands are constants".into()),
        }
    }

    /// Whether every reader of `node`'s output takes entry 0 of its first axis (a `Gather` at
    /// index 0 on axis 0): ONNX's LSTM adds a directions axis to its outputs (`Y_h`
    /// `[1, N, H]`) that PyTorch's export then takes away again.
    fn only_read_by_first_entry(&self, node: &TypedNode) -> bool {
        let readers: Vec<&InletId> = node.outputs.iter().flat_map(|o| &o.successors).collect();
        !readers.is_empty()
            && readers
                .iter()
                .all(|i| self.takes_first_entry(self.m.node(i.node)))
    }

    /// `Gather(x, 0)` on axis 0 with a constant scalar index 0.
    fn takes_first_entry(&self, node: &TypedNode) -> bool {
        node.op_as::<ops::array::Gather>()
            .is_some_and(|g| g.axis == 0)
            && node.inputs.len() == 2
            && self
                .konst(node.inputs[1])
                .is_some_and(|k| k.rank() == 0 && k.cast_to_scalar::<i64>().is_ok_and(|v| v == 0))
    }

    /// The per-sample shape the float graph gives the value at `o` (tract's, but for a text's
    /// embedding, which the float graph keeps flat).
    pub(crate) fn float_shape(&self, o: OutletId) -> Result<Vec<usize>, String> {
        let name = self.names.get(&o);
        match self.nodes.iter().rev().find(|n| Some(&n.output) == name) {
            Some(n) => Ok(n.shape.clone()),
            None => self.shape(o),
        }
    }

    /// tract's `LstmEpilogue`, the end of one step of ONNX's `LSTM` (one direction, standard
    /// activations, no peepholes: tract keeps the decomposed form otherwise). Its inputs are
    /// the gates' pre-activations `[4 hidden]` (ONNX's order i, o, f, c; the two products and
    /// the bias before it are ordinary `EinSum`s and `Add`s) and the cell state `c`; it writes
    /// `h` (output 0) and `c` (output 1). Written as the float ops that define it, each of one
    /// output, which the int8 runtime has:
    ///
    /// ```text
    /// i, o, f = sigmoid(slices 0, 1, 2)   g = tanh(slice 3)
    /// c' = f * c + i * g                  h' = o * tanh(c')
    /// ```
    ///
    /// Here rather than in an op's file: one tract op becomes a dozen of ours (`Slice`, `Lut`,
    /// `Mul`, `Add`), none of them an LSTM.
    fn lstm_epilogue(&mut self, node: &TypedNode, op: &ops::lstm_cell::LstmEpilogue) -> MapResult {
        let hidden = op.hidden;
        let (preact, c) = match node.inputs[..] {
            [p, c] => (p, c),
            _ => {
                return Err("an LSTM epilogue reads the pre-activations and the cell state".into())
            }
        };
        let (Some(preact), Some(c)) = (
            self.names.get(&preact).cloned(),
            self.names.get(&c).cloned(),
        ) else {
            return Err("its inputs are not values the importer knows".into());
        };
        if self.shape(node.inputs[0])? != [4 * hidden] || self.shape(node.inputs[1])? != [hidden] {
            return Err(format!(
                "expects pre-activations [N, {}] and a state [N, {hidden}]",
                4 * hidden
            ));
        }
        let mut nodes = Vec::new();
        let mut push = |op: FloatOp, inputs: Vec<String>, output: String, width| {
            nodes.push(Node {
                name: node.name.clone(),
                op,
                inputs,
                output: output.clone(),
                shape: vec![width],
            });
            output
        };
        let fresh = |w: &mut Self, what: &str| {
            let base = format!("{}.{what}", node.name);
            let mut name = base.clone();
            let mut k = 1;
            while !w.used.insert(name.clone()) {
                name = format!("{base}#{k}");
                k += 1;
            }
            name
        };
        let mut gate = |w: &mut Self, k: usize, what: &str, act: FloatOp| {
            let slice = fresh(w, &format!("{what}_pre"));
            let slice = push(
                FloatOp::Slice {
                    start: k * hidden,
                    len: hidden,
                },
                vec![preact.clone()],
                slice,
                hidden,
            );
            let out = fresh(w, what);
            push(act, vec![slice], out, hidden)
        };
        let i = gate(self, 0, "input_gate", FloatOp::Sigmoid);
        let o = gate(self, 1, "output_gate", FloatOp::Sigmoid);
        let f = gate(self, 2, "forget_gate", FloatOp::Sigmoid);
        let g = gate(self, 3, "candidate", FloatOp::Tanh);
        let kept = fresh(self, "kept");
        let kept = push(FloatOp::Mul, vec![f, c], kept, hidden);
        let added = fresh(self, "added");
        let added = push(FloatOp::Mul, vec![i, g], added, hidden);
        let c_next = self.name_outlet(OutletId::new(node.id, 1));
        let c_next = push(FloatOp::Add, vec![kept, added], c_next, hidden);
        let squashed = fresh(self, "squashed");
        let squashed = push(FloatOp::Tanh, vec![c_next], squashed, hidden);
        let h_next = self.name_outlet(OutletId::new(node.id, 0));
        push(FloatOp::Mul, vec![o, squashed], h_next, hidden);
        Ok(Mapped::Nodes(nodes))
    }

    /// A Cast of a class input to another integer type is the same indices (an alias).
    fn cast(&self, node: &TypedNode, op: &ops::cast::Cast) -> MapResult {
        let from = self
            .m
            .outlet_fact(node.inputs[0])
            .map_err(|e| format!("{e:#}"))?;
        if from.datum_type.is_integer() && op.to.is_integer() {
            return Ok(Mapped::Alias(node.inputs[0]));
        }
        Ok(Mapped::Unsupported)
    }
}

/// The one node that reads node `id`'s first output, if exactly one does (a chain to match).
pub(crate) fn sole_reader(m: &TypedModel, id: usize) -> Option<&TypedNode> {
    match m.outlet_successors(OutletId::new(id, 0)) {
        [one] => Some(m.node(one.node)),
        _ => None,
    }
}

/// Whether `n` is tract's binary op `name` (`Add`, `Mul`, `Sub`...).
pub(crate) fn bin(n: &TypedNode, name: &str) -> bool {
    n.op_as::<ops::binary::TypedBinOp>()
        .is_some_and(|b| b.0.name() == name)
}

/// A constant's values as finite f32s.
pub(crate) fn floats(t: &Tensor) -> Result<Vec<f32>, String> {
    let t = t
        .cast_to::<f32>()
        .map_err(|e| format!("constant of type {:?}: {e}", t.datum_type()))?;
    let v: Vec<f32> = t
        .to_plain_array_view::<f32>()
        .map_err(|e| format!("{e}"))?
        .iter()
        .copied()
        .collect();
    if v.iter().any(|x| !x.is_finite()) {
        return Err("a constant holds NaN or infinity".into());
    }
    Ok(v)
}

/// A constant operand as one value per channel (axis 1 of the full shape, or the only axis past
/// the batch): every other axis must have size 1.
/// The values of a constant that broadcasts along `axis` of a value of `rank` axes (the batch
/// first), one per channel.
fn per_channel(c: &Tensor, rank: usize, channels: usize, axis: usize) -> Result<Vec<f32>, String> {
    let shape = c.shape();
    if shape.len() > rank {
        return Err(format!("constant {shape:?} has more axes than the value"));
    }
    // Align right, as broadcasting does.
    let offset = rank - shape.len();
    let mut along = None;
    for (i, &d) in shape.iter().enumerate() {
        if d != 1 {
            if i + offset != axis || along.is_some() {
                return Err(format!(
                    "constant {shape:?} broadcasts along another axis than the channels; only per-channel constants are supported"
                ));
            }
            along = Some(d);
        }
    }
    let v = floats(c)?;
    match along {
        None => Ok(vec![v[0]; channels]),
        Some(d) if d == channels => Ok(v),
        Some(d) => Err(format!("constant has {d} values for {channels} channels")),
    }
}

/// tract splits `Gemm(Concat(a, b))` into `EinSum(a) + EinSum(b)` (its "concat-einsum" rule,
/// seen on the project's cGAN exports), and a 1x1 `Conv(Concat(a, b))` (a U-Net's closing
/// layer) the same way: join such a pair back into one `Linear` or 1x1 `Conv` of `Concat(a, b)`,
/// so the class embedding keeps its ONNX form and the bias or BatchNorm after it folds into one
/// layer. Exact: the same products and sums.
fn rejoin_split_linear(g: &mut FloatGraph, onnx_concats: &[(Vec<String>, String)]) {
    /// One half: a Linear (`[k][n]` weights) or a 1x1 Conv (`[cout][cin]`), read only by the Add.
    struct Half {
        k: usize,
        n: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
        conv: bool,
        input_rank: usize,
    }
    let mut i = 0;
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        if node.op != FloatOp::Add || node.inputs.len() != 2 {
            i += 1;
            continue;
        }
        let producer = |t: &str| g.nodes.iter().position(|n| n.output == t);
        let (Some(a), Some(b)) = (producer(&node.inputs[0]), producer(&node.inputs[1])) else {
            i += 1;
            continue;
        };
        let half = |at: usize| {
            let node = &g.nodes[at];
            let input_rank = g.shape_of(&node.inputs[0])?.len();
            if g.readers(&node.output) != 1 {
                return None;
            }
            match &node.op {
                FloatOp::Linear {
                    k,
                    n,
                    weights,
                    bias,
                } if input_rank == 1 => Some(Half {
                    k: *k,
                    n: *n,
                    weights: weights.clone(),
                    bias: bias.clone(),
                    conv: false,
                    input_rank,
                }),
                FloatOp::Conv {
                    cin,
                    cout,
                    kh: 1,
                    kw: 1,
                    stride: (1, 1),
                    pad: [0, 0, 0, 0],
                    weights,
                    bias,
                } if input_rank == 3 => Some(Half {
                    k: *cin,
                    n: *cout,
                    weights: weights.clone(),
                    bias: bias.clone(),
                    conv: true,
                    input_rank,
                }),
                _ => None,
            }
        };
        let (Some(ha), Some(hb)) = (half(a), half(b)) else {
            i += 1;
            continue;
        };
        if ha.n != hb.n || ha.conv != hb.conv || ha.input_rank != hb.input_rank {
            i += 1;
            continue;
        }
        let add = g.nodes[i].clone();
        let parts = vec![g.nodes[a].inputs[0].clone(), g.nodes[b].inputs[0].clone()];
        let mut concat_shape = g.shape_of(&parts[0]).unwrap_or_default().to_vec();
        if let Some(c) = concat_shape.first_mut() {
            *c = ha.k + hb.k;
        }
        let concat_name = onnx_concats
            .iter()
            .find(|(inputs, _)| *inputs == parts)
            .map(|(_, output)| output.clone())
            .unwrap_or_else(|| format!("{}.concat", add.output));
        let concat = Node {
            name: concat_name.clone(),
            op: FloatOp::Concat { axis: 0 },
            inputs: parts,
            output: concat_name.clone(),
            shape: concat_shape,
        };
        let bias = ha.bias.iter().zip(&hb.bias).map(|(x, y)| x + y).collect();
        let (k, n) = (ha.k + hb.k, ha.n);
        let op = if ha.conv {
            // `[cout][cin]`: each output's row is a's inputs, then b's.
            let weights = (0..n)
                .flat_map(|o| {
                    ha.weights[o * ha.k..(o + 1) * ha.k]
                        .iter()
                        .chain(&hb.weights[o * hb.k..(o + 1) * hb.k])
                        .copied()
                })
                .collect();
            FloatOp::Conv {
                cin: k,
                cout: n,
                kh: 1,
                kw: 1,
                stride: (1, 1),
                pad: [0; 4],
                weights,
                bias,
            }
        } else {
            // `[k][n]`: a's rows, then b's.
            FloatOp::Linear {
                k,
                n,
                weights: [ha.weights, hb.weights].concat(),
                bias,
            }
        };
        let joined = Node {
            name: add.name.clone(),
            op,
            inputs: vec![concat_name],
            output: add.output.clone(),
            shape: add.shape.clone(),
        };
        g.nodes[i] = joined;
        g.nodes.insert(i, concat);
        // Remove the two halves (both before i).
        let (hi, lo) = (a.max(b), a.min(b));
        g.nodes.remove(hi);
        g.nodes.remove(lo);
        i = 0;
    }
}
