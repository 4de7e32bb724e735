//! End to end through the runtime: ONNX files from our trainer and in PyTorch's shapes are
//! quantized, run on every int8 kernel and compared with tract; corrupt files give errors.

use pocketgan_runtime::engine::{Engine, Int8Engine, TractEngine};
use pocketgan_runtime::format::{FormatError, Model};
use pocketgan_runtime::graph::{Graph, ImportError};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::{latents, psnr_db, quantize, QuantizeOptions};
use std::path::{Path, PathBuf};

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/generator_tiny.onnx"))
        .unwrap()
}

fn options() -> QuantizeOptions {
    QuantizeOptions {
        calib: 64,
        eval: 16,
        ..Default::default()
    }
}

/// Int8 vs tract PSNR at several batch sizes, and every kernel family byte-identical.
fn check_quantized(onnx: &[u8], min_psnr: f64) -> Vec<u8> {
    let (pgq, report) = quantize(onnx, &options()).unwrap();
    assert!(
        report.psnr_db >= min_psnr,
        "quantizer's own PSNR {:.1} dB",
        report.psnr_db
    );
    let model = Model::parse(&pgq).unwrap();
    let mut g = Graph::from_onnx_bytes(onnx).unwrap();
    g.simplify().unwrap();
    let mut tract = TractEngine::new(onnx, g.latent, g.output_shape());
    for n in [1, 5] {
        let z = latents(99, n, g.latent);
        let float = tract.generate(&z, n).unwrap();
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let mut e = Int8Engine::new(model, isa);
            outputs.push((isa, e.generate_quantized(&z, n).unwrap().to_vec()));
            let images = e.generate(&z, n).unwrap();
            let psnr = psnr_db(&float, &images);
            assert!(
                psnr >= min_psnr,
                "batch {n} {}: PSNR {psnr:.1} dB",
                isa.name()
            );
        }
        for (isa, out) in &outputs[1..] {
            assert_eq!(
                out,
                &outputs[0].1,
                "{} differs from {}",
                isa.name(),
                outputs[0].0.name()
            );
        }
    }
    pgq
}

#[test]
fn trainer_generator_quantizes_within_30_db() {
    check_quantized(&fixture(), 30.0);
}

fn python_generators() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pocketgan-torch-style-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torch_style_generators.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg(&dir)
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "torch_style_generators.py failed (needs python3 with onnx and numpy)"
    );
    dir
}

/// PyTorch-shaped graphs: a 4-D latent with ConvTranspose first, and Gemm(transB) + Constant
/// reshape + Resize + Conv, both with BatchNormalization nodes and a dynamic batch.
#[test]
fn pytorch_style_generators_quantize_and_run() {
    let dir = python_generators();
    for name in ["dcgan_4d.onnx", "gemm_first.onnx"] {
        let onnx = std::fs::read(dir.join(name)).unwrap();
        let g = Graph::from_onnx_bytes(&onnx).unwrap();
        assert!(
            g.layers.iter().any(|l| l.op.name() == "BatchNorm"),
            "{name} has BatchNorm to fold"
        );
        check_quantized(&onnx, 30.0);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unsupported_operators_are_listed() {
    // Swap the Tanh node's op type for two operators the importer does not know.
    use tract_onnx::pb;
    use tract_onnx::prelude::Framework;
    let mut proto: pb::ModelProto = tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(fixture()))
        .unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let n = graph.node.len();
    graph.node[n - 1].op_type = "Softplus".into();
    graph.node[0].op_type = "Einsum".into();
    match Graph::from_proto(&proto) {
        Err(ImportError::Unsupported(ops)) => assert_eq!(ops, ["Einsum", "Softplus"]),
        other => panic!("expected the unsupported list, got {other:?}"),
    }
}

/// Every truncation and every single-bit flip is refused (the checksum or a bound catches it).
/// Flips with the checksum recomputed must still never panic, and a model that parses runs.
#[test]
fn corrupt_pgq_files_give_errors_not_panics() {
    let (pgq, _) = quantize(&fixture(), &options()).unwrap();
    for cut in (0..pgq.len()).step_by(7).chain([pgq.len() - 1]) {
        assert!(
            Model::parse(&pgq[..cut]).is_err(),
            "truncated to {cut} bytes"
        );
    }
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut parsed_after_fix = 0;
    for i in 0..3000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // The header and op headers are dense in the first bytes: test them all, then sample.
        let at = if i < 512 {
            i
        } else {
            (rng as usize) % pgq.len()
        };
        let mut bad = pgq.clone();
        bad[at] ^= 1 << (rng % 8);
        assert!(Model::parse(&bad).is_err(), "bit flip at {at} not detected");
        // Recompute the checksum so the validation behind it is exercised.
        if at >= 16 {
            let crc = crc32fast::hash(&bad[16..]);
            bad[12..16].copy_from_slice(&crc.to_le_bytes());
            if let Ok(m) = Model::parse(&bad) {
                parsed_after_fix += 1;
                let z = latents(1, 2, m.latent);
                Int8Engine::new(m, Isa::detect()).generate(&z, 2).unwrap();
            }
        }
    }
    // Most weight-byte flips are legal models; bounds checks refuse the rest.
    assert!(parsed_after_fix > 0);
    assert!(matches!(
        Model::parse(b"PGQ\x1a"),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(
        Model::parse(b"\x89PNG\r\n\x1a\n"),
        Err(FormatError::BadMagic)
    ));
    let mut longer = pgq.clone();
    longer.push(0);
    assert!(matches!(
        Model::parse(&longer),
        Err(FormatError::LengthMismatch { .. })
    ));
}

#[test]
fn corrupt_onnx_files_give_errors_not_panics() {
    let onnx = fixture();
    for cut in (0..onnx.len()).step_by(97) {
        assert!(
            quantize(&onnx[..cut], &options()).is_err(),
            "truncated to {cut} bytes"
        );
    }
    let mut rng = 12345u64;
    for _ in 0..60 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut bad = onnx.clone();
        let at = (rng >> 33) as usize % bad.len();
        bad[at] ^= 0x5a;
        // A flip inside a weight is a valid (different) model; anything else must be an error.
        let _ = quantize(&bad, &options());
    }
}

#[test]
fn integer_weights_are_an_error_not_a_panic() {
    use tract_onnx::pb;
    use tract_onnx::prelude::Framework;
    let mut proto: pb::ModelProto = tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(fixture()))
        .unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let gemm_weight = graph
        .node
        .iter()
        .find(|n| n.op_type == "Gemm")
        .unwrap()
        .input[1]
        .clone();
    let init = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == gemm_weight)
        .unwrap();
    let count: i64 = init.dims.iter().product();
    init.data_type = 7; // int64
    init.raw_data = vec![0; 8 * count as usize];
    init.float_data.clear();
    assert!(matches!(
        Graph::from_proto(&proto),
        Err(ImportError::Node { .. })
    ));
}
