//! The importer on files written by PyTorch's own exporter (`scripts/torch-fixtures.py`): every
//! fixture imports, and the float executor matches both PyTorch's saved output and tract's run
//! of the original ONNX file, before and after simplification.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::import::{FloatGraph, FloatOp, ImportError, InputKind, PadMode};
use pocketgan_runtime::npy;
use std::path::PathBuf;
use tract_onnx::prelude::*;

fn fixtures() -> PathBuf {
    common::repo_root().join("runtime/tests/fixtures/torch")
}

/// Every ONNX fixture of a noise or image generator with the model it exports (the file name
/// before `_op`). Token cells (`seqgan_cell_*`) take a token and a state, not one input with
/// a saved output: `torch_tokens.rs` steps them through PyTorch's sequences.
fn onnx_fixtures() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            let model = stem.split("_op").next().unwrap().to_string();
            (model, p)
        })
        .filter(|(model, _)| model != "seqgan_cell")
        .collect();
    files.sort();
    assert!(files.len() >= 40, "fixtures missing: {}", files.len());
    files
}

fn load_npy(name: &str) -> npy::Array {
    npy::parse(&std::fs::read(fixtures().join(name)).unwrap()).unwrap()
}

/// tract's own float run of the original file, batch taken from the input's shape.
fn tract_run(onnx: &[u8], input: &npy::Array) -> Vec<f32> {
    // The file's own input fact: the dynamo exporter names the batch in every intermediate
    // shape, so a fixed batch would not unify with them.
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = Tensor::from_shape(&input.shape, &input.data).unwrap();
    let out = model.run(tvec![x.into_tvalue()]).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// Max |a - b| relative to the reference's range (at least 1).
fn rel_diff(a: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(a.len(), reference.len());
    let (lo, hi) = reference
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let max = a
        .iter()
        .zip(reference)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    max / (hi - lo).max(1.0)
}

fn run_output(g: &FloatGraph, input: &npy::Array) -> Vec<f32> {
    let batch = input.shape[0];
    let mut values = g
        .run(&[(g.inputs[0].name.as_str(), &input.data)], batch)
        .unwrap();
    values.remove(&g.outputs[0]).unwrap()
}

#[test]
fn every_pytorch_export_imports_and_runs_like_pytorch_and_tract() {
    let mut worst = (0f32, 0f32);
    for (model, path) in onnx_fixtures() {
        let onnx = std::fs::read(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy();
        let g = FloatGraph::from_onnx_bytes(&onnx).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(g.inputs.len(), 1, "{file}");
        assert_eq!(g.outputs.len(), 1, "{file}");
        let input = load_npy(&format!("{model}.input.npy"));
        let torch = load_npy(&format!("{model}.output.npy"));
        assert_eq!(g.inputs[0].shape, input.shape[1..], "{file}");
        let ours = run_output(&g, &input);
        let by_tract = tract_run(&onnx, &input);
        let (vs_torch, vs_tract) = (rel_diff(&ours, &torch.data), rel_diff(&ours, &by_tract));
        let mut simple = g.clone();
        simple.simplify();
        let simplified = rel_diff(&run_output(&simple, &input), &torch.data);
        let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.kind()).collect();
        eprintln!(
            "{file}: {} nodes ({} simplified), vs PyTorch {vs_torch:.2e}, vs tract {vs_tract:.2e}, simplified vs PyTorch {simplified:.2e}; {}",
            g.nodes.len(),
            simple.nodes.len(),
            kinds.join(" ")
        );
        for d in [vs_torch, vs_tract, simplified] {
            assert!(d <= 1e-4, "{file}: relative difference {d}");
        }
        worst = (worst.0.max(vs_torch), worst.1.max(vs_tract));
        // BatchNorm (and biases) fold away where the model has them next to a layer; what
        // stays reads an activation (TimeGAN's scaling after its Sigmoid).
        let after_layer = |n: &pocketgan_runtime::import::Node| {
            simple.nodes.iter().any(|p| {
                p.output == n.inputs[0]
                    && matches!(
                        p.op,
                        FloatOp::Linear { .. }
                            | FloatOp::Conv { .. }
                            | FloatOp::ConvTranspose { .. }
                    )
            })
        };
        assert!(
            !simple
                .nodes
                .iter()
                .any(|n| matches!(n.op, FloatOp::BatchNorm { .. }) && after_layer(n)),
            "{file}: a BatchNorm after a layer left after simplify"
        );
    }
    eprintln!(
        "worst: vs PyTorch {:.2e}, vs tract {:.2e}",
        worst.0, worst.1
    );
}

#[test]
fn each_family_imports_as_its_ops() {
    let import = |file: &str| {
        FloatGraph::from_onnx_bytes(&std::fs::read(fixtures().join(file)).unwrap()).unwrap()
    };
    let has = |g: &FloatGraph, f: &dyn Fn(&FloatOp) -> bool| g.nodes.iter().any(|n| f(&n.op));

    // x.view(-1, 128, 7, 7): the shape arithmetic is gone, a Reshape to [128, 7, 7] is left.
    let g = import("dcgan_view_op17_dyn.onnx");
    assert_eq!(g.inputs[0].kind, InputKind::Latent);
    assert_eq!(g.inputs[0].shape, [64]);
    assert!(has(&g, &|op| *op
        == FloatOp::Reshape {
            shape: vec![128, 7, 7]
        }));
    assert_eq!(g.nodes.last().unwrap().shape, [1, 28, 28]);

    // pytorch/examples' Generator: [N, 100, 1, 1] in, weights behind Identity nodes.
    let g = import("dcgan64_real_op17_dyn.onnx");
    assert_eq!(g.inputs[0].shape, [100, 1, 1]);
    assert_eq!(g.inputs[0].kind, InputKind::Latent);
    assert_eq!(g.nodes.last().unwrap().shape, [3, 64, 64]);
    assert_eq!(
        g.nodes
            .iter()
            .filter(|n| n.op.kind() == "ConvTranspose")
            .count(),
        5
    );

    // Progressive GAN: six pixel norms (tract's RmsNorm, or the dynamo exporter's decomposed
    // chain), and once simplified no scale left before the equalised convolutions.
    for file in ["progan_op17_dyn.onnx", "progan_op18_dynamo_dyn.onnx"] {
        let mut g = import(file);
        let pixel_norms = g
            .nodes
            .iter()
            .filter(|n| n.op.kind() == "PixelNorm")
            .count();
        assert_eq!(pixel_norms, 6, "{file}");
        g.simplify();
        assert!(
            !has(&g, &|op| matches!(op, FloatOp::BatchNorm { .. })),
            "{file}"
        );
    }

    // pytorch/examples' DCGAN: its first layer, a transposed convolution of the 1x1 latent,
    // becomes a Linear once simplified (its BatchNorm folded into it first); the other four stay.
    for file in [
        "dcgan64_real_op17_dyn.onnx",
        "dcgan64_narrow_op18_dynamo_dyn.onnx",
    ] {
        let mut g = import(file);
        g.simplify();
        let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.kind()).collect();
        assert_eq!(
            kinds[..4],
            ["Flatten", "Linear", "Reshape", "Relu"],
            "{file}: {kinds:?}"
        );
        let transposes = kinds.iter().filter(|&&k| k == "ConvTranspose").count();
        assert_eq!(transposes, 4, "{file}: {kinds:?}");
    }

    // U-Net: two skip Concats on channels; Dropout is gone.
    let g = import("unet_op13.onnx");
    assert_eq!(g.inputs[0].kind, InputKind::Image);
    assert_eq!(
        g.nodes
            .iter()
            .filter(|n| n.op == FloatOp::Concat { axis: 0 })
            .count(),
        2
    );
    assert!(has(
        &g,
        &|op| matches!(op, FloatOp::LeakyRelu { alpha } if (*alpha - 0.2).abs() < 1e-6)
    ));

    // ResNet: reflect pads, instance norms, two residual Adds.
    for file in [
        "resnet_op16_dyn.onnx",
        "resnet_affine_op17.onnx",
        "resnet_op18_dynamo_dyn.onnx",
    ] {
        let g = import(file);
        assert!(
            has(&g, &|op| matches!(
                op,
                FloatOp::Pad {
                    mode: PadMode::Reflect,
                    pads: [3, 3, 3, 3]
                }
            )),
            "{file}"
        );
        assert_eq!(
            g.nodes
                .iter()
                .filter(|n| n.op.kind() == "InstanceNorm")
                .count(),
            9,
            "{file}"
        );
        assert_eq!(
            g.nodes.iter().filter(|n| n.op == FloatOp::Add).count(),
            2,
            "{file}"
        );
        assert!(
            has(&g, &|op| matches!(
                op,
                FloatOp::ConvTranspose {
                    out_pad: (1, 1),
                    ..
                }
            )),
            "{file}"
        );
    }
}

#[test]
fn bad_files_are_typed_errors() {
    let onnx = std::fs::read(fixtures().join("unet_op17.onnx")).unwrap();
    for cut in (0..onnx.len()).step_by(4099) {
        assert!(
            FloatGraph::from_onnx_bytes(&onnx[..cut]).is_err(),
            "truncated to {cut} bytes"
        );
    }
    let mut rng = 7u64;
    for _ in 0..40 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut bad = onnx.clone();
        let at = (rng >> 33) as usize % bad.len();
        bad[at] ^= 0x5a;
        // Either a model (a flip in a weight) or an error; never a panic out of the importer.
        let _ = FloatGraph::from_onnx_bytes(&bad);
    }
    assert!(matches!(
        FloatGraph::from_onnx_bytes(b"not onnx"),
        Err(ImportError::Onnx(_) | ImportError::Tract(_))
    ));
}

#[test]
fn unsupported_ops_are_all_named_with_their_nodes() {
    use tract_onnx::pb;
    use tract_onnx::prelude::Framework;
    let onnx = std::fs::read(fixtures().join("resnet_op17.onnx")).unwrap();
    let mut proto: pb::ModelProto = tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(onnx))
        .unwrap();
    let graph = proto.graph.as_mut().unwrap();
    // Two activations swapped for ops the importer does not map.
    let relus: Vec<usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Relu")
        .map(|(i, _)| i)
        .collect();
    graph.node[relus[0]].op_type = "Softplus".into();
    graph.node[*relus.last().unwrap()].op_type = "Softsign".into();
    let names = (
        graph.node[relus[0]].name.clone(),
        graph.node[*relus.last().unwrap()].name.clone(),
    );
    let bytes = prost::Message::encode_to_vec(&proto);
    match FloatGraph::from_onnx_bytes(&bytes) {
        Err(ImportError::Unsupported(ops)) => {
            assert_eq!(ops.len(), 2, "{ops:?}");
            assert_eq!((ops[0].op.as_str(), &ops[0].node), ("Softplus", &names.0));
            assert_eq!((ops[1].op.as_str(), &ops[1].node), ("Softsign", &names.1));
            let message = ImportError::Unsupported(ops).to_string();
            assert!(
                message.contains(&names.0) && message.contains(&names.1),
                "{message}"
            );
        }
        other => panic!("expected the unsupported list, got {other:?}"),
    }
}

#[test]
fn float_run_refuses_wrong_inputs() {
    use pocketgan_runtime::import::RunError;
    let g = FloatGraph::from_onnx_bytes(
        &std::fs::read(fixtures().join("dcgan_view_narrow_op13.onnx")).unwrap(),
    )
    .unwrap();
    assert_eq!(g.run(&[], 1), Err(RunError::MissingInput("z".into())));
    assert!(matches!(
        g.run(&[("z", &[0.0; 63])], 1),
        Err(RunError::InputSize {
            expected: 64,
            actual: 63,
            ..
        })
    ));
    assert!(matches!(
        g.run(&[("z", &[0.0; 64]), ("w", &[])], 1),
        Err(RunError::UnknownInput(_))
    ));
    assert_eq!(g.run(&[("z", &[])], 0), Err(RunError::EmptyBatch));
}

/// The project's conditional export (Gather of a class embedding joined to z by Concat, which
/// tract's decluttering splits into two matrix products) imports as Embed + Concat + Linear and
/// runs as tract runs the file.
#[test]
fn conditional_generator_imports_its_embedding() {
    use pocketgan_runtime::engine::{Engine, TractEngine};
    let dir = std::env::temp_dir().join(format!("pocketgan-import-cgan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("python3")
        .arg(common::repo_root().join("tests/scripts/torch_style_generators.py"))
        .arg(&dir)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "needs python3 with onnx and numpy");
    let onnx = std::fs::read(dir.join("cgan.onnx")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let g = FloatGraph::from_onnx_bytes(&onnx).unwrap();
    let kinds: Vec<_> = g
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("z", InputKind::Latent),
            ("class", InputKind::Class { classes: 10 })
        ]
    );
    let ops: Vec<&str> = g.nodes.iter().take(3).map(|n| n.op.kind()).collect();
    assert_eq!(ops, ["Embed", "Concat", "Linear"]);
    let n = 4;
    let z = pocketgan_runtime::quantize::latents(3, n, 16);
    let classes = [0u32, 9, 4, 4];
    let class_values: Vec<f32> = classes.iter().map(|&c| c as f32).collect();
    let mut values = g.run(&[("z", &z), ("class", &class_values)], n).unwrap();
    let ours = values.remove(&g.outputs[0]).unwrap();
    let mut tract = TractEngine::new(&onnx, 16, (1, 28, 28));
    let reference = tract.generate_with(&z, &classes, n).unwrap();
    let d = rel_diff(&ours, &reference);
    assert!(d <= 1e-4, "relative difference {d}");
    assert!(matches!(
        g.run(&[("z", &z), ("class", &[0.0, 10.0, 1.0, 2.0])], n),
        Err(pocketgan_runtime::import::RunError::Class { sample: 1, .. })
    ));
}
