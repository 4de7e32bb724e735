//! `Reshape`: a vector of `c*h*w` values in CHW order (as ONNX reshapes it) to an NHWC image.
//!
//! Body: `c, h, w, factor` as u16 (factor 0; the layout [`Upsample`](super::upsample) shares).

use super::{expect_shape, int8_inputs, nz, part_mut, Cx, OpKind};
use crate::format::{fits, FormatError, Reader, Shape, TensorInfo, MAX_DIM};
use crate::interp::RunError;
#[cfg(any(feature = "std", test))]
use crate::write::{put_uint, EncodeError};

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::{OutletId, TypedNode};
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reshape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// Reads the `c, h, w, factor` body the layout ops share.
pub(crate) fn read_dims(b: &mut Reader, index: usize) -> Result<[usize; 4], FormatError> {
    let dims = [
        b.u16("c")? as usize,
        b.u16("h")? as usize,
        b.u16("w")? as usize,
        b.u16("factor")? as usize,
    ];
    let [c, h, w, _] = dims;
    if [c, h, w].iter().any(|&d| d == 0 || d > MAX_DIM) || !fits(&[c, h, w]) {
        return Err(FormatError::Op {
            index,
            reason: "shape out of range",
        });
    }
    Ok(dims)
}

/// A layout op's body must not carry an upsampling factor.
pub(crate) fn no_factor(factor: usize, index: usize) -> Result<(), FormatError> {
    if factor == 0 {
        Ok(())
    } else {
        Err(FormatError::Op {
            index,
            reason: "reshape has a factor",
        })
    }
}

impl<'a> OpKind<'a> for Reshape {
    const NAME: &'static str = "Reshape";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let [c, h, w, factor] = read_dims(b, index)?;
        no_factor(factor, index)?;
        Ok(Reshape { c, h, w })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let Reshape { c, h, w } = *self;
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Flat(c * h * w), inputs[0].shape, index)?;
        Ok(Shape::Image { c, h, w })
    }

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a reshape's input"))?;
        let (c, hw) = (nz(self.c), nz(self.h * self.w));
        let n = nz(c * hw);
        for (xs, ys) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            // CHW -> HWC: channel `ch` of pixel `p` moves from `ch * h * w + p`. Blocks of 8
            // channels x 8 pixels are transposed in registers (8 loads, 8 stores); the pixels
            // past the last whole block get one 8-byte store each, from 8 byte loads.
            let (c8, p8) = (c - c % 8, hw - hw % 8);
            for ch in (0..c8).step_by(8) {
                for p in (0..p8).step_by(8) {
                    let rows: [u64; 8] = core::array::from_fn(|j| load8(xs, (ch + j) * hw + p));
                    for (i, col) in transpose8(rows).into_iter().enumerate() {
                        store8(ys, (p + i) * c + ch, col);
                    }
                }
                for (p, dst) in ys.chunks_exact_mut(c).enumerate().skip(p8) {
                    // (ch + j) * hw + p < c * hw = xs.len(): the fallback is never taken.
                    let v: [i8; 8] =
                        core::array::from_fn(|j| xs.get((ch + j) * hw + p).copied().unwrap_or(0));
                    part_mut(dst, ch..ch + 8, "a pixel")?.copy_from_slice(&v);
                }
            }
            for (ch, plane) in xs.chunks_exact(hw).enumerate().skip(c8) {
                let dst = part_mut(ys, ch.., "a channel")?;
                for (v, dst) in plane.iter().zip(dst.iter_mut().step_by(c)) {
                    *dst = *v;
                }
            }
        }
        Ok(())
    }
}

/// Bytes `at..at + 8` of `x` as a little-endian word (0 if out of range, which the callers'
/// bounds rule out).
#[inline(always)]
fn load8(x: &[i8], at: usize) -> u64 {
    x.get(at..at + 8)
        .and_then(|s| <[i8; 8]>::try_from(s).ok())
        .map_or(0, |a| u64::from_le_bytes(a.map(|v| v as u8)))
}

/// Writes `v`'s 8 bytes (little-endian) at `y[at..at + 8]` (nothing if out of range).
#[inline(always)]
fn store8(y: &mut [i8], at: usize, v: u64) {
    if let Some(d) = y.get_mut(at..at + 8) {
        for (d, b) in d.iter_mut().zip(v.to_le_bytes()) {
            *d = b as i8;
        }
    }
}

/// The transpose of an 8x8 byte matrix held as 8 little-endian words (byte `j` of `rows[r]` is
/// element `(r, j)`): byte `r` of word `j` of the result is element `(r, j)`. Three rounds of
/// block swaps: 4x4 blocks (32-bit halves), 2x2 blocks (16-bit pairs), then single bytes.
#[inline(always)]
fn transpose8(mut r: [u64; 8]) -> [u64; 8] {
    for i in 0..4 {
        let (a, b) = (r[i], r[i + 4]);
        r[i] = (a & 0xFFFF_FFFF) | (b << 32);
        r[i + 4] = (a >> 32) | (b & 0xFFFF_FFFF_0000_0000);
    }
    const M16: u64 = 0x0000_FFFF_0000_FFFF;
    for i in [0, 1, 4, 5] {
        let (a, b) = (r[i], r[i + 2]);
        r[i] = (a & M16) | ((b & M16) << 16);
        r[i + 2] = ((a >> 16) & M16) | (b & !M16);
    }
    const M8: u64 = 0x00FF_00FF_00FF_00FF;
    for i in [0, 2, 4, 6] {
        let (a, b) = (r[i], r[i + 1]);
        r[i] = (a & M8) | ((b & M8) << 8);
        r[i + 1] = ((a >> 8) & M8) | (b & !M8);
    }
    r
}

/// The `c, h, w, factor` body the layout ops share (factor 0 for `Reshape` and `Flatten`).
#[cfg(any(feature = "std", test))]
pub fn encode_dims(c: usize, h: usize, w: usize, factor: usize) -> Result<Vec<u8>, EncodeError> {
    let mut b = Vec::new();
    for d in [c, h, w] {
        put_uint(&mut b, d, 2, "dimension")?;
    }
    put_uint(&mut b, factor, 2, "upsampling factor")?;
    Ok(b)
}


/// A float `Reshape`: a vector to an image, the bytes reordered to NHWC.
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx, shape: &[usize]) -> Result<QuantOp, QuantizeError> {
    match (cx.input_shape(), shape) {
        (Shape::Flat(_), &[c, h, w]) => Ok(QuantOp::Reshape { c, h, w }),
        (s, _) => Err(cx.fail(format!(
            "reshape of {s:?} to {shape:?}: only a vector to an image is supported"
        ))),
    }
}

/// Reshapes, and the unsqueeze/squeeze tract writes as axis additions and removals (its
/// `AxisOp`), all past the batch axis: the data order does not change. A reshape to a vector is
/// a [`Flatten`](super::flatten), the same bytes in another op; one that changes nothing an
/// alias. (The LSTM's directions axis, an `AxisOp` too, is an alias the walker reads first.)
#[cfg(feature = "std")]
pub(crate) fn import(
    cx: &mut Walker,
    node: &TypedNode,
    op: &ops::change_axes::AxisOp,
) -> MapResult {
    use ops::change_axes::AxisOp;
    let touches_batch = match op {
        AxisOp::Reshape(at, ..) | AxisOp::Add(at) | AxisOp::Rm(at) => *at == 0,
        AxisOp::Move(..) => return Ok(Mapped::Unsupported),
    };
    if touches_batch {
        return Err("reshapes the batch axis".into());
    }
    let from = cx.float_shape(node.inputs[0])?;
    let to = cx.shape(OutletId::new(node.id, 0))?;
    if from == to {
        return Ok(Mapped::Alias(node.inputs[0]));
    }
    let op = if to.len() == 1 && from.len() > 1 {
        FloatOp::Flatten
    } else {
        FloatOp::Reshape { shape: to }
    };
    Ok(Mapped::Op(op, vec![node.inputs[0]]))
}

/// The float definition of a reshape, and of a [`Flatten`](super::flatten): the same values in
/// the same order.
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval) -> Result<Vec<f32>, String> {
    let Eval {
        x,
        xs,
        out: out_shape,
        ..
    } = *e;
    let out_size: usize = out_shape.iter().product();
    if xs.iter().product::<usize>() != out_size {
        return Err(format!("reshape of {xs:?} to {out_shape:?}"));
    }
    Ok(x.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Isa;

    #[test]
    fn transpose8_is_the_transpose() {
        let rows: [u64; 8] =
            core::array::from_fn(|r| u64::from_le_bytes(core::array::from_fn(|j| (r * 8 + j) as u8)));
        let t = transpose8(rows);
        for (j, word) in t.iter().enumerate() {
            for (r, byte) in word.to_le_bytes().iter().enumerate() {
                assert_eq!(*byte as usize, r * 8 + j, "element ({r}, {j})");
            }
        }
    }

    #[test]
    fn reshape_moves_every_value_to_its_pixel() {
        for c in [1, 3, 8, 9, 16, 17, 64] {
            for (h, w) in [(1, 1), (1, 7), (2, 4), (3, 3), (7, 7), (4, 5)] {
                let hw = h * w;
                let batch = 2;
                let x: Vec<i8> = (0..batch * c * hw).map(|i| (i * 37 % 251) as i8).collect();
                let mut y = vec![0i8; x.len()];
                let mut want = vec![0i8; x.len()];
                for b in 0..batch {
                    for ch in 0..c {
                        for p in 0..hw {
                            want[b * c * hw + p * c + ch] = x[b * c * hw + ch * hw + p];
                        }
                    }
                }
                let (mut tile, mut tile_out) = ([0i8; 0], [0i8; 0]);
                let mut cx = Cx {
                    isa: Isa::Scalar,
                    batch,
                    tile: &mut tile,
                    tile_out: &mut tile_out,
                    indices: &[],
                };
                Reshape { c, h, w }.run(&mut cx, &[&x], &mut y).unwrap();
                assert_eq!(y, want, "c {c} h {h} w {w}");
            }
        }
    }
}
