//! aarch64 kernels: Raspberry Pi 4 (Cortex-A72: NEON), Pi 5 (Cortex-A76: NEON + dotprod) and
//! newer cores with i8mm.
//!
//! All three are exact, so they are bit-identical to the scalar reference: weights are in
//! -127..=127, so one product fits i16 and so does the sum of two (|2 * -128 * -127| = 32512).
//! * NEON: `smull` + `smlal` two groups into i16, `sadalp` the i16 pairs into i32.
//! * dotprod: `sdot` by element, 4 columns x 4 depths per instruction, i32 throughout.
//! * i8mm: `smmla`, a 2x8 by 8x2 matrix product per instruction, i32 throughout.
//!
//! `sdot`/`smmla` go through `asm!` because their intrinsics are not stable yet.

use super::{PackedWeights, Requant, KR, NR};
use core::arch::aarch64::*;
use core::arch::asm;

/// Bytes of one packed group (`NR` columns x `KR` depths).
const G: usize = NR * KR;

/// Runs `tile` over every micro-tile of `MR` rows x `NC` columns and requantizes its accumulators.
/// `tile(m, a, kp, panel, acc)` fills `acc[..m][..NC]` for rows `a[..m * kp]` and the columns whose
/// first group starts at `panel[0]`.
#[inline(always)]
fn drive<const MR: usize, const NC: usize>(
    a: &[i8],
    rows: usize,
    w: PackedWeights,
    rq: &Requant,
    out: &mut [i8],
    mut tile: impl FnMut(usize, &[i8], usize, &[i8], &mut [[i32; NC]; MR]),
) {
    let (kp, n) = (w.kp(), w.n());
    let per_block = NR / NC;
    for part in 0..n.div_ceil(NC) {
        // Byte offset of this part's first group inside the packed data.
        let base = (part / per_block) * kp * NR + (part % per_block) * NC * KR;
        let panel = &w.data()[base..];
        let n0 = part * NC;
        let cols = NC.min(n - n0);
        let mut r = 0;
        while r < rows {
            let m = MR.min(rows - r);
            let mut acc = [[0i32; NC]; MR];
            tile(m, &a[r * kp..r * kp + m * kp], kp, panel, &mut acc);
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

/// Four activations `a[k..k + 4]` of one row as a 32-bit lane.
#[inline(always)]
unsafe fn quad(p: *const i8) -> u32 {
    (p as *const u32).read_unaligned()
}

// ---------------------------------------------------------------------------------------------
// NEON: smull / smlal / sadalp.

/// Rows per NEON micro-tile: 3 rows x 8 columns = 12 accumulators + 8 weight halves + 12
/// products in flight. With 4 rows (16 accumulators) LLVM ran out of the 32 vector registers and
/// spilled and shuffled inside the loop: 95 instructions per 256 multiply-adds, against 59 per
/// 192 with 3 rows (counted under qemu as a Cortex-A72; -11% instructions per digits image).
const NEON_MR: usize = 3;
/// Columns per NEON micro-tile: half a packed block.
const NEON_NC: usize = NR / 2;

/// # Safety
/// The CPU must support NEON (every aarch64 Linux CPU); sizes as in [`super::gemm_requant`].
pub unsafe fn gemm_neon(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    drive::<NEON_MR, NEON_NC>(a, rows, w, rq, out, |m, a, kp, panel, acc| unsafe {
        match m {
            3 => neon_tile::<3>(a, kp, panel, acc),
            2 => neon_tile::<2>(a, kp, panel, acc),
            _ => neon_tile::<1>(a, kp, panel, acc),
        }
    });
}

/// `acc[i][j] = sum_k a[i][k] * w[k][j]` for `M` rows and one half block of 8 columns.
#[inline(always)]
unsafe fn neon_tile<const M: usize>(
    a: &[i8],
    kp: usize,
    panel: &[i8],
    acc: &mut [[i32; NEON_NC]; NEON_MR],
) {
    let groups = kp / KR;
    assert!(M <= NEON_MR && a.len() >= M * kp && panel.len() >= (groups - 1) * G + NEON_NC * KR);
    // s[i][c]: columns 2c and 2c+1 of row i as [col 2c: k01, k23, col 2c+1: k01, k23].
    let mut s = [[vdupq_n_s32(0); 4]; M];
    let ap = a.as_ptr();
    let wp = panel.as_ptr();
    let mut g = 0;
    while g + 2 <= groups {
        // Two groups of 8 columns x 4 depths: columns 0-3 and 4-7 of group g, then of g + 1.
        let w0 = vld1q_s8(wp.add(g * G));
        let w1 = vld1q_s8(wp.add(g * G + 16));
        let v0 = vld1q_s8(wp.add((g + 1) * G));
        let v1 = vld1q_s8(wp.add((g + 1) * G + 16));
        for (i, s) in s.iter_mut().enumerate() {
            // a[i][4g..4g+4] and a[i][4g+4..4g+8], each repeated across the register.
            let x = vreinterpretq_s8_u32(vdupq_n_u32(quad(ap.add(i * kp + g * KR))));
            let y = vreinterpretq_s8_u32(vdupq_n_u32(quad(ap.add(i * kp + (g + 1) * KR))));
            // Each i16 lane: one product of group g plus one of group g + 1 (exact, see above).
            let p0 = vmlal_s8(
                vmull_s8(vget_low_s8(w0), vget_low_s8(x)),
                vget_low_s8(v0),
                vget_low_s8(y),
            );
            let p1 = vmlal_high_s8(vmull_high_s8(w0, x), v0, y);
            let p2 = vmlal_s8(
                vmull_s8(vget_low_s8(w1), vget_low_s8(x)),
                vget_low_s8(v1),
                vget_low_s8(y),
            );
            let p3 = vmlal_high_s8(vmull_high_s8(w1, x), v1, y);
            s[0] = vpadalq_s16(s[0], p0);
            s[1] = vpadalq_s16(s[1], p1);
            s[2] = vpadalq_s16(s[2], p2);
            s[3] = vpadalq_s16(s[3], p3);
        }
        g += 2;
    }
    if g < groups {
        // An odd last group: products alone.
        let w0 = vld1q_s8(wp.add(g * G));
        let w1 = vld1q_s8(wp.add(g * G + 16));
        for (i, s) in s.iter_mut().enumerate() {
            let x = vreinterpretq_s8_u32(vdupq_n_u32(quad(ap.add(i * kp + g * KR))));
            s[0] = vpadalq_s16(s[0], vmull_s8(vget_low_s8(w0), vget_low_s8(x)));
            s[1] = vpadalq_s16(s[1], vmull_high_s8(w0, x));
            s[2] = vpadalq_s16(s[2], vmull_s8(vget_low_s8(w1), vget_low_s8(x)));
            s[3] = vpadalq_s16(s[3], vmull_high_s8(w1, x));
        }
    }
    for i in 0..M {
        // Adjacent lanes are one column's two partial sums: pairwise add gives columns in order.
        vst1q_s32(acc[i].as_mut_ptr(), vpaddq_s32(s[i][0], s[i][1]));
        vst1q_s32(acc[i].as_mut_ptr().add(4), vpaddq_s32(s[i][2], s[i][3]));
    }
}

// ---------------------------------------------------------------------------------------------
// dotprod: sdot by element.

/// Rows per dotprod micro-tile: 4 rows x 16 columns = 16 accumulators + 4 activations + 4 weights.
const DOT_MR: usize = 4;

/// `acc.s[c] += sum_j w.b[4c + j] * a.b[4 * LANE + j]`: one group of 4 columns x 4 depths.
macro_rules! sdot_lane {
    ($acc:expr, $w:expr, $a:expr, $lane:expr) => {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{lane}]",
            acc = inout(vreg) $acc,
            w = in(vreg) $w,
            a = in(vreg) $a,
            lane = const $lane,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

/// # Safety
/// The CPU must support the dotprod extension; sizes as in [`super::gemm_requant`].
#[target_feature(enable = "dotprod")]
pub unsafe fn gemm_neon_dot(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    drive::<DOT_MR, NR>(a, rows, w, rq, out, |m, a, kp, panel, acc| unsafe {
        match m {
            4 => dot_tile::<4>(a, kp, panel, acc),
            3 => dot_tile::<3>(a, kp, panel, acc),
            2 => dot_tile::<2>(a, kp, panel, acc),
            _ => dot_tile::<1>(a, kp, panel, acc),
        }
    });
}

/// `acc[i][j] = sum_k a[i][k] * w[k][j]` for `M` rows and one whole block of 16 columns.
#[target_feature(enable = "dotprod")]
unsafe fn dot_tile<const M: usize>(
    a: &[i8],
    kp: usize,
    panel: &[i8],
    acc: &mut [[i32; NR]; DOT_MR],
) {
    let groups = kp / KR;
    assert!(M <= DOT_MR && a.len() >= M * kp && panel.len() >= groups * G);
    // s[i][c]: columns 4c..4c+4 of row i.
    let mut s = [[vdupq_n_s32(0); 4]; M];
    let ap = a.as_ptr();
    let wp = panel.as_ptr();

    // One group: 4 weight registers, each row's activations in lane `$lane` of x[i].
    macro_rules! group {
        ($x:expr, $g:expr, $lane:literal) => {{
            let gp = wp.add($g * G);
            let (w0, w1, w2, w3) = (
                vld1q_s8(gp),
                vld1q_s8(gp.add(16)),
                vld1q_s8(gp.add(32)),
                vld1q_s8(gp.add(48)),
            );
            for i in 0..M {
                sdot_lane!(s[i][0], w0, $x[i], $lane);
                sdot_lane!(s[i][1], w1, $x[i], $lane);
                sdot_lane!(s[i][2], w2, $x[i], $lane);
                sdot_lane!(s[i][3], w3, $x[i], $lane);
            }
        }};
    }

    // Four groups at a time: one 16-byte activation load per row feeds 4 x 4 sdots.
    let quads = groups / 4;
    for q in 0..quads {
        let mut x = [vdupq_n_s8(0); M];
        for (i, x) in x.iter_mut().enumerate() {
            *x = vld1q_s8(ap.add(i * kp + q * 4 * KR));
        }
        group!(x, 4 * q, 0);
        group!(x, 4 * q + 1, 1);
        group!(x, 4 * q + 2, 2);
        group!(x, 4 * q + 3, 3);
    }
    // 1 to 3 groups left: copy them (not reading past the row) into zero-filled registers.
    let rest = groups % 4;
    if rest > 0 {
        let g = 4 * quads;
        let mut x = [vdupq_n_s8(0); M];
        for (i, x) in x.iter_mut().enumerate() {
            let mut buf = [0i8; 16];
            buf[..rest * KR].copy_from_slice(&a[i * kp + g * KR..(i + 1) * kp]);
            *x = vld1q_s8(buf.as_ptr());
        }
        group!(x, g, 0);
        if rest > 1 {
            group!(x, g + 1, 1);
        }
        if rest > 2 {
            group!(x, g + 2, 2);
        }
    }
    for (acc, s) in acc.iter_mut().zip(&s) {
        for (c, s) in s.iter().enumerate() {
            vst1q_s32(acc.as_mut_ptr().add(4 * c), *s);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// i8mm: smmla.

/// Rows per i8mm micro-tile: 2 row pairs x 16 columns = 16 accumulators + 8 weights + 2 rows.
const MMLA_MR: usize = 4;

/// `acc.s[2r + c] += sum_j a.b[8r + j] * w.b[8c + j]`: rows r of `a` times columns c of `w`.
macro_rules! smmla {
    ($acc:expr, $a:expr, $w:expr) => {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {w:v}.16b",
            acc = inout(vreg) $acc,
            a = in(vreg) $a,
            w = in(vreg) $w,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

/// # Safety
/// The CPU must support the i8mm extension; sizes as in [`super::gemm_requant`].
#[target_feature(enable = "i8mm")]
pub unsafe fn gemm_neon_i8mm(
    a: &[i8],
    rows: usize,
    w: PackedWeights,
    rq: &Requant,
    out: &mut [i8],
) {
    drive::<MMLA_MR, NR>(a, rows, w, rq, out, |m, a, kp, panel, acc| unsafe {
        if m > 2 {
            mmla_tile::<2>(m, a, kp, panel, acc)
        } else {
            mmla_tile::<1>(m, a, kp, panel, acc)
        }
    });
}

/// `acc[i][j] = sum_k a[i][k] * w[k][j]` for `m` rows (`P` row pairs, the last possibly a single
/// row) and one whole block of 16 columns. `smmla` needs 8 depths per column, so it consumes two
/// groups at a time: zipping their 32-bit lanes gives [col c: k0..8, col c+1: k0..8].
#[target_feature(enable = "i8mm")]
unsafe fn mmla_tile<const P: usize>(
    m: usize,
    a: &[i8],
    kp: usize,
    panel: &[i8],
    acc: &mut [[i32; NR]; MMLA_MR],
) {
    let groups = kp / KR;
    assert!(m <= 2 * P && 2 * P <= MMLA_MR && a.len() >= m * kp && panel.len() >= groups * G);
    // s[p][c]: rows 2p, 2p+1 x columns 2c, 2c+1 as [r0 c0, r0 c1, r1 c0, r1 c1].
    let mut s = [[vdupq_n_s32(0); 8]; P];
    let ap = a.as_ptr();
    let wp = panel.as_ptr();
    // Row pointers; a missing odd row repeats the one before it and its results are dropped.
    let mut rp = [ap; MMLA_MR];
    for (i, rp) in rp.iter_mut().enumerate().take(2 * P) {
        *rp = ap.add(i.min(m - 1) * kp);
    }

    let mut g = 0;
    while g + 2 <= groups {
        let z = column_pairs(wp, g, Some(g + 1));
        for p in 0..P {
            // Rows 2p and 2p+1, 8 depths each.
            let x = vcombine_s8(
                vld1_s8(rp[2 * p].add(g * KR)),
                vld1_s8(rp[2 * p + 1].add(g * KR)),
            );
            for c in 0..8 {
                smmla!(s[p][c], x, z[c]);
            }
        }
        g += 2;
    }
    if g < groups {
        // An odd last group: 4 depths, the other 4 are zero weights times zero activations.
        let z = column_pairs(wp, g, None);
        for p in 0..P {
            let lo = vcreate_s8(quad(rp[2 * p].add(g * KR)) as u64);
            let hi = vcreate_s8(quad(rp[2 * p + 1].add(g * KR)) as u64);
            let x = vcombine_s8(lo, hi);
            for c in 0..8 {
                smmla!(s[p][c], x, z[c]);
            }
        }
    }
    for p in 0..P {
        for t in 0..4 {
            // Columns 4t..4t+4 of row 2p: the low halves of s[p][2t], s[p][2t+1]; row 2p+1: high.
            let (u, v) = (
                vreinterpretq_s64_s32(s[p][2 * t]),
                vreinterpretq_s64_s32(s[p][2 * t + 1]),
            );
            vst1q_s32(
                acc[2 * p].as_mut_ptr().add(4 * t),
                vreinterpretq_s32_s64(vzip1q_s64(u, v)),
            );
            if 2 * p + 1 < m {
                vst1q_s32(
                    acc[2 * p + 1].as_mut_ptr().add(4 * t),
                    vreinterpretq_s32_s64(vzip2q_s64(u, v)),
                );
            }
        }
    }
}

/// Weights of groups `g` and `h` (zero when `g` is the last, odd group) as 8 column pairs
/// `[col 2c: k0..8, col 2c+1: k0..8]`, the right operand of `smmla`.
#[inline(always)]
unsafe fn column_pairs(wp: *const i8, g: usize, h: Option<usize>) -> [int32x4_t; 8] {
    let mut z = [vdupq_n_s32(0); 8];
    for t in 0..4 {
        let lo = vreinterpretq_s32_s8(vld1q_s8(wp.add(g * G + 16 * t)));
        let hi = match h {
            Some(h) => vreinterpretq_s32_s8(vld1q_s8(wp.add(h * G + 16 * t))),
            None => vdupq_n_s32(0),
        };
        z[2 * t] = vzip1q_s32(lo, hi);
        z[2 * t + 1] = vzip2q_s32(lo, hi);
    }
    z
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::{gemm_neon, gemm_neon_dot, gemm_neon_i8mm};

    /// The kernels each run of `scripts/test-aarch64.sh` expects this CPU to have, so a detection
    /// bug (a kernel silently not tested, or one the CPU lacks) fails the run.
    #[test]
    fn detected_isas_match_expectation() {
        let found: Vec<&str> = Isa::available().map(Isa::name).collect();
        println!("detected isas: {}", found.join(","));
        if let Ok(expected) = std::env::var("POCKETGAN_EXPECT_ISAS") {
            assert_eq!(found.join(","), expected, "POCKETGAN_EXPECT_ISAS");
        }
    }

    /// xorshift: deterministic values without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Mostly the extremes, where an inexact i16 step would show.
        fn i8(&mut self, lo: i8) -> i8 {
            match self.next() % 4 {
                0 => lo,
                1 => 127,
                _ => (self.next() as i8).max(lo),
            }
        }
    }

    type Kernel = unsafe fn(&[i8], usize, PackedWeights, &Requant, &mut [i8]);

    /// Each kernel this CPU has, called directly (not through the dispatcher, whose fallback
    /// would hide a missing kernel), on every tail shape: rows mod micro-tile, odd group counts,
    /// group counts mod 4, partial column blocks.
    #[test]
    fn kernels_match_scalar_on_every_tail() {
        let mut kernels: Vec<(Isa, Kernel)> = vec![(Isa::Neon, gemm_neon as Kernel)];
        if Isa::NeonDot.is_available() {
            kernels.push((Isa::NeonDot, gemm_neon_dot as Kernel));
        }
        if Isa::NeonI8mm.is_available() {
            kernels.push((Isa::NeonI8mm, gemm_neon_i8mm as Kernel));
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for rows in 1..=9 {
            for k in [1, 3, 4, 5, 8, 9, 12, 13, 16, 17, 20, 24, 29, 33, 64] {
                for n in [1, 5, 8, 9, 16, 17, 31, 40] {
                    let kp = padded_k(k);
                    let a: Vec<i8> = (0..rows * kp).map(|_| rng.i8(-128)).collect();
                    let w: Vec<i8> = (0..k * n).map(|_| rng.i8(-127)).collect();
                    let mut packed = vec![0i8; packed_len(k, n)];
                    pack(k, n, |kk, nn| w[kk * n + nn], &mut packed);
                    let pw = PackedWeights::new(&packed, k, n).unwrap();
                    // Identity requantization plus a small per-column shift, so that small
                    // accumulators pass through unchanged and large ones are scaled, not clamped.
                    let shift: Vec<u8> = (0..n).map(|j| 30 + (j % 13) as u8).collect();
                    let mult: Vec<u8> = (0..n).flat_map(|_| (1i32 << 30).to_le_bytes()).collect();
                    let bias: Vec<u8> = (0..n)
                        .flat_map(|j| (j as i32 * 3 - 20).to_le_bytes())
                        .collect();
                    let rq = Requant {
                        bias: I32s::new(&bias).unwrap(),
                        mult: I32s::new(&mult).unwrap(),
                        shift: &shift,
                        zp_out: 0,
                        min: -128,
                        max: 127,
                    };
                    let mut reference = vec![0i8; rows * n];
                    scalar::gemm(&a, rows, pw, &rq, &mut reference);
                    for (isa, kernel) in &kernels {
                        let mut out = vec![0x55i8; rows * n];
                        unsafe { kernel(&a, rows, pw, &rq, &mut out) };
                        assert_eq!(out, reference, "{} rows {rows} k {k} n {n}", isa.name());
                    }
                }
            }
        }
    }

    /// Every i16 lane of the NEON kernel at its limit (+-32512 from two products of -128 * -+127)
    /// while the totals cancel to zero, so the output must be exactly the bias.
    #[test]
    fn extreme_products_cancel_exactly() {
        let (rows, k, n) = (5, 32, 24);
        let a = vec![-128i8; rows * k];
        // Groups 0-1 and 4-5 weigh -127 (products +16256), groups 2-3 and 6-7 weigh +127.
        let mut packed = vec![0i8; packed_len(k, n)];
        pack(
            k,
            n,
            |kk, _| if (kk / 8) % 2 == 0 { -127 } else { 127 },
            &mut packed,
        );
        let pw = PackedWeights::new(&packed, k, n).unwrap();
        let bias: Vec<u8> = (0..n).flat_map(|j| (j as i32 - 12).to_le_bytes()).collect();
        let mult: Vec<u8> = (0..n).flat_map(|_| (1i32 << 30).to_le_bytes()).collect();
        let rq = Requant {
            bias: I32s::new(&bias).unwrap(),
            mult: I32s::new(&mult).unwrap(),
            shift: &[30; 24],
            zp_out: 0,
            min: -128,
            max: 127,
        };
        let expected: Vec<i8> = (0..rows)
            .flat_map(|_| (0..n).map(|j| j as i8 - 12))
            .collect();
        for isa in Isa::available() {
            let mut out = vec![0i8; rows * n];
            gemm_requant(isa, &a, rows, pw, &rq, &mut out).unwrap();
            assert_eq!(out, expected, "{}", isa.name());
        }
    }
}
