//! `Flatten`: an NHWC image to a vector of `c*h*w` values in CHW order (as ONNX flattens it).
//!
//! Body: `c, h, w, factor` as u16 (factor 0).

use super::reshape::{no_factor, read_dims};
use super::{expect_shape, int8_inputs, nz, part, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo};
use crate::interp::RunError;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::NodeCx;
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import: a reshape to a vector, read with the other reshapes in `reshape::import`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl<'a> OpKind<'a> for Flatten {
    const NAME: &'static str = "Flatten";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let [c, h, w, factor] = read_dims(b, index)?;
        no_factor(factor, index)?;
        Ok(Flatten { c, h, w })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let Flatten { c, h, w } = *self;
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Image { c, h, w }, inputs[0].shape, index)?;
        Ok(Shape::Flat(c * h * w))
    }

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a flatten's input"))?;
        let (c, hw) = (nz(self.c), nz(self.h * self.w));
        let n = nz(c * hw);
        for (xs, ys) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            // HWC -> CHW.
            for (ch, plane) in ys.chunks_exact_mut(hw).enumerate() {
                let src = part(xs, ch.., "a channel")?;
                for (dst, v) in plane.iter_mut().zip(src.iter().step_by(c)) {
                    *dst = *v;
                }
            }
        }
        Ok(())
    }
}

/// A float `Flatten`: an image to a vector in CHW order; a vector stays itself (an identity
/// table).
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx) -> QuantOp {
    match cx.input_shape() {
        Shape::Image { c, h, w } => QuantOp::Flatten { c, h, w },
        Shape::Flat(_) => QuantOp::Lut {
            table: core::array::from_fn(|i| i as u8),
        },
    }
}
