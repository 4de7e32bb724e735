//! Int8 GEMM kernels with fused requantization.
//!
//! Every kernel computes, for each row `r` of an activation tile and column `n` of a packed weight
//! matrix, `acc = sum_k a[r][k] * w[k][n]` exactly in i32 and then applies [`Requant`]. The scalar
//! kernel is the definition; SIMD kernels must be bit-identical to it (property tests check this).
//!
//! Weights are stored in one packed layout that every kernel reads straight from the model file
//! (flash, on a microcontroller): blocks of [`NR`] columns, each a run of `Kp / KR` groups of
//! `[NR][KR]` bytes. One group is exactly what one AVX-512 `vpdpbusd` or four NEON `sdot` consume.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
pub mod amx;
#[cfg(target_arch = "x86_64")]
pub mod col2im;
#[cfg(all(target_arch = "arm", feature = "cortex-m-dsp"))]
pub mod cortex_m;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;

/// Output columns per packed block.
pub const NR: usize = 16;
/// Reduction depth per packed group.
pub const KR: usize = 4;

/// `k` rounded up to whole groups.
pub const fn padded_k(k: usize) -> usize {
    k.div_ceil(KR) * KR
}

/// `n` rounded up to whole blocks.
pub const fn padded_n(n: usize) -> usize {
    n.div_ceil(NR) * NR
}

/// Bytes of a packed `[k x n]` matrix.
pub const fn packed_len(k: usize, n: usize) -> usize {
    padded_k(k) * padded_n(n)
}

/// Position of element `(k, n)` in the packed layout.
#[inline]
pub const fn packed_index(kp: usize, k: usize, n: usize) -> usize {
    ((n / NR) * kp + (k / KR) * KR) * NR + (n % NR) * KR + k % KR
}

/// A `[k x n]` int8 weight matrix in the packed layout; padding entries are zero.
#[derive(Clone, Copy, Debug)]
pub struct PackedWeights<'a> {
    data: &'a [i8],
    k: usize,
    n: usize,
}

impl<'a> PackedWeights<'a> {
    /// `None` unless `data` holds exactly `packed_len(k, n)` bytes.
    pub fn new(data: &'a [i8], k: usize, n: usize) -> Option<Self> {
        (k > 0 && n > 0 && data.len() == packed_len(k, n)).then_some(Self { data, k, n })
    }
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns; `max(1)` (a no-op, `new` refuses 0) tells the compiler that chunks of this size
    /// cannot panic.
    pub fn n(&self) -> usize {
        self.n.max(1)
    }
    /// Row stride of the activation tile this matrix multiplies (at least [`KR`], as `n`).
    pub fn kp(&self) -> usize {
        padded_k(self.k).max(KR)
    }
    pub fn data(&self) -> &'a [i8] {
        self.data
    }
    pub fn at(&self, k: usize, n: usize) -> i8 {
        self.data[packed_index(self.kp(), k, n)]
    }
    /// Sum of column `n`: the zero-point and unsigned-shift corrections are multiples of it.
    pub fn column_sum(&self, n: usize) -> i32 {
        (0..self.k).map(|k| self.at(k, n) as i32).sum()
    }
    /// True when every padding byte is zero, which all kernels rely on.
    pub fn padding_is_zero(&self) -> bool {
        // Only the padding is visited: the depths past `k` of every real column, then every
        // depth of the padded columns (the weights themselves are most of the file, and a model
        // load on a Pi would otherwise spend more instructions here than on an image).
        let kp = self.kp();
        let zero = |k: usize, n: usize| {
            self.data
                .get(packed_index(kp, k, n))
                .is_some_and(|&v| v == 0)
        };
        (0..self.n).all(|n| (self.k..kp).all(|k| zero(k, n)))
            && (self.n..padded_n(self.n)).all(|n| (0..kp).all(|k| zero(k, n)))
    }
}

/// Packs `w(k, n)` into `out` (`packed_len(k, n)` bytes), zeroing the padding.
pub fn pack(k: usize, n: usize, w: impl Fn(usize, usize) -> i8, out: &mut [i8]) {
    assert_eq!(out.len(), packed_len(k, n), "packed buffer size");
    out.fill(0);
    let kp = padded_k(k);
    for kk in 0..k {
        for nn in 0..n {
            out[packed_index(kp, kk, nn)] = w(kk, nn);
        }
    }
}

/// Little-endian i32 array read in place from model bytes (no alignment needed).
#[derive(Clone, Copy, Debug)]
pub struct I32s<'a>(&'a [u8]);

impl<'a> I32s<'a> {
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        bytes.len().is_multiple_of(4).then_some(Self(bytes))
    }
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Element `i`; 0 past the end (callers index within the lengths the model parser checked,
    /// and inference must not be able to panic).
    #[inline]
    pub fn get(&self, i: usize) -> i32 {
        self.0
            .as_chunks()
            .0
            .get(i)
            .map_or(0, |b| i32::from_le_bytes(*b))
    }
    /// Elements `start..start + len`, or `None` past the end.
    pub fn slice(&self, start: usize, len: usize) -> Option<I32s<'a>> {
        self.0.get(4 * start..4 * (start + len)).map(I32s)
    }
    pub fn iter(&self) -> impl Iterator<Item = i32> + 'a {
        self.0.as_chunks().0.iter().map(|b| i32::from_le_bytes(*b))
    }
}

/// Largest total right shift of a requantization multiplier.
pub const MAX_SHIFT: u8 = 62;
/// Largest reduction depth: keeps `|acc + bias|` below 2^31 with `|bias| <= MAX_BIAS`.
pub const MAX_K: usize = 1 << 16;
/// Largest folded bias magnitude.
pub const MAX_BIAS: i32 = 1 << 30;

/// Per-output-channel requantization of an i32 accumulator to int8:
/// `y = clamp(zp + round_half_up((acc + bias[n]) * mult[n] / 2^shift[n]), min, max)`.
///
/// `bias` already holds `-zp_in * column_sum`, so kernels multiply raw int8 values.
/// The model parser guarantees `1 <= shift <= MAX_SHIFT`, `0 < mult < 2^31`,
/// `|bias| <= MAX_BIAS` and `k <= MAX_K`, so no step can overflow.
#[derive(Clone, Copy, Debug)]
pub struct Requant<'a> {
    pub bias: I32s<'a>,
    pub mult: I32s<'a>,
    pub shift: &'a [u8],
    pub zp_out: i8,
    pub min: i8,
    pub max: i8,
}

impl Requant<'_> {
    #[inline(always)]
    pub fn apply(&self, acc: i32, n: usize) -> i8 {
        self.column(n).apply(acc)
    }

    /// Column `n`'s parameters, read once for the accumulators of several rows. Past the end
    /// (never, for a parsed model) they read as bias and multiplier 0 and shift 1, like
    /// [`I32s::get`], so that inference has no panic path.
    #[inline(always)]
    pub fn column(&self, n: usize) -> Column {
        Column {
            bias: self.bias.get(n),
            mult: self.mult.get(n),
            shift: self.shift.get(n).copied().unwrap_or(1),
            zp: self.zp_out,
            min: self.min,
            max: self.max,
        }
    }
}

/// One output column's requantization (see [`Requant::column`]).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    bias: i32,
    mult: i32,
    shift: u8,
    zp: i8,
    min: i8,
    max: i8,
}

impl Column {
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i8 {
        requantize(
            acc, self.bias, self.mult, self.shift, self.zp, self.min, self.max,
        )
    }
}

/// The one definition of requantization (see [`Requant`]):
/// `clamp(zp + ((x * mult + 2^(shift-1)) >> shift), min, max)` with `x = acc + bias` (wrapping),
/// the product and the arithmetic shift exact in i64.
#[inline]
pub fn requantize(acc: i32, bias: i32, mult: i32, shift: u8, zp: i8, min: i8, max: i8) -> i8 {
    let x = acc.wrapping_add(bias) as i64 * mult as i64;
    if shift > 32 {
        // The same value from the product's high word alone, so 32-bit cores skip a 64-bit
        // variable shift: with x = hi * 2^32 + lo (0 <= lo < 2^32) and t = shift - 32,
        // floor((x + 2^(shift-1)) / 2^shift) = floor((hi + 2^(t-1) + lo / 2^32) / 2^t)
        // = (hi + 2^(t-1)) >> t, since lo / 2^32 < 1 cannot carry into the next multiple of 2^t.
        // |x| < 2^62 so |hi| <= 2^30, and 2^(t-1) <= 2^29: no i32 overflow.
        let hi = (x >> 32) as i32;
        let t = shift - 32;
        let rounded = (hi + (1 << (t - 1))) >> t;
        return (rounded + zp as i32).max(min as i32).min(max as i32) as i8;
    }
    let rounded = (x + (1i64 << (shift - 1))) >> shift;
    // max-then-min rather than `clamp`, which panics if min > max (the parser refuses that).
    (rounded + zp as i64).max(min as i64).min(max as i64) as i8
}

/// The kernel family to run; [`Isa::detect`] picks the fastest the CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    Scalar,
    /// aarch64 NEON (Raspberry Pi 4): `smull`/`smlal` to i16, `sadalp` to i32.
    Neon,
    /// aarch64 NEON with the dot-product extension (Raspberry Pi 5): `sdot` by element.
    NeonDot,
    /// aarch64 NEON with the int8 matrix-multiply extension (Armv8.6 cores): `smmla`.
    NeonI8mm,
    /// x86-64 AVX2: sign-extend to i16, `vpmaddwd`.
    Avx2,
    /// x86-64 AVX-VNNI (Alder Lake and later): `vpdpbusd` on 256-bit vectors.
    AvxVnni,
    /// x86-64 AVX-512 VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later): `vpdpbusd` on 512-bit
    /// vectors, one packed group per instruction.
    Avx512Vnni,
    /// x86-64 AMX-INT8 (Sapphire Rapids and later): `tdpbssd` on 16 x 64-byte tiles, a packed
    /// block's 16 groups per B tile (needs the OS to grant the tile state; std only).
    Amx,
    /// Cortex-M4/M7/M33 DSP extension: `sxtb16` + `smlad` (cargo feature `cortex-m-dsp`, since the
    /// extension is invisible to `cfg`).
    CortexMDsp,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dotprod",
            Isa::NeonI8mm => "neon-i8mm",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Amx => "amx-int8",
            Isa::CortexMDsp => "cortex-m-dsp",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        ALL_ISAS.iter().copied().find(|i| i.name() == name)
    }

    /// Whether this CPU can run the kernel (always false for other architectures).
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
            Isa::Avx2 => std::is_x86_feature_detected!("avx2"),
            // The VNNI kernels fall back to the AVX2 one for shapes they do not stage.
            #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
            Isa::AvxVnni => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
            Isa::Avx512Vnni => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            // Its requantization and fallbacks are the AVX-512 VNNI kernel's.
            #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
            Isa::Amx => Isa::Avx512Vnni.is_available() && amx::available(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => cfg!(target_feature = "neon"),
            #[cfg(all(target_arch = "aarch64", any(feature = "std", test)))]
            Isa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[cfg(all(target_arch = "aarch64", any(feature = "std", test)))]
            Isa::NeonI8mm => std::arch::is_aarch64_feature_detected!("i8mm"),
            #[cfg(all(target_arch = "arm", feature = "cortex-m-dsp"))]
            Isa::CortexMDsp => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest available kernel.
    pub fn detect() -> Isa {
        ALL_ISAS
            .iter()
            .rev()
            .copied()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// Every kernel this CPU can run, slowest first.
    pub fn available() -> impl Iterator<Item = Isa> {
        ALL_ISAS.iter().copied().filter(|i| i.is_available())
    }
}

/// All kernel families, in order of preference (last is best).
pub const ALL_ISAS: [Isa; 9] = [
    Isa::Scalar,
    Isa::CortexMDsp,
    Isa::Neon,
    Isa::NeonDot,
    Isa::NeonI8mm,
    Isa::Avx2,
    Isa::AvxVnni,
    Isa::Avx512Vnni,
    Isa::Amx,
];

/// The tiles given to a GEMM are smaller than its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("GEMM tiles too small for {rows} rows of depth {kp} and {n} columns")]
pub struct TileError {
    pub rows: usize,
    pub kp: usize,
    pub n: usize,
}

/// `out[r][n] = requant(sum_k a[r][k] * w[k][n])` for `rows` rows of `a` (row stride `w.kp()`),
/// `out` row stride `w.n()`. An unavailable `isa` falls back to the scalar kernel. Tiles too
/// small for `rows` rows are an error, checked before anything runs.
pub fn gemm_requant(
    isa: Isa,
    a: &[i8],
    rows: usize,
    w: PackedWeights,
    rq: &Requant,
    out: &mut [i8],
) -> Result<(), TileError> {
    let fits = |len: usize, stride: usize| rows.checked_mul(stride).is_some_and(|l| l <= len);
    if !fits(a.len(), w.kp()) || !fits(out.len(), w.n()) {
        return Err(TileError {
            rows,
            kp: w.kp(),
            n: w.n(),
        });
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => unsafe { x86::gemm_avx2(a, rows, w, rq, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni if isa.is_available() => unsafe { x86::gemm_avx_vnni(a, rows, w, rq, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::Amx if isa.is_available() => unsafe {
            x86::gemm_avx512_vnni(isa == Isa::Amx, a, rows, w, rq, out)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() => unsafe { aarch64::gemm_neon(a, rows, w, rq, out) },
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot if isa.is_available() => unsafe {
            aarch64::gemm_neon_dot(a, rows, w, rq, out)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::NeonI8mm if isa.is_available() => unsafe {
            aarch64::gemm_neon_i8mm(a, rows, w, rq, out)
        },
        #[cfg(all(target_arch = "arm", feature = "cortex-m-dsp"))]
        Isa::CortexMDsp => cortex_m::gemm_dsp(a, rows, w, rq, out),
        _ => scalar::gemm(a, rows, w, rq, out),
    }
    Ok(())
}

/// `out[r][n] = sum_k (a[r][k] - zp) * w[k][n]` exactly (wrapping) in i32, `out` row stride
/// `w.n()`, for `rows` rows of `a` with row stride `stride`, `w.k() <= stride <= w.kp()`: the
/// partial sums of a transposed convolution done as GEMM plus col2im, and a GRU's products. AVX2
/// (and AVX-VNNI), AVX-512 VNNI and AMX have a kernel of their own; other families run
/// [`scalar::gemm_i32_panels`].
/// Buffers too small for `rows` rows are an error, checked before anything runs (no panic path:
/// a GRU runs this on the firmware).
pub fn gemm_i32(
    isa: Isa,
    a: &[i8],
    stride: usize,
    rows: usize,
    zp: i8,
    w: PackedWeights,
    out: &mut [i32],
) -> Result<(), TileError> {
    let fits = |len: usize, stride: usize| rows.checked_mul(stride).is_some_and(|l| l <= len);
    if !(w.k() <= stride && stride <= w.kp() && fits(a.len(), stride) && fits(out.len(), w.n())) {
        return Err(TileError {
            rows,
            kp: stride,
            n: w.n(),
        });
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::Amx if isa.is_available() => unsafe {
            x86::gemm_i32_avx512_vnni(isa == Isa::Amx, a, stride, rows, zp, w, out)
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni if isa.is_available() => unsafe {
            x86::gemm_i32_avx2(a, stride, rows, zp, w, out)
        },
        _ => scalar::gemm_i32_panels(a, stride, rows, zp, w, out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn padding_check_sees_every_padding_byte_and_no_weight() {
        for (k, n) in [
            (1, 1),
            (3, 5),
            (4, NR),
            (5, NR + 1),
            (KR * 2 + 1, 2 * NR - 1),
        ] {
            let mut data = vec![0i8; packed_len(k, n)];
            pack(k, n, |kk, nn| (kk * 7 + nn) as i8 % 100 + 1, &mut data);
            assert!(PackedWeights::new(&data, k, n).unwrap().padding_is_zero());
            let kp = padded_k(k);
            let weights: Vec<usize> = (0..k)
                .flat_map(|kk| (0..n).map(move |nn| packed_index(kp, kk, nn)))
                .collect();
            for i in 0..data.len() {
                let mut bad = data.clone();
                bad[i] = if weights.contains(&i) { 9 } else { 1 };
                let ok = PackedWeights::new(&bad, k, n).unwrap().padding_is_zero();
                assert_eq!(ok, weights.contains(&i), "k {k} n {n} byte {i}");
            }
        }
    }

    /// A random GEMM problem: activations, weights and requantization parameters.
    #[derive(Debug)]
    struct Problem {
        rows: usize,
        k: usize,
        n: usize,
        a: Vec<i8>,
        w: Vec<i8>,
        bias: Vec<u8>,
        mult: Vec<u8>,
        shift: Vec<u8>,
        zp: i8,
        min: i8,
    }

    fn problem() -> impl Strategy<Value = Problem> {
        problem_in(1..40, 1..300, 1..70)
    }

    fn problem_in(
        rows: core::ops::Range<usize>,
        k: core::ops::Range<usize>,
        n: core::ops::Range<usize>,
    ) -> impl Strategy<Value = Problem> {
        (rows, k, n).prop_flat_map(|(rows, k, n)| {
            let kp = padded_k(k);
            // Accumulators have a standard deviation of about 5300 * sqrt(k): scale them by about
            // 2^(31 - fit) into the int8 range, so a wrong accumulator changes the output instead
            // of vanishing in the clamp or under a huge bias (requantize has its own test).
            let fit = 31 + (5300.0 * (k as f64).sqrt() / 64.0).log2().ceil() as u8;
            (
                proptest::collection::vec(any::<i8>(), rows * kp),
                proptest::collection::vec(-127i8..=127, k * n),
                proptest::collection::vec(-(1i32 << 12)..=1 << 12, n),
                proptest::collection::vec(1i32 << 30..=i32::MAX, n),
                proptest::collection::vec(fit - 2..=fit + 1, n),
                any::<i8>(),
                any::<i8>(),
            )
                .prop_map(move |(a, w, bias, mult, shift, zp, min)| Problem {
                    rows,
                    k,
                    n,
                    a,
                    w,
                    bias: bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
                    mult: mult.iter().flat_map(|m| m.to_le_bytes()).collect(),
                    shift,
                    zp,
                    min,
                })
        })
    }

    fn run(isa: Isa, p: &Problem) -> Vec<i8> {
        let mut packed = vec![0i8; packed_len(p.k, p.n)];
        pack(p.k, p.n, |k, n| p.w[k * p.n + n], &mut packed);
        let w = PackedWeights::new(&packed, p.k, p.n).unwrap();
        let rq = Requant {
            bias: I32s::new(&p.bias).unwrap(),
            mult: I32s::new(&p.mult).unwrap(),
            shift: &p.shift,
            zp_out: p.zp,
            min: p.min.min(p.zp),
            max: 127,
        };
        let mut out = vec![0i8; p.rows * p.n];
        gemm_requant(isa, &p.a, p.rows, w, &rq, &mut out).unwrap();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Every kernel this CPU has is bit-identical to the scalar reference.
        #[test]
        fn simd_kernels_match_scalar(p in problem()) {
            let reference = run(Isa::Scalar, &p);
            for isa in Isa::available() {
                prop_assert_eq!(&run(isa, &p), &reference, "{}", isa.name());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        /// The same for image layers' few columns (the narrow kernels), over row counts that
        /// leave partial groups of 16 rows and depths up to past what they stage.
        #[test]
        fn narrow_kernels_match_scalar(p in problem_in(1..90, 1..1100, 1..5)) {
            let reference = run(Isa::Scalar, &p);
            for isa in Isa::available() {
                prop_assert_eq!(&run(isa, &p), &reference, "{}", isa.name());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        /// `gemm_i32` of every kernel family is the exact sum.
        #[test]
        fn gemm_i32_is_the_exact_sum(p in problem(), cut in 0usize..4) {
            let stride = padded_k(p.k).saturating_sub(cut).max(p.k);
            let mut packed = vec![0i8; packed_len(p.k, p.n)];
            pack(p.k, p.n, |k, n| p.w[k * p.n + n], &mut packed);
            let w = PackedWeights::new(&packed, p.k, p.n).unwrap();
            let want: Vec<i32> = (0..p.rows * p.n)
                .map(|i| {
                    let (r, j) = (i / p.n, i % p.n);
                    (0..p.k)
                        .map(|k| (p.a[r * stride + k] as i32 - p.zp as i32) * p.w[k * p.n + j] as i32)
                        .sum()
                })
                .collect();
            for isa in Isa::available() {
                let mut got = vec![0i32; p.rows * p.n];
                gemm_i32(isa, &p.a, stride, p.rows, p.zp, w, &mut got).unwrap();
                prop_assert_eq!(&got, &want, "{}", isa.name());
            }
        }
    }

    #[test]
    fn scalar_kernel_computes_the_definition() {
        // 2 rows, k = 5 (padded to 8), n = 3, against a hand-written sum.
        let (k, n) = (5, 3);
        let w: Vec<i8> = (0..k * n).map(|i| (i as i8 * 7) % 11 - 5).collect();
        let mut a = vec![0i8; 2 * padded_k(k)];
        for (i, v) in a.iter_mut().enumerate() {
            *v = (i as i8).wrapping_mul(37);
        }
        let mut packed = vec![0i8; packed_len(k, n)];
        pack(k, n, |kk, nn| w[kk * n + nn], &mut packed);
        let ones: Vec<u8> = (0..n).flat_map(|_| (1i32 << 30).to_le_bytes()).collect();
        let zeros: Vec<u8> = vec![0; 4 * n];
        let rq = Requant {
            bias: I32s::new(&zeros).unwrap(),
            mult: I32s::new(&ones).unwrap(),
            shift: &[30; 3],
            zp_out: 0,
            min: -128,
            max: 127,
        };
        let mut out = vec![0i8; 2 * n];
        scalar::gemm(
            &a,
            2,
            PackedWeights::new(&packed, k, n).unwrap(),
            &rq,
            &mut out,
        );
        for r in 0..2 {
            for c in 0..n {
                let acc: i32 = (0..k)
                    .map(|kk| a[r * padded_k(k) + kk] as i32 * w[kk * n + c] as i32)
                    .sum();
                assert_eq!(
                    out[r * n + c] as i32,
                    acc.clamp(-128, 127),
                    "row {r} col {c}"
                );
            }
        }
    }

    proptest! {
        /// The high-word shortcut for shifts above 32 equals the plain i64 formula.
        #[test]
        fn requantize_shortcut_matches_the_i64_formula(
            acc in any::<i32>(),
            bias in -MAX_BIAS..=MAX_BIAS,
            mult in 1i32..=i32::MAX,
            shift in 1u8..=MAX_SHIFT,
            zp in any::<i8>(),
        ) {
            let x = acc.wrapping_add(bias) as i64 * mult as i64;
            let plain = (((x + (1i64 << (shift - 1))) >> shift) + zp as i64).clamp(-128, 127) as i8;
            prop_assert_eq!(requantize(acc, bias, mult, shift, zp, -128, 127), plain);
            // Near the rounding boundary too: values whose low bits are exactly a half.
            let acc = ((1i64 << (shift.min(40) - 1)) / mult as i64) as i32;
            let x = acc.wrapping_add(bias) as i64 * mult as i64;
            let plain = (((x + (1i64 << (shift - 1))) >> shift) + zp as i64).clamp(-128, 127) as i8;
            prop_assert_eq!(requantize(acc, bias, mult, shift, zp, -128, 127), plain);
        }
    }

    #[test]
    fn requantize_rounds_half_up_and_clamps() {
        let half = 1 << 30; // multiplier 0.5 with shift 31
        assert_eq!(requantize(3, 0, half, 31, 0, -128, 127), 2); // 1.5 -> 2
        assert_eq!(requantize(-3, 0, half, 31, 0, -128, 127), -1); // -1.5 -> -1
        assert_eq!(requantize(1000, 0, half, 31, 10, -128, 127), 127);
        assert_eq!(requantize(-1000, 0, half, 31, 0, -20, 127), -20);
        assert_eq!(
            requantize(i32::MAX - MAX_BIAS, MAX_BIAS, i32::MAX, 1, 0, -128, 127),
            127
        );
    }
}
