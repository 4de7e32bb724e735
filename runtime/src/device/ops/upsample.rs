//! `Upsample`: nearest-neighbour upsampling of an NHWC image by an integer factor.
//!
//! Body: `c, h, w, factor` as u16 (factor 2..=16).

use super::reshape::read_dims;
use super::{copy, expect_shape, int8_inputs, nz, part, Cx, OpKind};
use crate::format::{fits, FormatError, Reader, Shape, TensorInfo};
use crate::interp::RunError;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{chw, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::{OutletId, TypedNode};
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub factor: usize,
}

impl<'a> OpKind<'a> for Upsample {
    const NAME: &'static str = "Upsample";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let [c, h, w, factor] = read_dims(b, index)?;
        if !(2..=16).contains(&factor) || !fits(&[c, h, w, factor, factor]) {
            return Err(FormatError::Op {
                index,
                reason: "upsampling factor out of range",
            });
        }
        Ok(Upsample { c, h, w, factor })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let Upsample { c, h, w, factor } = *self;
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Image { c, h, w }, inputs[0].shape, index)?;
        Ok(Shape::Image {
            c,
            h: h * factor,
            w: w * factor,
        })
    }

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("an upsampling's input"))?;
        let Upsample { c, h, w, factor } = *self;
        let (c, factor) = (nz(c), nz(factor));
        let (ho, wo) = (h * factor, w * factor);
        for (xs, ys) in x
            .chunks_exact(nz(c * h * w))
            .zip(y.chunks_exact_mut(nz(c * ho * wo)))
        {
            let mut dst = ys.chunks_exact_mut(c);
            for oy in 0..ho {
                for ox in 0..wo {
                    let src = ((oy / factor) * w + ox / factor) * c;
                    let d = dst.next().ok_or(RunError::Internal("a pixel"))?;
                    copy(d, part(xs, src..src + c, "a pixel")?, "a pixel")?;
                }
            }
        }
        Ok(())
    }
}

/// A float nearest-neighbour `Upsample` of an image by `factor`; a vector is a 1x1 image (the
/// same bytes), spread over `factor x factor` pixels (StackGAN's text code).
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx, factor: usize) -> Result<QuantOp, QuantizeError> {
    let (c, h, w) = match cx.input_shape() {
        Shape::Image { c, h, w } => (c, h, w),
        Shape::Flat(c) => (c, 1, 1),
    };
    if !(2..=16).contains(&factor) {
        return Err(cx.fail(format!(
            "nearest upsampling by {factor}: the int8 runtime takes factors 2 to 16"
        )));
    }
    Ok(QuantOp::Upsample { c, h, w, factor })
}

/// tract's `NearestUpsample` (ONNX's `Resize` or `Upsample`, nearest), one integer factor on
/// both spatial axes.
#[cfg(feature = "std")]
pub(crate) fn import(_: &mut Walker, node: &TypedNode, op: &ops::nn::NearestUpsample) -> MapResult {
    match op.scales[..] {
        [1, 1, a, b] if a == b && a >= 1 => Ok(Mapped::Op(
            FloatOp::Upsample { factor: a },
            vec![node.inputs[0]],
        )),
        _ => Err(format!(
            "scales {:?} are not one integer factor on both spatial axes",
            op.scales
        )),
    }
}

/// A value `[C, 1, 1]` replicated over `[C, F, F]` (PyTorch's `x.repeat(1, 1, F, F)`, an
/// ONNX Tile, or `x.expand(...)`, which tract both makes a broadcast): the nearest
/// upsampling of a 1x1 image by `F`. StackGAN spreads its text code over the image so. Read
/// from tract's `MultiBroadcastTo` and `Tile` alike (`_op`).
#[cfg(feature = "std")]
pub(crate) fn import_replicate<T>(cx: &mut Walker, node: &TypedNode, _op: &T) -> MapResult {
    let [x] = node.inputs[..] else {
        return Ok(Mapped::Unsupported);
    };
    let from = cx.shape(x)?;
    let to = cx.shape(OutletId::new(node.id, 0))?;
    match (&from[..], &to[..]) {
        (a, b) if a == b => Ok(Mapped::Alias(x)),
        ([c, 1, 1], [co, h, w]) if c == co && h == w => {
            Ok(Mapped::Op(FloatOp::Upsample { factor: *h }, vec![x]))
        }
        _ => Err(format!(
            "replicates {from:?} to {to:?}; only a [C, 1, 1] value over a square image is supported"
        )),
    }
}

/// The float definition this op is tested against ([`FloatOp::Upsample`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval, factor: usize) -> Result<Vec<f32>, String> {
    let Eval { x, xs, batch, .. } = *e;
    let (c, h, w) = chw(xs)?;
    let f = factor;
    let mut y = Vec::with_capacity(batch * c * h * w * f * f);
    for plane in x.chunks(h * w) {
        for oy in 0..h * f {
            for ox in 0..w * f {
                y.push(plane[(oy / f) * w + ox / f]);
            }
        }
    }
    Ok(y)
}
