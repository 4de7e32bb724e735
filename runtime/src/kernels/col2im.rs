//! Transposed convolutions with few output channels: one GEMM over the input pixels, then col2im.
//!
//! The sub-pixel path gathers each output position's taps (`taps x cin` bytes) into a GEMM tile.
//! With one or three output channels (an image layer) the gather costs far more than the
//! multiply-adds it feeds. Here every input pixel meets all `kh x kw x cout` kernel columns at
//! once, `P[pixel][(ky, kx, co)] = sum_c x[pixel][c] * w[c][ky][kx][co]`, read straight from the
//! NHWC input, and each output adds the partial sums of its taps. The sums are the sub-pixel
//! GEMM's, term by term, so the outputs are bit-identical: a tap outside the input contributes
//! `zp_in * sum_c w[c][ky][kx][co]`, as the zero-point padding of the gathered tile does.

use super::{gemm_i32, packed_index, packed_len, padded_k, requantize, Isa, Requant};
use crate::format::{ConvGeometry, Op};
use core::mem::MaybeUninit;

/// Most kernel columns (`kh * kw * cout`): beyond, one gather feeds enough output channels.
const MAX_COLS: usize = 64;
/// Largest packed kernel matrix (`cin x cols`), bytes, built on the stack per call.
const WT_MAX: usize = 16 * 1024;
/// Largest partial sums of one sample (`h * w * cols`), on the stack.
const P_MAX: usize = 16 * 1024;

/// Whether [`conv_transpose`] runs a layer of geometry `g` with kernel family `isa`: only where
/// the GEMM has a fast exact-sum kernel (see [`gemm_i32`]) and the buffers fit.
pub fn suits(isa: Isa, g: &ConvGeometry) -> bool {
    let cols = g.kh * g.kw * g.cout;
    isa == Isa::Avx512Vnni
        && isa.is_available()
        && cols <= MAX_COLS
        && packed_len(g.cin, cols) <= WT_MAX
        && g.h * g.w * cols <= P_MAX
}

/// The transposed convolution of `batch` NHWC samples `x` into `y`, with the model's per-phase
/// packed weights `phases` and requantization `rq` (biases per phase, as the sub-pixel path
/// uses them). Requires [`suits`].
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose(
    isa: Isa,
    batch: usize,
    zp_in: i8,
    rq: &Requant,
    g: &ConvGeometry,
    phases: &[i8],
    x: &[i8],
    y: &mut [i8],
) {
    assert!(suits(isa, g), "col2im geometry");
    let (ho, wo) = g.transpose_out();
    let (s, cout, kw) = (g.stride, g.cout, g.kw);
    let cols = g.kh * kw * cout;
    let pixels = g.h * g.w;
    // The kernel as one [cin x cols] matrix, column (ky * kw + kx) * cout + co, gathered from
    // the phases (phase (ky % s, kx % s) holds tap (ky / s, kx / s)), and its column sums.
    let mut wt = MaybeUninit::<[i8; WT_MAX]>::uninit();
    let wt = zeroed_prefix(&mut wt, packed_len(g.cin, cols));
    let kp = padded_k(g.cin);
    let mut wsum = [0i32; MAX_COLS];
    for ry in 0..s {
        for rx in 0..s {
            let (ty, tx) = (g.phase_taps(g.kh, ry), g.phase_taps(kw, rx));
            if ty * tx == 0 {
                continue;
            }
            let pw = Op::phase_weights(g, phases, ry, rx);
            for t in 0..ty {
                for u in 0..tx {
                    let col0 = ((ry + t * s) * kw + rx + u * s) * cout;
                    for c in 0..g.cin {
                        for co in 0..cout {
                            let v = pw.at((t * tx + u) * g.cin + c, co);
                            wt[packed_index(kp, c, col0 + co)] = v;
                            wsum[col0 + co] += v as i32;
                        }
                    }
                }
            }
        }
    }
    let wt = super::PackedWeights::new(wt, g.cin, cols).expect("sized above");
    let mut p = MaybeUninit::<[i32; P_MAX]>::uninit();
    let p = zeroed_prefix(&mut p, pixels * cols);
    let zp = zp_in as i32;
    let sample_in = pixels * g.cin;
    let sample_out = ho * wo * cout;
    for (xs, ys) in x
        .chunks_exact(sample_in)
        .zip(y.chunks_exact_mut(sample_out))
        .take(batch)
    {
        gemm_i32(isa, xs, g.cin, pixels, wt, p);
        for oy in 0..ho {
            let ry = (oy + g.pad) % s;
            for ox in 0..wo {
                let rx = (ox + g.pad) % s;
                let phase = ry * s + rx;
                let out = &mut ys[(oy * wo + ox) * cout..][..cout];
                for (co, out) in out.iter_mut().enumerate() {
                    let mut acc = 0i32;
                    // Taps ky = ry + t * s reach input row (oy + pad - ky) / s.
                    for ky in (ry..g.kh).step_by(s) {
                        let iy = (oy + g.pad).wrapping_sub(ky) / s;
                        let row_ok = oy + g.pad >= ky && iy < g.h;
                        for kx in (rx..kw).step_by(s) {
                            let ix = (ox + g.pad).wrapping_sub(kx) / s;
                            let col = (ky * kw + kx) * cout + co;
                            acc = acc.wrapping_add(if row_ok && ox + g.pad >= kx && ix < g.w {
                                p[(iy * g.w + ix) * cols + col]
                            } else {
                                zp.wrapping_mul(wsum[col])
                            });
                        }
                    }
                    *out = requantize(
                        acc,
                        rq.bias.get(phase * cout + co),
                        rq.mult.get(co),
                        rq.shift[co],
                        rq.zp_out,
                        rq.min,
                        rq.max,
                    );
                }
            }
        }
    }
}

/// Integers whose all-zero bits are a valid value.
trait Zeroable: Copy {}
impl Zeroable for i8 {}
impl Zeroable for i32 {}

/// The first `len` values of `buf`, zeroed (only they: the buffers are sized for the largest
/// layer).
fn zeroed_prefix<T: Zeroable, const N: usize>(
    buf: &mut MaybeUninit<[T; N]>,
    len: usize,
) -> &mut [T] {
    assert!(len <= N);
    let p = buf.as_mut_ptr() as *mut T;
    // SAFETY: `len <= N` values inside `buf`; zero is a valid `T`.
    unsafe {
        core::ptr::write_bytes(p, 0, len);
        core::slice::from_raw_parts_mut(p, len)
    }
}
