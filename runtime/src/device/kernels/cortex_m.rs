//! Cortex-M4/M7/M33 kernel on the DSP extension: `sxtb16` splits a word of four int8 values into
//! two pairs of int16 (bytes 0,2 and, rotated, bytes 1,3) and `smlad` adds both pair products to an
//! accumulator in one instruction. A packed group holds four consecutive `k` of one column, the
//! same order as four consecutive activations, so the even and odd halves of both line up.
//!
//! `smlad`'s sum is exact in i32 (it only sets the sticky Q flag on overflow, which cannot happen
//! below `MAX_K`), so the result is the scalar kernel's, bit for bit. `__smlad` is unstable, hence
//! `asm!`.

use super::{PackedWeights, Requant, KR, NR};
use core::arch::asm;

#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r;
    // SAFETY: pure register arithmetic, present on every core this module is built for.
    unsafe {
        asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r;
    // SAFETY: as above.
    unsafe {
        asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r;
    // SAFETY: as above; `smlad` may set the Q flag, which nothing here reads.
    unsafe {
        asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
             acc = in(reg) acc, options(pure, nomem, nostack));
    }
    r
}

/// Reads the 4 bytes at `p` as one little-endian word (Cortex-M4/M33 `ldr` allows any alignment).
#[inline(always)]
unsafe fn load(p: *const i8) -> u32 {
    (p as *const u32).read_unaligned()
}

/// One row times four columns: `[x.w0, x.w1, x.w2, x.w3]` over `groups` groups. The activation
/// word is split once for four columns, each weight word once; 24 instructions per 16
/// multiply-adds, all in registers (a 2x2 tile needs more registers than Thumb code has and spills).
///
/// SAFETY: `x` points at `4 * groups` readable bytes and `w` at a packed panel column: `groups`
/// groups of `NR * KR` bytes from `w`, of which the first 16 are read.
#[inline(always)]
unsafe fn dot_1x4(mut x: *const i8, mut w: *const i8, groups: usize) -> [i32; 4] {
    let mut acc = [0i32; 4];
    for _ in 0..groups {
        let a = load(x);
        let (ae, ao) = (sxtb16(a), sxtb16_ror8(a));
        for (c, acc) in acc.iter_mut().enumerate() {
            let wc = load(w.add(c * KR));
            *acc = smlad(ao, sxtb16_ror8(wc), smlad(ae, sxtb16(wc), *acc));
        }
        x = x.add(KR);
        w = w.add(NR * KR);
    }
    acc
}

/// Largest reduction, in groups, that [`gemm_dsp`] sign-extends up front (k <= 1024): two rows of
/// it take 4 KB of stack.
const EXTENDED_GROUPS: usize = 256;

/// Two rows times one column over activations sign-extended up front (`x[g]` = row 0 even,
/// row 0 odd, row 1 even, row 1 odd): each weight word is split once for both rows and nothing
/// else is split in the loop. Written out in assembly because LLVM spills in this loop: one
/// `ldm` brings a group's four activation pairs, so a group is 10 instructions for 8
/// multiply-adds.
///
/// SAFETY: `x` is not empty; `w` points at a packed panel column: `x.len()` groups of
/// `NR * KR` bytes from `w`, of which the first 4 are read.
#[inline(always)]
unsafe fn dot_2x1(x: &[[u32; 4]], w: *const i8) -> [i32; 2] {
    let (mut a0, mut a1) = (0i32, 0i32);
    let end = x.as_ptr_range().end;
    asm!(
        "2:",
        "ldm {x}!, {{r0, r1, r2, r3}}",
        "ldr {t}, [{w}], #64",
        "sxtb16 {u}, {t}",
        "sxtb16 {t}, {t}, ror #8",
        "smlad {a0}, r0, {u}, {a0}",
        "smlad {a0}, r1, {t}, {a0}",
        "smlad {a1}, r2, {u}, {a1}",
        "smlad {a1}, r3, {t}, {a1}",
        "cmp {x}, {end}",
        "bne 2b",
        x = inout(reg) x.as_ptr() => _,
        w = inout(reg) w => _,
        end = in(reg) end,
        a0 = inout(reg) a0,
        a1 = inout(reg) a1,
        t = out(reg) _,
        u = out(reg) _,
        out("r0") _, out("r1") _, out("r2") _, out("r3") _,
        options(nostack, readonly),
    );
    const _: () = assert!(NR * KR == 64, "the post-increment above");
    [a0, a1]
}

/// See [`super::gemm_requant`]. Rows are `a`'s chunks of `w.kp()` bytes and `out`'s of `w.n()`,
/// up to `rows` of them, and a row's outputs are chunks of its panels' columns: the only raw
/// reads are the panel pointers below, within one panel.
///
/// Pairs of rows (convolution tiles) run [`dot_2x1`] on activations extended once per pair; a
/// single row (a batch-1 Linear layer) or a reduction deeper than [`EXTENDED_GROUPS`] runs
/// [`dot_1x4`], which splits activations as it goes.
pub fn gemm_dsp(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    // PackedWeights has k > 0, so every row has at least one group.
    let groups = kp / KR;
    // `max(1)`: a chunk size the compiler sees is not 0 (kp * NR is at least 64).
    let panels = w.data().chunks_exact((kp * NR).max(1));
    let mut a_rows = a.chunks_exact(kp).take(rows);
    let mut out_rows = out.chunks_exact_mut(n).take(rows);
    if groups <= EXTENDED_GROUPS {
        let mut x = [[0u32; 4]; EXTENDED_GROUPS];
        let x = &mut x[..groups];
        while a_rows.len() >= 2 {
            let (Some(row0), Some(row1), Some(out0), Some(out1)) = (
                a_rows.next(),
                a_rows.next(),
                out_rows.next(),
                out_rows.next(),
            ) else {
                break;
            };
            for ((x, p), q) in x
                .iter_mut()
                .zip(row0.chunks_exact(KR))
                .zip(row1.chunks_exact(KR))
            {
                // SAFETY: each chunk holds KR = 4 bytes.
                let (p, q) = unsafe { (load(p.as_ptr()), load(q.as_ptr())) };
                *x = [sxtb16(p), sxtb16_ror8(p), sxtb16(q), sxtb16_ror8(q)];
            }
            let blocks = out0.chunks_mut(NR).zip(out1.chunks_mut(NR));
            for (block, (panel, (y0, y1))) in panels.clone().zip(blocks).enumerate() {
                let n0 = block * NR;
                for (j, (y0, y1)) in y0.iter_mut().zip(y1.iter_mut()).enumerate() {
                    // SAFETY: the panel holds `groups` groups of NR * KR bytes and j < NR.
                    let [v0, v1] = unsafe { dot_2x1(x, panel.as_ptr().add(j * KR)) };
                    let column = rq.column(n0 + j);
                    *y0 = column.apply(v0);
                    *y1 = column.apply(v1);
                }
            }
        }
    }
    for (row, y) in a_rows.zip(out_rows) {
        for (block, (panel, y)) in panels.clone().zip(y.chunks_mut(NR)).enumerate() {
            let n0 = block * NR;
            // A block has at most NR outputs, so j + 3 < NR.
            for (j, y) in y.chunks_mut(4).enumerate().map(|(i, y)| (4 * i, y)) {
                // SAFETY: the row holds kp = 4 * groups bytes; the panel as above.
                let acc = unsafe { dot_1x4(row.as_ptr(), panel.as_ptr().add(j * KR), groups) };
                for (i, (y, &v)) in y.iter_mut().zip(&acc).enumerate() {
                    *y = rq.apply(v, n0 + j + i);
                }
            }
        }
    }
}
