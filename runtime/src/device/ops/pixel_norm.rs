//! `PixelNorm`: Progressive GAN's pixel normalisation, each pixel's feature vector divided by
//! its root mean square over the channels, `y = x / sqrt(mean_c(x^2) + eps)`; computed in
//! integer arithmetic (this is the definition: every ISA and the firmware run exactly this code).
//!
//! For a pixel of `c` int8 values `q` (input scale `s`, zero point `zp`), `d = q - zp` and
//! `SS = sum d^2`: `y = d / sqrt(SS / c + eps / s^2) = d sqrt(c) / sqrt(V)` with
//! `V = SS + E`, `E = round(c eps / s^2)`. With `r = isqrt(V * 2^16)` (`2^8 sqrt(V)`, so that a
//! small `V` keeps its precision) and `R = 2^46 / r`, `z = round(d * R / 2^22)` is `d / sqrt(V)`
//! in 16 fractional bits (`|z| <= 2^16`, since `d^2 <= V`); `y = clamp(zp_out + round(round(z *
//! m / 2^shift) / 2^16))` with `sqrt(c) / s_out = m * 2^-shift`. Bounds: `c <= 4096`, so
//! `SS < 2^28` and `V * 2^16 < 2^61` (with `E < 2^44`); `|d * R| < 2^46`; `|z * m| < 2^48`. A
//! pixel of zeros (and `eps = 0`) gives `r = 0`, `R = 0`: zeros. Runs in place.
//!
//! Body (24 bytes): `c u16, 2 reserved, pixels u32, zp_in i8, zp_out i8, shift u8, reserved u8,
//! m i32, E u64`.

use super::add::{round_shift, saturate};
use super::instance_norm::isqrt;
use super::{expect_zero_point, int8_inputs, nz, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo, MAX_DIM, MAX_ELEMENTS};
use crate::interp::RunError;
use crate::kernels::MAX_SHIFT;
#[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
use crate::kernels::Isa;
// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{bin, floats, sole_reader, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

/// Largest `E` (keeps `V * 2^16` below 2^61).
pub const MAX_EPS: u64 = 1 << 44;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelNorm {
    /// Channels per pixel.
    pub c: usize,
    /// Pixels per sample (1 for a vector).
    pub pixels: usize,
    pub zp_in: i8,
    pub zp_out: i8,
    /// `sqrt(c) / s_out = m * 2^-shift`.
    pub m: i32,
    pub shift: u8,
    /// `round(c eps / s_in^2)`.
    pub eps: u64,
}

impl PixelNorm {
    /// The definition, on one pixel's channels in place.
    #[inline(always)]
    pub fn pixel(&self, values: &mut [i8]) {
        let zp = self.zp_in as i64;
        let ss: i64 = values.iter().map(|&q| (q as i64 - zp) * (q as i64 - zp)).sum();
        let v = (ss as u64 + self.eps.min(MAX_EPS)) << 16;
        let recip = (1u64 << 46).checked_div(isqrt(v)).unwrap_or(0) as i64;
        for q in values.iter_mut() {
            let z = round_shift((*q as i64 - zp) * recip, 22);
            let y16 = round_shift(z * self.m as i64, self.shift);
            *q = saturate(round_shift(y16, 16), self.zp_out, -128, 127);
        }
    }

    /// The body bytes.
    /// Every pixel of `y` normalised in place.
    #[inline(always)]
    fn pixels(&self, y: &mut [i8]) {
        for px in y.chunks_exact_mut(nz(self.c)) {
            self.pixel(px);
        }
    }

    /// [`Self::pixels`] compiled for AVX-512: the same integer arithmetic, which the compiler
    /// vectorises across a pixel's channels, so every kernel family gets the same bytes.
    #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
    unsafe fn pixels_avx512(&self, y: &mut [i8]) {
        self.pixels(y)
    }

    #[cfg(any(feature = "std", test))]
    pub fn encode(&self) -> Result<Vec<u8>, crate::write::EncodeError> {
        let mut b = Vec::new();
        crate::write::put_uint(&mut b, self.c, 2, "pixel norm channels")?;
        b.extend_from_slice(&[0, 0]);
        crate::write::put_uint(&mut b, self.pixels, 4, "pixel norm pixels")?;
        b.extend_from_slice(&[self.zp_in as u8, self.zp_out as u8, self.shift, 0]);
        b.extend_from_slice(&self.m.to_le_bytes());
        b.extend_from_slice(&self.eps.to_le_bytes());
        Ok(b)
    }
}

impl<'a> OpKind<'a> for PixelNorm {
    const NAME: &'static str = "PixelNorm";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let c = b.u16("pixel norm channels")? as usize;
        b.u16("reserved")?;
        let pixels = b.u32("pixel norm pixels")? as usize;
        let zp_in = b.i8("input zero point")?;
        let zp_out = b.i8("output zero point")?;
        let shift = b.u8("shift")?;
        b.u8("reserved")?;
        let m = b.u32("multiplier")? as i32;
        let eps = u64::from_le_bytes(*b.array::<8>("epsilon")?);
        let bad = |reason| Err(FormatError::Op { index, reason });
        if c == 0 || c > MAX_DIM || pixels == 0 || pixels > MAX_ELEMENTS {
            return bad("pixel norm size out of range");
        }
        if b.validate && (shift == 0 || shift > MAX_SHIFT || m < 0 || eps > MAX_EPS) {
            return bad("pixel norm multiplier or epsilon out of range");
        }
        Ok(PixelNorm {
            c,
            pixels,
            zp_in,
            zp_out,
            m,
            shift,
            eps,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        expect_zero_point(self.zp_in, &inputs[0], index)?;
        let shape = inputs[0].shape;
        let fits = match shape {
            Shape::Flat(c) => c == self.c && self.pixels == 1,
            Shape::Image { c, h, w } => c == self.c && h * w == self.pixels,
        };
        if !fits {
            return Err(FormatError::Op {
                index,
                reason: "the input's shape differs from the pixel norm's channels and pixels",
            });
        }
        Ok(shape)
    }

    const IN_PLACE: bool = true;

    // Not inlined into the interpreter's dispatch: its frame would count against every op's
    // stack on a microcontroller, not only its own.
    #[inline(never)]
    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        if let Some(x) = x.first().filter(|x| !x.is_empty()) {
            super::copy(y, x, "a pixel norm's input")?;
        }
        // NHWC: every pixel's channels are contiguous.
        #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
        if matches!(_cx.isa, Isa::Avx512Vnni | Isa::Amx) {
            // SAFETY: these Isas are only chosen where the CPU has AVX-512 F, BW and VL
            // (`Isa::is_available`).
            unsafe { self.pixels_avx512(y) };
            return Ok(());
        }
        self.pixels(y);
        Ok(())
    }
}

/// A float `PixelNorm` in int8: `sqrt(c) / s_out` as a multiplier, epsilon in the input's
/// squared units.
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx, eps: f32) -> Result<QuantOp, QuantizeError> {
    let (c, pixels) = match cx.input_shape() {
        Shape::Image { c, h, w } => (c, h * w),
        Shape::Flat(c) => (c, 1),
    };
    let s_in = cx.input().scale as f64;
    let (m, shift) = crate::quantize::multiplier((c as f64).sqrt() / cx.output.scale as f64)
        .ok_or_else(|| cx.fail("scale out of range"))?;
    let e = (c as f64 * eps as f64 / (s_in * s_in))
        .round()
        .min(MAX_EPS as f64);
    Ok(QuantOp::PixelNorm(PixelNorm {
        c,
        pixels,
        zp_in: cx.input().zero_point,
        zp_out: cx.output.zero_point,
        m,
        shift,
        eps: e as u64,
    }))
}

/// tract's `RmsNorm` on axis 1, the channels (PyTorch's `x / sqrt(mean(x**2, dim=1,
/// keepdim=True) + eps)`, Progressive GAN's pixel norm); on another axis it is unsupported.
#[cfg(feature = "std")]
pub(crate) fn import(_: &mut Walker, node: &TypedNode, op: &ops::nn::RmsNorm) -> MapResult {
    if op.axis != 1 {
        return Ok(Mapped::Unsupported);
    }
    let eps = op
        .eps
        .cast_to_scalar::<f32>()
        .map_err(|e| format!("epsilon: {e:#}"))?;
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(format!("epsilon {eps} is not a non-negative number"));
    }
    Ok(Mapped::Op(FloatOp::PixelNorm { eps }, vec![node.inputs[0]]))
}

/// Pixel normalisation where tract leaves it decomposed (the dynamo exporter's `x /
/// sqrt(mean(x**2, 1))`): `MeanOfSquares` over the channels, an optional `Add` of a scalar
/// epsilon, `Rsqrt`, then a `Mul` with `x`. The chain is matched from its Reduce and its
/// nodes absorbed, as for [`super::instance_norm::import`]; the walker sends here a `Reduce`
/// that is `MeanOfSquares` over axis 1.
#[cfg(feature = "std")]
pub(crate) fn import_chain(cx: &mut Walker, node: &TypedNode, _: &ops::nn::Reduce) -> MapResult {
    let x = node.inputs[0];
    let m = cx.m;
    let only = |id: usize| sole_reader(m, id);
    let matched = (|| {
        let mut chain = Vec::new();
        let mut at = only(node.id)?;
        let mut eps = 0.0;
        if bin(at, "Add") {
            let k = at.inputs.iter().find(|i| i.node != node.id)?;
            let t = cx.konst(*k)?;
            eps = floats(t).ok().filter(|v| v.len() == 1)?[0];
            chain.push(at.id);
            at = only(at.id)?;
        }
        let rsqrt = Some(at).filter(|n| {
            n.op_as::<ops::element_wise::ElementWiseOp>()
                .is_some_and(|e| e.0.name() == "Rsqrt")
        })?;
        chain.push(rsqrt.id);
        let out = only(rsqrt.id).filter(|n| bin(n, "Mul") && n.inputs.contains(&x))?;
        chain.push(out.id);
        Some((chain, eps))
    })();
    let Some((chain, eps)) = matched else {
        return Ok(Mapped::Unsupported);
    };
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(format!("epsilon {eps} is not a non-negative number"));
    }
    cx.absorb_chain(chain);
    Ok(Mapped::Op(FloatOp::PixelNorm { eps }, vec![x]))
}

/// The float definition this op is tested against ([`FloatOp::PixelNorm`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval, eps: f32) -> Result<Vec<f32>, String> {
    let Eval { x, xs, batch, .. } = *e;
    // Per sample, per pixel: the channels are axis 0, `inner` values apart.
    let channels = xs.first().copied().unwrap_or(0);
    let inner: usize = xs.iter().skip(1).product();
    let per = channels * inner;
    let mut y = x.to_vec();
    for b in 0..batch {
        for p in 0..inner {
            let at = |ch: usize| b * per + ch * inner + p;
            let ms =
                (0..channels).map(|ch| x[at(ch)] * x[at(ch)]).sum::<f32>() / channels.max(1) as f32;
            let r = 1.0 / (ms + eps).sqrt();
            for ch in 0..channels {
                y[at(ch)] = x[at(ch)] * r;
            }
        }
    }
    Ok(y)
}
