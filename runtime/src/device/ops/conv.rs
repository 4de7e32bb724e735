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
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{floats, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops::cnn::{KernelFormat, PaddingSpec, PoolSpec};
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops::nn::DataFormat;

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

/// tract's `Conv` (ONNX's, any kernel, stride and explicit padding; one group).
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::cnn::Conv) -> MapResult {
    if op.q_params.is_some() {
        return Ok(Mapped::Unsupported);
    }
    if op.group != 1 {
        return Err(format!("group {} convolutions are not supported", op.group));
    }
    let g = geometry(&op.pool_spec)?;
    let (cin, cout) = (op.pool_spec.input_channels, op.pool_spec.output_channels);
    let weights = kernel_oihw(cx, node, op.kernel_fmt, cout, cin, g.kh, g.kw)?;
    let bias = bias(cx, node, cout)?;
    Ok(Mapped::Op(
        FloatOp::Conv {
            cin,
            cout,
            kh: g.kh,
            kw: g.kw,
            stride: g.stride,
            pad: g.pad,
            weights,
            bias,
        },
        vec![node.inputs[0]],
    ))
}

/// A 1x1 convolution, which tract declutters into `EinSum` `NIHW,OI->NOHW` (`NIHW,I->NOHW` for
/// one output channel; and a 1x1 convolution of a concatenation, a U-Net's closing layer, into
/// one such EinSum per part, summed): back to a `Conv` with a 1x1 kernel, weights `[O][I]` as
/// ONNX lays them out. Called by [`super::linear::import`], which reads every `EinSum`.
#[cfg(feature = "std")]
pub(crate) fn import_pointwise(
    cx: &Walker,
    node: &TypedNode,
    x_at: usize,
    w_at: usize,
    (i, o): (char, char),
    wt: &[char],
    formula: &str,
) -> MapResult {
    let (cout, cin, weights) = match wt {
        [a, b] if *a == o && *b == i => cx.weight_matrix(node.inputs[w_at], false)?,
        [a, b] if *a == i && *b == o => cx.weight_matrix(node.inputs[w_at], true)?,
        // One output channel: tract keeps the weight as the vector `[I]` (`NIHW,I->NOHW`).
        [a] if *a == i => {
            let c = cx
                .konst(node.inputs[w_at])
                .ok_or("the weights are not a constant")?;
            let w = floats(c)?;
            (1, w.len(), w)
        }
        _ => return Err(format!("EinSum {formula} is not a 1x1 convolution")),
    };
    Ok(Mapped::Op(
        FloatOp::Conv {
            cin,
            cout,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            pad: [0; 4],
            weights,
            bias: vec![0.0; cout],
        },
        vec![node.inputs[x_at]],
    ))
}

/// The kernel (input 1) in `[o][i][kh][kw]` order whatever tract's format.
#[cfg(feature = "std")]
pub(crate) fn kernel_oihw(
    cx: &Walker,
    node: &TypedNode,
    fmt: KernelFormat,
    o: usize,
    i: usize,
    kh: usize,
    kw: usize,
) -> Result<Vec<f32>, String> {
    let k = node
        .inputs
        .get(1)
        .and_then(|&k| cx.konst(k))
        .ok_or("the kernel must be a constant")?;
    let w = floats(k)?;
    let dims: [usize; 4] = match fmt {
        KernelFormat::OIHW => [o, i, kh, kw],
        KernelFormat::HWIO => [kh, kw, i, o],
        KernelFormat::OHWI => [o, kh, kw, i],
    };
    if k.shape() != dims || w.len() != o * i * kh * kw {
        return Err(format!(
            "kernel shape {:?} is not {fmt:?} {dims:?}",
            k.shape()
        ));
    }
    let mut out = vec![0.0; w.len()];
    for (at, v) in w.iter().enumerate() {
        let [a, b, c, d] = unravel(at, dims);
        let (oo, ii, y, x) = match fmt {
            KernelFormat::OIHW => (a, b, c, d),
            KernelFormat::HWIO => (d, c, a, b),
            KernelFormat::OHWI => (a, d, b, c),
        };
        out[((oo * i + ii) * kh + y) * kw + x] = *v;
    }
    Ok(out)
}

/// The bias (input 2): absent, one value for every channel, or one per channel.
#[cfg(feature = "std")]
pub(crate) fn bias(cx: &Walker, node: &TypedNode, cout: usize) -> Result<Vec<f32>, String> {
    let Some(&b) = node.inputs.get(2) else {
        return Ok(vec![0.0; cout]);
    };
    let b = floats(cx.konst(b).ok_or("the bias must be a constant")?)?;
    match b.len() {
        1 => Ok(vec![b[0]; cout]),
        n if n == cout => Ok(b),
        n => Err(format!("bias has {n} values for {cout} channels")),
    }
}

/// A convolution's kernel size, strides and padding, read from tract's pool spec.
#[cfg(feature = "std")]
pub(crate) struct Geometry {
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: (usize, usize),
    pub(crate) pad: [usize; 4],
}

#[cfg(feature = "std")]
pub(crate) fn geometry(p: &PoolSpec) -> Result<Geometry, String> {
    if p.data_format != DataFormat::NCHW {
        return Err(format!("data format {:?} (NCHW only)", p.data_format));
    }
    let [kh, kw] = p.kernel_shape[..] else {
        return Err(format!("kernel {:?} is not 2-D", p.kernel_shape));
    };
    if p.dilations
        .as_ref()
        .is_some_and(|d| d.iter().any(|&d| d != 1))
    {
        return Err("dilated convolutions are not supported".into());
    }
    let stride = match p.strides.as_deref() {
        None => (1, 1),
        Some([a, b]) if *a > 0 && *b > 0 => (*a, *b),
        Some(s) => return Err(format!("strides {s:?}")),
    };
    let pad = match &p.padding {
        PaddingSpec::Valid => [0; 4],
        PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, false)
            if b.len() == 2 && a.len() == 2 =>
        {
            [b[0], b[1], a[0], a[1]]
        }
        other => return Err(format!("padding {other:?} (explicit pads only)")),
    };
    Ok(Geometry {
        kh,
        kw,
        stride,
        pad,
    })
}

#[cfg(feature = "std")]
fn unravel(mut at: usize, dims: [usize; 4]) -> [usize; 4] {
    let mut out = [0; 4];
    for i in (0..4).rev() {
        out[i] = at % dims[i];
        at /= dims[i];
    }
    out
}

/// The float definition this op is tested against ([`FloatOp::Conv`] in plain f32).
#[cfg(feature = "std")]
pub(crate) fn reference(
    e: &Eval,
    (cin, cout, kh, kw): (usize, usize, usize, usize),
    stride: (usize, usize),
    pad: [usize; 4],
    weights: &[f32],
    bias: &[f32],
) -> Result<Vec<f32>, String> {
    let ((c, h, w), (_, ho, wo)) = e.images()?;
    let (x, batch) = (e.x, e.batch);
    if c != cin {
        return Err(format!("Conv of {cin} channels gets {c}"));
    }
    let mut y = vec![0.0; batch * cout * ho * wo];
    for b in 0..batch {
        let xb = &x[b * c * h * w..(b + 1) * c * h * w];
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias[o];
                    for i in 0..c {
                        for ky in 0..kh {
                            let iy = (oy * stride.0 + ky) as isize - pad[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * stride.1 + kx) as isize - pad[1] as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                acc += xb[(i * h + iy as usize) * w + ix as usize]
                                    * weights[((o * c + i) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    y[((b * cout + o) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    Ok(y)
}
