//! `Slice`: channels `start..start + len` of a vector or an NHWC image, in the input's
//! quantization (a copy). The importer writes one per gate of an LSTM cell, whose four gates
//! come out of one matrix product (ONNX's `LSTM`, decluttered by tract into its `LstmEpilogue`).
//!
//! Body (16 bytes): `channels u32, pixels u32, start u32, len u32`.

use super::{copy, int8_inputs, nz, part, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo, MAX_DIM, MAX_ELEMENTS};
use crate::interp::RunError;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// The float definition: the float op this int8 op implements, in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::Eval;
// Import: no tract op of its own; the importer's walker writes one per gate of an LSTM cell
// (`Walker::lstm_epilogue` in host/import/tract.rs, one tract op that becomes a dozen of ours).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Channels of the input.
    pub channels: usize,
    /// Pixels per channel (1 for a vector).
    pub pixels: usize,
    pub start: usize,
    pub len: usize,
}

impl Slice {
    /// The body bytes.
    #[cfg(any(feature = "std", test))]
    pub fn encode(&self) -> Result<Vec<u8>, crate::write::EncodeError> {
        let mut b = Vec::new();
        for (v, what) in [
            (self.channels, "slice channels"),
            (self.pixels, "slice pixels"),
            (self.start, "slice start"),
            (self.len, "slice length"),
        ] {
            crate::write::put_uint(&mut b, v, 4, what)?;
        }
        Ok(b)
    }
}

impl<'a> OpKind<'a> for Slice {
    const NAME: &'static str = "Slice";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let channels = b.u32("slice channels")? as usize;
        let pixels = b.u32("slice pixels")? as usize;
        let start = b.u32("slice start")? as usize;
        let len = b.u32("slice length")? as usize;
        let bad = |reason| Err(FormatError::Op { index, reason });
        if channels == 0 || channels > MAX_DIM || pixels == 0 || pixels > MAX_ELEMENTS {
            return bad("slice of an input size out of range");
        }
        if len == 0 || start >= channels || len > channels - start {
            return bad("slice range outside the input's channels");
        }
        Ok(Slice {
            channels,
            pixels,
            start,
            len,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        let bad = |reason| Err(FormatError::Op { index, reason });
        match inputs[0].shape {
            Shape::Flat(c) if c == self.channels && self.pixels == 1 => Ok(Shape::Flat(self.len)),
            Shape::Image { c, h, w } if c == self.channels && h * w == self.pixels => {
                Ok(Shape::Image { c: self.len, h, w })
            }
            _ => bad("the input's shape differs from the slice's channels and pixels"),
        }
    }

    // Not inlined into the interpreter's dispatch: its frame would count against every op's
    // stack on a microcontroller, not only its own.
    #[inline(never)]
    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a slice's input"))?;
        let (c, len) = (nz(self.channels), nz(self.len));
        // NHWC: every pixel's channels are contiguous.
        for (xs, ys) in x.chunks_exact(c).zip(y.chunks_exact_mut(len)) {
            copy(ys, part(xs, self.start..self.start + len, "a slice")?, "a slice")?;
        }
        Ok(())
    }
}


/// A float `Slice` of channels, in the input's quantization (a copy).
#[cfg(feature = "std")]
pub(crate) fn quantize(
    cx: &NodeCx,
    start: usize,
    len: usize,
    sequence: bool,
) -> Result<QuantOp, QuantizeError> {
    if sequence {
        return Err(cx.fail("a slice of a sequence is not supported"));
    }
    let (channels, pixels) = match cx.input_shape() {
        Shape::Image { c, h, w } => (c, h * w),
        Shape::Flat(c) => (c, 1),
    };
    Ok(QuantOp::Slice(Slice {
        channels,
        pixels,
        start,
        len,
    }))
}

/// The float definition this op is tested against ([`FloatOp::Slice`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval, start: usize, len: usize) -> Result<Vec<f32>, String> {
    let Eval { x, xs, batch, .. } = *e;
    // Axis 0 of each sample: one contiguous block of `len` channels.
    let channels = xs.first().copied().unwrap_or(0);
    if start + len > channels {
        return Err(format!("Slice {start}..{} of {xs:?}", start + len));
    }
    let inner: usize = xs[1..].iter().product();
    let per: usize = xs.iter().product();
    let mut y = Vec::with_capacity(batch * len * inner);
    for b in 0..batch {
        let at = b * per + start * inner;
        y.extend_from_slice(&x[at..at + len * inner]);
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Quant, TensorKind};
    use crate::kernels::Isa;

    #[test]
    fn a_slice_copies_each_pixels_channels() {
        let op = Slice {
            channels: 4,
            pixels: 2,
            start: 1,
            len: 2,
        };
        let info = TensorInfo {
            shape: Shape::Image { c: 4, h: 2, w: 1 },
            quant: Quant::UNIT,
            kind: TensorKind::Int8,
        };
        assert_eq!(op.output(&[info], 0).unwrap(), Shape::Image { c: 2, h: 2, w: 1 });
        let x: [i8; 8] = [0, 1, 2, 3, 10, 11, 12, 13];
        let mut y = [0i8; 4];
        let (mut tile, mut out) = ([0i8; 0], [0i8; 0]);
        let mut cx = Cx {
            isa: Isa::Scalar,
            batch: 1,
            tile: &mut tile,
            tile_out: &mut out,
            indices: &[],
        };
        op.run(&mut cx, &[&x], &mut y).unwrap();
        assert_eq!(y, [1, 2, 11, 12]);
        let bytes = op.encode().unwrap();
        let mut body = Reader { buf: &bytes, pos: 0, validate: true };
        assert_eq!(Slice::parse(&mut body, 0).unwrap(), op);
        let wide = Slice { start: 3, ..op };
        let bytes = wide.encode().unwrap();
        let mut body = Reader { buf: &bytes, pos: 0, validate: true };
        assert!(Slice::parse(&mut body, 0).is_err());
    }
}
