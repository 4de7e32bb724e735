//! `Pad`: pads an NHWC image by rows and columns on each side, with the zero point (`zero`, a
//! real 0) or the mirror image excluding the edge (`reflect`, as ONNX and PyTorch's
//! `ReflectionPad2d`, which needs each pad smaller than its side). Quantization is unchanged.
//!
//! Body (20 bytes): `mode u8 (0 zero, 1 reflect), zp i8, 2 reserved`, then as u16: `c, h, w,
//! top, left, bottom, right`, 2 reserved.

use super::{copy, expect_shape, int8_inputs, nz, part, Cx, OpKind};
use crate::format::{fits, FormatError, Reader, Shape, TensorInfo, MAX_DIM};
use crate::interp::RunError;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{floats, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Zero,
    Reflect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pad {
    pub mode: PadMode,
    pub zp: i8,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
}

impl Pad {
    fn out_hw(&self) -> (usize, usize) {
        let [t, l, b, r] = self.pads;
        (self.h + t + b, self.w + l + r)
    }

    /// Source index along a side of `n` for padded position `i` (`pad` before it), or `None`
    /// for a zero-padded position.
    #[inline]
    fn source(&self, i: usize, pad: usize, n: usize) -> Option<usize> {
        let i = i as isize - pad as isize;
        let n = n as isize;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        match self.mode {
            PadMode::Zero => None,
            // -i for i < 0, 2(n-1) - i past the end: the parser keeps pads below n.
            PadMode::Reflect => Some(if i < 0 { -i } else { 2 * (n - 1) - i }.max(0).min(n - 1) as usize),
        }
    }

    /// The body bytes.
    #[cfg(any(feature = "std", test))]
    pub fn encode(&self) -> Vec<u8> {
        let mode = match self.mode {
            PadMode::Zero => 0,
            PadMode::Reflect => 1,
        };
        let mut b = vec![mode, self.zp as u8, 0, 0];
        for d in [self.c, self.h, self.w, self.pads[0], self.pads[1], self.pads[2], self.pads[3], 0] {
            b.extend_from_slice(&(d as u16).to_le_bytes());
        }
        b
    }
}

impl<'a> OpKind<'a> for Pad {
    const NAME: &'static str = "Pad";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let bad = |reason| FormatError::Op { index, reason };
        let mode = match b.u8("pad mode")? {
            0 => PadMode::Zero,
            1 => PadMode::Reflect,
            _ => return Err(bad("unknown pad mode")),
        };
        let zp = b.i8("zero point")?;
        b.u16("reserved")?;
        let mut d = [0usize; 8];
        for v in d.iter_mut() {
            *v = b.u16("pad dimension")? as usize;
        }
        let [c, h, w, top, left, bottom, right, _] = d;
        let op = Pad {
            mode,
            zp,
            c,
            h,
            w,
            pads: [top, left, bottom, right],
        };
        let (ho, wo) = op.out_hw();
        if [c, h, w].iter().any(|&v| v == 0 || v > MAX_DIM) || ho > MAX_DIM || wo > MAX_DIM || !fits(&[c, ho, wo]) {
            return Err(bad("shape out of range"));
        }
        if mode == PadMode::Reflect && (top.max(bottom) >= h || left.max(right) >= w) {
            return Err(bad("reflect padding must be smaller than the image side"));
        }
        Ok(op)
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Image { c: self.c, h: self.h, w: self.w }, inputs[0].shape, index)?;
        let (h, w) = self.out_hw();
        Ok(Shape::Image { c: self.c, h, w })
    }

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a pad's input"))?;
        let (ho, wo) = self.out_hw();
        let c = nz(self.c);
        let [top, left, _, _] = self.pads;
        for (xs, ys) in x
            .chunks_exact(nz(c * self.h * self.w))
            .zip(y.chunks_exact_mut(nz(c * ho * wo)))
        {
            let mut pixels = ys.chunks_exact_mut(c);
            for oy in 0..ho {
                let sy = self.source(oy, top, self.h);
                for ox in 0..wo {
                    let dst = pixels.next().ok_or(RunError::Internal("a padded pixel"))?;
                    match (sy, self.source(ox, left, self.w)) {
                        (Some(sy), Some(sx)) => {
                            let at = (sy * self.w + sx) * c;
                            copy(dst, part(xs, at..at + c, "a pixel")?, "a pixel")?;
                        }
                        _ => dst.fill(self.zp),
                    }
                }
            }
        }
        Ok(())
    }
}

/// A float `Pad` of an image (zero or reflect), in the input's quantization.
#[cfg(feature = "std")]
pub(crate) fn quantize(
    cx: &NodeCx,
    mode: crate::import::PadMode,
    pads: [usize; 4],
) -> Result<QuantOp, QuantizeError> {
    let Shape::Image { c, h, w } = cx.input_shape() else {
        return Err(cx.fail("padding takes an image"));
    };
    let mode = match mode {
        crate::import::PadMode::Zero => PadMode::Zero,
        crate::import::PadMode::Reflect => PadMode::Reflect,
    };
    Ok(QuantOp::Pad(Pad {
        mode,
        zp: cx.input().zero_point,
        c,
        h,
        w,
        pads,
    }))
}

/// tract's `Pad` of the two spatial axes, with zeros or reflected (edge padding is unsupported).
#[cfg(feature = "std")]
pub(crate) fn import(_: &mut Walker, node: &TypedNode, op: &ops::array::Pad) -> MapResult {
    use ops::array::PadMode as Mode;
    let mode = match &op.mode {
        Mode::Reflect => crate::import::PadMode::Reflect,
        Mode::Constant(v) if floats(v).is_ok_and(|v| v.iter().all(|&x| x == 0.0)) => {
            crate::import::PadMode::Zero
        }
        Mode::Constant(_) => return Err("constant padding with a value other than 0".into()),
        Mode::Edge => return Ok(Mapped::Unsupported),
    };
    let [(0, 0), (0, 0), (top, bottom), (left, right)] = op.pads[..] else {
        return Err(format!(
            "pads {:?} are not on the two spatial axes of NCHW",
            op.pads
        ));
    };
    Ok(Mapped::Op(
        FloatOp::Pad {
            mode,
            pads: [top, left, bottom, right],
        },
        vec![node.inputs[0]],
    ))
}

/// The float definition this op is tested against ([`FloatOp::Pad`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(
    e: &Eval,
    mode: crate::import::PadMode,
    pads: [usize; 4],
) -> Result<Vec<f32>, String> {
    use crate::import::PadMode;
    let ((c, h, w), (_, ho, wo)) = e.images()?;
    let (x, batch) = (e.x, e.batch);
    let [top, left, ..] = pads;
    if mode == PadMode::Reflect && (pads[0].max(pads[2]) >= h || pads[1].max(pads[3]) >= w) {
        return Err(format!(
            "reflect pads {pads:?} need an input larger than {h}x{w}"
        ));
    }
    let reflect = |i: isize, n: usize| -> Option<usize> {
        let n = n as isize;
        let j = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        (0..n).contains(&j).then_some(j as usize)
    };
    let mut y = Vec::with_capacity(batch * c * ho * wo);
    for plane in x.chunks(h * w) {
        for oy in 0..ho {
            for ox in 0..wo {
                let (iy, ix) = (oy as isize - top as isize, ox as isize - left as isize);
                let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                y.push(match mode {
                    _ if inside => plane[iy as usize * w + ix as usize],
                    PadMode::Zero => 0.0,
                    PadMode::Reflect => match (reflect(iy, h), reflect(ix, w)) {
                        (Some(ry), Some(rx)) => plane[ry * w + rx],
                        _ => return Err("reflect pad out of range".into()),
                    },
                });
            }
        }
    }
    Ok(y)
}
