//! `Mul`: elementwise product of two int8 tensors of one shape (a gate), with
//! `s0 * s1 / s_out` held as `mult * 2^-shift`:
//! `y = clamp(zp_out + round_half_up((x0 - zp0) * (x1 - zp1) * mult, shift), min, max)`.
//! The product of the centred values is at most 255^2, times `|mult| < 2^31`: below 2^47 in
//! i64. Runs in place over its first input.
//!
//! Body (12 bytes): `zp0, zp1, zp_out, shift, min, max` (i8, i8, i8, u8, i8, i8), 2 reserved,
//! `mult` (i32).

use super::add::{binary_output, binary_run, read_binary, round_shift, saturate};
use super::{Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo};
use crate::interp::RunError;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// The float definition: the float op this int8 op implements, in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::Eval;
// Import: tract's `Mul` of two values is read with its other binary ops by the importer's
// walker (`Walker::binary` in host/import/tract.rs: one tract op that becomes four of ours).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mul {
    pub zp: [i8; 2],
    pub mult: i32,
    pub shift: u8,
    pub zp_out: i8,
    pub min: i8,
    pub max: i8,
}

impl Mul {
    /// The definition, on one pair of values.
    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let v = (a as i64 - self.zp[0] as i64) * (b as i64 - self.zp[1] as i64) * self.mult as i64;
        saturate(round_shift(v, self.shift), self.zp_out, self.min, self.max)
    }

    /// The body bytes.
    #[cfg(any(feature = "std", test))]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = super::add::binary_header(self.zp, self.zp_out, self.shift, self.min, self.max);
        b.extend_from_slice(&self.mult.to_le_bytes());
        b
    }
}

impl<'a> OpKind<'a> for Mul {
    const NAME: &'static str = "Mul";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let (zp, zp_out, shift, min, max) = read_binary(b, index)?;
        let mult = b.u32("multiplier")? as i32;
        Ok(Mul {
            zp,
            mult,
            shift,
            zp_out,
            min,
            max,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        binary_output(self.zp, inputs, index)
    }

    const IN_PLACE: bool = true;

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        binary_run(x, y, |a, b| self.apply(a, b))
    }
}

/// A float `Mul` of two tensors: `s0 * s1 / s_out` as one multiplier.
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx) -> Result<QuantOp, QuantizeError> {
    let [a, b] = cx.inputs[..] else {
        return Err(cx.fail("a product reads two tensors"));
    };
    let m = a.quant.scale as f64 * b.quant.scale as f64 / cx.output.scale as f64;
    let (mult, shift) =
        crate::quantize::multiplier(m).ok_or_else(|| cx.fail("scales out of range"))?;
    Ok(QuantOp::Mul(Mul {
        zp: [a.quant.zero_point, b.quant.zero_point],
        mult,
        shift,
        zp_out: cx.output.zero_point,
        min: -128,
        max: 127,
    }))
}

/// The float definition this op is tested against ([`FloatOp::Mul`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval) -> Result<Vec<f32>, String> {
    super::add::pair_reference(e, "Mul", |a, b| a * b)
}
