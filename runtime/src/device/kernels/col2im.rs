//! Transposed convolutions with few output channels: one GEMM over the input pixels, then col2im.
//!
//! The sub-pixel path gathers each output position's taps (`taps x cin` bytes) into a GEMM tile.
//! With one or three output channels (an image layer) the gather costs far more than the
//! multiply-adds it feeds. Here every input pixel meets all `kh x kw x cout` kernel columns at
//! once, `P[pixel][(ky, kx, co)] = sum_c x[pixel][c] * w[c][ky][kx][co]`, read straight from the
//! NHWC input, and each output adds the partial sums of its taps. The sums are the sub-pixel
//! GEMM's, term by term, so the outputs are bit-identical: a tap outside the input contributes
//! `zp_in * sum_c w[c][ky][kx][co]`, as the zero-point padding of the gathered tile does.

use super::{gemm_i32, packed_index, packed_len, padded_k, requantize, Isa, Requant, KR};
use crate::format::ConvGeometry;
use crate::ops::ConvTranspose2d;
use core::mem::MaybeUninit;

/// Most kernel columns (`kh * kw * cout`): beyond, one gather feeds enough output channels.
const MAX_COLS: usize = 64;
/// Largest packed kernel matrix (`cin x cols`), bytes, built on the stack per call.
const WT_MAX: usize = 16 * 1024;
/// Largest partial sums held at once, on the stack: a block of input rows (`rows * w * cols`),
/// at least one.
const P_MAX: usize = 16 * 1024;
/// Largest output accumulators of one sample (`ho * wo * cout`), on the stack.
const ACC_MAX: usize = 16 * 1024;

/// Whether [`conv_transpose`] runs a layer of geometry `g` with kernel family `isa`: only where
/// the GEMM has a fast exact-sum kernel (see [`gemm_i32`]) and the buffers fit.
pub fn suits(isa: Isa, g: &ConvGeometry) -> bool {
    let cols = g.kh * g.kw * g.cout;
    matches!(isa, Isa::Avx512Vnni | Isa::Amx)
        && isa.is_available()
        && cols <= MAX_COLS
        && packed_len(g.cin, cols) <= WT_MAX
        && g.w * cols <= P_MAX
        && g.transpose_out().0 * g.transpose_out().1 * g.cout <= ACC_MAX
}

/// Input rows whose taps reach output rows `rows`: `iy` with `iy * s + ky - pad` in `rows`
/// for some `ky < kh`.
fn input_rows(g: &ConvGeometry, rows: &core::ops::Range<usize>) -> core::ops::Range<usize> {
    let s = g.stride.max(1);
    let lo = (rows.start + g.pad).saturating_sub(g.kh - 1).div_ceil(s);
    let hi = ((rows.end + g.pad).saturating_sub(1) / s + 1).min(g.h);
    lo..hi.max(lo)
}

/// The transposed convolution of `batch` NHWC samples `x` into output rows `rows` of each
/// sample (`y` holds just those rows), with the model's per-phase packed weights `phases` and
/// requantization `rq` (biases per phase, as the sub-pixel path uses them). A band of rows
/// computes the input rows that reach it, so bands split over threads repeat a few of them.
/// `None`, before anything is written, if the layer does not [`suits`] this path, the rows are
/// out of range, or the weights are not the model's validated phases; from a parsed model and
/// an engine's bands that never happens.
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
    rows: core::ops::Range<usize>,
) -> Option<()> {
    let (ho, wo) = g.transpose_out();
    if !suits(isa, g) || rows.start > rows.end || rows.end > ho {
        return None;
    }
    if rows.is_empty() {
        return Some(());
    }
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
            let pw = ConvTranspose2d::phase_weights(g, phases, ry, rx)?;
            let (src, kps) = (pw.data(), pw.kp());
            // With whole groups of four channels per tap, four depths move as one word.
            let step = if g.cin.is_multiple_of(KR) { KR } else { 1 };
            for t in 0..ty {
                for u in 0..tx {
                    let col0 = ((ry + t * s) * kw + rx + u * s) * cout;
                    let k0 = (t * tx + u) * g.cin;
                    for c in (0..g.cin).step_by(step) {
                        for co in 0..cout {
                            let from = packed_index(kps, k0 + c, co);
                            let to = packed_index(kp, c, col0 + co);
                            for (d, v) in wt[to..to + step].iter_mut().zip(&src[from..from + step])
                            {
                                *d = *v;
                                wsum[col0 + co] += *v as i32;
                            }
                        }
                    }
                }
            }
        }
    }
    let wt = super::PackedWeights::new(wt, g.cin, cols)?;
    // A tap outside the input adds `zp * wsum[col]` to the sub-pixel GEMM's sum. So each output
    // starts from `zp` times the column sums of all its phase's taps, and each tap inside the
    // input adds `P = sum_c (x - zp) * w`: no test of which taps fall outside.
    // Indexed by phase * cout + co; s * s * cout <= kh * kw * cout, as kernel >= stride.
    let mut base = [0i32; MAX_COLS];
    for ky in 0..g.kh {
        for kx in 0..kw {
            for co in 0..cout {
                let b = &mut base[((ky % s) * s + kx % s) * cout + co];
                *b = b.wrapping_add((zp_in as i32).wrapping_mul(wsum[(ky * kw + kx) * cout + co]));
            }
        }
    }
    // Partial sums of `block` input rows at a time.
    let row_cols = g.w * cols;
    let block = (P_MAX / row_cols).max(1);
    let mut p = MaybeUninit::<[i32; P_MAX]>::uninit();
    let p = zeroed_prefix(&mut p, block.min(g.h) * row_cols);
    let mut acc = MaybeUninit::<[i32; ACC_MAX]>::uninit();
    let acc = zeroed_prefix(&mut acc, rows.len() * wo * cout);
    let sample_in = pixels * g.cin;
    let sample_out = rows.len() * wo * cout;
    let inputs = input_rows(g, &rows);
    for (xs, ys) in x
        .chunks_exact(sample_in)
        .zip(y.chunks_exact_mut(sample_out))
        .take(batch)
    {
        acc.fill(0);
        for iy0 in inputs.clone().step_by(block) {
            let n_rows = block.min(inputs.end - iy0);
            let xs = xs.get(iy0 * g.w * g.cin..(iy0 + n_rows) * g.w * g.cin)?;
            let p = &mut p[..n_rows * row_cols];
            gemm_i32(isa, xs, g.cin, n_rows * g.w, zp_in, wt, p).ok()?;
            scatter(g, cout, &rows, wo, iy0, p, acc);
        }
        // Output o is in phase (o + pad) % s, stepped without divisions.
        let mut ry = (rows.start + g.pad) % s;
        for (yrow, arow) in ys
            .chunks_exact_mut(wo * cout)
            .zip(acc.chunks_exact(wo * cout))
        {
            let mut rx = g.pad % s;
            for (yp, ap) in yrow.chunks_exact_mut(cout).zip(arow.chunks_exact(cout)) {
                let phase = (ry * s + rx) * cout;
                for (co, (y, a)) in yp.iter_mut().zip(ap).enumerate() {
                    *y = requantize(
                        a.wrapping_add(base[phase + co]),
                        rq.bias.get(phase + co),
                        rq.mult.get(co),
                        rq.shift[co],
                        rq.zp_out,
                        rq.min,
                        rq.max,
                    );
                }
                rx = if rx + 1 == s { 0 } else { rx + 1 };
            }
            ry = if ry + 1 == s { 0 } else { ry + 1 };
        }
    }
    Some(())
}

/// Adds the partial sums `p` of input rows `iy0..` (each `g.w * cols` values) into `acc`, the
/// accumulators of output rows `rows`: input pixel (iy, ix) meets output
/// (iy * s + ky - pad, ix * s + kx - pad).
fn scatter(
    g: &ConvGeometry,
    cout: usize,
    rows: &core::ops::Range<usize>,
    wo: usize,
    iy0: usize,
    p: &[i32],
    acc: &mut [i32],
) {
    let (s, kw) = (g.stride, g.kw);
    let cols = g.kh * kw * cout;
    for (i, prow) in p.chunks_exact(g.w * cols).enumerate() {
        let iy = iy0 + i;
        for ky in 0..g.kh {
            let Some(oy) = (iy * s + ky)
                .checked_sub(g.pad)
                .filter(|o| rows.contains(o))
            else {
                continue;
            };
            let oy = oy - rows.start;
            let arow = &mut acc[oy * wo * cout..(oy + 1) * wo * cout];
            for kx in 0..kw {
                // Inputs ix whose output column ix * s + kx - pad is in 0..wo.
                let lo = g.pad.saturating_sub(kx).div_ceil(s);
                let hi = (wo + g.pad).saturating_sub(kx).div_ceil(s).min(g.w);
                let col = (ky * kw + kx) * cout;
                if lo >= hi {
                    continue;
                }
                let n = hi - lo;
                let dst = &mut arow[(lo * s + kx - g.pad) * cout..];
                let src = &prow[lo * cols + col..];
                // Checked once here: the loop below is the hot one of small layers.
                assert!(
                    dst.len() >= ((n - 1) * s + 1) * cout && src.len() >= (n - 1) * cols + cout
                );
                // SAFETY (both loops): i < n and co < cout, within the asserted lengths.
                if cout == 1 {
                    for i in 0..n {
                        unsafe {
                            let d = dst.get_unchecked_mut(i * s);
                            *d = d.wrapping_add(*src.get_unchecked(i * cols));
                        }
                    }
                    continue;
                }
                for i in 0..n {
                    for co in 0..cout {
                        unsafe {
                            let d = dst.get_unchecked_mut(i * s * cout + co);
                            *d = d.wrapping_add(*src.get_unchecked(i * cols + co));
                        }
                    }
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
