//! `Add`: elementwise sum of two int8 tensors of one shape (a residual connection), each
//! rescaled to the output's scale: with `m_i = s_i / s_out` held as `mult_i * 2^-shift`,
//! `y = clamp(zp_out + round_half_up((x0 - zp0) * mult0 + (x1 - zp1) * mult1, shift), min, max)`.
//! `|x - zp| <= 255` and `|mult| < 2^31`, so the sum stays below 2^41 in i64. The clamp carries
//! a fused ReLU (`min = zp_out`). Runs in place over its first input.
//!
//! Body (16 bytes): `zp0, zp1, zp_out, shift, min, max` (i8, i8, i8, u8, i8, i8), 2 reserved,
//! `mult0, mult1` (i32).

use super::{expect_shape, expect_zero_point, int8_inputs, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo};
use crate::interp::RunError;
use crate::kernels::MAX_SHIFT;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// The float definition: the float op this int8 op implements, in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::Eval;
// Import: tract's `Add` of two values is read with its other binary ops by the importer's
// walker (`Walker::binary` in host/import/tract.rs: one tract op that becomes four of ours).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add {
    pub zp: [i8; 2],
    pub mult: [i32; 2],
    pub shift: u8,
    pub zp_out: i8,
    pub min: i8,
    pub max: i8,
}

/// `round_half_up(v / 2^shift)` for `1 <= shift <= 62` and `|v| < 2^62`.
#[inline]
pub(crate) fn round_shift(v: i64, shift: u8) -> i64 {
    let s = shift.max(1).min(62);
    (v + (1i64 << (s - 1))) >> s
}

/// `zp + v` saturated to `min..=max`.
#[inline]
pub(crate) fn saturate(v: i64, zp: i8, min: i8, max: i8) -> i8 {
    (v + zp as i64).max(min as i64).min(max as i64) as i8
}

/// Reads the shared header of the binary elementwise ops (`Add`, `Mul`).
pub(crate) fn read_binary(b: &mut Reader, index: usize) -> Result<([i8; 2], i8, u8, i8, i8), FormatError> {
    let zp = [b.i8("zero point 0")?, b.i8("zero point 1")?];
    let zp_out = b.i8("output zero point")?;
    let shift = b.u8("shift")?;
    let (min, max) = (b.i8("clamp min")?, b.i8("clamp max")?);
    b.u16("reserved")?;
    if b.validate && (shift == 0 || shift > MAX_SHIFT || min > max) {
        return Err(FormatError::Op {
            index,
            reason: "shift out of range or clamp minimum above maximum",
        });
    }
    Ok((zp, zp_out, shift, min, max))
}

/// The header [`read_binary`] reads.
#[cfg(any(feature = "std", test))]
pub(crate) fn binary_header(zp: [i8; 2], zp_out: i8, shift: u8, min: i8, max: i8) -> Vec<u8> {
    vec![zp[0] as u8, zp[1] as u8, zp_out as u8, shift, min as u8, max as u8, 0, 0]
}

/// Checks the two same-shaped int8 inputs of a binary elementwise op.
pub(crate) fn binary_output(zp: [i8; 2], inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
    int8_inputs(inputs, 2, index)?;
    expect_shape(inputs[0].shape, inputs[1].shape, index)?;
    expect_zero_point(zp[0], &inputs[0], index)?;
    expect_zero_point(zp[1], &inputs[1], index)?;
    Ok(inputs[0].shape)
}

/// Applies `f(x0, x1) -> y` elementwise; an empty first input means in place (its values in `y`).
#[inline]
pub(crate) fn binary_run(x: &[&[i8]], y: &mut [i8], f: impl Fn(i8, i8) -> i8) -> Result<(), RunError> {
    let (Some(a), Some(b)) = (x.first(), x.get(1)) else {
        return Err(RunError::Internal("a binary op's inputs"));
    };
    if b.len() != y.len() || !(a.is_empty() || a.len() == y.len()) {
        return Err(RunError::Internal("a binary op's sizes"));
    }
    if a.is_empty() {
        for (d, &v) in y.iter_mut().zip(b.iter()) {
            *d = f(*d, v);
        }
    } else {
        for ((d, &u), &v) in y.iter_mut().zip(a.iter()).zip(b.iter()) {
            *d = f(u, v);
        }
    }
    Ok(())
}

impl Add {
    /// The definition, on one pair of values.
    #[inline]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let v = (a as i64 - self.zp[0] as i64) * self.mult[0] as i64
            + (b as i64 - self.zp[1] as i64) * self.mult[1] as i64;
        saturate(round_shift(v, self.shift), self.zp_out, self.min, self.max)
    }

    /// The body bytes.
    #[cfg(any(feature = "std", test))]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = binary_header(self.zp, self.zp_out, self.shift, self.min, self.max);
        b.extend_from_slice(&self.mult[0].to_le_bytes());
        b.extend_from_slice(&self.mult[1].to_le_bytes());
        b
    }
}

impl<'a> OpKind<'a> for Add {
    const NAME: &'static str = "Add";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let (zp, zp_out, shift, min, max) = read_binary(b, index)?;
        let mult = [b.u32("multiplier 0")? as i32, b.u32("multiplier 1")? as i32];
        Ok(Add {
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

/// A float `Add` of two tensors: each input's scale over the output's, with one shift.
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx) -> Result<QuantOp, QuantizeError> {
    let [a, b] = cx.inputs[..] else {
        return Err(cx.fail("an addition reads two tensors"));
    };
    let ms = [
        a.quant.scale as f64 / cx.output.scale as f64,
        b.quant.scale as f64 / cx.output.scale as f64,
    ];
    let (m, shift) = crate::quantize::shared_multipliers(&ms)
        .ok_or_else(|| cx.fail("scales out of range"))?;
    Ok(QuantOp::Add(Add {
        zp: [a.quant.zero_point, b.quant.zero_point],
        mult: [m[0], m[1]],
        shift,
        zp_out: cx.output.zero_point,
        min: -128,
        max: 127,
    }))
}

/// The float definition this op is tested against ([`FloatOp::Add`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval) -> Result<Vec<f32>, String> {
    pair_reference(e, "Add", |a, b| a + b)
}

/// `f` of two values of one shape, element by element: the float definitions of `Add` and `Mul`.
#[cfg(feature = "std")]
pub(crate) fn pair_reference(
    e: &Eval,
    kind: &str,
    f: impl Fn(f32, f32) -> f32,
) -> Result<Vec<f32>, String> {
    let (x, xs) = (e.x, e.xs);
    let (b, bs) = e.ins[1];
    if xs != bs {
        return Err(format!("{kind} of {xs:?} and {bs:?}"));
    }
    Ok(x.iter().zip(b).map(|(&a, &b)| f(a, b)).collect())
}
