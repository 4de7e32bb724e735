//! The reference kernel: plain integer arithmetic that defines what every other kernel computes.

use super::{PackedWeights, Requant, KR, NR};

/// See [`super::gemm_requant`].
pub fn gemm(a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]) {
    let (kp, n) = (w.kp(), w.n());
    let data = w.data();
    for (block, panel) in data.chunks_exact(kp * NR).enumerate() {
        let n0 = block * NR;
        let cols = NR.min(n - n0);
        for r in 0..rows {
            let row = &a[r * kp..(r + 1) * kp];
            // One column at a time, so the sum stays in a register (a Cortex-M0 has eight), and
            // only the block's real columns: a one-channel output layer has 1 of NR.
            for j in 0..cols {
                let mut acc = 0i32;
                for (group, g) in row.chunks_exact(KR).zip(panel.chunks_exact(NR * KR)) {
                    for (x, wk) in group.iter().zip(&g[j * KR..(j + 1) * KR]) {
                        acc += *x as i32 * *wk as i32;
                    }
                }
                out[r * n + n0 + j] = rq.apply(acc, n0 + j);
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
