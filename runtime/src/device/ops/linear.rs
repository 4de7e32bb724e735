//! `Linear`: a fully connected layer, `Flat(k) -> Flat(n)`, one GEMM over the batch's rows.
//!
//! Body: `k u32, n u32`, input zero point, output zero point, clamp min and max (i8 each), the
//! requantization arrays ([`super::gemm::read_requant`]) and the packed `[k x n]` weights.

use super::gemm::{read_gemm_header, read_requant, read_weights};
use super::{copy, expect_shape, expect_zero_point, int8_inputs, nz, split_mut, Cx, OpKind, Scratch};
use crate::format::{FormatError, Gemm, Reader, Shape, TensorInfo, MAX_ELEMENTS};
use crate::interp::{RunError, TILE_ROWS};
use crate::kernels::{gemm_requant, Isa, PackedWeights, Requant, MAX_K, NR};
use core::ops::Range;
#[cfg(any(feature = "std", test))]
use crate::write::{column_sums, put_packed, put_requant, put_uint, EncodeError, RequantParams};

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{floats, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::{OutletId, TypedNode};
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

#[derive(Clone, Copy, Debug)]
pub struct Linear<'a> {
    pub gemm: Gemm<'a>,
    /// `[k x n]`.
    pub weights: PackedWeights<'a>,
}

impl<'a> OpKind<'a> for Linear<'a> {
    const NAME: &'static str = "Linear";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let k = b.u32("in features")? as usize;
        let n = b.u32("out features")? as usize;
        let (zp_in, zp_out, min, max) = read_gemm_header(b)?;
        if k > MAX_K || n > MAX_ELEMENTS {
            return Err(FormatError::Op {
                index,
                reason: "matrix size out of range",
            });
        }
        let requant = read_requant(b, n, n, (zp_out, min, max), index)?;
        let weights = read_weights(b, k, n, index)?;
        Ok(Linear {
            gemm: Gemm { zp_in, requant },
            weights,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Flat(self.weights.k()), inputs[0].shape, index)?;
        expect_zero_point(self.gemm.zp_in, &inputs[0], index)?;
        Ok(Shape::Flat(self.weights.n()))
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            tile_depth: self.weights.kp(),
            tile_out: 0,
        }
    }

    fn macs(&self) -> usize {
        self.weights.k() * self.weights.n()
    }

    fn params(&self) -> usize {
        self.weights.k() * self.weights.n() + self.weights.n()
    }

    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a linear layer's input"))?;
        let w = self.weights;
        let (k, kp, n) = (nz(w.k()), w.kp(), w.n());
        // TILE_ROWS samples per GEMM: `x` holds batch rows of k, `y` batch rows of n.
        for (xs, ys) in x
            .chunks(nz(TILE_ROWS * k))
            .zip(y.chunks_mut(nz(TILE_ROWS * n)))
        {
            let rows = xs.len() / k;
            stage(cx.tile, xs, k, kp)?;
            gemm_requant(cx.isa, cx.tile, rows, w, &self.gemm.requant, ys)?;
        }
        Ok(())
    }

    /// One sample's "rows" are its blocks of [`NR`] output columns: each block's weights are
    /// one contiguous part of the packed matrix, so a band of blocks is a smaller Linear (its
    /// own columns' requantization) and a batch of one splits over threads by columns.
    fn rows(&self, _isa: Isa) -> usize {
        let n = self.weights.n();
        if n.is_multiple_of(NR) {
            n / NR
        } else {
            0
        }
    }

    fn run_rows(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8], rows: Range<usize>) -> Result<(), RunError> {
        let bad = || RunError::Internal("a linear layer's column band");
        let x = x.first().ok_or(RunError::Internal("a linear layer's input"))?;
        let w = self.weights;
        let (k, kp) = (w.k(), w.kp());
        let cols = rows.start * NR..rows.end * NR;
        if cx.batch != 1 || cols.start > cols.end || cols.end > w.n() || y.len() != cols.len() || x.len() != k {
            return Err(bad());
        }
        if cols.is_empty() {
            return Ok(());
        }
        let data = w.data().get(rows.start * kp * NR..rows.end * kp * NR).ok_or_else(bad)?;
        let band = PackedWeights::new(data, k, cols.len()).ok_or_else(bad)?;
        let rq = &self.gemm.requant;
        let rq = Requant {
            bias: rq.bias.slice(cols.start, cols.len()).ok_or_else(bad)?,
            mult: rq.mult.slice(cols.start, cols.len()).ok_or_else(bad)?,
            shift: rq.shift.get(cols.clone()).ok_or_else(bad)?,
            ..*rq
        };
        stage(cx.tile, x, k, kp)?;
        gemm_requant(cx.isa, cx.tile, 1, band, &rq, y)?;
        Ok(())
    }
}

/// Copies the rows of `xs` (`k` values each) into the GEMM tile's rows of `kp`, zeroing each
/// row's padding.
fn stage(tile: &mut [i8], xs: &[i8], k: usize, kp: usize) -> Result<(), RunError> {
    for (dst, src) in tile.chunks_exact_mut(nz(kp)).zip(xs.chunks_exact(nz(k))) {
        let (head, pad) = split_mut(dst, k, "a GEMM row")?;
        copy(head, src, "a GEMM row")?;
        pad.fill(0);
    }
    Ok(())
}

/// The body of a `[k x n]` layer with `weights[k][n]` row-major; biases are folded with the
/// input zero point here.
#[cfg(any(feature = "std", test))]
pub fn encode(k: usize, n: usize, zp_in: i8, requant: &RequantParams, weights: &[i8]) -> Result<Vec<u8>, EncodeError> {
    let mut b = Vec::new();
    put_uint(&mut b, k, 4, "input features")?;
    put_uint(&mut b, n, 4, "output features")?;
    b.extend_from_slice(&[
        zp_in as u8,
        requant.zp_out as u8,
        requant.min as u8,
        requant.max as u8,
    ]);
    let w = |kk: usize, nn: usize| weights[kk * n + nn];
    put_requant(&mut b, requant, zp_in, &[column_sums(k, n, &w)])?;
    put_packed(&mut b, k, n, w);
    Ok(b)
}

/// A float `Linear` (`weights [k][n]`) in int8: symmetric weights per output column. On a
/// sequence, each step's product is a 1x1 convolution of the image `[c = k, h = T, w = 1]`.
#[cfg(feature = "std")]
pub(crate) fn quantize(
    cx: &NodeCx,
    k: usize,
    n: usize,
    weights: &[f32],
    bias: &[f32],
) -> Result<QuantOp, QuantizeError> {
    if let Shape::Image { h, w: 1, .. } = cx.input_shape() {
        // `[k][n]` to the convolution's `[cout][cin]`.
        let wt: Vec<f32> = (0..k * n).map(|i| weights[(i % k) * n + i / k]).collect();
        return super::conv::pointwise(cx, "Linear", (k, n, h, 1), &wt, bias);
    }
    let (w, ws) = crate::quantize::quantize_weights(weights, n, |j| j % n);
    Ok(QuantOp::Linear {
        k,
        n,
        zp_in: cx.input().zero_point,
        requant: cx.requant("Linear", bias, &ws, None)?,
        weights: w,
    })
}

/// MatMul/Gemm: tract's `EinSum` of a `[N, k]` value with a constant `[k, n]` or `[n, k]`. A 1x1
/// convolution is an `EinSum` too after decluttering: that form is read by
/// [`super::conv::import_pointwise`].
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::einsum::EinSum) -> MapResult {
    if op.q_params.is_some() || node.inputs.len() != 2 {
        return Ok(Mapped::Unsupported);
    }
    let formula = op.axes.to_string();
    let (lhs, out) = formula
        .split_once("->")
        .ok_or_else(|| format!("cannot read the EinSum formula {formula}"))?;
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let out: Vec<char> = out.chars().collect();
    let (x_at, w_at) = match (cx.konst(node.inputs[0]), cx.konst(node.inputs[1])) {
        (None, Some(_)) => (0, 1),
        (Some(_), None) => (1, 0),
        _ => return Err("only a product of a value with constant weights is supported".into()),
    };
    if terms.len() != 2 {
        return Err(format!("EinSum {formula} does not have two operands"));
    }
    let (x, wt) = (&terms[x_at], &terms[w_at]);
    if let ([n, i, h, w], [on, o, oh, ow]) = (x.as_slice(), out.as_slice()) {
        if on == n && oh == h && ow == w && o != i {
            return super::conv::import_pointwise(cx, node, x_at, w_at, (*i, *o), wt, &formula);
        }
    }
    if x.len() >= 3 || out.len() >= 3 {
        if let Some(mapped) = flat_product(cx, node, x_at, w_at, (x, wt, &out))? {
            return Ok(mapped);
        }
    }
    // x = [m, k] (m the batch), or a sequence [b, m, k] (b the batch, m the steps, the same
    // product at every step); w = [k, n] or [n, k]; out = [m, n] or [b, m, n].
    let (x_lead, out_lead) = (
        &x[..x.len().saturating_sub(1)],
        &out[..out.len().saturating_sub(1)],
    );
    let (Some(k), Some(on), 1..=2) = (x.last(), out.last(), x_lead.len()) else {
        return Err(format!(
            "EinSum {formula} is not a matrix product of [N, k] or [N, T, k] inputs"
        ));
    };
    let transposed = match wt[..] {
        [a, b] if a == *k && b == *on => false,
        [a, b] if a == *on && b == *k => true,
        _ => {
            return Err(format!(
                "EinSum {formula} is not x [N, k] times a weight matrix"
            ))
        }
    };
    if x_lead != out_lead || on == k {
        return Err(format!("EinSum {formula} is not a matrix product"));
    }
    let (k_len, n_len, weights) = cx.weight_matrix(node.inputs[w_at], transposed)?;
    Ok(Mapped::Op(
        FloatOp::Linear {
            k: k_len,
            n: n_len,
            weights,
            bias: vec![0.0; n_len],
        },
        vec![node.inputs[x_at]],
    ))
}

/// A product that contracts every axis of `x` but the batch with a constant, `x [N, a, b,
/// ...]` times `w [n, a, b, ...]` (any order) into `[N, n]`, maybe with new axes of size 1
/// after it (`[N, n, 1, 1]`): tract folds a flattening before a Gemm (`x.view(n, -1)` of an
/// embedding's `[N, T, E]` rows) and a `.view(n, -1, 1, 1)` after it into such an EinSum
/// (`mak,nak->mn`, `mak,nak->mnbc`). A Linear of the flattened `x` (row-major, `x`'s axes in
/// order): `Ok(None)` if the formula is not of this form.
#[cfg(feature = "std")]
fn flat_product(
    cx: &Walker,
    node: &TypedNode,
    x_at: usize,
    w_at: usize,
    (x, wt, out): (&[char], &[char], &[char]),
) -> Result<Option<Mapped>, String> {
    let (Some(&batch), Some(&on)) = (x.first(), out.get(1)) else {
        return Ok(None);
    };
    let contracted = &x[1..];
    let new_axes = &out[2..];
    let form = out[0] == batch
        && !x.contains(&on)
        && wt.len() == x.len()
        && wt.iter().all(|c| *c == on || contracted.contains(c))
        && contracted
            .iter()
            .all(|c| wt.contains(c) && !out.contains(c))
        && new_axes.iter().all(|c| !x.contains(c) && !wt.contains(c));
    if !form {
        return Ok(None);
    }
    let x_shape = cx.shape(node.inputs[x_at])?;
    let out_shape = cx.shape(OutletId::new(node.id, 0))?;
    let c = cx
        .konst(node.inputs[w_at])
        .ok_or("the weights are not a constant")?;
    let w_shape = c.shape().to_vec();
    let w = floats(c)?;
    let size = |axis: char| wt.iter().position(|&a| a == axis).map(|p| w_shape[p]);
    let n = size(on).ok_or("the output axis is not the weights'")?;
    if w_shape.len() != wt.len()
        || x_shape.len() != contracted.len()
        || contracted
            .iter()
            .zip(&x_shape)
            .any(|(&a, &d)| size(a) != Some(d))
        || out_shape.first() != Some(&n)
        || out_shape[1..].iter().any(|&d| d != 1)
    {
        return Err(format!(
            "EinSum of x {x_shape:?} and weights {w_shape:?} into {out_shape:?} does not match its axes"
        ));
    }
    // Row `i` of the matrix is x's flat index `i` (x's axes row-major), column `j` the
    // output; each value is read at its place in the weights' own axis order.
    let strides: Vec<usize> = (0..wt.len())
        .map(|p| w_shape[p + 1..].iter().product())
        .collect();
    let stride = |axis: char| strides[wt.iter().position(|&a| a == axis).unwrap_or(0)];
    let k: usize = x_shape.iter().product();
    let mut weights = vec![0.0; k * n];
    for i in 0..k {
        // x's multi-index of flat index i, as an offset into the weights.
        let (mut rest, mut at) = (i, 0);
        for (&axis, &d) in contracted.iter().zip(&x_shape).rev() {
            at += (rest % d) * stride(axis);
            rest /= d;
        }
        for j in 0..n {
            weights[i * n + j] = w[at + j * stride(on)];
        }
    }
    Ok(Some(Mapped::Op(
        FloatOp::Linear {
            k,
            n,
            weights,
            bias: vec![0.0; n],
        },
        vec![node.inputs[x_at]],
    )))
}

/// The float definition this op is tested against: `y = x W + b` on a vector, or on each step
/// of a sequence `[T, k]` (the plain-f32 [`FloatOp::Linear`] the quantizer calibrates on).
#[cfg(feature = "std")]
pub(crate) fn reference(
    e: &Eval,
    k: usize,
    n: usize,
    weights: &[f32],
    bias: &[f32],
) -> Result<Vec<f32>, String> {
    let Eval { x, xs, batch, .. } = *e;
    // A vector, or each step of a sequence.
    let step = matches!(xs, [_, f] if *f == k);
    if xs.iter().product::<usize>() != k && !step {
        return Err(format!("Linear of {k} inputs gets {xs:?}"));
    }
    let mut y = Vec::with_capacity(batch * n);
    for s in x.chunks(k) {
        let mut row = bias.to_vec();
        for (i, &v) in s.iter().enumerate() {
            for (r, w) in row.iter_mut().zip(&weights[i * n..(i + 1) * n]) {
                *r += v * w;
            }
        }
        y.extend(row);
    }
    Ok(y)
}
