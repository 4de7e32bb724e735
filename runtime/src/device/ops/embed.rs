//! `Embed`: row `index` of `table`, a copy.
//!
//! - A class-conditional generator's class input, `(Flat(latent), class) -> Flat(latent +
//!   dim)`: each sample's latent followed by row `class` of `table`. Latent and table share one
//!   quantization (the concatenation's).
//! - Token ids alone, `tokens [T] -> Flat(T * dim)`: each sample's `T` rows, one per token, in
//!   order. `T = 1` is a token cell's token (SeqGAN's `nn.Embedding`); `T > 1` a text's ids,
//!   the same values as ONNX's `Gather(table, text [N, T])` flattened to `[N, T * dim]`
//!   (StackGAN's text encoder).
//!
//! Body: `classes u32, dim u32`, then `table [classes x dim]` (i8, row-major), padded to 4.

use super::{copy, nz, part, split_mut, Cx, OpKind};
use crate::format::{
    as_i8, fits, FormatError, Reader, Shape, TensorInfo, TensorKind, MAX_CLASSES, MAX_DIM,
};
use crate::interp::RunError;
#[cfg(any(feature = "std", test))]
use crate::write::{pad4, put_uint, EncodeError};

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::NodeCx;
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{floats, Eval, FloatOp, InputKind, MapResult, Mapped, Node, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::{OutletId, TypedNode};
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

#[derive(Clone, Copy, Debug)]
pub struct Embed<'a> {
    pub classes: usize,
    pub dim: usize,
    pub table: &'a [i8],
}

impl<'a> OpKind<'a> for Embed<'a> {
    const NAME: &'static str = "Embed";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let classes = b.u32("classes")? as usize;
        let dim = b.u32("embedding size")? as usize;
        if classes == 0 || classes > MAX_CLASSES || dim == 0 || dim > MAX_DIM {
            return Err(FormatError::Op {
                index,
                reason: "embedding size out of range",
            });
        }
        // Both factors are bounded, so the product cannot overflow even on 32-bit targets.
        let table = as_i8(b.take(classes * dim, "embedding table")?);
        b.pad4("embedding padding")?;
        Ok(Embed {
            classes,
            dim,
            table,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let bad = |reason| Err(FormatError::Op { index, reason });
        if let [token] = inputs {
            let slots = token.shape.elements();
            return match token.kind {
                TensorKind::Index { classes } if classes == self.classes => {
                    if !fits(&[slots, self.dim]) {
                        return bad("the token rows exceed the tensor size limit");
                    }
                    Ok(Shape::Flat(slots * self.dim))
                }
                TensorKind::Index { .. } => {
                    bad("the token input's vocabulary differs from the table's")
                }
                TensorKind::Int8 => bad("an embedding reads an index"),
            };
        }
        let [latent, class] = inputs else {
            return bad("an embedding reads a latent vector and a class index");
        };
        match (latent.kind, latent.shape, class.kind) {
            (TensorKind::Int8, Shape::Flat(n), TensorKind::Index { classes }) => {
                if classes != self.classes {
                    return bad("the class input's class count differs from the table's");
                }
                if class.shape.elements() != 1 {
                    return bad("an embedding joined to a latent reads one class per sample");
                }
                Ok(Shape::Flat(n + self.dim))
            }
            _ => bad("an embedding reads a latent vector and a class index"),
        }
    }

    fn params(&self) -> usize {
        self.classes * self.dim
    }

    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let dim = self.dim;
        let Some(x) = x.first() else {
            // Each token's row, sample after sample (a sample's `T` tokens are `T` rows in a
            // row). Indices were checked against the table before the run.
            for (ys, &token) in y.chunks_exact_mut(nz(dim)).zip(cx.indices) {
                let row = part(self.table, token as usize * dim.., "an embedding")?;
                copy(ys, part(row, ..dim, "an embedding")?, "an embedding")?;
            }
            return Ok(());
        };
        // Classes were checked against the table before the run.
        let latent = nz(x.len() / nz(cx.batch));
        for ((xs, ys), &class) in x
            .chunks_exact(latent)
            .zip(y.chunks_exact_mut(nz(latent + dim)))
            .zip(cx.indices)
        {
            let (z, e) = split_mut(ys, latent, "an embedding")?;
            copy(z, xs, "a latent")?;
            let row = part(self.table, class as usize * dim.., "an embedding")?;
            copy(e, part(row, ..dim, "an embedding")?, "an embedding")?;
        }
        Ok(())
    }
}

/// The body of a `classes x dim` table, row-major.
#[cfg(any(feature = "std", test))]
pub fn encode(classes: usize, dim: usize, table: &[i8]) -> Result<Vec<u8>, EncodeError> {
    let mut b = Vec::new();
    put_uint(&mut b, classes, 4, "class count")?;
    put_uint(&mut b, dim, 4, "embedding size")?;
    if table.len() != classes * dim {
        return Err(EncodeError::Range {
            what: "embedding table length",
            value: table.len(),
        });
    }
    b.extend(table.iter().map(|&v| v as u8));
    pad4(&mut b);
    Ok(b)
}

/// A float `Embed` read on its own (a token cell's, or one a cGAN multiplies with its latent):
/// the table in the output's quantization. (One joined after a latent by a concatenation is the
/// quantizer's graph rewrite: the latent then takes the concatenation's quantization.)
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx, classes: usize, dim: usize, table: &[f32]) -> QuantOp {
    QuantOp::Embed {
        classes,
        dim,
        table: table.iter().map(|&v| cx.output.quantize(v)).collect(),
    }
}

/// tract's `Gather(table, class)`: an embedding lookup on a class input, which sets the
/// input's class count. (A `Gather` at index 0 that takes away the LSTM's directions axis is an
/// alias the walker reads first.)
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::array::Gather) -> MapResult {
    let (table, idx) = (node.inputs[0], node.inputs[1]);
    let table = cx
        .konst(table)
        .ok_or("only a lookup in a constant table is supported")?;
    let idx_name = cx.names.get(&idx).cloned().unwrap_or_default();
    let input = cx.inputs.iter().position(|i| i.name == idx_name);
    let (Some(input), 0, [classes, dim]) = (input, op.axis, table.shape()) else {
        return Err(format!(
            "only Gather(table [classes, dim], class input, axis=0) is supported (axis {}, table {:?})",
            op.axis,
            table.shape()
        ));
    };
    let (classes, dim) = (*classes, *dim);
    if classes == 0 || dim == 0 {
        return Err("the embedding table is empty".into());
    }
    let table = floats(table)?;
    match &mut cx.inputs[input].kind {
        InputKind::Class { classes: c } if *c == 0 || *c == classes => *c = classes,
        _ => {
            return Err(format!(
                "{idx_name} is not a class input of {classes} classes"
            ))
        }
    }
    let embed = FloatOp::Embed {
        classes,
        dim,
        table,
    };
    if cx.inputs[input].shape.is_empty() {
        return Ok(Mapped::Op(embed, vec![idx]));
    }
    // A text's `[N, T]` token ids: their `T` rows in order, as the one vector `[T * dim]`
    // its readers take (ONNX flattens `[N, T, dim]` before the Gemm; tract folds that
    // flattening into the product, and a Reshape that remains becomes an alias).
    let slots: usize = cx.inputs[input].shape.iter().product();
    let output = cx.name_outlet(OutletId::new(node.id, 0));
    Ok(Mapped::Nodes(vec![Node {
        name: node.name.clone(),
        op: embed,
        inputs: vec![idx_name],
        output,
        shape: vec![slots * dim],
    }]))
}

/// The float definition this op is tested against ([`FloatOp::Embed`] in plain f32): each
/// index's row in order.
#[cfg(feature = "std")]
pub(crate) fn reference(
    e: &Eval,
    classes: usize,
    dim: usize,
    table: &[f32],
) -> Result<Vec<f32>, String> {
    let x = e.x;
    // Each index's row in order: `[T]` token ids give `[T * dim]`.
    let mut y = Vec::with_capacity(x.len() * dim);
    for &class in x {
        let c = class as usize;
        if class.fract() != 0.0 || class < 0.0 || c >= classes {
            return Err(format!("class {class} out of 0..{classes}"));
        }
        y.extend_from_slice(&table[c * dim..(c + 1) * dim]);
    }
    Ok(y)
}
