//! `Conv2d`: a 2-D convolution (cross-correlation) of any kernel size, stride and symmetric
//! zero padding, as im2col tiles of `TILE_ROWS` output positions and one GEMM per tile.
//!
//! Body: the geometry ([`super::gemm::read_geometry`]), input zero point, output zero point,
//! clamp min and max, the requantization arrays and the packed `[(ky, kx, cin) x cout]` weights.

use super::gemm::{read_gemm_header, read_geometry, read_requant, read_weights, Pos};
use super::{expect_shape, expect_zero_point, int8_inputs, nz, part, split_mut, Cx, OpKind, Scratch};
use crate::format::{ConvGeometry, FormatError, Gemm, Reader, Shape, TensorInfo};
use crate::interp::{RunError, TILE_ROWS};
use crate::kernels::{gemm_requant, Isa, PackedWeights};
use core::ops::Range;
#[cfg(any(feature = "std", test))]
use crate::write::{column_sums, put_geometry, put_packed, put_requant, EncodeError, RequantParams};

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;

#[derive(Clone, Copy, Debug)]
pub struct Conv2d<'a> {
    pub gemm: Gemm<'a>,
    pub geometry: ConvGeometry,
    /// `[(ky, kx, cin) x cout]`.
    pub weights: PackedWeights<'a>,
}

impl<'a> OpKind<'a> for Conv2d<'a> {
    const NAME: &'static str = "Conv2d";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let g = read_geometry(b, index)?;
        let (zp_in, zp_out, min, max) = read_gemm_header(b)?;
        let requant = read_requant(b, g.cout, g.cout, (zp_out, min, max), index)?;
        if g.kh > g.h + 2 * g.pad || g.kw > g.w + 2 * g.pad || g.out_pad != 0 {
            return Err(FormatError::Op {
                index,
                reason: "kernel larger than the padded input",
            });
        }
        let weights = read_weights(b, g.kh * g.kw * g.cin, g.cout, index)?;
        Ok(Conv2d {
            gemm: Gemm { zp_in, requant },
            geometry: g,
            weights,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let g = self.geometry;
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Image { c: g.cin, h: g.h, w: g.w }, inputs[0].shape, index)?;
        expect_zero_point(self.gemm.zp_in, &inputs[0], index)?;
        let (h, w) = g.conv_out();
        Ok(Shape::Image { c: g.cout, h, w })
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            tile_depth: self.weights.kp(),
            tile_out: 0,
        }
    }

    fn macs(&self) -> usize {
        let g = self.geometry;
        let (ho, wo) = g.conv_out();
        ho * wo * g.kh * g.kw * g.cin * g.cout
    }

    fn params(&self) -> usize {
        self.weights.k() * self.weights.n() + self.weights.n()
    }

    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a convolution's input"))?;
        conv2d(cx, &self.gemm, &self.geometry, self.weights, x, y, 0)
    }

    fn rows(&self, _isa: Isa) -> usize {
        self.geometry.conv_out().0
    }

    fn run_rows(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8], rows: Range<usize>) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a convolution's input"))?;
        let (ho, wo) = self.geometry.conv_out();
        if cx.batch != 1 || rows.end > ho || y.len() != rows.len() * wo * self.geometry.cout {
            return Err(RunError::Internal("a convolution's rows"));
        }
        conv2d(cx, &self.gemm, &self.geometry, self.weights, x, y, rows.start)
    }
}

fn conv2d(
    cx: &mut Cx,
    gemm: &Gemm,
    g: &ConvGeometry,
    w: PackedWeights,
    x: &[i8],
    y: &mut [i8],
    first_row: usize,
) -> Result<(), RunError> {
    let (ho, wo) = g.conv_out();
    let (kp, n) = (w.kp(), w.n());
    if g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0 && kp == g.cin {
        // A pointwise convolution's GEMM rows are its input's pixels already (NHWC, `cin` a
        // whole number of groups): no gathering, the kernels read the input in place.
        let x = part(x, first_row * wo * g.cin.., "a pointwise input")?;
        for (i, ys) in y.chunks_mut(nz(TILE_ROWS * n)).enumerate() {
            let rows = ys.len() / n;
            let a = part(x, i * TILE_ROWS * kp..(i * TILE_ROWS + rows) * kp, "a pointwise tile")?;
            gemm_requant(cx.isa, a, rows, w, &gemm.requant, ys)?;
        }
        return Ok(());
    }
    let sample = g.h * g.w * g.cin;
    // Positions whose taps are all inside the input: columns `x_in`, rows `y_in`.
    let inside = |size: usize, k: usize, out: usize| {
        let lo = g.pad.div_ceil(g.stride.max(1));
        let hi = (size + g.pad).checked_sub(k).map_or(0, |r| r / g.stride.max(1) + 1);
        lo..hi.min(out)
    };
    let (y_in, x_in) = (inside(g.h, g.kh, ho), inside(g.w, g.kw, wo));
    // `y` starts at output row `first_row` of the first sample (0 but for one sample's rows).
    let mut pos = Pos {
        b: 0,
        y: first_row,
        x: 0,
    };
    // Output rows are NHWC positions in order: the GEMM writes TILE_ROWS of them in place.
    for ys in y.chunks_mut(nz(TILE_ROWS * n)) {
        let rows = ys.len() / n;
        for dst in cx.tile.chunks_exact_mut(kp).take(rows) {
            let xs = part(x, pos.b * sample..(pos.b + 1) * sample, "a sample")?;
            if y_in.contains(&pos.y) && x_in.contains(&pos.x) {
                // Most positions: each kernel row is one run of adjacent pixels.
                let at = ((pos.y * g.stride - g.pad) * g.w + pos.x * g.stride - g.pad) * g.cin;
                gather_inside(dst, xs, at, g.w * g.cin, g.kw * g.cin, g.kh);
            } else {
                gather_edge(dst, xs, g, pos, gemm.zp_in)?;
            }
            pos.advance(ho, wo);
        }
        gemm_requant(cx.isa, cx.tile, rows, w, &gemm.requant, ys)?;
    }
    Ok(())
}

/// The GEMM row of a position whose taps are all inside the input: `kh` runs of `run` bytes of
/// `xs`, the first at `at`, `step` apart, then zeros to the row's padded depth.
#[inline(always)]
fn gather_inside(dst: &mut [i8], xs: &[i8], at: usize, step: usize, run: usize, kh: usize) {
    let (mut d, mut at) = (dst, at);
    for _ in 0..kh {
        let Some((taps, more)) = core::mem::take(&mut d).split_at_mut_checked(run) else {
            return;
        };
        if let Some(src) = xs.get(at..at + run) {
            copy_run(taps, src);
        }
        (d, at) = (more, at + step);
    }
    fill_run(d, 0);
}

/// The GEMM row of a position some of whose taps fall in the padding (as the input zero point).
fn gather_edge(dst: &mut [i8], xs: &[i8], g: &ConvGeometry, pos: Pos, zp: i8) -> Result<(), RunError> {
    let run = g.kw * g.cin;
    // Taps of one kernel row that fall inside the input are adjacent pixels: one copy.
    let x0 = (pos.x * g.stride) as isize - g.pad as isize;
    // max-then-min: `clamp` would panic on bounds it cannot see are ordered.
    let kx_lo = (-x0).max(0).min(g.kw as isize) as usize;
    let kx_hi = (g.w as isize - x0).max(kx_lo as isize).min(g.kw as isize) as usize;
    let (row, rest) = split_mut(dst, g.kh * run, "a GEMM row")?;
    for (ky, taps) in row.chunks_exact_mut(nz(run)).enumerate() {
        let iy = (pos.y * g.stride + ky) as isize - g.pad as isize;
        if iy < 0 || iy as usize >= g.h || kx_lo == kx_hi {
            fill_run(taps, zp);
            continue;
        }
        let src = (iy as usize * g.w + (x0 + kx_lo as isize) as usize) * g.cin;
        let (before, taps) = split_mut(taps, kx_lo * g.cin, "a kernel row")?;
        let (inside, after) = split_mut(taps, (kx_hi - kx_lo) * g.cin, "a kernel row")?;
        fill_run(before, zp);
        copy_run(inside, part(xs, src..src + inside.len(), "a kernel row")?);
        fill_run(after, zp);
    }
    fill_run(rest, 0);
    Ok(())
}

/// The first and the last `N` bytes of `src` to `dst` (both at least `N` long, equally).
#[inline(always)]
fn ends<const N: usize>(dst: &mut [i8], src: &[i8]) {
    if let (Some(d), Some(s)) = (dst.first_chunk_mut::<N>(), src.first_chunk::<N>()) {
        *d = *s;
    }
    if let (Some(d), Some(s)) = (dst.last_chunk_mut::<N>(), src.last_chunk::<N>()) {
        *d = *s;
    }
}

/// `dst = src` (equal lengths) in fixed-size moves, the last one overlapping, instead of a
/// library call: a kernel row is a few dozen bytes, and on 16-channel maps the calls cost
/// several times the copies (and the GEMM that follows).
#[inline(always)]
fn copy_run(dst: &mut [i8], src: &[i8]) {
    if dst.len() != src.len() {
        return;
    }
    match dst.len() {
        16.. => {
            let (mut d, mut s) = (&mut *dst, src);
            while let Some((dc, dr)) = core::mem::take(&mut d).split_first_chunk_mut::<16>() {
                let Some((sc, sr)) = s.split_first_chunk::<16>() else {
                    break;
                };
                *dc = *sc;
                (d, s) = (dr, sr);
            }
            if let (Some(d), Some(s)) = (dst.last_chunk_mut::<16>(), src.last_chunk::<16>()) {
                *d = *s;
            }
        }
        8.. => ends::<8>(dst, src),
        4.. => ends::<4>(dst, src),
        2.. => ends::<2>(dst, src),
        _ => ends::<1>(dst, src),
    }
}

/// `dst.fill(v)`, as [`copy_run`] copies.
#[inline(always)]
fn fill_run(dst: &mut [i8], v: i8) {
    if dst.is_empty() {
        return;
    }
    if dst.len() > 64 {
        dst.fill(v);
        return;
    }
    let src = [v; 64];
    copy_run(dst, src.get(..dst.len()).unwrap_or_default());
}

/// The body of a convolution with `weights[cout][cin][kh][kw]` (ONNX Conv).
#[cfg(any(feature = "std", test))]
pub fn encode(g: &ConvGeometry, zp_in: i8, requant: &RequantParams, weights: &[i8]) -> Result<Vec<u8>, EncodeError> {
    let mut b = Vec::new();
    put_geometry(&mut b, g, zp_in, requant)?;
    // Reduction index k = (ky * kw + kx) * cin + ci.
    let w = |k: usize, co: usize| {
        let (tap, ci) = (k / g.cin, k % g.cin);
        let (ky, kx) = (tap / g.kw, tap % g.kw);
        weights[((co * g.cin + ci) * g.kh + ky) * g.kw + kx]
    };
    let k = g.kh * g.kw * g.cin;
    put_requant(&mut b, requant, zp_in, &[column_sums(k, g.cout, &w)])?;
    put_packed(&mut b, k, g.cout, w);
    Ok(b)
}

/// A float `Conv` (weights `[cout][cin][kh][kw]`) in int8: symmetric weights per output
/// channel; equal strides and paddings on both axes.
#[cfg(feature = "std")]
pub(crate) fn quantize(
    cx: &NodeCx,
    (cin, cout, kh, kw): (usize, usize, usize, usize),
    stride: (usize, usize),
    pad: [usize; 4],
    weights: &[f32],
    bias: &[f32],
    per_channel: Option<&crate::quantize::ChannelQuant>,
) -> Result<QuantOp, QuantizeError> {
    let (h, w) = cx.input_hw();
    if stride.0 != stride.1 || pad[0] != pad[2] || pad[1] != pad[3] || pad[0] != pad[1] {
        return Err(cx.fail(format!(
            "unequal strides {stride:?} or paddings {pad:?} are not supported"
        )));
    }
    let geometry = ConvGeometry {
        cin,
        cout,
        h,
        w,
        kh,
        kw,
        stride: stride.0,
        pad: pad[0],
        out_pad: 0,
    };
    let per_out = cin * kh * kw;
    let (wq, ws) = crate::quantize::quantize_weights(weights, cout, |j| j / per_out);
    Ok(QuantOp::Conv2d {
        geometry,
        zp_in: cx.input().zero_point,
        requant: cx.requant("Conv2d", bias, &ws, per_channel)?,
        weights: wq,
    })
}

/// A 1x1 convolution of `[cin, h, w]` with float weights `[cout][cin]`, for the float ops that
/// are one (a Linear at every step of a sequence, a per-channel affine), named `op` in errors.
#[cfg(feature = "std")]
pub(crate) fn pointwise(
    cx: &NodeCx,
    op: &'static str,
    (cin, cout, h, w): (usize, usize, usize, usize),
    weights: &[f32],
    bias: &[f32],
) -> Result<QuantOp, QuantizeError> {
    let geometry = ConvGeometry {
        cin,
        cout,
        h,
        w,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
        out_pad: 0,
    };
    let (wq, ws) = crate::quantize::quantize_weights(weights, cout, |j| j / cin);
    Ok(QuantOp::Conv2d {
        geometry,
        zp_in: cx.input().zero_point,
        requant: cx.requant(op, bias, &ws, None)?,
        weights: wq,
    })
}
