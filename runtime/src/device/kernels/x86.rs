//! x86-64 kernels.
//!
//! AVX2 widens to i16 and multiplies with `vpmaddwd`, which is exact. `vpmaddubsw` is not used:
//! it saturates the i16 sum of two u8*i8 products (255*127*2 > 32767), which would break
//! bit-identity with the scalar reference unless weights were cut to 7 bits. (Its sign trick,
//! `|a| * (w * sign a)`, is exact for weights above -128, but still needs a `vpmaddwd` by ones
//! to reach i32, so it issues as many multiplies per MAC as widening does.)
//!
//! Without VNNI the peak is one `vpmaddwd` (16 MACs) plus one `vpaddd` per 16 MACs, two of each
//! per cycle on Zen 4/5: all four vector ALU pipes. Every other ALU instruction in the inner loop
//! costs throughput, so the activations of a micro-tile are widened to i16 once, into a stack
//! buffer, and the inner loop only broadcasts them from memory (a load, no ALU), widens the
//! weights (shared by six rows) and multiply-adds.

use super::{PackedWeights, Requant, KR, NR};
use core::arch::x86_64::*;
use core::mem::MaybeUninit;

/// Rows per AVX2 micro-tile: 6 rows x 8 columns = 12 accumulators + 2 weights + 1 broadcast.
const MR: usize = 6;
/// Columns per AVX2 micro-tile: half a packed block.
const NC: usize = NR / 2;
/// Depth of the activations widened at a time: `MR * KC` i16 = 24 KiB of stack. Deeper GEMMs
/// (none in our models) widen chunk by chunk for every half block.
const KC: usize = 2048;
/// Up to this many output columns, [`gemm_narrow`] reduces along `k` instead of wasting most of
/// the 8-column micro-tile on padding (an RGB or grayscale output layer).
pub(super) const NARROW: usize = 4;

/// # Safety
/// The CPU must support AVX2; sizes as in [`super::gemm_requant`].
#[target_feature(enable = "avx2")]
pub unsafe fn gemm_avx2(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    assert!(
        a.len() >= rows * kp && out.len() >= rows * n && w.data().len() >= kp * n.div_ceil(NR) * NR
    );
    if n <= NARROW && kp <= KC {
        return gemm_narrow(a, rows, w, rq, out);
    }
    let mut buf = MaybeUninit::<[i16; MR * KC]>::uninit();
    let buf = buf.as_mut_ptr() as *mut i16;
    // Whole rows fit the buffer: widen them once and reuse them for every half block.
    let chunked = kp > KC;
    let mut r = 0;
    while r < rows {
        let m = MR.min(rows - r);
        let ar = a.as_ptr().add(r * kp);
        if !chunked {
            widen(ar, kp, m, kp, buf);
        }
        for half in 0..n.div_ceil(NC) {
            // Byte offset of this half's first group inside the packed data.
            let panel = w
                .data()
                .as_ptr()
                .add((half / 2) * kp * NR + (half % 2) * NC * KR);
            let mut acc = [[0i32; NC]; MR];
            // SAFETY: `m` rows of `kp` bytes from `ar` are inside `a`, the panel holds
            // `kp / KR` groups (asserted above), `buf` holds `MR * KC` values.
            tile_rows(m, ar, kp, buf, chunked, panel, &mut acc);
            let n0 = half * NC;
            let cols = NC.min(n - n0);
            let q = RequantX8::new(rq, n0, cols);
            for (i, acc) in acc.iter().take(m).enumerate() {
                let y = q.apply(_mm256_loadu_si256(acc.as_ptr() as *const __m256i));
                store8(out.as_mut_ptr().add((r + i) * n + n0), y, cols);
            }
        }
        r += m;
    }
}

/// [`super::gemm_i32`] on AVX2: each micro-tile's rows, minus the zero point, go into the i16
/// buffer [`tile`] multiplies from (exact: `|a - zp| <= 255`, and `vpmaddwd` sums two products
/// of at most 255 * 128 in i32), zero past `k`; the sums are [`tile`]'s, stored as they are.
/// Depths past [`KC`] (none in our models) run [`super::scalar::gemm_i32_panels`].
///
/// # Safety
/// The CPU must support AVX2; sizes as checked by [`super::gemm_i32`] (`k <= stride <= kp`,
/// `rows` rows of `a` at `stride`, `rows * n` values in `out`).
#[target_feature(enable = "avx2")]
pub unsafe fn gemm_i32_avx2(
    a: &[i8],
    stride: usize,
    rows: usize,
    zp: i8,
    w: PackedWeights,
    out: &mut [i32],
) {
    let kp = w.kp();
    // A small buffer for shallow products (a GRU's, called per step: zeroing the whole `KC`-deep
    // one would cost more than the product).
    if kp <= SHALLOW {
        let mut buf = [0i16; MR * SHALLOW];
        i32_tiles(a, stride, rows, zp, w, out, &mut buf);
    } else if kp <= KC {
        let mut buf = [0i16; MR * KC];
        i32_tiles(a, stride, rows, zp, w, out, &mut buf);
    } else {
        super::scalar::gemm_i32_panels(a, stride, rows, zp, w, out);
    }
}

/// Depths [`gemm_i32_avx2`] widens into a small buffer.
const SHALLOW: usize = 256;

/// [`gemm_i32_avx2`] with `buf` of at least `MR * kp` values.
///
/// # Safety
/// As [`gemm_i32_avx2`].
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn i32_tiles(
    a: &[i8],
    stride: usize,
    rows: usize,
    zp: i8,
    w: PackedWeights,
    out: &mut [i32],
    buf: &mut [i16],
) {
    let (k, kp, n) = (w.k(), w.kp(), w.n());
    if buf.len() < MR * kp {
        return super::scalar::gemm_i32_panels(a, stride, rows, zp, w, out);
    }
    let mut r = 0;
    while r < rows {
        let m = MR.min(rows - r);
        for (i, dst) in buf.chunks_exact_mut(kp).take(m).enumerate() {
            let src = a
                .get((r + i) * stride..(r + i) * stride + k)
                .unwrap_or_default();
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v as i16 - zp as i16;
            }
            dst[src.len()..].fill(0);
        }
        let bp = buf.as_mut_ptr();
        for half in 0..n.div_ceil(NC) {
            let panel = w
                .data()
                .as_ptr()
                .add((half / 2) * kp * NR + (half % 2) * NC * KR);
            let mut acc = [[0i32; NC]; MR];
            // SAFETY: the rows are widened in `buf` (row stride `kp`), so `tile` reads no `a`;
            // the panel holds `kp / KR` groups.
            let a0 = a.as_ptr();
            tile_rows(m, a0, kp, bp, false, panel, &mut acc);
            let n0 = half * NC;
            let cols = NC.min(n - n0);
            for (i, acc) in acc.iter().take(m).enumerate() {
                if let Some(o) = out.get_mut((r + i) * n + n0..(r + i) * n + n0 + cols) {
                    o.copy_from_slice(&acc[..cols]);
                }
            }
        }
        r += m;
    }
}

/// Stores the first `cols` (at most 8) of the little-endian bytes of `y` at `dst`.
///
/// # Safety
/// `dst`: `cols` writable bytes.
#[inline(always)]
unsafe fn store8(dst: *mut i8, y: u64, cols: usize) {
    if cols == NC {
        (dst as *mut u64).write_unaligned(y);
    } else {
        core::ptr::copy_nonoverlapping(y.to_le_bytes().as_ptr() as *const i8, dst, cols);
    }
}

/// Sign-extends `m` rows of `kc` bytes (row stride `kp`) into `buf` (row stride `kc`).
///
/// # Safety
/// `a` must point at `m` rows of at least `kc` readable bytes each; `buf` at `m * kc` writable
/// values; `kc` is a multiple of [`KR`].
#[target_feature(enable = "avx2")]
unsafe fn widen(a: *const i8, kp: usize, m: usize, kc: usize, buf: *mut i16) {
    for i in 0..m {
        let (src, dst) = (a.add(i * kp), buf.add(i * kc));
        let mut k = 0;
        while k + 16 <= kc {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(src.add(k) as *const __m128i));
            _mm256_storeu_si256(dst.add(k) as *mut __m256i, x);
            k += 16;
        }
        while k < kc {
            *dst.add(k) = *src.add(k) as i16;
            k += 1;
        }
    }
}

/// [`tile`] for `m` (1 to [`MR`]) rows.
///
/// # Safety
/// As [`tile`] with `M = m`.
#[target_feature(enable = "avx2")]
unsafe fn tile_rows(
    m: usize,
    a: *const i8,
    kp: usize,
    buf: *mut i16,
    chunked: bool,
    panel: *const i8,
    acc: &mut [[i32; NC]; MR],
) {
    match m {
        6 => tile::<6>(a, kp, buf, chunked, panel, acc),
        5 => tile::<5>(a, kp, buf, chunked, panel, acc),
        4 => tile::<4>(a, kp, buf, chunked, panel, acc),
        3 => tile::<3>(a, kp, buf, chunked, panel, acc),
        2 => tile::<2>(a, kp, buf, chunked, panel, acc),
        _ => tile::<1>(a, kp, buf, chunked, panel, acc),
    }
}

/// `acc[i][j] = sum_k a[i][k] * w[k][j]` for `M` rows and one half block of 8 columns.
///
/// The widened rows are in `buf` already unless `chunked`, in which case they are widened here
/// `KC` deep at a time (the buffer then holds a chunk, row stride `KC`).
///
/// # Safety
/// `a`: `M` rows of `kp` bytes (row stride `kp`); `panel`: the half block's first byte in packed
/// data of depth `kp`; `buf`: `MR * KC` values, holding the widened rows (row stride `kp`) when
/// not `chunked`.
#[target_feature(enable = "avx2")]
unsafe fn tile<const M: usize>(
    a: *const i8,
    kp: usize,
    buf: *mut i16,
    chunked: bool,
    panel: *const i8,
    acc: &mut [[i32; NC]; MR],
) {
    let mut lo = [_mm256_setzero_si256(); M];
    let mut hi = [_mm256_setzero_si256(); M];
    let mut k0 = 0;
    while k0 < kp {
        let kc = if chunked { KC.min(kp - k0) } else { kp };
        if chunked {
            widen(a.add(k0), kp, M, kc, buf);
        }
        let mut wp = panel.add(k0 * NR);
        let mut xp = buf as *const i16;
        for _ in 0..kc / KR {
            // 8 columns x 4 depths of weights, widened: columns 0-3 and 4-7.
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(16) as *const __m128i));
            for i in 0..M {
                // a[i][4g..4g+4] as i16, repeated four times: matches each column's 4 depths.
                let x = _mm256_set1_epi64x((xp.add(i * kc) as *const i64).read_unaligned());
                lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(x, w0));
                hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(x, w1));
            }
            wp = wp.add(NR * KR);
            xp = xp.add(KR);
        }
        k0 += kc;
    }
    for i in 0..M {
        // Each lane pair holds one column's two partial sums; add the pairs and restore order.
        let s = _mm256_hadd_epi32(lo[i], hi[i]);
        let s = _mm256_permute4x64_epi64(s, 0b11_01_10_00);
        _mm256_storeu_si256(acc[i].as_mut_ptr() as *mut __m256i, s);
    }
}

/// [`Requant`] of 8 consecutive channels, prepared for [`RequantX8::apply`].
///
/// `requantize` computes `clamp(zp + ((v * mult + 2^(s-1)) >> s), min, max)` in i64 with an
/// arithmetic shift. AVX2 has a 32x32->64 multiply (`vpmul_epi32`, even lanes) and 64-bit
/// compares but only a logical variable shift, so the rounding constant also adds 2^63: for
/// `|p| < 2^63 - 2^61` (`|v| < 2^31`, `mult < 2^31`) `p + 2^(s-1) + 2^63` is in `[0, 2^64)`, and
/// shifting it logically gives `rounded + 2^(63-s)`, non-negative below 2^63. The clamp bounds
/// are moved by the same offset, and after clamping the low 32 bits minus `2^(63-s) - zp` are the
/// exact result.
struct RequantX8 {
    bias: __m256i,
    /// Multipliers, in the low half of each 64-bit lane: channels 0, 2, 4, 6 then 1, 3, 5, 7.
    mult: [__m256i; 2],
    round: [__m256i; 2],
    shift: [__m256i; 2],
    lo: [__m256i; 2],
    hi: [__m256i; 2],
    /// `2^(63-s) - zp` per channel, mod 2^32.
    offset: __m256i,
}

impl RequantX8 {
    /// Channels `n0..n0 + cols`; lanes past `cols` get harmless parameters.
    #[target_feature(enable = "avx2")]
    unsafe fn new(rq: &Requant, n0: usize, cols: usize) -> Self {
        if cols == NC {
            return Self::full(rq, n0);
        }
        let (mut bias, mut mult) = ([0i32; NC], [0i32; NC]);
        let mut shift = [1u8; NC];
        for j in 0..cols {
            (bias[j], mult[j], shift[j]) =
                (rq.bias.get(n0 + j), rq.mult.get(n0 + j), rq.shift[n0 + j]);
        }
        let v8 = |x: &[i32; NC]| _mm256_loadu_si256(x.as_ptr() as *const __m256i);
        Self::from_vectors(rq, v8(&bias), v8(&mult), shift)
    }

    /// 8 whole channels from `n0`: the parameters are loaded straight from the model bytes
    /// (little-endian i32, as x86 is), which matters when a GEMM has one row (batch-1 Linear).
    #[target_feature(enable = "avx2")]
    unsafe fn full(rq: &Requant, n0: usize) -> Self {
        let (b, m) = (
            &rq.bias.0[4 * n0..4 * (n0 + NC)],
            &rq.mult.0[4 * n0..4 * (n0 + NC)],
        );
        let shift: [u8; NC] = rq.shift[n0..n0 + NC].try_into().expect("8 shifts");
        let load = |x: &[u8]| _mm256_loadu_si256(x.as_ptr() as *const __m256i);
        Self::from_vectors(rq, load(b), load(m), shift)
    }

    #[target_feature(enable = "avx2")]
    unsafe fn from_vectors(rq: &Requant, bias: __m256i, mult: __m256i, shift: [u8; NC]) -> Self {
        debug_assert!(shift.iter().all(|s| (1..=super::MAX_SHIFT).contains(s)));
        let one = _mm256_set1_epi64x(1);
        let (zp, min, max) = (rq.zp_out as i64, rq.min as i64, rq.max as i64);
        // Even channels, then odd ones, as 64-bit lanes.
        let evens = u32::from_le_bytes([shift[0], shift[2], shift[4], shift[6]]);
        let odds = u32::from_le_bytes([shift[1], shift[3], shift[5], shift[7]]);
        let mut out = RequantX8 {
            bias,
            mult: [mult, _mm256_srli_epi64(mult, 32)],
            round: [one; 2],
            shift: [one; 2],
            lo: [one; 2],
            hi: [one; 2],
            offset: one,
        };
        let mut c = [one; 2];
        for (p, bits) in [evens, odds].into_iter().enumerate() {
            let s = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(bits as i32));
            // 2^(s-1) + 2^63 (wrapping) and 2^(63-s).
            let round = _mm256_sllv_epi64(one, _mm256_sub_epi64(s, one));
            out.round[p] = _mm256_add_epi64(round, _mm256_set1_epi64x(i64::MIN));
            out.shift[p] = s;
            c[p] = _mm256_sllv_epi64(one, _mm256_sub_epi64(_mm256_set1_epi64x(63), s));
            out.lo[p] = _mm256_add_epi64(c[p], _mm256_set1_epi64x(min - zp));
            out.hi[p] = _mm256_add_epi64(c[p], _mm256_set1_epi64x(max - zp));
        }
        // Low 32 bits of 2^(63-s) - zp, back in channel order.
        let c = _mm256_blend_epi32(c[0], _mm256_slli_epi64(c[1], 32), 0b1010_1010);
        out.offset = _mm256_sub_epi32(c, _mm256_set1_epi32(zp as i32));
        out
    }

    /// The 8 requantized channels of one row's accumulators, as 8 little-endian bytes.
    #[target_feature(enable = "avx2")]
    unsafe fn apply(&self, acc: __m256i) -> u64 {
        let v = _mm256_add_epi32(acc, self.bias);
        // Even channels sit in the low halves of the 64-bit lanes already; shift odd ones down.
        let halves = [v, _mm256_srli_epi64(v, 32)];
        let mut u = [_mm256_setzero_si256(); 2];
        for p in 0..2 {
            let x = _mm256_add_epi64(_mm256_mul_epi32(halves[p], self.mult[p]), self.round[p]);
            let x = _mm256_srlv_epi64(x, self.shift[p]);
            let x = _mm256_blendv_epi8(x, self.lo[p], _mm256_cmpgt_epi64(self.lo[p], x));
            u[p] = _mm256_blendv_epi8(x, self.hi[p], _mm256_cmpgt_epi64(x, self.hi[p]));
        }
        let y = _mm256_blend_epi32(u[0], _mm256_slli_epi64(u[1], 32), 0b1010_1010);
        let y = _mm256_sub_epi32(y, self.offset);
        // Every lane is in [min, max] now, so the saturating packs are plain narrowing.
        let y = _mm256_packs_epi32(y, y);
        let y = _mm256_packs_epi16(y, y);
        // Bytes 0-3 of each 128-bit lane are channels 0-3 and 4-7.
        let y = _mm256_permutevar8x32_epi32(y, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
        _mm256_extract_epi64(y, 0) as u64
    }
}

/// GEMM for at most [`NARROW`] columns and `kp <= KC`: each column's weights are gathered and
/// widened into one contiguous i16 run, and each row is a dot product along `k`, 16 deep per
/// `vpmaddwd`.
///
/// # Safety
/// As [`gemm_avx2`], with `w.n() <= NARROW` and `w.kp() <= KC`.
#[target_feature(enable = "avx2")]
unsafe fn gemm_narrow(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    debug_assert!(n <= NARROW && kp <= KC);
    let mut buf = MaybeUninit::<[i16; NARROW * KC]>::uninit();
    let wcol = buf.as_mut_ptr() as *mut i16;
    for j in 0..n {
        for (g, group) in w.data().chunks_exact(NR * KR).take(kp / KR).enumerate() {
            for (t, v) in group[j * KR..(j + 1) * KR].iter().enumerate() {
                *wcol.add(j * kp + g * KR + t) = *v as i16;
            }
        }
    }
    for r in 0..rows {
        let x = a.as_ptr().add(r * kp);
        let mut acc = [_mm256_setzero_si256(); NARROW];
        let mut k = 0;
        while k + 16 <= kp {
            let xv = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(k) as *const __m128i));
            for (j, acc) in acc.iter_mut().enumerate().take(n) {
                let wv = _mm256_loadu_si256(wcol.add(j * kp + k) as *const __m256i);
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(xv, wv));
            }
            k += 16;
        }
        for (j, acc) in acc.iter().enumerate().take(n) {
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, *acc);
            let mut s: i32 = lanes.iter().sum();
            for t in k..kp {
                s += *x.add(t) as i32 * *wcol.add(j * kp + t) as i32;
            }
            out[r * n + j] = rq.apply(s, j);
        }
    }
}

// ---- VNNI kernels -------------------------------------------------------------------------------
//
// `vpdpbusd` multiplies unsigned by signed bytes and adds each lane's four products to an i32,
// without the i16 saturation of `vpmaddubsw`: u8 * i8 products of four bytes always fit. The
// activations are signed, so they are staged with their sign bit flipped (`a ^ 0x80 = a + 128`
// as u8), which adds `128 * sum_k w[k][n]` to every accumulator of column `n`. The column sums
// come from the same instruction: the staged tile starts with a row of ones, whose accumulators
// are the sums, so they cost one row of the first micro-tile instead of a table in the model or
// a pass over the weights. The packed groups (`[NR][KR]` bytes) are exactly one zmm operand, or
// two ymm ones.

/// Bytes of staged unsigned activations (a row of ones, then rows of the tile).
const STAGE: usize = 32 * 1024;
/// Rows per AVX-512 micro-tile: 6 rows x 4 blocks = 24 zmm accumulators + 4 weights + broadcast.
const MR512: usize = 6;
/// Rows per AVX-512 micro-tile of one or two blocks (at most 16 and 32 columns: 16-channel
/// maps), 12 x 1 or 8 x 2 accumulators: 6 rows would keep only 6 `vpdpbusd` chains in flight,
/// too few to hide its latency, and stage, requantize and store per multiply-add as much again.
const fn mr512(nb: usize) -> usize {
    match nb {
        1 => 12,
        2 => 8,
        _ => MR512,
    }
}
/// The most rows of any micro-tile, [`mr512`]`(1)`.
const MR512_MAX: usize = 12;
/// Packed blocks (16 columns each) per AVX-512 micro-tile.
const NB512: usize = 4;
/// Rows per AVX-VNNI micro-tile: 6 rows x 2 halves = 12 ymm accumulators + 2 weights + broadcast.
const MR256: usize = 6;

/// Splits `rows` into `ceil(rows / mr)` tiles whose sizes differ by at most one, as
/// `(first row, rows)`: a last tile of one row would leave the multiply-add pipes idle while
/// each accumulator waits for its previous `vpdpbusd` (5 cycles).
fn balanced_tiles(rows: usize, mr: usize) -> impl Iterator<Item = (usize, usize)> {
    let tiles = rows.div_ceil(mr);
    let (base, extra) = (rows / tiles.max(1), rows % tiles.max(1));
    (0..tiles).scan(0, move |start, t| {
        let m = base + usize::from(t < extra);
        let first = *start;
        *start += m;
        Some((first, m))
    })
}

/// Writes a row of `kp` ones and then `rows` rows of `a` (row stride `stride <= kp`) as
/// `a + 128` to `buf` (row stride `kp`; the bytes past `stride` meet zero weights).
///
/// # Safety
/// `a`: `rows` rows of `stride` readable bytes; `buf`: `(rows + 1) * kp` writable bytes.
#[inline(always)]
unsafe fn stage_unsigned(a: *const i8, stride: usize, rows: usize, kp: usize, buf: *mut u8) {
    let ones = core::slice::from_raw_parts_mut(buf, kp);
    ones.fill(1);
    let dst = core::slice::from_raw_parts_mut(buf.add(kp), rows * kp);
    if stride == kp {
        let src = core::slice::from_raw_parts(a as *const u8, rows * kp);
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s ^ 0x80;
        }
        return;
    }
    let src = core::slice::from_raw_parts(a as *const u8, rows * stride);
    for (d, s) in dst.chunks_exact_mut(kp).zip(src.chunks_exact(stride)) {
        for (d, s) in d.iter_mut().zip(s) {
            *d = *s ^ 0x80;
        }
        d[stride..].fill(0x80);
    }
}

/// Stages chunks of `rows` rows of `a` (row stride `stride`) for weights of depth `kp` and calls
/// `panel(staged, rows in the chunk + 1, first row)` for each. `None` when not even one row fits
/// the stage.
///
/// # Safety
/// `a`: `rows` rows of `stride <= kp` readable bytes.
#[inline(always)]
unsafe fn staged_chunks(
    a: *const i8,
    stride: usize,
    rows: usize,
    kp: usize,
    mut panel: impl FnMut(*const u8, usize, usize),
) -> Option<()> {
    let chunk = (STAGE / kp).checked_sub(1).filter(|&c| c > 0)?;
    let mut buf = MaybeUninit::<[u8; STAGE]>::uninit();
    let buf = buf.as_mut_ptr() as *mut u8;
    for r0 in (0..rows).step_by(chunk) {
        let m = chunk.min(rows - r0);
        stage_unsigned(a.add(r0 * stride), stride, m, kp, buf);
        panel(buf, m + 1, r0);
    }
    Some(())
}

/// Where the AVX-512 VNNI panels put their results.
#[derive(Clone, Copy)]
pub(super) enum Sink<'r, 'a> {
    /// Requantized, into int8 rows of `n` values.
    Int8(&'r Requant<'a>, *mut i8),
    /// Exact sums of `(a - zp) * w`, into i32 rows of `n` values.
    Raw(i8, *mut i32),
}

impl Sink<'_, '_> {
    /// The same sink from output row `r` of width `n` on.
    unsafe fn at_row(self, r: usize, n: usize) -> Self {
        match self {
            Sink::Int8(rq, y) => Sink::Int8(rq, y.add(r * n)),
            Sink::Raw(zp, y) => Sink::Raw(zp, y.add(r * n)),
        }
    }
}

/// Runs the AVX-512 VNNI panels over `rows` rows of `a` (row stride `stride <= w.kp()`).
/// `None` when a row is too deep to stage.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI; `a`: `rows` rows of `stride` bytes; the sink: `rows` rows of `w.n()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn staged_avx512(
    a: *const i8,
    stride: usize,
    rows: usize,
    w: PackedWeights,
    sink: Sink,
) -> Option<()> {
    let (kp, n) = (w.kp(), w.n());
    let blocks = n.div_ceil(NR);
    staged_chunks(a, stride, rows, kp, |x, m, r0| {
        let sink = sink.at_row(r0, n);
        // One row (and the ones): twice the blocks, so that 16 accumulators hide the latency
        // of `vpdpbusd` as a 6-row tile's 24 do.
        let nb = if m == 2 { 2 * NB512 } else { NB512 };
        for b0 in (0..blocks).step_by(nb) {
            // SAFETY: `x` holds `m` staged rows, the sink has room for their `m - 1` outputs.
            match nb.min(blocks - b0) {
                8 => panel512::<8>(x, m, w, b0, sink),
                7 => panel512::<7>(x, m, w, b0, sink),
                6 => panel512::<6>(x, m, w, b0, sink),
                5 => panel512::<5>(x, m, w, b0, sink),
                4 => panel512::<4>(x, m, w, b0, sink),
                3 => panel512::<3>(x, m, w, b0, sink),
                2 => panel512::<2>(x, m, w, b0, sink),
                _ => panel512::<1>(x, m, w, b0, sink),
            }
        }
    })
}

/// `out[r][n] = sum_k (a[r][k] - zp) * w[k][n]` (see [`super::gemm_i32`]); `a` has row
/// stride `stride`, `w.k() <= stride <= w.kp()`.
///
/// With `amx`, the AMX kernel runs the shapes it takes (see [`super::amx::run`]).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, and AMX-INT8 with the tile state granted when
/// `amx` (`Isa::Amx.is_available()`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_i32_avx512_vnni(
    amx: bool,
    a: &[i8],
    stride: usize,
    rows: usize,
    zp: i8,
    w: PackedWeights,
    out: &mut [i32],
) {
    assert!(w.k() <= stride && stride <= w.kp());
    assert!(a.len() >= rows * stride && out.len() >= rows * w.n());
    let sink = Sink::Raw(zp, out.as_mut_ptr());
    if amx_ran(amx, a, stride, rows, w, sink) {
        return;
    }
    if rows > 0 && staged_avx512(a.as_ptr(), stride, rows, w, sink).is_none() {
        super::scalar::gemm_i32_panels(a, stride, rows, zp, w, out);
    }
}

/// Whether `amx` is asked for and [`super::amx::run`] took the shape (std only: without it, never).
///
/// # Safety
/// As [`super::amx::run`] when `amx`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn amx_ran(
    amx: bool,
    a: &[i8],
    stride: usize,
    rows: usize,
    w: PackedWeights,
    sink: Sink,
) -> bool {
    #[cfg(any(feature = "std", test))]
    if amx {
        return super::amx::suits(rows, &w) && super::amx::run(a, stride, rows, w, sink).is_some();
    }
    let _ = (amx, a, stride, rows, w, sink);
    false
}

/// With `amx`, the AMX kernel runs the shapes it takes (see [`super::amx::run`]).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI and AVX2, and AMX-INT8 with the tile state granted
/// when `amx` (`Isa::Amx.is_available()`); sizes as in [`super::gemm_requant`].
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_avx512_vnni(
    amx: bool,
    a: &[i8],
    rows: usize,
    w: PackedWeights,
    rq: &Requant,
    out: &mut [i8],
) {
    let (kp, n) = (w.kp(), w.n());
    assert!(
        a.len() >= rows * kp && out.len() >= rows * n && w.data().len() >= kp * n.div_ceil(NR) * NR
    );
    if rows == 0 {
        return;
    }
    let sink = Sink::Int8(rq, out.as_mut_ptr());
    if amx_ran(amx, a, kp, rows, w, sink) {
        return;
    }
    if n <= NARROW && kp <= NARROW_KMAX {
        return narrow512(a, rows, w, rq, out);
    }
    if n <= NARROW || staged_avx512(a.as_ptr(), kp, rows, w, sink).is_none() {
        // One or a few output columns (a dot product along `k` suits them better than 16-column
        // blocks), or rows too deep to stage: the AVX2 kernel, exact too.
        gemm_avx2(a, rows, w, rq, out);
    }
}

/// Deepest rows [`narrow512`] stages (16 rows of them on the stack).
const NARROW_KMAX: usize = 1024;

/// AVX-512 VNNI GEMM for at most [`NARROW`] columns (an RGB or grayscale image layer): each row
/// is a dot product along `k`, 64 deep per `vpdpbusd`, against the column's weights gathered
/// into one contiguous run. Rows go 16 at a time: their 16 accumulators of a column reduce to one
/// vector of 16 row sums (a transposing tree of adds), which is requantized as a vector, so
/// neither the horizontal sums nor the requantization are per output. Activations are staged as
/// `a + 128` (see the VNNI notes above) and the column sums are subtracted back.
///
/// # Safety
/// As [`gemm_avx512_vnni`], with `w.n() <= NARROW` and `w.kp() <= NARROW_KMAX`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn narrow512(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    const R: usize = 16;
    let (kp, n) = (w.kp(), w.n());
    debug_assert!(n <= NARROW && kp <= NARROW_KMAX);
    // Depth in whole vectors: the staged tail is 128 (a = 0) against zero weights.
    let kv = kp.div_ceil(64);
    let stride = kv * 64;
    let mut wbuf = [0i8; NARROW * NARROW_KMAX];
    for (g, group) in w.data().chunks_exact(NR * KR).take(kp / KR).enumerate() {
        for j in 0..n {
            for t in 0..KR {
                wbuf[j * stride + g * KR + t] = group[j * KR + t];
            }
        }
    }
    let mut q = MaybeUninit::<[RequantX16; NARROW]>::uninit();
    let q = q.as_mut_ptr() as *mut RequantX16;
    for j in 0..n {
        let sum = wbuf[j * stride..j * stride + kp]
            .iter()
            .map(|&v| v as i32)
            .sum();
        q.add(j).write(RequantX16::column(rq, j, sum));
    }
    let mut stage = MaybeUninit::<[u8; R * NARROW_KMAX]>::uninit();
    let xs = stage.as_mut_ptr() as *mut u8;
    let flip = _mm512_set1_epi8(-128);
    let tail: u64 = if kp % 64 == 0 {
        !0
    } else {
        (1u64 << (kp % 64)) - 1
    };
    let mut r0 = 0;
    while r0 < rows {
        let m = R.min(rows - r0);
        for i in 0..R {
            // Rows past `m` are staged as zeros: computed, never stored.
            let src = a.as_ptr().add((r0 + i.min(m - 1)) * kp);
            for v in 0..kv {
                let mask = if v + 1 == kv { tail } else { !0 };
                let x = _mm512_maskz_loadu_epi8(mask, src.add(v * 64));
                _mm512_storeu_si512(
                    xs.add(i * stride + v * 64) as *mut _,
                    _mm512_xor_si512(x, flip),
                );
            }
        }
        for j in 0..n {
            let wj = wbuf.as_ptr().add(j * stride);
            let mut acc = [_mm512_setzero_si512(); R];
            for v in 0..kv {
                let wv = _mm512_loadu_si512(wj.add(v * 64) as *const _);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_loadu_si512(xs.add(i * stride + v * 64) as *const _);
                    *acc = _mm512_dpbusd_epi32(*acc, x, wv);
                }
            }
            let y = (*q.add(j)).apply(row_sums16(&acc));
            let mut bytes = [0i8; R];
            _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, y);
            for (i, &b) in bytes.iter().enumerate().take(m) {
                *out.get_unchecked_mut((r0 + i) * n + j) = b;
            }
        }
        r0 += m;
    }
}

/// Lane `i` = the sum of the 16 lanes of `acc[i]` (wrapping, as the accumulators are).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn row_sums16(acc: &[__m512i; 16]) -> __m512i {
    // Pairs of rows: per 128-bit lane [a0 + a2, b0 + b2, a1 + a3, b1 + b3].
    let p: [__m512i; 8] = core::array::from_fn(|i| {
        let (a, b) = (acc[2 * i], acc[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    });
    // Quads: per 128-bit lane the lane's share of rows [a, b, c, d].
    let q: [__m512i; 4] = core::array::from_fn(|i| {
        let (x, y) = (p[2 * i], p[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y))
    });
    // Across 128-bit lanes: lanes 0 + 1 and 2 + 3 of two quads, then of those.
    let fold = |x: __m512i, y: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4(x, y, 0b10_00_10_00),
            _mm512_shuffle_i32x4(x, y, 0b11_01_11_01),
        )
    };
    fold(fold(q[0], q[1]), fold(q[2], q[3]))
}

/// Blocks `b0..b0 + NB` of `m` staged rows (the first one ones) into the sink's rows.
///
/// # Safety
/// `x`: `m * kp` staged bytes; the sink: `m - 1` rows of `w.n()` values; blocks in range;
/// `m == 2` when `NB > NB512`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel512<const NB: usize>(
    x: *const u8,
    m: usize,
    w: PackedWeights,
    b0: usize,
    sink: Sink,
) {
    let (kp, n) = (w.kp(), w.n());
    let panel = w.data().as_ptr().add(b0 * kp * NR);
    let cols = |b: usize| NR.min(n - (b0 + b) * NR);
    // Not zeroed: a one-row GEMM (batch-1 Linear) runs a panel per 128 outputs, and clearing
    // these costs as much as its multiply-adds. The first tile (start 0) writes `q` before any
    // row reads it; each tile writes the accumulators of its rows before they are read.
    let mut q = MaybeUninit::<[RequantX16; NB]>::uninit();
    let q = q.as_mut_ptr() as *mut RequantX16;
    // `(128 + zp)` times the column sums, for the raw sink.
    let mut shifted = [_mm512_setzero_si512(); NB];
    let mut acc = MaybeUninit::<[[__m512i; NB]; MR512_MAX]>::uninit();
    let acc = acc.as_mut_ptr() as *mut [__m512i; NB];
    for (start, rows) in balanced_tiles(m, if NB > NB512 { 2 } else { mr512(NB) }) {
        let xs = x.add(start * kp);
        match rows {
            _ if NB > NB512 => tile512::<2, NB>(xs, kp, panel, acc),
            12 if NB == 1 => tile512::<12, 1>(xs, kp, panel, acc as *mut [__m512i; 1]),
            11 if NB == 1 => tile512::<11, 1>(xs, kp, panel, acc as *mut [__m512i; 1]),
            10 if NB == 1 => tile512::<10, 1>(xs, kp, panel, acc as *mut [__m512i; 1]),
            9 if NB == 1 => tile512::<9, 1>(xs, kp, panel, acc as *mut [__m512i; 1]),
            8 if NB <= 2 => tile512::<8, NB>(xs, kp, panel, acc),
            7 if NB <= 2 => tile512::<7, NB>(xs, kp, panel, acc),
            6 => tile512::<6, NB>(xs, kp, panel, acc),
            5 => tile512::<5, NB>(xs, kp, panel, acc),
            4 => tile512::<4, NB>(xs, kp, panel, acc),
            3 => tile512::<3, NB>(xs, kp, panel, acc),
            2 => tile512::<2, NB>(xs, kp, panel, acc),
            _ => tile512::<1, NB>(xs, kp, panel, acc),
        }
        let skip = usize::from(start == 0);
        if start == 0 {
            let sums = &*acc;
            for b in 0..NB {
                match sink {
                    Sink::Int8(rq, _) => {
                        q.add(b)
                            .write(RequantX16::new(rq, (b0 + b) * NR, cols(b), sums[b]))
                    }
                    Sink::Raw(zp, _) => {
                        let f = _mm512_set1_epi32(128 + zp as i32);
                        shifted[b] = _mm512_mullo_epi32(sums[b], f);
                    }
                }
            }
        }
        for i in skip..rows {
            let acc = &*acc.add(i);
            let at = (start + i - 1) * n + b0 * NR;
            for b in 0..NB {
                let c = cols(b);
                let mask = if c == NR { !0 } else { (1u16 << c) - 1 };
                match sink {
                    Sink::Int8(_, y) => {
                        _mm_mask_storeu_epi8(y.add(at + b * NR), mask, (*q.add(b)).apply(acc[b]))
                    }
                    Sink::Raw(_, y) => _mm512_mask_storeu_epi32(
                        y.add(at + b * NR),
                        mask,
                        _mm512_sub_epi32(acc[b], shifted[b]),
                    ),
                }
            }
        }
    }
}

/// `acc[i][b] = sum_k x[i][k] * w[k][16 b..16 b + 16]` for `M` staged rows and `NB` blocks.
///
/// # Safety
/// `x`: `M` rows of `kp` bytes; `panel`: the first of `NB` consecutive blocks of depth `kp`;
/// `acc`: room for `M` rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile512<const M: usize, const NB: usize>(
    x: *const u8,
    kp: usize,
    panel: *const i8,
    acc: *mut [__m512i; NB],
) {
    let mut c = [[_mm512_setzero_si512(); NB]; M];
    let (mut xp, mut wp) = (x, panel);
    for _ in 0..kp / KR {
        let mut wv = [_mm512_setzero_si512(); NB];
        for (b, wv) in wv.iter_mut().enumerate() {
            *wv = _mm512_loadu_si512(wp.add(b * kp * NR) as *const _);
        }
        for (i, c) in c.iter_mut().enumerate() {
            // Four bytes of row i in every lane: each lane is one column's four depths.
            let xv = _mm512_set1_epi32((xp.add(i * kp) as *const i32).read_unaligned());
            for (c, wv) in c.iter_mut().zip(&wv) {
                *c = _mm512_dpbusd_epi32(*c, xv, *wv);
            }
        }
        xp = xp.add(KR);
        wp = wp.add(NR * KR);
    }
    for (i, c) in c.iter().enumerate() {
        acc.add(i).write(*c);
    }
}

/// [`Requant`] of 16 consecutive channels, with the unsigned-shift correction in the bias.
///
/// AVX-512 has what the AVX2 version emulates: an arithmetic 64-bit variable shift and 64-bit
/// min/max, so this is `requantize` lane by lane: `(v * mult + 2^(s-1)) >> s` in i64, clamped to
/// `[min - zp, max - zp]`, plus `zp`.
pub(super) struct RequantX16 {
    /// `bias - 128 * column sum`, mod 2^32.
    bias: __m512i,
    /// Even channels' values in the low halves of the 64-bit lanes, then odd ones'.
    mult: [__m512i; 2],
    round: [__m512i; 2],
    shift: [__m512i; 2],
    lo: __m512i,
    hi: __m512i,
    zp: __m512i,
}

impl RequantX16 {
    /// Channels `n0..n0 + cols` (`cols <= 16`); `sums` holds their column sums.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn new(rq: &Requant, n0: usize, cols: usize, sums: __m512i) -> Self {
        let mask: u16 = if cols >= NR { !0 } else { (1 << cols) - 1 };
        // Masked loads read only the channels that exist (the slices end at `n`).
        let load = |b: &[u8]| _mm512_maskz_loadu_epi32(mask, b.as_ptr().add(4 * n0) as *const i32);
        let bias = _mm512_sub_epi32(load(rq.bias.0), _mm512_slli_epi32(sums, 7));
        let mult = load(rq.mult.0);
        // Shifts as i32 lanes; absent channels get 1, a valid shift.
        let s = _mm_maskz_loadu_epi8(mask, rq.shift.as_ptr().add(n0) as *const i8);
        let s = _mm512_max_epi32(_mm512_cvtepu8_epi32(s), _mm512_set1_epi32(1));
        Self::from_lanes(rq, bias, mult, s)
    }

    /// Channel `j` in every lane (16 rows of one column); `sum` is its column sum.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn column(rq: &Requant, j: usize, sum: i32) -> Self {
        let c = rq.column(j);
        let bias = _mm512_set1_epi32(c.bias.wrapping_sub(sum.wrapping_mul(128)));
        let s = _mm512_set1_epi32(c.shift.max(1) as i32);
        Self::from_lanes(rq, bias, _mm512_set1_epi32(c.mult), s)
    }

    /// From the lanes' bias (with the correction), multiplier and shift (1 to `MAX_SHIFT`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn from_lanes(rq: &Requant, bias: __m512i, mult: __m512i, s: __m512i) -> Self {
        let one = _mm512_set1_epi64(1);
        let low = _mm512_set1_epi64(0xFFFF_FFFF);
        let shift = [_mm512_and_si512(s, low), _mm512_srli_epi64(s, 32)];
        let round = shift.map(|s| _mm512_sllv_epi64(one, _mm512_sub_epi64(s, one)));
        let (zp, min, max) = (rq.zp_out as i64, rq.min as i64, rq.max as i64);
        RequantX16 {
            bias,
            mult: [mult, _mm512_srli_epi64(mult, 32)],
            round,
            shift,
            lo: _mm512_set1_epi64(min - zp),
            hi: _mm512_set1_epi64(max - zp),
            zp: _mm512_set1_epi32(zp as i32),
        }
    }

    /// The 16 requantized channels of one row's raw (unsigned-shifted) accumulators.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(super) unsafe fn apply(&self, acc: __m512i) -> __m128i {
        let v = _mm512_add_epi32(acc, self.bias);
        let mut r = [v, _mm512_srli_epi64(v, 32)];
        for (p, r) in r.iter_mut().enumerate() {
            let x = _mm512_add_epi64(_mm512_mul_epi32(*r, self.mult[p]), self.round[p]);
            let x = _mm512_srav_epi64(x, self.shift[p]);
            *r = _mm512_min_epi64(_mm512_max_epi64(x, self.lo), self.hi);
        }
        let y = _mm512_mask_mov_epi32(r[0], 0xAAAA, _mm512_slli_epi64(r[1], 32));
        // In [min, max] after adding zp: the truncating narrow is exact.
        _mm512_cvtepi32_epi8(_mm512_add_epi32(y, self.zp))
    }
}

/// # Safety
/// The CPU must support AVX-VNNI and AVX2; sizes as in [`super::gemm_requant`].
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn gemm_avx_vnni(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    assert!(
        a.len() >= rows * kp && out.len() >= rows * n && w.data().len() >= kp * n.div_ceil(NR) * NR
    );
    if rows == 0 {
        return;
    }
    let staged = n > NARROW
        && staged_chunks(a.as_ptr(), kp, rows, kp, |x, m, r0| {
            for b in 0..n.div_ceil(NR) {
                // SAFETY: `x` holds `m` staged rows, `out` their `m - 1` output rows from `r0`.
                panel256(x, m, w, rq, b, out.as_mut_ptr().add(r0 * n));
            }
        })
        .is_some();
    if !staged {
        gemm_avx2(a, rows, w, rq, out);
    }
}

/// Block `b` of `m` staged rows (the first one ones) into output rows from `y`.
///
/// # Safety
/// As [`panel512`], for one block.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn panel256(x: *const u8, m: usize, w: PackedWeights, rq: &Requant, b: usize, y: *mut i8) {
    let (kp, n) = (w.kp(), w.n());
    let panel = w.data().as_ptr().add(b * kp * NR);
    let n0 = b * NR;
    let cols = [NC.min(n - n0), (n - n0).saturating_sub(NC).min(NC)];
    // SAFETY: all-zero bits are valid vectors; the first tile overwrites them before use.
    let mut q: [RequantX8; 2] = core::mem::zeroed();
    let mut acc = [[_mm256_setzero_si256(); 2]; MR256];
    for (start, rows) in balanced_tiles(m, MR256) {
        let xs = x.add(start * kp);
        match rows {
            6 => tile256::<6>(xs, kp, panel, &mut acc),
            5 => tile256::<5>(xs, kp, panel, &mut acc),
            4 => tile256::<4>(xs, kp, panel, &mut acc),
            3 => tile256::<3>(xs, kp, panel, &mut acc),
            2 => tile256::<2>(xs, kp, panel, &mut acc),
            _ => tile256::<1>(xs, kp, panel, &mut acc),
        }
        let skip = usize::from(start == 0);
        if start == 0 {
            for (h, q) in q.iter_mut().enumerate().filter(|(h, _)| cols[*h] > 0) {
                *q = RequantX8::new(rq, n0 + h * NC, cols[h]);
                q.bias = _mm256_sub_epi32(q.bias, _mm256_slli_epi32(acc[0][h], 7));
            }
        }
        for (i, acc) in acc.iter().enumerate().take(rows).skip(skip) {
            let dst = y.add((start + i - 1) * n + n0);
            for h in (0..2).filter(|&h| cols[h] > 0) {
                store8(dst.add(h * NC), q[h].apply(acc[h]), cols[h]);
            }
        }
    }
}

/// `acc[i][h] = sum_k x[i][k] * w[k][8 h..8 h + 8]` for `M` staged rows and one block.
///
/// # Safety
/// `x`: `M` rows of `kp` bytes; `panel`: a block of depth `kp`.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn tile256<const M: usize>(
    x: *const u8,
    kp: usize,
    panel: *const i8,
    acc: &mut [[__m256i; 2]; MR256],
) {
    let mut c = [[_mm256_setzero_si256(); 2]; M];
    let (mut xp, mut wp) = (x, panel);
    for _ in 0..kp / KR {
        // Columns 0-7 and 8-15 of the group, four depths each.
        let wv = [
            _mm256_loadu_si256(wp as *const __m256i),
            _mm256_loadu_si256(wp.add(NC * KR) as *const __m256i),
        ];
        for (i, c) in c.iter_mut().enumerate() {
            let xv = _mm256_set1_epi32((xp.add(i * kp) as *const i32).read_unaligned());
            c[0] = _mm256_dpbusd_avx_epi32(c[0], xv, wv[0]);
            c[1] = _mm256_dpbusd_avx_epi32(c[1], xv, wv[1]);
        }
        xp = xp.add(KR);
        wp = wp.add(NR * KR);
    }
    acc[..M].copy_from_slice(&c);
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{gemm_requant, pack, packed_len, scalar, I32s, Isa};
    use super::*;

    /// The x86 kernels this CPU can run.
    fn x86_isas() -> impl Iterator<Item = Isa> {
        Isa::available()
            .filter(|i| matches!(i, Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni | Isa::Amx))
    }

    /// `wv` (`k` rows of `n`) packed.
    pub(in super::super) fn packed_rows(k: usize, n: usize, wv: &[i8]) -> Vec<i8> {
        let mut packed = vec![0i8; packed_len(k, n)];
        pack(k, n, |kk, nn| wv[kk * n + nn], &mut packed);
        packed
    }

    /// Bias, multiplier and shift bytes of `n` channels from `next`, the shifts scaling
    /// accumulators of depth `k` (deviation about `dev * sqrt(k)`) into the int8 range.
    pub(in super::super) fn requant_bytes(
        k: usize,
        n: usize,
        dev: f64,
        next: &mut impl FnMut() -> i32,
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let bias: Vec<u8> = (0..n).flat_map(|_| (next() % 4096).to_le_bytes()).collect();
        let mult: Vec<u8> = (0..n)
            .flat_map(|_| ((1 << 30) + next() % (1 << 29)).to_le_bytes())
            .collect();
        let fit = 31 + (dev * (k as f64).sqrt() / 64.0).log2().ceil() as u8;
        let shift: Vec<u8> = (0..n).map(|_| fit - 1 + (next() % 3) as u8).collect();
        (bias, mult, shift)
    }

    /// The paths the shared property test cannot reach (it stays below `k = 300` and 40 rows):
    /// depths beyond one widened chunk, for wide and narrow outputs, tiles staged in several row
    /// chunks, and rows too deep to stage, against the scalar reference.
    #[test]
    fn deep_gemms_match_scalar() {
        let mut s = 12345u32;
        let mut next = move || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as i32
        };
        for (rows, k, n) in [
            (7, 2 * KC + 36, 19),
            (3, KC + 4, 3),
            (13, KC, 2),
            (8, 4 * KC + 12, 1),
            (70, 1000, 40),
            (3, STAGE / 2 + 4, 20),
        ] {
            let kp = super::super::padded_k(k);
            let a: Vec<i8> = (0..rows * kp).map(|_| next() as i8).collect();
            let wv: Vec<i8> = (0..k * n)
                .map(|_| (next().rem_euclid(255) - 127) as i8)
                .collect();
            let packed = packed_rows(k, n, &wv);
            let w = PackedWeights::new(&packed, k, n).unwrap();
            let (bias, mult, shift) = requant_bytes(k, n, 5300.0, &mut next);
            let rq = Requant {
                bias: I32s::new(&bias).unwrap(),
                mult: I32s::new(&mult).unwrap(),
                shift: &shift,
                zp_out: 5,
                min: -128,
                max: 127,
            };
            let mut want = vec![0i8; rows * n];
            scalar::gemm(&a, rows, w, &rq, &mut want);
            for isa in x86_isas() {
                let mut got = vec![0i8; rows * n];
                gemm_requant(isa, &a, rows, w, &rq, &mut got).unwrap();
                assert_eq!(got, want, "{} rows {rows} k {k} n {n}", isa.name());
            }
            // Saturating outputs are in range too.
            assert!(
                want.iter().any(|&v| v != 127 && v != -128),
                "test scale keeps outputs in range"
            );
        }
    }

    /// Calls `check(rq, accs)` on requantization parameters at the extremes of every range, for
    /// `lanes` channels, with accumulators near the extremes too.
    fn requant_extremes(lanes: usize, mut check: impl FnMut(&Requant, &[i32])) {
        let accs = [
            0,
            1,
            -1,
            2,
            -2,
            12345,
            -12345,
            i32::MAX - super::super::MAX_BIAS,
            -(1 << 30) - 1,
            1 << 29,
        ];
        let biases = [
            0,
            super::super::MAX_BIAS,
            -super::super::MAX_BIAS,
            77,
            -77,
            1,
            -1,
            3,
        ];
        let mults = [
            1,
            2,
            i32::MAX,
            1 << 30,
            (1 << 30) + 12345,
            3,
            1 << 20,
            999_999_999,
        ];
        let shifts = [1u8, 2, 31, 32, 33, 40, 61, super::super::MAX_SHIFT];
        for (zp, min, max) in [
            (0i8, -128i8, 127i8),
            (-7, -7, 127),
            (100, -128, 120),
            (-128, -128, -128),
            (127, 0, 127),
        ] {
            for rot in 0..8 {
                let idx = |j: usize| (j + rot) % 8;
                let bias: Vec<u8> = (0..lanes)
                    .flat_map(|j| biases[idx(j)].to_le_bytes())
                    .collect();
                let mult: Vec<u8> = (0..lanes)
                    .flat_map(|j| mults[(idx(j) * 3 + j / 8) % 8].to_le_bytes())
                    .collect();
                let shift: Vec<u8> = (0..lanes).map(|j| shifts[(idx(j) * 5) % 8]).collect();
                let rq = Requant {
                    bias: I32s::new(&bias).unwrap(),
                    mult: I32s::new(&mult).unwrap(),
                    shift: &shift,
                    zp_out: zp,
                    min,
                    max,
                };
                for acc in accs {
                    let values: Vec<i32> = (0..lanes)
                        .map(|j| acc.wrapping_add(j as i32 * 7919 * rot as i32) / 2)
                        .collect();
                    check(&rq, &values);
                }
            }
        }
    }

    /// Vector requantization equals `requantize` at the extremes of every parameter.
    #[test]
    fn requant_x8_matches_requantize() {
        if !Isa::Avx2.is_available() {
            return;
        }
        requant_extremes(NC, |rq, lanes| {
            let got = unsafe {
                let q = RequantX8::new(rq, 0, NC);
                q.apply(_mm256_loadu_si256(lanes.as_ptr() as *const __m256i))
                    .to_le_bytes()
            };
            for (j, (&g, &acc)) in got.iter().zip(lanes).enumerate() {
                assert_eq!(g as i8, rq.apply(acc, j), "acc {acc} channel {j}");
            }
        });
    }

    /// The same for 16 channels, with the unsigned-shift correction: column sums `sums` and
    /// accumulators raised by `128 * sums` give the outputs of the plain accumulators.
    #[test]
    fn requant_x16_matches_requantize() {
        if !Isa::Avx512Vnni.is_available() {
            return;
        }
        requant_extremes(NR, |rq, lanes| {
            let sums: Vec<i32> = (0..NR as i32).map(|j| (j - 8) * 4001).collect();
            let raised: Vec<i32> = lanes
                .iter()
                .zip(&sums)
                .map(|(a, s)| a.wrapping_add(s.wrapping_mul(128)))
                .collect();
            for cols in [NR, 5] {
                let mut got = [0i8; NR];
                unsafe {
                    let q = RequantX16::new(rq, 0, cols, _mm512_loadu_si512(sums.as_ptr() as _));
                    let y = q.apply(_mm512_loadu_si512(raised.as_ptr() as _));
                    _mm_storeu_si128(got.as_mut_ptr() as *mut __m128i, y);
                }
                for (j, (&g, &acc)) in got.iter().zip(lanes).enumerate().take(cols) {
                    assert_eq!(g, rq.apply(acc, j), "acc {acc} channel {j} of {cols}");
                }
            }
        });
    }
}
