//! `Reshape`: a vector of `c*h*w` values in CHW order (as ONNX reshapes it) to an NHWC image.
//!
//! Body: `c, h, w, factor` as u16 (factor 0; the layout [`Upsample`](super::upsample) shares).

use super::{expect_shape, int8_inputs, nz, part_mut, Cx, OpKind};
use crate::format::{fits, FormatError, Reader, Shape, TensorInfo, MAX_DIM};
use crate::interp::RunError;
#[cfg(any(feature = "std", test))]
use crate::write::{put_uint, EncodeError};

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
            // CHW -> HWC: channel `ch` of pixel `p` moves from `ch * h * w + p`. Eight
            // channels at a time, so that each pixel gets one 8-byte store.
            let c8 = c - c % 8;
            for ch in (0..c8).step_by(8) {
                for (p, dst) in ys.chunks_exact_mut(c).enumerate() {
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
