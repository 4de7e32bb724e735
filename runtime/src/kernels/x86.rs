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
const NARROW: usize = 4;

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
            // SAFETY (all arms): `m` rows of `kp` bytes from `ar` are inside `a`, the panel holds
            // `kp / KR` groups (asserted above), `buf` holds `MR * KC` values.
            match m {
                6 => tile::<6>(ar, kp, buf, chunked, panel, &mut acc),
                5 => tile::<5>(ar, kp, buf, chunked, panel, &mut acc),
                4 => tile::<4>(ar, kp, buf, chunked, panel, &mut acc),
                3 => tile::<3>(ar, kp, buf, chunked, panel, &mut acc),
                2 => tile::<2>(ar, kp, buf, chunked, panel, &mut acc),
                _ => tile::<1>(ar, kp, buf, chunked, panel, &mut acc),
            }
            let n0 = half * NC;
            let cols = NC.min(n - n0);
            let q = RequantX8::new(rq, n0, cols);
            for (i, acc) in acc.iter().take(m).enumerate() {
                let y = q.apply(_mm256_loadu_si256(acc.as_ptr() as *const __m256i));
                let dst = out.as_mut_ptr().add((r + i) * n + n0);
                if cols == NC {
                    (dst as *mut u64).write_unaligned(y);
                } else {
                    core::ptr::copy_nonoverlapping(
                        y.to_le_bytes().as_ptr() as *const i8,
                        dst,
                        cols,
                    );
                }
            }
        }
        r += m;
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

#[cfg(test)]
mod tests {
    use super::super::{gemm_requant, pack, packed_len, scalar, I32s, Isa};
    use super::*;

    /// The paths the shared property test cannot reach (it stays below `k = 300`): depths beyond
    /// one widened chunk, for wide and narrow outputs, against the scalar reference.
    #[test]
    fn deep_gemms_match_scalar() {
        if !Isa::Avx2.is_available() {
            return;
        }
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
        ] {
            let kp = super::super::padded_k(k);
            let a: Vec<i8> = (0..rows * kp).map(|_| next() as i8).collect();
            let wv: Vec<i8> = (0..k * n)
                .map(|_| (next().rem_euclid(255) - 127) as i8)
                .collect();
            let mut packed = vec![0i8; packed_len(k, n)];
            pack(k, n, |kk, nn| wv[kk * n + nn], &mut packed);
            let w = PackedWeights::new(&packed, k, n).unwrap();
            let bias: Vec<u8> = (0..n).flat_map(|_| (next() % 4096).to_le_bytes()).collect();
            let mult: Vec<u8> = (0..n)
                .flat_map(|_| ((1 << 30) + next() % (1 << 29)).to_le_bytes())
                .collect();
            // Scales the accumulators (deviation about 5300 * sqrt(k)) into the int8 range.
            let fit = 31 + (5300.0 * (k as f64).sqrt() / 64.0).log2().ceil() as u8;
            let shift: Vec<u8> = (0..n).map(|_| fit - 1 + (next() % 3) as u8).collect();
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
            let mut got = vec![0i8; rows * n];
            gemm_requant(Isa::Avx2, &a, rows, w, &rq, &mut got);
            assert_eq!(got, want, "rows {rows} k {k} n {n}");
            // Saturating outputs are in range too.
            assert!(
                want.iter().any(|&v| v != 127 && v != -128),
                "test scale keeps outputs in range"
            );
        }
    }

    /// Vector requantization equals `requantize` at the extremes of every parameter.
    #[test]
    fn requant_x8_matches_requantize() {
        if !Isa::Avx2.is_available() {
            return;
        }
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
                let bias: Vec<u8> = (0..8).flat_map(|j| biases[idx(j)].to_le_bytes()).collect();
                let mult: Vec<u8> = (0..8)
                    .flat_map(|j| mults[(idx(j) * 3) % 8].to_le_bytes())
                    .collect();
                let shift: Vec<u8> = (0..8).map(|j| shifts[(idx(j) * 5) % 8]).collect();
                let rq = Requant {
                    bias: I32s::new(&bias).unwrap(),
                    mult: I32s::new(&mult).unwrap(),
                    shift: &shift,
                    zp_out: zp,
                    min,
                    max,
                };
                for acc in accs {
                    let lanes: [i32; 8] = core::array::from_fn(|j| {
                        acc.wrapping_add(j as i32 * 7919 * rot as i32) / 2
                    });
                    let got = unsafe {
                        let q = RequantX8::new(&rq, 0, 8);
                        q.apply(_mm256_loadu_si256(lanes.as_ptr() as *const __m256i))
                            .to_le_bytes()
                    };
                    for j in 0..8 {
                        assert_eq!(
                            got[j] as i8,
                            rq.apply(lanes[j], j),
                            "acc {} channel {j}",
                            lanes[j]
                        );
                    }
                }
            }
        }
    }
}
