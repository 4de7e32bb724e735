//! Intel AMX-INT8 kernel (Sapphire Rapids and later): `tdpbssd` on 16 x 64-byte tiles.
//!
//! The packed layout is already AMX's B-tile layout: 16 consecutive groups of one block (`[NR][KR]`
//! bytes each, stride 64) are a B tile of 16 rows x 64 bytes, i.e. depth 64 for 16 columns. An A
//! tile is 16 activation rows x 64 bytes of depth, a C tile 16 rows x 16 i32 accumulators, and one
//! `tdpbssd` does 16 x 16 x 64 multiply-adds.
//!
//! `tdpbssd` (signed x signed) rather than `tdpbusd` on staged unsigned activations: AMX has a
//! signed form at the same throughput, so aligned activation rows load straight from the
//! caller's tile (any row stride that is a multiple of 64), and there is no column-sum
//! correction. (The VNNI kernels stage `a + 128` only because `vpdpbusd` has no signed x signed
//! form.) Products of two int8 values summed in i32 are exact, as in every other kernel.
//!
//! One tile configuration per call, every tile 16 x 64 bytes: tmm0-3 are a 2 x 2 grid of C
//! tiles (32 rows x 32 columns; four independent accumulators hide `tdpbssd`'s latency), tmm4-5
//! the A tiles of its two row blocks, tmm6-7 the B tiles of its two column blocks. Shapes that do
//! not fill whole tiles are padded instead of reconfigured (`ldtilecfg` zeroes every tile, so a
//! shorter configuration for the depth tail would cost the accumulators a round trip through
//! memory, and one `ldtilecfg` costs about 250 cycles):
//! - depth: activation rows and weights whose depth is not a multiple of 64 are copied with zero
//!   padding to the next multiple (the weights a chunk of blocks at a time, reused by every row
//!   block), so the last step multiplies zeros;
//! - rows: a row block that is short, or would read past `a`, is copied with zero rows;
//!   padding rows' outputs are not written;
//! - columns: padding columns of the packed data are zero, and their outputs are not written.
//!
//! Tile rows must also be 64-byte aligned (a row split over two cache lines makes a tile load
//! about 6 times slower), so unaligned activations or weights are copied the same way.
//! Requantization is the AVX-512 VNNI kernel's ([`RequantX16`]) on the stored C tiles.

use super::x86::{RequantX16, Sink, NARROW};
use super::{PackedWeights, KR, NR};
use core::arch::asm;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use std::sync::OnceLock;

/// Depth of one tile step: 64 bytes of A, 16 groups of B.
const KT: usize = 64;
/// Rows of an A or C tile.
const MT: usize = 16;
/// Bytes of one B tile (16 groups of `NR * KR`).
const BT: usize = KT * NR;
/// Deepest padded depth the kernel runs (two row blocks of it fit [`ASTAGE`]);
/// deeper GEMMs run the AVX-512 VNNI kernel.
const KMAX: usize = 1024;
/// Most packed blocks per column chunk: their weights (`CB * kp * NR` bytes) stay in cache
/// while every row block passes over them.
const CB: usize = 8;
/// Fewest rows worth the tiles (measured: 16 rows of depth 256 ran at 0.74 times the AVX-512
/// VNNI kernel's rate, 49 at 1.3 to 2 times).
const MIN_ROWS: usize = 32;
/// Bytes of weights copied at a time when they cannot load in place.
const BSTAGE: usize = 32 * 1024;
/// Bytes of activation rows copied at a time when they cannot load in place.
const ASTAGE: usize = 32 * 1024;

/// Whether the CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25) and Linux granted
/// this process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`;
/// without it the first tile instruction faults). Asked once, cached.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpu_has_amx() && request_tile_state())
}

fn cpu_has_amx() -> bool {
    // Leaf 7 only if the CPU reports it.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a raw Linux system call that only changes this process's permitted xstate
    // features; `syscall` clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    /// Bytes per row of each tile.
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// tmm0-7 all 16 rows x 64 bytes; tiles 8-15 (absent on palette 1) unused.
const CONFIG: TileConfig = {
    let mut c = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [0; 16],
        rows: [0; 16],
    };
    let mut t = 0;
    while t < 8 {
        c.colsb[t] = KT as u16;
        c.rows[t] = MT as u8;
        t += 1;
    }
    c
};

/// The tile configuration every kernel call loads (for `ldtilecfg` in a measurement).
pub fn tile_config() -> *const u8 {
    &CONFIG as *const TileConfig as *const u8
}

// The tile registers are invisible to the compiler, which never uses them: values live in them
// from one `asm!` to the next. None of these blocks is `pure`, so they keep their order.

/// `tileloadd tmm$t, [p + s]`: 16 rows of 64 bytes, row stride `s`.
macro_rules! tileload {
    ($t:literal, $p:expr, $s:expr) => {
        asm!(
            concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
            p = in(reg) $p,
            s = in(reg) $s,
            options(nostack, readonly, preserves_flags),
        )
    };
}

/// `tdpbssd tmm$c, tmm$a, tmm$b`: C += A x B, signed bytes, i32 sums.
macro_rules! dp {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem, preserves_flags),
        )
    };
}

/// `tilestored [p + 64], tmm$t`: 16 rows of 16 i32.
macro_rules! tilestore {
    ($t:literal, $p:expr) => {
        asm!(
            concat!("tilestored [{p} + {s}*1], tmm", $t),
            p = in(reg) $p,
            s = in(reg) KT,
            options(nostack, preserves_flags),
        )
    };
}

/// One row block's A operand: 16 rows of `64 * steps` readable bytes.
#[derive(Clone, Copy)]
struct Rows {
    ptr: *const i8,
    stride: usize,
    /// Rows that produce outputs (the rest are padding).
    valid: usize,
}

/// Bytes on a 64-byte boundary: tile rows that straddle two cache lines load several times
/// slower (measured: 4 tile loads in 195 cycles instead of 30).
#[repr(C, align(64))]
struct Aligned<T>(T);

/// The four C tiles of a 2 x 2 grid, as stored by `tilestored`.
type Acc = Aligned<[[i32; MT * NR]; 4]>;

/// `acc[2 i + j] = A_i x B_j` over `steps` 64-deep steps, `MB` row blocks by `NB` column blocks.
///
/// # Safety
/// A tile configuration with tmm0-7 at 16 x 64 is loaded; `x[i]`: 16 rows of `64 * steps`
/// bytes; `b[j]`: `steps` tiles of 1 KiB.
#[inline(always)]
unsafe fn tiles<const MB: usize, const NB: usize>(
    x: [Rows; 2],
    b: [*const i8; 2],
    steps: usize,
    acc: &mut Acc,
) {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem, preserves_flags)
    );
    for s in 0..steps {
        let k = s * KT;
        tileload!(4, x[0].ptr.add(k), x[0].stride);
        tileload!(6, b[0].add(s * BT), KT);
        if NB == 2 {
            tileload!(7, b[1].add(s * BT), KT);
        }
        dp!(0, 4, 6);
        if NB == 2 {
            dp!(1, 4, 7);
        }
        if MB == 2 {
            tileload!(5, x[1].ptr.add(k), x[1].stride);
            dp!(2, 5, 6);
            if NB == 2 {
                dp!(3, 5, 7);
            }
        }
    }
    let acc = &mut acc.0;
    tilestore!(0, acc[0].as_mut_ptr());
    if NB == 2 {
        tilestore!(1, acc[1].as_mut_ptr());
    }
    if MB == 2 {
        tilestore!(2, acc[2].as_mut_ptr());
        if NB == 2 {
            tilestore!(3, acc[3].as_mut_ptr());
        }
    }
}

/// Sums of the 16 columns of a packed block of depth `kp`.
///
/// # Safety
/// AVX-512 F/BW/VNNI; `panel`: `kp * NR` readable bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn column_sums(panel: *const i8, kp: usize) -> __m512i {
    let ones = _mm512_set1_epi8(1);
    let mut s = _mm512_setzero_si512();
    for g in 0..kp / KR {
        s = _mm512_dpbusd_epi32(
            s,
            ones,
            _mm512_loadu_si512(panel.add(g * NR * KR) as *const _),
        );
    }
    s
}

/// Whether the tiles suit `rows` rows of `w`: not for shapes the AVX-512 VNNI kernel runs faster,
/// fewer than [`MIN_ROWS`] rows (a tile of 16 rows mostly padding, and the fixed cost of a call,
/// `ldtilecfg` alone about 250 cycles, spread over few multiply-adds), at most 4 columns, or a
/// depth below 64 (tiles half padding: the digits model's last layer, depth 32, ran slower);
/// nor depths beyond [`KMAX`].
pub(super) fn suits(rows: usize, w: &PackedWeights) -> bool {
    rows >= MIN_ROWS && w.n() > NARROW && (KT..=KMAX).contains(&w.kp())
}

/// Runs the GEMM of `rows` rows of `a` (row stride `stride`, `w.k() <= stride <= w.kp()`) into
/// the sink. `None`, before anything is written, when the depth is beyond [`KMAX`].
///
/// # Safety
/// [`available`] and AVX-512 F/BW/VL/VNNI; `a.len() >= rows * stride`; the sink: `rows` rows of
/// `w.n()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn run(
    a: &[i8],
    stride: usize,
    rows: usize,
    w: PackedWeights,
    sink: Sink,
) -> Option<()> {
    let (kp, n) = (w.kp(), w.n());
    let steps = kp.div_ceil(KT);
    let span = steps * KT;
    if span > KMAX {
        return None;
    }
    if rows == 0 {
        return Some(());
    }
    let (a_len, a) = (a.len(), a.as_ptr());
    let blocks = n.div_ceil(NR);
    let row_blocks = rows.div_ceil(MT);
    let data = w.data().as_ptr();
    // Row blocks load straight from `a` when their rows are aligned and 16 rows of `span` bytes
    // stay inside it; others are copied, zero-padded, into an aligned buffer, as many blocks at
    // a time as it holds (at least two: [`KMAX`]). All of them before the first tile load: tile
    // loads of lines just written stall (measured: staging each grid's rows right before its
    // loads cost as much as the multiplications).
    let mut astage = MaybeUninit::<Aligned<[i8; ASTAGE]>>::uninit();
    let astage = astage.as_mut_ptr() as *mut i8;
    let per_stage = ASTAGE / (MT * span);
    let block_rows = |rb: usize| {
        let r0 = rb * MT;
        let valid = MT.min(rows - r0);
        let ptr = a.add(r0 * stride);
        if (ptr as usize | stride).is_multiple_of(KT) && (r0 + MT - 1) * stride + span <= a_len {
            return Rows { ptr, stride, valid };
        }
        let buf = astage.add((rb % per_stage) * MT * span);
        if stride == span {
            // One copy (a call per row costs more than the copying).
            core::ptr::copy_nonoverlapping(ptr, buf, valid * span);
        } else {
            for r in 0..valid {
                let dst = buf.add(r * span);
                core::ptr::copy_nonoverlapping(ptr.add(r * stride), dst, stride);
                core::ptr::write_bytes(dst.add(stride), 0, span - stride);
            }
        }
        core::ptr::write_bytes(buf.add(valid * span), 0, (MT - valid) * span);
        Rows {
            ptr: buf,
            stride: span,
            valid,
        }
    };
    // Likewise the weights: straight from the packed data when aligned and of whole tiles, or
    // a chunk of blocks at a time copied with their depth padded to `span` by zero groups.
    let direct = kp == span && (data as usize).is_multiple_of(KT);
    let chunk = if direct {
        CB
    } else {
        (BSTAGE / (span * NR)).clamp(1, CB)
    };
    let mut bstage = MaybeUninit::<Aligned<[i8; BSTAGE]>>::uninit();
    let bstage = bstage.as_mut_ptr() as *mut i8;
    let mut qs = MaybeUninit::<[RequantX16; CB]>::uninit();
    let q = qs.as_mut_ptr() as *mut RequantX16;
    let mut shifted = [_mm512_setzero_si512(); CB];
    // Written by `tilestored` before every read.
    let mut acc = MaybeUninit::<Acc>::uninit();
    let acc = &mut *acc.as_mut_ptr();
    asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly, preserves_flags));
    for c0 in (0..blocks).step_by(chunk) {
        let nbc = chunk.min(blocks - c0);
        let (weights, block_len) = if direct {
            (data.add(c0 * kp * NR), kp * NR)
        } else {
            (bstage as *const i8, span * NR)
        };
        for (j, shifted) in shifted.iter_mut().enumerate().take(nbc) {
            let (b, panel) = (c0 + j, data.add((c0 + j) * kp * NR));
            if !direct {
                let dst = bstage.add(j * block_len);
                core::ptr::copy_nonoverlapping(panel, dst, kp * NR);
                core::ptr::write_bytes(dst.add(kp * NR), 0, (span - kp) * NR);
            }
            let cols = NR.min(n - b * NR);
            match sink {
                Sink::Int8(rq, _) => {
                    q.add(j)
                        .write(RequantX16::new(rq, b * NR, cols, _mm512_setzero_si512()))
                }
                Sink::Raw(zp, _) => {
                    let sums = column_sums(panel, kp);
                    *shifted = _mm512_mullo_epi32(sums, _mm512_set1_epi32(zp as i32));
                }
            }
        }
        for rb0 in (0..row_blocks).step_by(per_stage) {
            let mut xs = [Rows {
                ptr: a,
                stride,
                valid: 0,
            }; ASTAGE / (MT * KT)];
            let staged = per_stage.min(row_blocks - rb0);
            for (i, x) in xs.iter_mut().enumerate().take(staged) {
                *x = block_rows(rb0 + i);
            }
            for rb in (rb0..rb0 + staged).step_by(2) {
                let mb = 2.min(rb0 + staged - rb);
                let x0 = xs[rb - rb0];
                let x = [x0, if mb == 2 { xs[rb + 1 - rb0] } else { x0 }];
                for j in (0..nbc).step_by(2) {
                    let nb = 2.min(nbc - j);
                    let b = [
                        weights.add(j * block_len),
                        weights.add((j + nb - 1) * block_len),
                    ];
                    match (mb, nb) {
                        (2, 2) => tiles::<2, 2>(x, b, steps, acc),
                        (2, _) => tiles::<2, 1>(x, b, steps, acc),
                        (_, 2) => tiles::<1, 2>(x, b, steps, acc),
                        _ => tiles::<1, 1>(x, b, steps, acc),
                    }
                    for (i, x) in x.iter().enumerate().take(mb) {
                        for jj in 0..nb {
                            let (blk, col) = (j + jj, (c0 + j + jj) * NR);
                            let cols = NR.min(n - col);
                            let mask = if cols == NR { !0 } else { (1u16 << cols) - 1 };
                            let tile = &acc.0[2 * i + jj];
                            for r in 0..x.valid {
                                let v = _mm512_load_si512(tile.as_ptr().add(r * NR) as *const _);
                                let at = ((rb + i) * MT + r) * n + col;
                                match sink {
                                    Sink::Int8(_, y) => _mm_mask_storeu_epi8(
                                        y.add(at),
                                        mask,
                                        (*q.add(blk)).apply(v),
                                    ),
                                    Sink::Raw(_, y) => _mm512_mask_storeu_epi32(
                                        y.add(at),
                                        mask,
                                        _mm512_sub_epi32(v, shifted[blk]),
                                    ),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    asm!("tilerelease", options(nostack, nomem, preserves_flags));
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::x86::tests::{packed_rows, requant_bytes};
    use super::super::{gemm_i32, gemm_requant, padded_k, scalar, I32s, Isa, Requant};
    use super::*;

    /// Every tail at once: rows around the 16-row tiles and 32-row pairs, depths around the
    /// 64-byte steps (and shallower than one, so several row blocks are staged), columns around
    /// the 16-column blocks and the column chunk, activations and weights at -128 and 127, for
    /// both the requantized and the raw sums (with rows shorter than `kp`).
    #[test]
    fn awkward_shapes_match_scalar() {
        if !Isa::Amx.is_available() {
            return;
        }
        let mut s = 987654321u32;
        let mut next = move || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as i32
        };
        for rows in [1, 2, 15, 16, 17, 31, 32, 33, 40] {
            for k in [1, 3, 4, 5, 60, 64, 65, 100, 127, 128, 191, 250, 512, 600] {
                for n in [1, 5, 16, 17, 33, 40, 70, 16 * CB + 20] {
                    let kp = padded_k(k);
                    // Each case picks one of four value mixes: random, extremes only, or
                    // random with runs of -128 or 127.
                    let mix = next() & 3;
                    let mut value = || match (mix, next() & 7) {
                        (1, v) => [-128, 127][v as usize & 1],
                        (2, 0..=3) => -128,
                        (3, 0..=3) => 127,
                        _ => next() as i8,
                    };
                    let a: Vec<i8> = (0..rows * kp).map(|_| value()).collect();
                    let wv: Vec<i8> = (0..k * n).map(|_| value()).collect();
                    let packed = packed_rows(k, n, &wv);
                    let w = PackedWeights::new(&packed, k, n).unwrap();
                    let (bias, mult, shift) = requant_bytes(k, n, 8000.0, &mut next);
                    let rq = Requant {
                        bias: I32s::new(&bias).unwrap(),
                        mult: I32s::new(&mult).unwrap(),
                        shift: &shift,
                        zp_out: -3,
                        min: -128,
                        max: 127,
                    };
                    let shape = format!("rows {rows} k {k} n {n} mix {mix}");
                    let mut want = vec![0i8; rows * n];
                    scalar::gemm(&a, rows, w, &rq, &mut want);
                    let mut got = vec![0i8; rows * n];
                    gemm_requant(Isa::Amx, &a, rows, w, &rq, &mut got).unwrap();
                    assert_eq!(got, want, "requantized, {shape}");
                    // The tiles themselves, also for the shapes `suits` leaves to AVX-512.
                    let mut got = vec![0i8; rows * n];
                    let sink = Sink::Int8(&rq, got.as_mut_ptr());
                    assert!(unsafe { run(&a, kp, rows, w, sink) }.is_some());
                    assert_eq!(got, want, "requantized tiles, {shape}");
                    for (stride, zp) in [(kp, 0), (k, -128), (k, 127), (kp, 7)] {
                        let mut want = vec![0i32; rows * n];
                        scalar::gemm_i32(&a, stride, rows, zp, w, &mut want);
                        let mut got = vec![0i32; rows * n];
                        // Exactly the rows given: the kernel must not read past them.
                        let a = &a[..rows * stride];
                        gemm_i32(Isa::Amx, a, stride, rows, zp, w, &mut got).unwrap();
                        assert_eq!(got, want, "raw, stride {stride} zp {zp}, {shape}");
                        got.fill(0);
                        let sink = Sink::Raw(zp, got.as_mut_ptr());
                        assert!(unsafe { run(a, stride, rows, w, sink) }.is_some());
                        assert_eq!(got, want, "raw tiles, stride {stride} zp {zp}, {shape}");
                    }
                }
            }
        }
    }
}
