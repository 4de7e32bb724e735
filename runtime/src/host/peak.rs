//! The int8 arithmetic peak of this CPU, measured: its clock and the throughput of the
//! instructions each kernel family's inner loop is made of, so that a benchmark can say what
//! share of the peak a layer reaches (`pocketgan bench`, `examples/gemm_bench.rs`).

use crate::kernels::Isa;
#[cfg(target_arch = "x86_64")]
use std::arch::asm;
use std::time::Instant;

/// Median seconds of `f` over `reps` runs after two warm-ups.
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Multiply-adds per second `isa`'s GEMM inner loop can issue at most, measured (x86-64 only:
/// `vpmaddwd` + `vpaddd` pairs of 16 MACs for AVX2, `vpdpbusd` of 32 or 64 MACs for the VNNI
/// families, `tdpbssd` of 16 x 16 x 64 for AMX); `None` where there is no measurement.
pub fn int8_macs_per_sec(isa: Isa) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if isa.is_available() {
        return match isa {
            Isa::Avx2 => Some(madd_add_per_sec() * 16.0),
            // SAFETY: each runs only where the CPU has its instructions (checked above).
            Isa::AvxVnni => Some(unsafe { dpbusd_ymm_per_sec() } * 32.0),
            Isa::Avx512Vnni => Some(unsafe { dpbusd_zmm_per_sec() } * 64.0),
            Isa::Amx => Some(unsafe { tdpbssd_per_sec() } * 16384.0),
            _ => None,
        };
    }
    let _ = isa;
    None
}

/// Clock in GHz: a chain of dependent `imul`s (3 cycles each), 8 per iteration. (A chain
/// of `add reg, 1` runs faster than one per cycle on Golden Cove cores, which fold the
/// immediates at rename.)
#[cfg(target_arch = "x86_64")]
pub fn clock_ghz() -> f64 {
    let iters: u64 = 50_000_000;
    let secs = median_secs(5, || unsafe {
        let mut x: u64 = 1;
        let n = iters;
        asm!(
            "2:",
            "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}",
            "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x, n = inout(reg) n => _,
            options(nostack, nomem),
        );
        std::hint::black_box(x);
    });
    (iters * 8 * 3) as f64 / secs / 1e9
}

/// Instructions per second of an `asm!` loop (`"2:"` marks its start) that issues
/// `$per_iter` of them per iteration, 50 M iterations; every vector register is clobbered.
#[cfg(target_arch = "x86_64")]
macro_rules! per_sec {
    ($per_iter:expr, $($line:literal),+ $(,)?) => {{
        let iters: u64 = 50_000_000;
        let secs = median_secs(5, || unsafe {
            let n = iters;
            asm!(
                $($line,)+
                "dec rcx",
                "jnz 2b",
                "vzeroupper",
                inout("rcx") n => _,
                clobber_abi("C"),
                options(nostack, nomem),
            );
        });
        (iters * $per_iter) as f64 / secs
    }};
}

/// `vpmaddwd` per second with 12 independent destinations (no accumulation).
#[cfg(target_arch = "x86_64")]
pub fn madd_per_sec() -> f64 {
    per_sec!(
        12,
        "vpxor ymm14, ymm14, ymm14",
        "vpxor ymm15, ymm15, ymm15",
        "2:",
        "vpmaddwd ymm0, ymm14, ymm15",
        "vpmaddwd ymm1, ymm14, ymm15",
        "vpmaddwd ymm2, ymm14, ymm15",
        "vpmaddwd ymm3, ymm14, ymm15",
        "vpmaddwd ymm4, ymm14, ymm15",
        "vpmaddwd ymm5, ymm14, ymm15",
        "vpmaddwd ymm6, ymm14, ymm15",
        "vpmaddwd ymm7, ymm14, ymm15",
        "vpmaddwd ymm8, ymm14, ymm15",
        "vpmaddwd ymm9, ymm14, ymm15",
        "vpmaddwd ymm10, ymm14, ymm15",
        "vpmaddwd ymm11, ymm14, ymm15",
    )
}

/// `vpmaddwd` + `vpaddd` pairs per second into 12 accumulators: the AVX2 GEMM inner loop's
/// arithmetic without loads.
#[cfg(target_arch = "x86_64")]
pub fn madd_add_per_sec() -> f64 {
    per_sec!(
        12,
        "vpxor ymm12, ymm12, ymm12",
        "vpxor ymm13, ymm13, ymm13",
        "2:",
        "vpmaddwd ymm14, ymm12, ymm13",
        "vpaddd ymm0, ymm0, ymm14",
        "vpmaddwd ymm15, ymm12, ymm13",
        "vpaddd ymm1, ymm1, ymm15",
        "vpmaddwd ymm14, ymm12, ymm13",
        "vpaddd ymm2, ymm2, ymm14",
        "vpmaddwd ymm15, ymm12, ymm13",
        "vpaddd ymm3, ymm3, ymm15",
        "vpmaddwd ymm14, ymm12, ymm13",
        "vpaddd ymm4, ymm4, ymm14",
        "vpmaddwd ymm15, ymm12, ymm13",
        "vpaddd ymm5, ymm5, ymm15",
        "vpmaddwd ymm14, ymm12, ymm13",
        "vpaddd ymm6, ymm6, ymm14",
        "vpmaddwd ymm15, ymm12, ymm13",
        "vpaddd ymm7, ymm7, ymm15",
        "vpmaddwd ymm14, ymm12, ymm13",
        "vpaddd ymm8, ymm8, ymm14",
        "vpmaddwd ymm15, ymm12, ymm13",
        "vpaddd ymm9, ymm9, ymm15",
        "vpmaddwd ymm14, ymm12, ymm13",
        "vpaddd ymm10, ymm10, ymm14",
        "vpmaddwd ymm15, ymm12, ymm13",
        "vpaddd ymm11, ymm11, ymm15",
    )
}

/// AVX-512 `vpdpbusd zmm` per second into 16 accumulators (latency 5 cycles, so 16 chains
/// cover up to three per cycle).
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 VNNI (`Isa::Avx512Vnni.is_available()`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn dpbusd_zmm_per_sec() -> f64 {
    per_sec!(
        16,
        "vpxord zmm16, zmm16, zmm16",
        "vpxord zmm17, zmm17, zmm17",
        "2:",
        "vpdpbusd zmm0, zmm16, zmm17",
        "vpdpbusd zmm1, zmm16, zmm17",
        "vpdpbusd zmm2, zmm16, zmm17",
        "vpdpbusd zmm3, zmm16, zmm17",
        "vpdpbusd zmm4, zmm16, zmm17",
        "vpdpbusd zmm5, zmm16, zmm17",
        "vpdpbusd zmm6, zmm16, zmm17",
        "vpdpbusd zmm7, zmm16, zmm17",
        "vpdpbusd zmm8, zmm16, zmm17",
        "vpdpbusd zmm9, zmm16, zmm17",
        "vpdpbusd zmm10, zmm16, zmm17",
        "vpdpbusd zmm11, zmm16, zmm17",
        "vpdpbusd zmm12, zmm16, zmm17",
        "vpdpbusd zmm13, zmm16, zmm17",
        "vpdpbusd zmm14, zmm16, zmm17",
        "vpdpbusd zmm15, zmm16, zmm17",
    )
}

/// AVX-VNNI `{vex} vpdpbusd ymm` per second into 12 accumulators.
///
/// # Safety
/// The CPU must have AVX-VNNI (`Isa::AvxVnni.is_available()`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avxvnni")]
pub unsafe fn dpbusd_ymm_per_sec() -> f64 {
    per_sec!(
        12,
        "vpxor ymm12, ymm12, ymm12",
        "vpxor ymm13, ymm13, ymm13",
        "2:",
        "{{vex}} vpdpbusd ymm0, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm1, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm2, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm3, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm4, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm5, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm6, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm7, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm8, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm9, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm10, ymm12, ymm13",
        "{{vex}} vpdpbusd ymm11, ymm12, ymm13",
    )
}

/// AMX `tdpbssd` per second (16 x 16 x 64 = 16384 MACs each) into 4 accumulator tiles, from 4
/// operand tiles, as the AMX kernel's 2 x 2 grid issues them.
///
/// # Safety
/// The CPU must have AMX-INT8 and the OS must have granted the tile state
/// (`Isa::Amx.is_available()`).
#[cfg(target_arch = "x86_64")]
pub unsafe fn tdpbssd_per_sec() -> f64 {
    let iters: u64 = 2_000_000;
    let cfg = crate::kernels::amx::tile_config();
    let secs = median_secs(5, || unsafe {
        asm!(
            "ldtilecfg [{cfg}]",
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            "2:",
            "tdpbssd tmm0, tmm4, tmm6",
            "tdpbssd tmm1, tmm4, tmm7",
            "tdpbssd tmm2, tmm5, tmm6",
            "tdpbssd tmm3, tmm5, tmm7",
            "dec {n}",
            "jnz 2b",
            "tilerelease",
            cfg = in(reg) cfg,
            n = inout(reg) iters => _,
            options(nostack, readonly),
        );
    });
    (iters * 4) as f64 / secs
}
