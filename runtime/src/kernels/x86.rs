//! x86-64 kernels.
//!
//! AVX2 widens to i16 and multiplies with `vpmaddwd`, which is exact. `vpmaddubsw` is not used:
//! it saturates the i16 sum of two u8*i8 products (255*127*2 > 32767), which would break
//! bit-identity with the scalar reference unless weights were cut to 7 bits.

use super::{PackedWeights, Requant, KR, NR};
use core::arch::x86_64::*;

/// Rows per AVX2 micro-tile: 6 rows x 8 columns = 12 accumulators + 2 weights + 1 broadcast.
const MR: usize = 6;
/// Columns per AVX2 micro-tile: half a packed block.
const NC: usize = NR / 2;

/// # Safety
/// The CPU must support AVX2; sizes as in [`super::gemm_requant`].
#[target_feature(enable = "avx2")]
pub unsafe fn gemm_avx2(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    let halves = n.div_ceil(NC);
    for half in 0..halves {
        // Byte offset of this half's first group inside the packed data.
        let base = (half / 2) * kp * NR + (half % 2) * NC * KR;
        let panel = &w.data()[base..];
        let n0 = half * NC;
        let cols = NC.min(n - n0);
        let mut r = 0;
        while r < rows {
            let m = MR.min(rows - r);
            let mut acc = [[0i32; NC]; MR];
            match m {
                6 => tile::<6>(&a[r * kp..], kp, panel, &mut acc),
                5 => tile::<5>(&a[r * kp..], kp, panel, &mut acc),
                4 => tile::<4>(&a[r * kp..], kp, panel, &mut acc),
                3 => tile::<3>(&a[r * kp..], kp, panel, &mut acc),
                2 => tile::<2>(&a[r * kp..], kp, panel, &mut acc),
                _ => tile::<1>(&a[r * kp..], kp, panel, &mut acc),
            }
            for (i, acc) in acc.iter().take(m).enumerate() {
                let row = &mut out[(r + i) * n + n0..(r + i) * n + n0 + cols];
                for (j, y) in row.iter_mut().enumerate() {
                    *y = rq.apply(acc[j], n0 + j);
                }
            }
            r += m;
        }
    }
}

/// `acc[i][j] = sum_k a[i][k] * w[k][j]` for `M` rows and one half block of 8 columns.
#[target_feature(enable = "avx2")]
unsafe fn tile<const M: usize>(a: &[i8], kp: usize, panel: &[i8], acc: &mut [[i32; NC]; MR]) {
    debug_assert!(a.len() >= (M - 1) * kp + kp && panel.len() >= (kp / KR - 1) * NR * KR + NC * KR);
    let mut lo = [_mm256_setzero_si256(); M];
    let mut hi = [_mm256_setzero_si256(); M];
    let ap = a.as_ptr();
    let mut wp = panel.as_ptr();
    for g in 0..kp / KR {
        // 8 columns x 4 depths of weights, widened: columns 0-3 and 4-7.
        let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp as *const __m128i));
        let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(16) as *const __m128i));
        for i in 0..M {
            // a[i][4g..4g+4] repeated four times, widened: matches each column's 4 depths.
            let x = (ap.add(i * kp + g * KR) as *const i32).read_unaligned();
            let x = _mm256_cvtepi8_epi16(_mm_set1_epi32(x));
            lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(x, w0));
            hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(x, w1));
        }
        wp = wp.add(NR * KR);
    }
    for i in 0..M {
        // Each lane pair holds one column's two partial sums; add the pairs and restore order.
        let s = _mm256_hadd_epi32(lo[i], hi[i]);
        let s = _mm256_permute4x64_epi64(s, 0b11_01_10_00);
        _mm256_storeu_si256(acc[i].as_mut_ptr() as *mut __m256i, s);
    }
}
