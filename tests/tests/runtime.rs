//! End to end through the runtime: ONNX files from our trainer and in PyTorch's shapes are
//! quantized, run on every int8 kernel and compared with tract; corrupt files give errors.

use pocketgan_runtime::engine::latent_generator;
use pocketgan_runtime::engine::{Engine, EngineError, Int8Engine, TractEngine};
use pocketgan_runtime::format::{FormatError, Model};
use pocketgan_runtime::import::{FloatGraph, FloatOp, ImportError};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::{latents, psnr_db, quantize, QuantizeOptions};
use pocketgan_runtime::RunError;
use pocketgan_tests::repo_root;
use prost::Message;
use std::path::PathBuf;

fn fixture() -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/generator_tiny.onnx")).unwrap()
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
    let g = latent_generator(onnx).unwrap();
    let mut tract = TractEngine::new(onnx, g.latent, g.image);
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

/// Writes the script's generators into a directory of this test's own (tests run in parallel).
fn python_generators(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pocketgan-torch-style-{test}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let script = repo_root().join("tests/scripts/torch_style_generators.py");
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
    let dir = python_generators("pytorch");
    for name in ["dcgan_4d.onnx", "gemm_first.onnx"] {
        let onnx = std::fs::read(dir.join(name)).unwrap();
        let g = FloatGraph::from_onnx_bytes(&onnx).unwrap();
        assert!(
            g.nodes.iter().any(|n| n.op.kind() == "BatchNorm"),
            "{name} has BatchNorm to fold"
        );
        check_quantized(&onnx, 30.0);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unsupported_operators_are_listed() {
    // Swap two activations for operators tract knows and the importer does not map: both are
    // named, as the user wrote them.
    use tract_onnx::pb;
    use tract_onnx::prelude::Framework;
    let mut proto: pb::ModelProto = tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(fixture()))
        .unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let n = graph.node.len();
    graph.node[n - 1].op_type = "Softplus".into();
    graph.node[3].op_type = "Softsign".into();
    match FloatGraph::from_onnx_bytes(&proto.encode_to_vec()) {
        Err(ImportError::Unsupported(ops)) => {
            let named: Vec<&str> = ops.iter().map(|u| u.op.as_str()).collect();
            assert!(
                named.contains(&"Softplus") && named.contains(&"Softsign"),
                "{named:?}"
            );
        }
        other => panic!("expected the unsupported list, got {other:?}"),
    }
}

/// Every truncation and every single-bit flip is refused (the checksum or a bound catches it).
/// Flips with the checksum recomputed must still never panic, and a model that parses runs.
#[test]
fn corrupt_pgq_files_give_errors_not_panics() {
    let (pgq, _) = quantize(&fixture(), &options()).unwrap();
    check_corruption(&pgq);
}

fn check_corruption(pgq: &[u8]) {
    let pgq = pgq.to_vec();
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
                let classes: Vec<u32> = (0..2).map(|i| i % m.classes().max(1) as u32).collect();
                let classes = if m.is_conditional() {
                    &classes[..]
                } else {
                    &[]
                };
                Int8Engine::new(m, Isa::detect())
                    .generate_with(&z, classes, 2)
                    .unwrap();
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
    let bytes = proto.encode_to_vec();
    assert!(FloatGraph::from_onnx_bytes(&bytes).is_err());
    assert!(quantize(&bytes, &options()).is_err());
}

/// A conditional generator exported as the trainer does (Gather + Concat of a class embedding):
/// imported as one embedding, quantized within 30 dB of tract for every class, byte-identical on
/// every kernel family, and each class drawing different images.
#[test]
fn conditional_generator_quantizes_for_every_class() {
    let dir = python_generators("cgan");
    let onnx = std::fs::read(dir.join("cgan.onnx")).unwrap();
    std::fs::remove_dir_all(dir).ok();
    let g = latent_generator(&onnx).unwrap();
    assert_eq!((g.latent, g.classes), (16, 10));
    assert_eq!(
        g.class.as_ref().map(|(name, _)| name.as_str()),
        Some("class")
    );
    assert!(FloatGraph::from_onnx_bytes(&onnx)
        .unwrap()
        .nodes
        .iter()
        .any(|n| matches!(
            n.op,
            FloatOp::Embed {
                classes: 10,
                dim: 8,
                ..
            }
        )));
    let (pgq, report) = quantize(&onnx, &options()).unwrap();
    assert!(report.psnr_db >= 30.0, "PSNR {:.1} dB", report.psnr_db);
    assert_eq!(report.layers[0].op, "Embed");
    let model = Model::parse(&pgq).unwrap();
    assert_eq!((model.classes(), model.latent), (10, 16));

    let mut tract = TractEngine::new(&onnx, g.latent, g.image);
    assert_eq!(tract.classes(), 10);
    let n = 4;
    let z = latents(99, n, g.latent);
    let mut per_class = Vec::new();
    for class in 0..10u32 {
        let labels = vec![class; n];
        let float = tract.generate_with(&z, &labels, n).unwrap();
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let mut e = Int8Engine::new(model, isa);
            assert_eq!(e.classes(), 10);
            let images = e.generate_with(&z, &labels, n).unwrap();
            let psnr = psnr_db(&float, &images);
            assert!(
                psnr >= 30.0,
                "class {class} {}: PSNR {psnr:.1} dB",
                isa.name()
            );
            outputs.push(e.generate_quantized_with(&z, &labels, n).unwrap().to_vec());
        }
        assert!(
            outputs.iter().all(|o| *o == outputs[0]),
            "class {class}: kernel families differ"
        );
        per_class.push(float);
    }
    // The same latents under different classes are different images (mean |difference| well
    // above the int8 step of 2/255).
    for a in 0..10 {
        for b in a + 1..10 {
            let diff: f32 = per_class[a]
                .iter()
                .zip(&per_class[b])
                .map(|(x, y)| (x - y).abs())
                .sum::<f32>()
                / per_class[a].len() as f32;
            assert!(diff > 0.02, "classes {a} and {b} differ by {diff}");
        }
    }
    // A mixed batch is each sample's own class.
    let mixed: Vec<u32> = vec![3, 7, 0, 9];
    let mut e = Int8Engine::new(model, Isa::detect());
    let mixed_images = e.generate_with(&z, &mixed, n).unwrap();
    let per = mixed_images.len() / n;
    for (i, &c) in mixed.iter().enumerate() {
        let alone = e.generate_with(&z[i * 16..(i + 1) * 16], &[c], 1).unwrap();
        assert_eq!(&mixed_images[i * per..(i + 1) * per], &alone[..]);
    }

    // Bad classes are errors on both engines.
    for engine in [&mut e as &mut dyn Engine, &mut tract] {
        assert!(matches!(
            engine.generate_with(&z, &[0, 1, 10, 2], n),
            Err(EngineError::Run(RunError::ClassRange {
                sample: 2,
                class: 10,
                classes: 10
            }))
        ));
        assert!(matches!(
            engine.generate(&z, n),
            Err(EngineError::Run(RunError::MissingClasses { classes: 10 }))
        ));
        assert!(matches!(
            engine.generate_with(&z, &[1], n),
            Err(EngineError::Run(RunError::ClassCount { .. }))
        ));
    }
    let mut plain = TractEngine::new(&fixture(), 16, (1, 28, 28));
    assert!(matches!(
        plain.generate_with(&latents(1, 1, 16), &[0], 1),
        Err(EngineError::Run(RunError::UnexpectedClasses))
    ));

    check_corruption(&pgq);
}

/// Gather and Concat on the batch axis or another axis are refused with the node that does it;
/// an embedding concatenated before the latent (not after it, as the trainer writes) is a
/// graph like any other: its embedding an int8 `Embed` of its own, then a `Concat`.
#[test]
fn gather_and_concat_on_other_axes_are_refused_and_any_order_quantizes() {
    use tract_onnx::pb;
    use tract_onnx::prelude::Framework;
    let read = |bytes: &[u8]| -> pb::ModelProto {
        tract_onnx::onnx()
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .unwrap()
    };
    let dir = python_generators("gather");
    let onnx = std::fs::read(dir.join("cgan.onnx")).unwrap();
    std::fs::remove_dir_all(dir).ok();
    let node = |proto: &mut pb::ModelProto, op: &str| -> usize {
        let nodes = &proto.graph.as_ref().unwrap().node;
        nodes.iter().position(|n| n.op_type == op).unwrap()
    };
    let refused = |proto: &pb::ModelProto, what: &str| {
        let bytes = proto.encode_to_vec();
        match FloatGraph::from_onnx_bytes(&bytes) {
            Err(ImportError::Node { .. } | ImportError::Tract(_)) => {}
            other => panic!("{what}: expected a node error, got {other:?}"),
        }
        assert!(quantize(&bytes, &options()).is_err(), "{what}");
    };
    // Concatenated along the batch axis.
    let mut p = read(&onnx);
    let i = node(&mut p, "Concat");
    p.graph.as_mut().unwrap().node[i].attribute[0].i = 0;
    refused(&p, "axis 0");
    // Gather on another axis.
    let mut p = read(&onnx);
    let i = node(&mut p, "Gather");
    p.graph.as_mut().unwrap().node[i].attribute[0].i = 1;
    refused(&p, "axis 1");
    // Embedding first, latent second.
    let mut p = read(&onnx);
    let i = node(&mut p, "Concat");
    p.graph.as_mut().unwrap().node[i].input.swap(0, 1);
    let (pgq, report) = quantize(&p.encode_to_vec(), &options()).unwrap();
    assert!(report.psnr_db >= 30.0, "PSNR {:.1} dB", report.psnr_db);
    assert_eq!(Model::parse(&pgq).unwrap().classes(), 10);
}
