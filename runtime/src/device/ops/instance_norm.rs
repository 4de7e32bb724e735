//! `InstanceNormalization`: each sample's channel normalised by its own mean and variance,
//! computed at run time in integer arithmetic (this is the definition: every ISA and the
//! firmware run exactly this code), then scaled and shifted per channel.
//!
//! For a channel of `n` int8 values `q` (the channel's input scale `s`): `S = sum q`,
//! `SS = sum q^2`, `V = n * SS - S^2 + E` with `E = round(n^2 * eps / s^2)`, so that
//! `(x - mean) / sqrt(var + eps) = (n q - S) / sqrt(V)`. With `r = isqrt(V)` and
//! `R = 2^46 / r`, `z = round((n q - S) * R / 2^30)` is that ratio in 16 fractional bits;
//! `y = clamp(zp_out + round((round(z * gm / 2^gs) + b16) / 2^16))`, where `gamma / s_out =
//! gm * 2^-gs` and `b16 = round(beta / s_out * 2^16)`. Bounds: `n <= 2^20`, so `n * SS < 2^55`;
//! `|n q - S| < 2 sqrt(n) r` makes `|(n q - S) * R| < 2^57` and `|z| < 2^27`, `|z * gm| < 2^58`.
//! The input's zero point and any per-channel scale cancel in `n q - S` and `V` but for `E`,
//! which is per channel: so the op before it may write each channel in its own scale (the
//! quantizer does, for precision). A ReLU after it is fused (flag bit 0): the clamp starts at
//! `zp_out`, so the output's 256 codes cover only `[0, max]` instead of the normalised values'
//! whole range, half of which the ReLU would discard. Runs in place.
//!
//! Body: `c u16, 2 reserved, pixels u32, zp_out i8, flags u8 (bit 0: fused ReLU), 2 reserved`
//! (files written before the flag have 0 there: no ReLU), then per channel
//! `gm i32, gs u8, 3 reserved, b16 i32, E u64`.

use super::add::{round_shift, saturate};
use super::{expect_shape, int8_inputs, nz, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo, MAX_DIM};
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
use crate::import::{bin, chw, floats, sole_reader, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::{OutletId, TypedNode};
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

/// Most values per channel and sample.
pub const MAX_PIXELS: usize = 1 << 20;
/// Bytes per channel in the body.
const CHANNEL_LEN: usize = 20;
/// Channels normalised per pass over a sample (stack arrays: the core has no heap).
const BLOCK: usize = 16;
/// Largest `E`: keeps `V` below 2^61.
const MAX_EPS: u64 = 1 << 60;

#[derive(Clone, Copy, Debug)]
pub struct InstanceNorm<'a> {
    pub c: usize,
    pub pixels: usize,
    pub zp_out: i8,
    /// A fused ReLU: outputs below `zp_out` are clamped to it.
    pub relu: bool,
    channels: &'a [u8],
}

/// One channel's epsilon and affine map, in fixed point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affine {
    pub gm: i32,
    pub gs: u8,
    pub b16: i32,
    /// `round(n^2 eps / s^2)` for the channel's input scale `s`.
    pub eps: u64,
}

/// `floor(sqrt(v))`, bit by bit (no floating point on the no_std path).
pub fn isqrt(v: u64) -> u64 {
    let (mut rem, mut root) = (v, 0u64);
    // The largest power of 4 not above v (the digit-by-digit method's first digit), found at
    // once rather than by stepping down from 4^31: the same root, in fewer steps.
    let mut bit = match v {
        0 => 0,
        _ => 1u64 << ((63 - v.leading_zeros()) & !1),
    };
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

impl<'a> InstanceNorm<'a> {
    pub fn affine(&self, ch: usize) -> Affine {
        let b: &[u8; CHANNEL_LEN] = self
            .channels
            .get(ch * CHANNEL_LEN..)
            .and_then(|s| s.first_chunk())
            .unwrap_or(&[0; CHANNEL_LEN]);
        Affine {
            gm: i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            gs: b[4],
            b16: i32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            eps: u64::from_le_bytes([b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19]]),
        }
    }

    /// Normalises channels `c0..c0 + BLOCK` (those below `self.c`) of one sample (`values`, NHWC)
    /// in place. A block of channels at a time: one pass over the sample reads each pixel's
    /// channels side by side, where a channel at a time would stride through it `c` times (the
    /// norm took half the ResNet's time so). The arithmetic per value is the definition above,
    /// in any order, so every block size gives the same bytes.
    fn block(&self, c0: usize, values: &mut [i8]) {
        let c = nz(self.c);
        let c1 = (c0 + BLOCK).min(c);
        let n = self.pixels as i64;
        let (mut s, mut ss) = ([0i64; BLOCK], [0i64; BLOCK]);
        for px in values.chunks_exact(c) {
            for ((q, s), ss) in px.get(c0..c1).unwrap_or(&[]).iter().zip(&mut s).zip(&mut ss) {
                *s += *q as i64;
                *ss += *q as i64 * *q as i64;
            }
        }
        // Zipped iterators, not indices: no bounds check, so no panic path for the firmware's
        // no-panic proof.
        let mut recip = [0i64; BLOCK];
        let mut affine = [Affine { gm: 0, gs: 1, b16: 0, eps: 0 }; BLOCK];
        let channels = (c0..c1).zip(recip.iter_mut().zip(&mut affine)).zip(s.iter().zip(&ss));
        for ((ch, (recip, affine)), (s, ss)) in channels {
            let a = self.affine(ch);
            let v = (n * ss - s * s).max(0) as u64 + a.eps.min(MAX_EPS);
            let r = isqrt(v);
            *recip = (1u64 << 46).checked_div(r).unwrap_or(0) as i64;
            *affine = a;
        }
        let min = if self.relu { self.zp_out } else { -128 };
        for px in values.chunks_exact_mut(c) {
            let block = px.get_mut(c0..c1).unwrap_or(&mut []);
            for (q, ((a, s), recip)) in block.iter_mut().zip(affine.iter().zip(&s).zip(&recip)) {
                let z = round_shift((n * *q as i64 - s) * recip, 30);
                let y16 = round_shift(z * a.gm as i64, a.gs) + a.b16 as i64;
                *q = saturate(round_shift(y16, 16), self.zp_out, min, 127);
            }
        }
    }

    /// The body bytes.
    #[cfg(any(feature = "std", test))]
    pub fn encode(c: usize, pixels: usize, zp_out: i8, relu: bool, affine: &[Affine]) -> Vec<u8> {
        let mut b = (c as u16).to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&(pixels as u32).to_le_bytes());
        b.extend_from_slice(&[zp_out as u8, relu as u8, 0, 0]);
        for a in affine {
            b.extend_from_slice(&a.gm.to_le_bytes());
            b.extend_from_slice(&[a.gs, 0, 0, 0]);
            b.extend_from_slice(&a.b16.to_le_bytes());
            b.extend_from_slice(&a.eps.to_le_bytes());
        }
        b
    }
}

impl<'a> OpKind<'a> for InstanceNorm<'a> {
    const NAME: &'static str = "InstanceNorm";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let bad = |reason| FormatError::Op { index, reason };
        let c = b.u16("channels")? as usize;
        b.u16("reserved")?;
        let pixels = b.u32("pixels")? as usize;
        let zp_out = b.i8("output zero point")?;
        let flags = b.u8("flags")?;
        b.take(2, "reserved")?;
        if c == 0 || c > MAX_DIM || pixels == 0 || pixels > MAX_PIXELS {
            return Err(bad("channels or pixels out of range"));
        }
        if b.validate && flags > 1 {
            return Err(bad("unknown flags"));
        }
        let op = InstanceNorm {
            c,
            pixels,
            zp_out,
            relu: flags & 1 != 0,
            channels: b.take(c * CHANNEL_LEN, "channel parameters")?,
        };
        if b.validate
            && (0..c).any(|ch| {
                let a = op.affine(ch);
                !(1..=MAX_SHIFT).contains(&a.gs) || a.eps > MAX_EPS
            })
        {
            return Err(bad("shift or epsilon out of range"));
        }
        Ok(op)
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        let shape = inputs[0].shape;
        let Shape::Image { c, h, w } = shape else {
            return Err(FormatError::Op {
                index,
                reason: "instance normalisation takes an image",
            });
        };
        expect_shape(Shape::Image { c: self.c, h, w }, shape, index)?;
        if h * w != self.pixels || c != self.c {
            return Err(FormatError::Op {
                index,
                reason: "the image's size differs from the recorded one",
            });
        }
        Ok(shape)
    }

    const IN_PLACE: bool = true;

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        if let Some(x) = x.first().filter(|x| !x.is_empty()) {
            super::copy(y, x, "an instance normalisation's input")?;
        }
        for sample in y.chunks_exact_mut(nz(self.c * self.pixels)) {
            for c0 in (0..self.c).step_by(BLOCK) {
                self.block(c0, sample);
            }
        }
        Ok(())
    }
}

/// A float `InstanceNorm` in int8: per channel, the affine as a signed multiplier and a shift in
/// 16 fractional bits, and epsilon in the integer statistics' units (from the input's scale, or
/// its channel's where the matrix op before it writes each channel in its own range).
#[cfg(feature = "std")]
pub(crate) fn quantize(
    cx: &NodeCx,
    scale: &[f32],
    shift: &[f32],
    eps: f32,
    in_scales: Option<&crate::quantize::ChannelQuant>,
) -> Result<QuantOp, QuantizeError> {
    let Shape::Image { c, h, w } = cx.input_shape() else {
        return Err(cx.fail("instance normalisation takes an image"));
    };
    let q_out = cx.output;
    let pixels = (h * w) as f64;
    let affine = (0..c)
        .map(|ch| {
            let (gm, gs) =
                crate::quantize::signed_multiplier(scale[ch] as f64 / q_out.scale as f64)
                    .ok_or_else(|| cx.fail("scale out of range"))?;
            let b16 = (shift[ch] as f64 / q_out.scale as f64 * 65536.0).round();
            if b16.abs() >= i32::MAX as f64 {
                return Err(cx.fail("shift out of range"));
            }
            let s_in = in_scales.map_or(cx.input().scale, |s| s.scales[ch]) as f64;
            let e = (pixels * pixels * eps as f64 / (s_in * s_in))
                .round()
                .min((1u64 << 60) as f64);
            Ok(Affine {
                gm,
                gs,
                b16: b16 as i32,
                eps: e as u64,
            })
        })
        .collect::<Result<Vec<_>, QuantizeError>>()?;
    Ok(QuantOp::InstanceNorm {
        c,
        pixels: h * w,
        zp_out: q_out.zero_point,
        relu: cx.act == crate::quantize::Fused::Relu,
        affine,
    })
}

/// InstanceNormalization as tract expands it: `mean = Sum(x) * (1/HW)`, `d = x - mean`,
/// `y = d * Rsqrt(MeanOfSquares(d) + eps)`. The chain is matched from its first Reduce and
/// its nodes absorbed; anything else reducing is unsupported (the walker sends here every
/// `Reduce` but pixel normalisation's).
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::nn::Reduce) -> MapResult {
    use ops::nn::Reducer;
    let x = node.inputs[0];
    let Ok(shape) = cx.shape(x) else {
        return Ok(Mapped::Unsupported);
    };
    if !(op.reducer == Reducer::Sum && op.axes.as_slice() == [2, 3] && shape.len() == 3) {
        return Ok(Mapped::Unsupported);
    }
    let (c, hw) = (shape[0], shape[1] * shape[2]);
    let m = cx.m;
    let only = |id: usize| sole_reader(m, id);
    let scalar = |o: OutletId| -> Option<f32> {
        let t = cx.konst(o)?;
        (t.len() == 1)
            .then(|| floats(t).ok().map(|v| v[0]))
            .flatten()
    };
    let other = |n: &TypedNode, from: usize| n.inputs.iter().copied().find(|i| i.node != from);
    let matched = (|| {
        let mean = only(node.id).filter(|n| bin(n, "Mul"))?;
        let recip = scalar(other(mean, node.id)?)?;
        if (recip * hw as f32 - 1.0).abs() > 1e-5 {
            return None;
        }
        let diff = only(mean.id)
            .filter(|n| bin(n, "Sub") && n.inputs == [x, OutletId::new(mean.id, 0)])?;
        let succ = m.outlet_successors(OutletId::new(diff.id, 0));
        if succ.len() != 2 {
            return None;
        }
        let var = succ.iter().map(|s| m.node(s.node)).find(|n| {
            n.op_as::<ops::nn::Reduce>()
                .is_some_and(|r| r.reducer == Reducer::MeanOfSquares && r.axes.as_slice() == [2, 3])
        })?;
        let add_eps = only(var.id).filter(|n| bin(n, "Add"))?;
        let eps = scalar(other(add_eps, var.id)?)?;
        let rsqrt = only(add_eps.id).filter(|n| {
            n.op_as::<ops::element_wise::ElementWiseOp>()
                .is_some_and(|e| e.0.name() == "Rsqrt")
        })?;
        let out = only(rsqrt.id).filter(|n| {
            bin(n, "Mul")
                && n.inputs.contains(&OutletId::new(diff.id, 0))
                && succ.iter().any(|s| s.node == n.id)
        })?;
        Some((
            vec![mean.id, diff.id, var.id, add_eps.id, rsqrt.id, out.id],
            eps,
        ))
    })();
    let Some((chain, eps)) = matched else {
        return Ok(Mapped::Unsupported);
    };
    cx.absorb_chain(chain);
    Ok(Mapped::Op(
        FloatOp::InstanceNorm {
            scale: vec![1.0; c],
            shift: vec![0.0; c],
            eps,
        },
        vec![x],
    ))
}

/// The float definition this op is tested against ([`FloatOp::InstanceNorm`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(
    e: &Eval,
    scale: &[f32],
    shift: &[f32],
    eps: f32,
) -> Result<Vec<f32>, String> {
    let Eval { x, xs, .. } = *e;
    let (c, h, w) = chw(xs)?;
    let hw = h * w;
    let mut y = Vec::with_capacity(x.len());
    for (plane_at, plane) in x.chunks(hw).enumerate() {
        let ch = plane_at % c;
        let mean = plane.iter().sum::<f32>() / hw as f32;
        let var = plane.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / hw as f32;
        let inv = 1.0 / (var + eps).sqrt();
        y.extend(
            plane
                .iter()
                .map(|v| (v - mean) * inv * scale[ch] + shift[ch]),
        );
    }
    Ok(y)
}
