//! `Concat`: joins int8 tensors along the channel axis (a U-Net's skip connection): each
//! output pixel holds input 0's channels, then input 1's, and so on. Inputs of other scales are
//! requantized to the output's: `y = clamp(zp_out + round_half_up((x - zp_i) * mult_i, shift_i))`
//! (`mult 2^30, shift 30` and equal zero points copy exactly).
//!
//! Body: `n u8, zp_out i8, 2 reserved, pixels per sample u32` (1 for vectors), then per input
//! `channels u16, zp i8, shift u8, mult i32`.

use super::add::{round_shift, saturate};
use super::{copy, nz, part, part_mut, Cx, OpKind};
use crate::format::{fits, FormatError, Reader, Shape, TensorInfo, TensorKind, MAX_DIM, MAX_ELEMENTS, MAX_NODE_INPUTS};
use crate::interp::RunError;
use crate::kernels::MAX_SHIFT;

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
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

/// Bytes per input in the body.
const INPUT_LEN: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct Concat<'a> {
    pub zp_out: i8,
    /// Pixels per sample (`h * w`; 1 for vectors).
    pub pixels: usize,
    inputs: &'a [u8],
}

/// One input of a concatenation: its channels and how its values are rescaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub channels: usize,
    pub zp: i8,
    pub shift: u8,
    pub mult: i32,
}

impl Part {
    /// The identity rescale: `mult 2^30 >> 30`.
    pub fn copy(channels: usize, zp: i8) -> Part {
        Part {
            channels,
            zp,
            shift: 30,
            mult: 1 << 30,
        }
    }
}

impl<'a> Concat<'a> {
    /// The inputs' parts, in order.
    pub fn parts(&self) -> impl Iterator<Item = Part> + 'a {
        self.inputs.as_chunks::<INPUT_LEN>().0.iter().map(|b| Part {
            channels: u16::from_le_bytes([b[0], b[1]]) as usize,
            zp: b[2] as i8,
            shift: b[3],
            mult: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    fn channels(&self) -> usize {
        self.parts().map(|p| p.channels).sum()
    }

    /// The body bytes of a concatenation of `parts`.
    #[cfg(any(feature = "std", test))]
    pub fn encode(zp_out: i8, pixels: usize, parts: &[Part]) -> Vec<u8> {
        let mut b = vec![parts.len() as u8, zp_out as u8, 0, 0];
        b.extend_from_slice(&(pixels as u32).to_le_bytes());
        for p in parts {
            b.extend_from_slice(&(p.channels as u16).to_le_bytes());
            b.extend_from_slice(&[p.zp as u8, p.shift]);
            b.extend_from_slice(&p.mult.to_le_bytes());
        }
        b
    }
}

impl<'a> OpKind<'a> for Concat<'a> {
    const NAME: &'static str = "Concat";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let bad = |reason| FormatError::Op { index, reason };
        let n = b.u8("input count")? as usize;
        let zp_out = b.i8("output zero point")?;
        b.u16("reserved")?;
        let pixels = b.u32("pixels")? as usize;
        if !(2..=MAX_NODE_INPUTS).contains(&n) || pixels == 0 || pixels > MAX_ELEMENTS {
            return Err(bad("input count or size out of range"));
        }
        let op = Concat {
            zp_out,
            pixels,
            inputs: b.take(n * INPUT_LEN, "concatenation inputs")?,
        };
        if b.validate {
            if op.parts().any(|p| p.channels == 0 || p.channels > MAX_DIM || p.shift == 0 || p.shift > MAX_SHIFT) {
                return Err(bad("input channels or shift out of range"));
            }
            if !fits(&[op.channels(), pixels]) {
                return Err(bad("output size out of range"));
            }
        }
        Ok(op)
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let bad = |reason| Err(FormatError::Op { index, reason });
        if inputs.len() != self.parts().count() {
            return bad("wrong number of inputs");
        }
        let mut hw = None;
        for (t, p) in inputs.iter().zip(self.parts()) {
            if t.kind != TensorKind::Int8 || t.quant.zero_point != p.zp {
                return bad("inputs must be int8 tensors with the recorded zero points");
            }
            let (c, h, w) = match t.shape {
                Shape::Flat(n) => (n, 1, 1),
                Shape::Image { c, h, w } => (c, h, w),
            };
            if c != p.channels || h * w != self.pixels || hw.is_some_and(|s| s != (h, w)) {
                return bad("inputs must share height and width, with the recorded channels");
            }
            hw = Some((h, w));
        }
        let c = self.channels();
        Ok(match (inputs.first().map(|t| t.shape), hw) {
            (Some(Shape::Image { .. }), Some((h, w))) => Shape::Image { c, h, w },
            _ => Shape::Flat(c),
        })
    }

    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let c_out = nz(self.channels());
        let rows = cx.batch.saturating_mul(self.pixels);
        let mut at = 0;
        for (xs, p) in x.iter().zip(self.parts()) {
            let c = nz(p.channels);
            let exact = p.zp == self.zp_out && p.mult == 1 << 30 && p.shift == 30;
            for (src, dst) in xs.chunks_exact(c).zip(y.chunks_exact_mut(c_out)).take(rows) {
                let dst = part_mut(dst, at..at + c, "a concatenated pixel")?;
                if exact {
                    copy(dst, part(src, ..c, "a pixel")?, "a pixel")?;
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        let r = round_shift((v as i64 - p.zp as i64) * p.mult as i64, p.shift);
                        *d = saturate(r, self.zp_out, -128, 127);
                    }
                }
            }
            at += c;
        }
        Ok(())
    }
}

/// A float `Concat` on channels: each input requantized to the output's scale (copied where
/// its quantization is the output's).
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx, axis: usize) -> Result<QuantOp, QuantizeError> {
    if axis != 0 {
        return Err(cx.fail(format!(
            "concatenation on axis {axis}: only channels (axis 1 with the batch) are supported"
        )));
    }
    let pixels = match cx.input_shape() {
        Shape::Image { h, w, .. } => h * w,
        Shape::Flat(_) => 1,
    };
    let parts = cx
        .inputs
        .iter()
        .map(|t| {
            let q = t.quant;
            let channels = match t.shape {
                Shape::Image { c, .. } => c,
                Shape::Flat(c) => c,
            };
            if q == cx.output {
                return Ok(Part::copy(channels, q.zero_point));
            }
            let (mult, shift) =
                crate::quantize::multiplier(q.scale as f64 / cx.output.scale as f64)
                    .ok_or_else(|| cx.fail("scales out of range"))?;
            Ok(Part {
                channels,
                zp: q.zero_point,
                shift,
                mult,
            })
        })
        .collect::<Result<Vec<_>, QuantizeError>>()?;
    Ok(QuantOp::Concat {
        zp_out: cx.output.zero_point,
        pixels,
        parts,
    })
}

/// tract's `TypedConcat` of values, past the batch axis.
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::array::TypedConcat) -> MapResult {
    if op.axis == 0 {
        return Err("joins along the batch axis".into());
    }
    if node.inputs.iter().any(|&i| cx.konst(i).is_some()) {
        return Err("joins a constant; only values are supported".into());
    }
    Ok(Mapped::Op(
        FloatOp::Concat { axis: op.axis - 1 },
        node.inputs.to_vec(),
    ))
}

/// The float definition this op is tested against ([`FloatOp::Concat`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval, axis: usize) -> Result<Vec<f32>, String> {
    let Eval {
        ins,
        out: out_shape,
        batch,
        ..
    } = *e;
    let out_size: usize = out_shape.iter().product();
    // Each sample: for every index before `axis`, each input's block in turn.
    let outer: usize = out_shape[..axis].iter().product();
    let mut y = Vec::with_capacity(batch * out_size);
    let blocks: Vec<usize> = ins
        .iter()
        .map(|(_, s)| s[axis..].iter().product::<usize>())
        .collect();
    for b in 0..batch {
        for o in 0..outer {
            for ((v, s), block) in ins.iter().zip(&blocks) {
                let per = s.iter().product::<usize>();
                let at = b * per + o * block;
                y.extend_from_slice(&v[at..at + block]);
            }
        }
    }
    Ok(y)
}
