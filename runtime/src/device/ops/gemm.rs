//! What the matrix ops (Linear, Conv2d, ConvTranspose2d) share: their packed weights, their
//! requantization arrays and the convolution geometry, read the same way for each.

use super::part;
use crate::format::{
    as_i8, fits, ConvGeometry, FormatError, Reader, MAX_DIM, MAX_ELEMENTS, MAX_WEIGHT_BYTES,
};
use crate::interp::RunError;
use crate::kernels::{
    packed_len, padded_k, padded_n, I32s, PackedWeights, Requant, MAX_BIAS, MAX_K, MAX_SHIFT,
};

/// Reads `biases` biases (one per column, or per phase and column) and `n` multipliers and shifts.
pub(crate) fn read_requant<'a>(
    r: &mut Reader<'a>,
    biases: usize,
    n: usize,
    (zp_out, min, max): (i8, i8, i8),
    index: usize,
) -> Result<Requant<'a>, FormatError> {
    let bad = |reason| Err(FormatError::Op { index, reason });
    // Whole i32s, since 4 * count bytes were taken.
    let (Some(bias), Some(mult)) = (
        I32s::new(r.take(4 * biases, "bias")?),
        I32s::new(r.take(4 * n, "multiplier")?),
    ) else {
        return bad("requantization arrays");
    };
    let shift = r.take(n, "shift")?;
    r.pad4("shift padding")?;
    if !r.validate {
        return Ok(Requant {
            bias,
            mult,
            shift,
            zp_out,
            min,
            max,
        });
    }
    if bias.iter().any(|b| !(-MAX_BIAS..=MAX_BIAS).contains(&b)) {
        return bad("bias out of range");
    }
    if mult.iter().any(|m| m <= 0) {
        return bad("multiplier must be positive");
    }
    if shift.iter().any(|&s| s == 0 || s > MAX_SHIFT) {
        return bad("shift out of range");
    }
    if min > max {
        return bad("clamp minimum above maximum");
    }
    Ok(Requant {
        bias,
        mult,
        shift,
        zp_out,
        min,
        max,
    })
}

pub(crate) fn read_weights<'a>(
    r: &mut Reader<'a>,
    k: usize,
    n: usize,
    index: usize,
) -> Result<PackedWeights<'a>, FormatError> {
    let bytes = padded_k(k).checked_mul(padded_n(n));
    if k == 0
        || k > MAX_K
        || n == 0
        || n > MAX_ELEMENTS
        || bytes.is_none_or(|b| b > MAX_WEIGHT_BYTES)
    {
        return Err(FormatError::Op {
            index,
            reason: "matrix size out of range",
        });
    }
    // Exactly packed_len(k, n) bytes, so `new` accepts them.
    let w = PackedWeights::new(as_i8(r.take(packed_len(k, n), "weights")?), k, n).ok_or(
        FormatError::Op {
            index,
            reason: "matrix size out of range",
        },
    )?;
    // -128 is excluded so that two products always fit i16 (NEON pairs products in i16).
    if r.validate && (w.data().contains(&i8::MIN) || !w.padding_is_zero()) {
        return Err(FormatError::Op {
            index,
            reason: "weights must be in -127..=127 with zero padding",
        });
    }
    Ok(w)
}

pub(crate) fn read_geometry(r: &mut Reader, index: usize) -> Result<ConvGeometry, FormatError> {
    let g = ConvGeometry {
        cin: r.u16("cin")? as usize,
        cout: r.u16("cout")? as usize,
        h: r.u16("height")? as usize,
        w: r.u16("width")? as usize,
        kh: r.u8("kernel height")? as usize,
        kw: r.u8("kernel width")? as usize,
        stride: r.u8("stride")? as usize,
        pad: r.u8("padding")? as usize,
        out_pad: r.u8("output padding")? as usize,
    };
    r.take(3, "reserved")?;
    let dims_ok = [g.cin, g.cout, g.h, g.w]
        .iter()
        .all(|&d| d > 0 && d <= MAX_DIM);
    if !dims_ok
        || g.kh == 0
        || g.kw == 0
        || g.stride == 0
        || g.stride > 8
        || !fits(&[g.h, g.w, g.cin])
    {
        return Err(FormatError::Op {
            index,
            reason: "convolution geometry out of range",
        });
    }
    Ok(g)
}

pub(crate) fn read_gemm_header(r: &mut Reader) -> Result<(i8, i8, i8, i8), FormatError> {
    Ok((
        r.i8("input zero point")?,
        r.i8("output zero point")?,
        r.i8("clamp min")?,
        r.i8("clamp max")?,
    ))
}

/// `dst.copy_from_slice(src)` for the short runs the gathers and scatters move (one pixel's
/// channels): inline 16-byte moves or a byte loop rather than a `memcpy` call per pixel.
#[inline]
pub(crate) fn copy_run(dst: &mut [i8], src: &[i8]) -> Result<(), RunError> {
    if dst.len() != src.len() {
        return Err(RunError::Internal("a pixel"));
    }
    if dst.len().is_multiple_of(16) {
        for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
            // Four word moves: a 16-byte `copy_from_slice` of unknown alignment becomes a
            // `memcpy` call on Cortex-M, which costs more than the copy.
            for i in 0..4 {
                // SAFETY: both chunks hold 16 bytes; unaligned reads and writes of u32.
                unsafe {
                    let v = (s.as_ptr().add(4 * i) as *const u32).read_unaligned();
                    (d.as_mut_ptr().add(4 * i) as *mut u32).write_unaligned(v);
                }
            }
        }
    } else if dst.len() < 16 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
    Ok(())
}

/// Copies the `cin` values at input pixel `(iy, ix)` of sample `x`, or the zero point outside.
#[inline]
pub(crate) fn gather_pixel(
    dst: &mut [i8],
    x: &[i8],
    g: &ConvGeometry,
    iy: isize,
    ix: isize,
    zp: i8,
) -> Result<(), RunError> {
    if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
        let src = ((iy as usize) * g.w + ix as usize) * g.cin;
        copy_run(dst, part(x, src..src + g.cin, "a pixel")?)
    } else {
        dst.fill(zp);
        Ok(())
    }
}

/// An output position (sample, row, column), stepped in row-major order: the gathers and
/// scatters run per output row, where divisions by runtime sizes would cost as much as a GEMM's
/// worth of multiply-adds on small layers.
#[derive(Clone, Copy, Default)]
pub(crate) struct Pos {
    pub(crate) b: usize,
    pub(crate) y: usize,
    pub(crate) x: usize,
}

impl Pos {
    #[inline]
    pub(crate) fn advance(&mut self, h: usize, w: usize) {
        self.x += 1;
        if self.x == w {
            self.x = 0;
            self.y += 1;
            if self.y == h {
                self.y = 0;
                self.b += 1;
            }
        }
    }
}
