//! On-target kernel check: random GEMM problems through a SIMD kernel and through the scalar
//! reference must agree bit for bit. The host's property tests cannot run a Cortex-M kernel, so
//! the QEMU boards run this before drawing anything.

use pocketgan_runtime::kernels::{
    gemm_requant, pack, packed_len, padded_k, I32s, PackedWeights, Requant, TileError,
};
use pocketgan_runtime::{latent::Rng, Isa};

pub const MAX_ROWS: usize = 7;
pub const MAX_K: usize = 300;
pub const MAX_N: usize = 40;

/// Every buffer of one problem, at its largest (about 26 KB).
pub struct Buffers {
    a: [i8; MAX_ROWS * MAX_K],
    w: [i8; MAX_K * MAX_N],
    packed: [i8; packed_len(MAX_K, MAX_N)],
    bias: [u8; 4 * MAX_N],
    mult: [u8; 4 * MAX_N],
    shift: [u8; MAX_N],
    want: [i8; MAX_ROWS * MAX_N],
    got: [i8; MAX_ROWS * MAX_N],
}

impl Buffers {
    pub const fn new() -> Buffers {
        Buffers {
            a: [0; MAX_ROWS * MAX_K],
            w: [0; MAX_K * MAX_N],
            packed: [0; packed_len(MAX_K, MAX_N)],
            bias: [0; 4 * MAX_N],
            mult: [0; 4 * MAX_N],
            shift: [0; MAX_N],
            want: [0; MAX_ROWS * MAX_N],
            got: [0; MAX_ROWS * MAX_N],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// The first problem on which `isa` and the scalar kernel differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub case: usize,
    pub rows: usize,
    pub k: usize,
    pub n: usize,
}

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Runs `cases` random problems drawn from `seed` through `isa`; returns how many ran.
pub fn check_gemm(isa: Isa, cases: usize, seed: u64, b: &mut Buffers) -> Result<usize, Mismatch> {
    check_kernel(
        |a, rows, w, rq, out| gemm_requant(isa, a, rows, w, rq, out),
        cases,
        seed,
        b,
    )
}

/// [`check_gemm`] for any kernel with `gemm_requant`'s contract.
pub fn check_kernel(
    kernel: impl Fn(&[i8], usize, PackedWeights, &Requant, &mut [i8]) -> Result<(), TileError>,
    cases: usize,
    seed: u64,
    b: &mut Buffers,
) -> Result<usize, Mismatch> {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let (rows, k, n) = (
            1 + below(&mut rng, MAX_ROWS),
            1 + below(&mut rng, MAX_K),
            1 + below(&mut rng, MAX_N),
        );
        let kp = padded_k(k);
        for v in &mut b.a[..rows * kp] {
            *v = rng.next_u64() as i8;
        }
        for v in &mut b.w[..k * n] {
            *v = (below(&mut rng, 255) as i32 - 127) as i8; // weights are -127..=127
        }
        let packed = &mut b.packed[..packed_len(k, n)];
        let w = &b.w;
        pack(k, n, |kk, nn| w[kk * n + nn], packed);
        // Accumulators spread over about 5300 * sqrt(k): scale them into the int8 range so that
        // a wrong sum changes the output instead of vanishing in the clamp.
        let spread = 5300 * (1 + isqrt(k)) as u64;
        let fit = 31 + (64 - (spread / 64).leading_zeros()) as u8;
        for j in 0..n {
            let bias = (below(&mut rng, 8193) as i32) - 4096;
            let mult = (1i32 << 30) + (rng.next_u64() >> 34) as i32;
            b.bias[4 * j..4 * j + 4].copy_from_slice(&bias.to_le_bytes());
            b.mult[4 * j..4 * j + 4].copy_from_slice(&mult.to_le_bytes());
            b.shift[j] = fit - 1 + below(&mut rng, 3) as u8;
        }
        let (Some(weights), Some(bias), Some(mult)) = (
            PackedWeights::new(packed, k, n),
            I32s::new(&b.bias[..4 * n]),
            I32s::new(&b.mult[..4 * n]),
        ) else {
            return Err(Mismatch { case, rows, k, n });
        };
        let rq = Requant {
            bias,
            mult,
            shift: &b.shift[..n],
            zp_out: rng.next_u64() as i8 / 4,
            min: -128,
            max: 127,
        };
        let want = gemm_requant(
            Isa::Scalar,
            &b.a,
            rows,
            weights,
            &rq,
            &mut b.want[..rows * n],
        );
        let got = kernel(&b.a, rows, weights, &rq, &mut b.got[..rows * n]);
        if want.is_err() || got.is_err() || b.want[..rows * n] != b.got[..rows * n] {
            return Err(Mismatch { case, rows, k, n });
        }
    }
    Ok(cases)
}

fn isqrt(n: usize) -> usize {
    let mut r = 0;
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_kernels_agree_with_the_scalar_reference() {
        let mut b = Box::new(Buffers::new());
        for isa in Isa::available() {
            assert_eq!(check_gemm(isa, 200, 1, &mut b), Ok(200), "{}", isa.name());
        }
    }

    #[test]
    fn a_kernel_off_by_one_product_is_caught() {
        // A "kernel" whose accumulator is one product off (its first activation is read one too
        // high): the check must see it, or it could not see a broken DSP kernel either.
        let mut b = Box::new(Buffers::new());
        let broken = |a: &[i8], rows: usize, w: PackedWeights, rq: &Requant, out: &mut [i8]| {
            let mut a = a.to_vec();
            a[0] = a[0].wrapping_add(1);
            gemm_requant(Isa::Scalar, &a, rows, w, rq, out)
        };
        assert!(check_kernel(broken, 50, 1, &mut b).is_err());
    }
}
