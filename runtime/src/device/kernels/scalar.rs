//! The reference kernel: plain integer arithmetic that defines what every other kernel computes.

use super::{PackedWeights, Requant, KR, NR};

/// See [`super::gemm_requant`]. Rows, blocks and groups are walked as chunks of the given
/// slices, and a column's four weights are read from a fixed-size group, so nothing here can index
/// out of bounds.
pub fn gemm(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    // Panels of NR columns, each a run of groups of [NR][KR] bytes.
    let (groups, _) = w.data().as_chunks::<{ NR * KR }>();
    for (block, panel) in groups.chunks_exact(kp / KR).enumerate() {
        let n0 = block * NR;
        for (row, out_row) in a.chunks_exact(kp).zip(out.chunks_exact_mut(n)).take(rows) {
            let (row, _) = row.as_chunks::<KR>();
            // One column at a time, so the sum stays in a register (a Cortex-M0 has eight), and
            // only the block's real columns: a one-channel output layer has 1 of NR.
            for (j, o) in out_row.iter_mut().skip(n0).take(NR).enumerate() {
                // `% NR` is a no-op (j < NR) that bounds the reads below for the compiler.
                let col = (j % NR) * KR;
                let mut acc = 0i32;
                for (x, g) in row.iter().zip(panel) {
                    for (t, x) in x.iter().enumerate() {
                        acc += *x as i32 * g[col + t] as i32;
                    }
                }
                *o = rq.apply(acc, n0 + j);
            }
        }
    }
}

/// See [`super::gemm_i32`].
pub fn gemm_i32(a: &[i8], stride: usize, rows: usize, zp: i8, w: PackedWeights, out: &mut [i32]) {
    let n = w.n();
    for r in 0..rows {
        let row = &a[r * stride..r * stride + w.k()];
        for (j, y) in out[r * n..(r + 1) * n].iter_mut().enumerate() {
            *y = row.iter().enumerate().fold(0i32, |s, (k, x)| {
                s.wrapping_add((*x as i32 - zp as i32) * w.at(k, j) as i32)
            });
        }
    }
}

/// [`gemm_i32`] walking the packed layout in its own order: [`NR`] columns at a time, [`KR`]
/// depths per step, the sums in an `[i32; NR]` the compiler vectorizes. The same wrapping sums
/// as [`gemm_i32`] (the definition), so every family that falls back here gives its bytes; many
/// times faster (no index arithmetic per product), for the families without a kernel of their
/// own (a GRU's products run here on AVX2 and NEON).
pub fn gemm_i32_panels(
    a: &[i8],
    stride: usize,
    rows: usize,
    zp: i8,
    w: PackedWeights,
    out: &mut [i32],
) {
    let (k, n, kp) = (w.k(), w.n(), w.kp());
    let zp = zp as i32;
    for (row, out) in a
        .chunks(stride.max(1))
        .zip(out.chunks_exact_mut(n))
        .take(rows)
    {
        let row = &row[..k.min(row.len())];
        for (panel, cols) in w
            .data()
            .chunks_exact((kp * NR).max(1))
            .zip(out.chunks_mut(NR))
        {
            let mut acc = [0i32; NR];
            for (g, block) in panel.chunks_exact(NR * KR).enumerate() {
                let mut xs = [0i32; KR];
                for (kk, x) in xs.iter_mut().enumerate() {
                    if let Some(&v) = row.get(g * KR + kk) {
                        *x = v as i32 - zp;
                    }
                }
                for (acc, ws) in acc.iter_mut().zip(block.chunks_exact(KR)) {
                    for (x, &wv) in xs.iter().zip(ws) {
                        *acc = acc.wrapping_add(x.wrapping_mul(wv as i32));
                    }
                }
            }
            for (o, v) in cols.iter_mut().zip(acc) {
                *o = v;
            }
        }
    }
}
