//! Micro benchmark of the int8 GEMM kernels (no criterion): the CPU's measured clock and the
//! `vpmaddwd`, `vpdpbusd` and `tdpbssd` peaks, `gemm_requant` of every kernel family on the
//! shapes of the reference generator, and (given a .pgq) the time of every op of a model at
//! batch 1 and 64.
//! The model's ops run with the detected kernel family, or each of `--isa NAME[,NAME...]` in turn.
//!     cargo run --release -p pocketgan-runtime --example gemm_bench \
//!         [-- model.pgq [--ops-only] [--isa avx512-vnni,amx-int8]]
use pocketgan_runtime::kernels::{
    gemm_requant, pack, packed_len, I32s, Isa, PackedWeights, Requant,
};
use pocketgan_runtime::peak::{self, median_secs};
use pocketgan_runtime::{run_conditional_observed, Model};
use std::time::Instant;

/// Deterministic pseudo-random bytes.
fn bytes(seed: u64, n: usize, lo: i32, hi: i32) -> Vec<i8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (lo + (s % (hi - lo + 1) as u64) as i32) as i8
        })
        .collect()
}

/// GMAC/s of `gemm_requant(isa)` on a `rows x k` by `k x n` problem.
fn gemm_gmacs(isa: Isa, rows: usize, k: usize, n: usize) -> f64 {
    let kp = pocketgan_runtime::kernels::padded_k(k);
    let a = bytes(1, rows * kp, -128, 127);
    let wv = bytes(2, k * n, -127, 127);
    let mut packed = vec![0i8; packed_len(k, n)];
    pack(k, n, |kk, nn| wv[kk * n + nn], &mut packed);
    let w = PackedWeights::new(&packed, k, n).unwrap();
    let bias: Vec<u8> = (0..n)
        .flat_map(|i| (i as i32 * 37 - 500).to_le_bytes())
        .collect();
    let mult: Vec<u8> = (0..n)
        .flat_map(|i| ((1i32 << 30) + i as i32 * 12345).to_le_bytes())
        .collect();
    let shift = vec![38u8; n];
    let rq = Requant {
        bias: I32s::new(&bias).unwrap(),
        mult: I32s::new(&mult).unwrap(),
        shift: &shift,
        zp_out: -3,
        min: -3,
        max: 127,
    };
    let mut out = vec![0i8; rows * n];
    // About 50 ms of work per sample.
    let calls = (2e8 / (rows * k * n) as f64).ceil() as usize;
    let secs = median_secs(7, || {
        for _ in 0..calls {
            gemm_requant(isa, std::hint::black_box(&a), rows, w, &rq, &mut out).unwrap();
        }
    });
    (rows * k * n * calls) as f64 / secs / 1e9
}

fn model_ops(path: &str, isas: &[Isa]) {
    for &isa in isas {
        model_ops_with(path, isa);
    }
}

fn model_ops_with(path: &str, isa: Isa) {
    let bytes = std::fs::read(path).expect("read model");
    let model = Model::parse(&bytes).expect("parse model");
    for batch in [1usize, 64] {
        let input = bytes_for(batch * model.latent);
        // One class per sample for a conditional model (digits), none otherwise.
        let classes: Vec<u32> = (0..batch * usize::from(model.classes() > 0))
            .map(|i| (i % model.classes()) as u32)
            .collect();
        let mut arena = vec![0u8; model.arena_len(batch)];
        let mut out = vec![0i8; batch * model.output.elements()];
        let ops: Vec<_> = model.ops().collect();
        let reps = if batch == 1 { 201 } else { 21 };
        let mut times = vec![Vec::new(); ops.len()];
        let mut totals = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            let mut last = start;
            run_conditional_observed(
                &model,
                isa,
                batch,
                &input,
                &classes,
                &mut arena,
                &mut out,
                |i, _, _, _| {
                    let now = Instant::now();
                    times[i].push((now - last).as_secs_f64());
                    last = now;
                },
            )
            .unwrap();
            totals.push(start.elapsed().as_secs_f64());
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "batch {batch}: total {:.1} us/sample ({})",
            med(&mut totals) * 1e6 / batch as f64,
            isa.name()
        );
        for (i, (op, t)) in ops.iter().zip(times.iter_mut()).enumerate() {
            let t = med(t);
            let gmacs = if op.macs() > 0 {
                format!("{:6.1} GMAC/s", (op.macs() * batch) as f64 / t / 1e9)
            } else {
                String::new()
            };
            println!(
                "  op {i:2} {:<16} {:9.1} us/sample {gmacs}",
                op.name(),
                t * 1e6 / batch as f64
            );
        }
    }
}

fn bytes_for(n: usize) -> Vec<i8> {
    bytes(3, n, -100, 100)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ops_only = args.iter().any(|a| a == "--ops-only");
    let isa_arg = args.iter().position(|a| a == "--isa");
    let isas: Vec<Isa> = match isa_arg.and_then(|i| args.get(i + 1)) {
        Some(names) => names
            .split(',')
            .map(|n| Isa::from_name(n).unwrap_or_else(|| panic!("unknown kernel family {n}")))
            .collect(),
        None => vec![Isa::detect()],
    };
    let model_path = args
        .iter()
        .enumerate()
        .find(|&(i, a)| !a.starts_with("--") && isa_arg.is_none_or(|j| i != j + 1))
        .map(|(_, a)| a.as_str());
    if let (true, Some(path)) = (ops_only, model_path) {
        return model_ops(path, &isas);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ghz = peak::clock_ghz();
        let madd = peak::madd_per_sec();
        let pair = peak::madd_add_per_sec();
        println!("clock {ghz:.2} GHz (dependent imuls)");
        let peak = |name: &str, per_sec: f64, macs: f64| {
            println!(
                "{name:<17} {:.3}/cycle = {:.1} GMAC/s ({macs} MACs each)",
                per_sec / ghz / 1e9,
                per_sec * macs / 1e9
            )
        };
        peak("vpmaddwd alone:", madd, 16.0);
        peak("vpmaddwd+vpaddd:", pair, 16.0);
        if Isa::AvxVnni.is_available() {
            peak("vpdpbusd ymm:", unsafe { peak::dpbusd_ymm_per_sec() }, 32.0);
        }
        if Isa::Avx512Vnni.is_available() {
            peak("vpdpbusd zmm:", unsafe { peak::dpbusd_zmm_per_sec() }, 64.0);
        }
        if Isa::Amx.is_available() {
            peak(
                "tdpbssd tiles:",
                unsafe { peak::tdpbssd_per_sec() },
                16384.0,
            );
        }
    }
    for (rows, k, n) in [
        // The digits model's largest layer (7x7x64 -> 14x14x32, 4x4 stride 2): per phase, tiles
        // of 60 rows (TILE_ROWS) of 2x2 taps x 64 channels.
        (60, 256, 32),
        (32, 512, 64),
        (49, 512, 64),
        (64, 512, 64),
        (196, 512, 64),
        (3136, 512, 64),
        (1, 100, 6272),
        (64, 100, 6272),
        (196, 256, 1),
        (32, 256, 1),
    ] {
        let s = if rows * k * n < 1 << 22 {
            gemm_gmacs(Isa::Scalar, rows, k, n)
        } else {
            f64::NAN
        };
        print!("gemm rows {rows:5} k {k:4} n {n:5}: GMAC/s scalar {s:5.1}");
        for isa in Isa::available().filter(|&i| i != Isa::Scalar) {
            print!(", {} {:6.1}", isa.name(), gemm_gmacs(isa, rows, k, n));
        }
        println!();
    }
    if let Some(path) = model_path {
        model_ops(path, &isas);
    }
}
