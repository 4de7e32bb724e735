//! Recurrent generators from PyTorch's own exporter: TimeGAN's generator path (generator,
//! supervisor and recovery, eight `nn.GRU` layers with per-step Linear and Sigmoid, the scaling
//! undone at the end; `scripts/torch-fixtures.py`) imports to the float graph, which reproduces
//! PyTorch's output, then quantizes to int8 GRU ops that run byte-identically on every kernel
//! family and stay close to the float graph.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::engine::runner::{Int8Runner, Runner, Values};
use pocketgan_runtime::format::Model;
use pocketgan_runtime::import::{FloatGraph, FloatOp};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::npy;
use pocketgan_runtime::quantize::{psnr_db, quantize, QuantizeOptions};

const FILES: [&str; 5] = [
    "timegan_op13.onnx",
    "timegan_op13_dyn.onnx",
    "timegan_op17.onnx",
    "timegan_op17_dyn.onnx",
    "timegan_op18_dynamo_dyn.onnx",
];
const STEPS: usize = 24;
const FEATURES: usize = 5;

use common::torch_fixture as fixture;

fn npy_f32(file: &str) -> Vec<f32> {
    npy::parse(&fixture(file)).unwrap().data
}

/// TimeGAN's noise: uniform in [0, 1), seeded (the runtime's own draws).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut z = vec![0.0; n * STEPS * FEATURES];
    pocketgan_runtime::latent::fill_uniform(seed, &mut z);
    z
}

#[test]
fn pytorch_gru_exports_import_and_match_pytorch() {
    let (x, want) = (npy_f32("timegan.input.npy"), npy_f32("timegan.output.npy"));
    for file in FILES {
        let g =
            FloatGraph::from_onnx_bytes(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let grus = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, FloatOp::Gru { .. }))
            .count();
        assert_eq!(grus, 8, "{file}: GRU layers");
        assert_eq!(g.inputs[0].shape, [STEPS, FEATURES], "{file}");
        let values = g.run(&[(g.inputs[0].name.as_str(), &x)], 2).unwrap();
        let got = &values[&g.outputs[0]];
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{file}: float graph {worst} from PyTorch");
    }
}

#[test]
fn pytorch_gru_exports_quantize_and_agree_on_every_isa() {
    for file in FILES {
        let onnx = fixture(file);
        let options = QuantizeOptions {
            calib: 256,
            eval: 16,
            samples: noise(1, 256),
            ..Default::default()
        };
        let (pgq, report) = quantize(&onnx, &options).unwrap_or_else(|e| panic!("{file}: {e}"));
        let model = Model::parse(&pgq).unwrap();
        let n = 16;
        let z = noise(2, n);
        // The float graph, which matches PyTorch (above), as the reference: tract runs the
        // fixed-batch exports only at the traced batch.
        let g = FloatGraph::from_onnx_bytes(&onnx).unwrap();
        let float = g
            .run(&[(g.inputs[0].name.as_str(), &z)], n)
            .unwrap()
            .remove(&g.outputs[0])
            .unwrap();
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let mut runner = Int8Runner::new(model, isa);
            assert_eq!(runner.inputs()[0].shape, [STEPS, FEATURES], "{file}");
            let Values::F32(y) = runner.run(&[Values::F32(z.clone())], n).unwrap().remove(0) else {
                unreachable!()
            };
            outputs.push(y);
        }
        // A sample's series does not depend on the samples beside it (the GRU runs samples in
        // lockstep, eight at a time): three alone are the batch's first three.
        let three = z[..3 * STEPS * FEATURES].to_vec();
        let Values::F32(alone) = Int8Runner::new(model, Isa::Scalar)
            .run(&[Values::F32(three)], 3)
            .unwrap()
            .remove(0)
        else {
            unreachable!()
        };
        assert_eq!(
            alone[..],
            outputs[0][..alone.len()],
            "{file}: batch-dependent"
        );
        assert!(
            outputs.iter().all(|o| *o == outputs[0]),
            "{file}: kernel families differ"
        );
        // PyTorch's random weights give outputs that vary little: the error is measured against
        // their spread (standard deviation) and as a PSNR over their range.
        let y = &outputs[0];
        let mean = float.iter().sum::<f32>() / float.len() as f32;
        let sd =
            (float.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / float.len() as f32).sqrt();
        let rms = (y
            .iter()
            .zip(&float)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / y.len() as f32)
            .sqrt();
        let psnr = psnr_db(&float, y);
        eprintln!("{file}: int8 against float: rms error {rms:.5} (outputs' sd {sd:.4}), PSNR {psnr:.1} dB; quantizer's report {:.1} dB", report.psnr_db);
        assert!(
            rms < 0.1 * sd && psnr > 35.0,
            "{file}: rms {rms}, sd {sd}, {psnr:.1} dB"
        );
    }
}

/// The CLI end to end: `pocketgan quantize` a PyTorch GRU export on calibration noise, then
/// `pocketgan sample` it to `.npy` and `.csv`; the two files hold the same series.
#[test]
fn pocketgan_samples_series_from_a_quantized_pytorch_gru() {
    let dir = std::env::temp_dir().join(format!("pocketgan-gru-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calib = dir.join("noise.npy");
    std::fs::write(&calib, npy::encode(&[64, STEPS, FEATURES], &noise(3, 64))).unwrap();
    let onnx = common::repo_root().join("runtime/tests/fixtures/torch/timegan_op17_dyn.onnx");
    let pgq = dir.join("timegan.pgq");
    let cli = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pocketgan"))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    cli(&[
        "quantize".as_ref(),
        onnx.as_ref(),
        "--calib-npy".as_ref(),
        calib.as_ref(),
        "--out".as_ref(),
        pgq.as_ref(),
    ]);
    let (as_npy, as_csv) = (dir.join("s.npy"), dir.join("s.csv"));
    for out in [&as_npy, &as_csv] {
        let said = cli(&[
            "sample".as_ref(),
            pgq.as_ref(),
            "--n".as_ref(),
            "5".as_ref(),
            "--noise".as_ref(),
            "uniform".as_ref(),
            "--out".as_ref(),
            out.as_ref(),
        ]);
        assert!(
            said.contains("5 samples of [24, 5] from uniform noise"),
            "{said}"
        );
    }
    let shown = cli(&["inspect".as_ref(), pgq.as_ref()]);
    assert!(
        shown.contains("sequences: noise,image are [steps, features]"),
        "{shown}"
    );
    // `pocketgan bench` times it against tract, with the GRU layers in the per-op table.
    let table = cli(&[
        "bench".as_ref(),
        onnx.as_ref(),
        "--pgq".as_ref(),
        pgq.as_ref(),
        "--reps".as_ref(),
        "2".as_ref(),
    ]);
    assert!(
        table.contains("tract f32") && table.contains("int8 scalar"),
        "{table}"
    );
    let gru_rows = table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Gru"));
    assert_eq!(gru_rows.count(), 8, "{table}");
    let a = npy::parse(&std::fs::read(&as_npy).unwrap()).unwrap();
    assert_eq!(a.shape, [5, STEPS, FEATURES]);
    let csv = std::fs::read_to_string(&as_csv).unwrap();
    let rows: Vec<Vec<f32>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(2).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 5 * STEPS);
    assert_eq!(rows.concat(), a.data);
    // Different samples differ: the noise is drawn per sample.
    assert_ne!(
        a.data[..STEPS * FEATURES],
        a.data[STEPS * FEATURES..2 * STEPS * FEATURES]
    );
    std::fs::remove_dir_all(dir).ok();
}
