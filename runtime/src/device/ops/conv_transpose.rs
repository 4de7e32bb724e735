//! `ConvTranspose2d`: a transposed convolution as `stride^2` phase convolutions (each output
//! phase `(ry, rx)` gathers its taps and runs one GEMM per tile, then scatters), or col2im on
//! x86-64 where it suits the layer ([`crate::kernels::col2im`]).
//!
//! Body: the geometry, input zero point, output zero point, clamp min and max, the
//! requantization arrays (`cout` biases per phase: the phases' column sums differ), then each
//! phase's packed `[(ty, tx, cin) x cout]` matrix in row-major phase order, tap `t` of phase `r`
//! being kernel index `r + t * stride`.

use super::gemm::{copy_run, gather_pixel, read_gemm_header, read_geometry, read_requant, read_weights, Pos};
use super::{expect_shape, expect_zero_point, int8_inputs, nz, part, part_mut, Cx, OpKind, Scratch};
use crate::format::{as_i8, ConvGeometry, FormatError, Gemm, Reader, Shape, TensorInfo};
use crate::interp::{RunError, TILE_ROWS};
use crate::kernels::{gemm_requant, Isa, packed_len, padded_k, PackedWeights, Requant};
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
use crate::import::{Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

/// Bytes of input plus output a transposed convolution processes per block of samples.
pub(crate) const SAMPLE_BLOCK_BYTES: usize = 128 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct ConvTranspose2d<'a> {
    pub gemm: Gemm<'a>,
    pub geometry: ConvGeometry,
    /// Every phase's packed matrix, in row-major phase order.
    pub phases: &'a [i8],
}

impl<'a> ConvTranspose2d<'a> {
    /// Packed weights of phase `(ry, rx)`; `None` if there is no such phase (the parser checked
    /// that every phase of a model's op is there).
    pub fn phase_weights(
        geometry: &ConvGeometry,
        phases: &'a [i8],
        ry: usize,
        rx: usize,
    ) -> Option<PackedWeights<'a>> {
        let mut offset = 0;
        for py in 0..geometry.stride {
            for px in 0..geometry.stride {
                let len = packed_len(geometry.phase_k(py, px), geometry.cout);
                if (py, px) == (ry, rx) {
                    let data = phases.get(offset..offset + len)?;
                    return PackedWeights::new(data, geometry.phase_k(py, px), geometry.cout);
                }
                offset += len;
            }
        }
        None
    }
}

impl<'a> OpKind<'a> for ConvTranspose2d<'a> {
    const NAME: &'static str = "ConvTranspose2d";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let bad = |reason| FormatError::Op { index, reason };
        let g = read_geometry(b, index)?;
        let (zp_in, zp_out, min, max) = read_gemm_header(b)?;
        let biases = g.stride * g.stride * g.cout;
        let requant = read_requant(b, biases, g.cout, (zp_out, min, max), index)?;
        // Every phase needs at least one tap, and the output must be non-empty.
        if g.kh < g.stride || g.kw < g.stride || g.out_pad >= g.stride {
            return Err(bad(
                "transposed convolution needs kernel >= stride > output padding",
            ));
        }
        if 2 * g.pad >= (g.h - 1) * g.stride + g.kh + g.out_pad
            || 2 * g.pad >= (g.w - 1) * g.stride + g.kw + g.out_pad
        {
            return Err(bad("padding leaves no output"));
        }
        let start = b.pos;
        for ry in 0..g.stride {
            for rx in 0..g.stride {
                read_weights(b, g.phase_k(ry, rx), g.cout, index)?;
            }
        }
        Ok(ConvTranspose2d {
            gemm: Gemm { zp_in, requant },
            geometry: g,
            phases: as_i8(b.buf.get(start..b.pos).unwrap_or_default()),
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        let g = self.geometry;
        int8_inputs(inputs, 1, index)?;
        expect_shape(Shape::Image { c: g.cin, h: g.h, w: g.w }, inputs[0].shape, index)?;
        expect_zero_point(self.gemm.zp_in, &inputs[0], index)?;
        let (h, w) = g.transpose_out();
        Ok(Shape::Image { c: g.cout, h, w })
    }

    fn scratch(&self) -> Scratch {
        let g = self.geometry;
        let mut depth = 0;
        for ry in 0..g.stride {
            for rx in 0..g.stride {
                depth = depth.max(padded_k(g.phase_k(ry, rx)));
            }
        }
        Scratch {
            tile_depth: depth,
            tile_out: g.cout,
        }
    }

    fn macs(&self) -> usize {
        let g = self.geometry;
        g.h * g.w * g.kh * g.kw * g.cin * g.cout
    }

    fn params(&self) -> usize {
        let g = self.geometry;
        g.cin * g.cout * g.kh * g.kw + g.cout
    }

    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a transposed convolution's input"))?;
        let all = 0..self.geometry.transpose_out().0;
        conv_transpose2d(cx, &self.gemm, &self.geometry, self.phases, x, y, all)
    }

    fn rows(&self, _isa: Isa) -> usize {
        self.geometry.transpose_out().0
    }

    fn run_rows(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8], rows: Range<usize>) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a transposed convolution's input"))?;
        let g = &self.geometry;
        let (ho, wo) = g.transpose_out();
        if cx.batch != 1 || rows.end > ho || y.len() != rows.len() * wo * g.cout {
            return Err(RunError::Internal("a transposed convolution's rows"));
        }
        conv_transpose2d(cx, &self.gemm, g, self.phases, x, y, rows)
    }
}

fn conv_transpose2d(
    cx: &mut Cx,
    gemm: &Gemm,
    g: &ConvGeometry,
    phases: &[i8],
    x: &[i8],
    y: &mut [i8],
    rows: Range<usize>,
) -> Result<(), RunError> {
    let (isa, batch) = (cx.isa, cx.batch);
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::col2im::suits(isa, g) {
        let rq = &gemm.requant;
        return crate::kernels::col2im::conv_transpose(isa, batch, gemm.zp_in, rq, g, phases, x, y, rows)
            .ok_or(RunError::Internal("a col2im layer"));
    }
    let (ho, wo) = g.transpose_out();
    let s = nz(g.stride);
    let sample_in = nz(g.h * g.w * g.cin);
    let sample_out = nz(ho * wo * g.cout);
    // Each phase sweeps its samples' whole input: in blocks of samples that stay in L2 across
    // the phases, instead of the whole batch (megabytes at batch 64) once per phase.
    let block = (SAMPLE_BLOCK_BYTES / nz(sample_in + sample_out)).clamp(1, nz(batch));
    for (x, y) in x
        .chunks(nz(block * sample_in))
        .zip(y.chunks_mut(nz(block * sample_out)))
    {
        let nb = x.len() / sample_in;
        for ry in 0..s {
            for rx in 0..s {
                conv_transpose_phase(
                    isa,
                    nb,
                    gemm,
                    g,
                    phases,
                    (ry, rx),
                    rows.clone(),
                    x,
                    y,
                    cx.tile,
                    cx.tile_out,
                )?;
            }
        }
    }
    Ok(())
}

/// The outputs of phase `(ry, rx)` of a transposed convolution over `batch` samples, in output
/// rows `rows` (all of them, but for one sample's rows; `y` then holds just those rows).
#[allow(clippy::too_many_arguments)]
fn conv_transpose_phase(
    isa: Isa,
    batch: usize,
    gemm: &Gemm,
    g: &ConvGeometry,
    phases: &[i8],
    (ry, rx): (usize, usize),
    rows: Range<usize>,
    x: &[i8],
    y: &mut [i8],
    tile: &mut [i8],
    tile_out: &mut [i8],
) -> Result<(), RunError> {
    let (ho, wo) = g.transpose_out();
    let (s, cout) = (nz(g.stride), nz(g.cout));
    let sample_in = g.h * g.w * g.cin;
    let sample_out = ho * wo * cout;
    let w = ConvTranspose2d::phase_weights(g, phases, ry, rx).ok_or(RunError::Internal("a phase"))?;
    let requant = Requant {
        bias: (gemm.requant.bias.slice((ry * s + rx) * cout, cout))
            .ok_or(RunError::Internal("a phase's biases"))?,
        ..gemm.requant
    };
    let kp = w.kp();
    let (ty, tx) = (g.phase_taps(g.kh, ry), g.phase_taps(g.kw, rx));
    // Outputs of this phase: o with (o + pad) % s == r, i.e. o = first + i * s.
    let first_y = (ry + s - g.pad % s) % s;
    let first_x = (rx + s - g.pad % s) % s;
    let ny = if first_y < ho {
        (ho - first_y).div_ceil(s)
    } else {
        0
    };
    let nx = if first_x < wo {
        (wo - first_x).div_ceil(s)
    } else {
        0
    };
    // Output o = first + i * s takes tap t (kernel index r + t * s) from input
    // (o + pad - r) / s - t = base + i - t: `first + pad - r` is a non-negative multiple
    // of s by the choice of `first`.
    let (base_y, base_x) = ((first_y + g.pad - ry) / s, (first_x + g.pad - rx) / s);
    // This phase's rows i with first_y + i * s in `rows` (all ny of them for a whole batch).
    let phase_row = |o: usize| o.saturating_sub(first_y).div_ceil(s).min(ny);
    let (i0, i1) = (phase_row(rows.start), phase_row(rows.end));
    let total = batch * (i1 - i0) * nx;
    let skipped = rows.start * wo * cout;
    let mut pos = Pos { b: 0, y: i0, x: 0 };
    let mut r0 = 0;
    while r0 < total {
        let rows = TILE_ROWS.min(total - r0);
        let tile_start = pos;
        for dst in tile.chunks_exact_mut(kp).take(rows) {
            let xs = part(x, pos.b * sample_in..(pos.b + 1) * sample_in, "a sample")?;
            let mut k = 0;
            for t in 0..ty {
                let iy = (base_y + pos.y) as isize - t as isize;
                for u in 0..tx {
                    let ix = (base_x + pos.x) as isize - u as isize;
                    let d = part_mut(dst, k..k + g.cin, "a tap")?;
                    gather_pixel(d, xs, g, iy, ix, gemm.zp_in)?;
                    k += g.cin;
                }
            }
            part_mut(dst, k.., "a GEMM row")?.fill(0);
            pos.advance(ny, nx);
        }
        let out = part_mut(tile_out, ..rows * cout, "the output tile")?;
        gemm_requant(isa, tile, rows, w, &requant, out)?;
        let mut at = tile_start;
        for src in out.chunks_exact(cout) {
            let (oy, ox) = (first_y + at.y * s, first_x + at.x * s);
            let dst = (at.b * sample_out + (oy * wo + ox) * cout)
                .checked_sub(skipped)
                .ok_or(RunError::Internal("an output row"))?;
            copy_run(part_mut(y, dst..dst + cout, "an output pixel")?, src)?;
            at.advance(ny, nx);
        }
        r0 += rows;
    }
    Ok(())
}

/// The body of a transposed convolution with `weights[cin][cout][kh][kw]` (ONNX
/// ConvTranspose), one packed matrix per phase.
#[cfg(any(feature = "std", test))]
pub fn encode(g: &ConvGeometry, zp_in: i8, requant: &RequantParams, weights: &[i8]) -> Result<Vec<u8>, EncodeError> {
    let mut b = Vec::new();
    put_geometry(&mut b, g, zp_in, requant)?;
    // Phase (ry, rx), reduction index k = (t * tx + u) * cin + ci <-> kernel tap
    // (ry + t * stride, rx + u * stride).
    let phase = |ry: usize, rx: usize| {
        let tx = g.phase_taps(g.kw, rx);
        move |k: usize, co: usize| {
            let (tap, ci) = (k / g.cin, k % g.cin);
            let (ky, kx) = (ry + (tap / tx) * g.stride, rx + (tap % tx) * g.stride);
            weights[((ci * g.cout + co) * g.kh + ky) * g.kw + kx]
        }
    };
    let phases: Vec<(usize, usize)> = (0..g.stride)
        .flat_map(|ry| (0..g.stride).map(move |rx| (ry, rx)))
        .collect();
    let sums: Vec<Vec<i64>> = phases
        .iter()
        .map(|&(ry, rx)| column_sums(g.phase_k(ry, rx), g.cout, &phase(ry, rx)))
        .collect();
    put_requant(&mut b, requant, zp_in, &sums)?;
    for &(ry, rx) in &phases {
        put_packed(&mut b, g.phase_k(ry, rx), g.cout, phase(ry, rx));
    }
    Ok(b)
}

/// A float `ConvTranspose` (weights `[cin][cout][kh][kw]`) in int8: symmetric weights per output
/// channel; equal strides, paddings and output paddings on both axes.
#[cfg(feature = "std")]
pub(crate) fn quantize(
    cx: &NodeCx,
    (cin, cout, kh, kw): (usize, usize, usize, usize),
    (stride, pad, out_pad): ((usize, usize), [usize; 4], (usize, usize)),
    weights: &[f32],
    bias: &[f32],
    per_channel: Option<&crate::quantize::ChannelQuant>,
) -> Result<QuantOp, QuantizeError> {
    let (h, w) = cx.input_hw();
    if stride.0 != stride.1 || out_pad.0 != out_pad.1 || pad.iter().any(|&p| p != pad[0]) {
        return Err(cx.fail(format!("unequal strides {stride:?}, paddings {pad:?} or output paddings {out_pad:?} are not supported")));
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
        out_pad: out_pad.0,
    };
    let taps = kh * kw;
    let (wq, ws) = crate::quantize::quantize_weights(weights, cout, |j| (j / taps) % cout);
    Ok(QuantOp::ConvTranspose2d {
        geometry,
        zp_in: cx.input().zero_point,
        requant: cx.requant("ConvTranspose2d", bias, &ws, per_channel)?,
        weights: wq,
    })
}

/// tract's `Deconv` (ONNX's ConvTranspose; one group), whose kernel tract keeps as
/// `[cout][cin]`: back to ONNX's `[cin][cout]`.
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::cnn::Deconv) -> MapResult {
    if op.group != 1 {
        return Err(format!(
            "group {} transposed convolutions are not supported",
            op.group
        ));
    }
    let g = super::conv::geometry(&op.pool_spec)?;
    let (cin, cout) = (op.pool_spec.input_channels, op.pool_spec.output_channels);
    // tract keeps a Deconv kernel with O = output channels; we store ONNX's [cin][cout].
    let oihw = super::conv::kernel_oihw(cx, node, op.kernel_format, cout, cin, g.kh, g.kw)?;
    let taps = g.kh * g.kw;
    let mut weights = vec![0.0; oihw.len()];
    for o in 0..cout {
        for i in 0..cin {
            let from = (o * cin + i) * taps;
            let to = (i * cout + o) * taps;
            weights[to..to + taps].copy_from_slice(&oihw[from..from + taps]);
        }
    }
    let out_pad = match op.adjustments.as_slice() {
        [a, b] => (*a, *b),
        other => return Err(format!("output padding {other:?} is not 2-D")),
    };
    let bias = super::conv::bias(cx, node, cout)?;
    Ok(Mapped::Op(
        FloatOp::ConvTranspose {
            cin,
            cout,
            kh: g.kh,
            kw: g.kw,
            stride: g.stride,
            pad: g.pad,
            out_pad,
            weights,
            bias,
        },
        vec![node.inputs[0]],
    ))
}

/// The float definition this op is tested against ([`FloatOp::ConvTranspose`] in plain f32;
/// the output padding is in the output's shape).
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
        return Err(format!("ConvTranspose of {cin} channels gets {c}"));
    }
    let mut y = vec![0.0; batch * cout * ho * wo];
    for b in 0..batch {
        let yb = &mut y[b * cout * ho * wo..(b + 1) * cout * ho * wo];
        for (o, plane) in yb.chunks_mut(ho * wo).enumerate() {
            plane.iter_mut().for_each(|v| *v = bias[o]);
        }
        for i in 0..c {
            for iy in 0..h {
                for ix in 0..w {
                    let v = x[((b * c + i) * h + iy) * w + ix];
                    for o in 0..cout {
                        for ky in 0..kh {
                            let oy = (iy * stride.0 + ky) as isize - pad[0] as isize;
                            if oy < 0 || oy >= ho as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ox = (ix * stride.1 + kx) as isize - pad[1] as isize;
                                if ox < 0 || ox >= wo as isize {
                                    continue;
                                }
                                yb[(o * ho + oy as usize) * wo + ox as usize] +=
                                    v * weights[((i * cout + o) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(y)
}
