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
