//! A text-conditioned generator (StackGAN-shaped) as PyTorch's own exporter writes it
//! (`scripts/stackgan-fixture.py`, `runtime/tests/fixtures/stackgan/`): token ids `text [N, 16]`
//! looked up by `Gather`, flattened into two Linear text codes, the second spread over the 8x8
//! stage-II features by `.repeat` (Tile), `F.interpolate` (Resize) or `.expand` (Expand). The
//! float import matches PyTorch and tract (and onnxruntime with the `ort` feature) within 1e-4,
//! the int8 model stays >= 25 dB from the float one with the same bytes on every kernel family,
//! thread count and batch, and `pocketgan generate --text` draws what the text says.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::engine::runner::{Int8Runner, Runner, Values};
use pocketgan_runtime::engine::{latent_generator, Engine, EngineError, Int8Engine, TractEngine};
use pocketgan_runtime::format::Model;
use pocketgan_runtime::import::{FloatGraph, InputKind};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::{latents, psnr_db, quantize, QuantizeOptions};
use pocketgan_runtime::text::TextSpec;
use pocketgan_runtime::{npy, RunError};
use std::path::PathBuf;
use std::process::{Command, Output};

const SLOTS: usize = 16;
const VOCABULARY: usize = 50;

fn dir() -> PathBuf {
    common::repo_root().join("runtime/tests/fixtures/stackgan")
}

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every export of the model: (file, the batch it takes on tract and onnxruntime, if fixed).
fn exports() -> Vec<(String, Option<usize>)> {
    let mut files: Vec<(String, Option<usize>)> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".onnx"))
        .map(|f| {
            let fixed = (!f.ends_with("_dyn.onnx")).then_some(2);
            (f, fixed)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures missing: {files:?}");
    files
}

/// PyTorch's batch: `z [3, 8]`, the token ids `[3, 16]` and its images `[3, 3, 16, 16]`.
fn pytorch() -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let load = |name: &str| npy::parse(&fixture(name)).unwrap();
    let (z, text, image) = (
        load("stackgan.z.npy"),
        load("stackgan.text.npy"),
        load("stackgan.image.npy"),
    );
    assert_eq!(
        (text.shape.as_slice(), image.shape.as_slice()),
        (&[3, SLOTS][..], &[3, 3, 16, 16][..])
    );
    let ids = text.data.iter().map(|&t| t as u32).collect();
    (z.data, ids, image.data)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The first `n` of PyTorch's samples.
fn first(n: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let (z, ids, image) = pytorch();
    (
        z[..n * 8].to_vec(),
        ids[..n * SLOTS].to_vec(),
        image[..n * 3 * 16 * 16].to_vec(),
    )
}

#[test]
fn every_export_runs_in_float_as_in_pytorch_and_tract() {
    for (file, fixed) in exports() {
        let onnx = fixture(&file);
        let g = latent_generator(&onnx).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            (g.latent, g.classes, g.slots(), g.image),
            (8, VOCABULARY, SLOTS, (3, 16, 16)),
            "{file}"
        );
        let mut graph = FloatGraph::from_onnx_bytes(&onnx).unwrap();
        assert!(
            graph.inputs.iter().any(|i| i.shape == [SLOTS]
                && i.kind
                    == InputKind::Class {
                        classes: VOCABULARY
                    }),
            "{file}: {:?}",
            graph.inputs
        );
        // The metadata travels with the graph (into the .pgq).
        let spec =
            TextSpec::from_metadata(graph.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .unwrap()
                .unwrap();
        assert_eq!((spec.vocabulary.len(), spec.length), (VOCABULARY, SLOTS));
        let (z, ids, want) = pytorch();
        let text: Vec<f32> = ids.iter().map(|&t| t as f32).collect();
        for simplified in [false, true] {
            if simplified {
                graph.simplify();
            }
            let mut out = graph
                .run(&[("z", &z), ("text", &text)], 3)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let got = out.remove(&graph.outputs[0]).unwrap();
            let diff = max_diff(&got, &want);
            eprintln!("{file} (simplified {simplified}): float vs PyTorch {diff:.2e}");
            assert!(diff <= 1e-4, "{file}: float vs PyTorch {diff}");
        }
        // tract on the original file, at the batch the file takes.
        let n = fixed.unwrap_or(3);
        let (z, ids, want) = first(n);
        let mut tract = TractEngine::new(&onnx, g.latent, g.image);
        assert_eq!((tract.classes(), tract.slots()), (VOCABULARY, SLOTS));
        let float = tract.generate_with(&z, &ids, n).unwrap();
        let diff = max_diff(&float, &want);
        eprintln!("{file}: tract vs PyTorch {diff:.2e}");
        assert!(diff <= 1e-4, "{file}: tract vs PyTorch {diff}");
        let text: Vec<f32> = ids.iter().map(|&t| t as f32).collect();
        let ours = graph.run(&[("z", &z), ("text", &text)], n).unwrap();
        let diff = max_diff(&ours[&graph.outputs[0]], &float);
        assert!(diff <= 1e-4, "{file}: float vs tract {diff}");
    }
}

#[cfg(feature = "ort")]
#[test]
fn onnxruntime_runs_every_export_as_pytorch() {
    use pocketgan_runtime::engine::ort::{OrtEngine, OrtRunner};
    for (file, fixed) in exports() {
        let onnx = fixture(&file);
        let g = latent_generator(&onnx).unwrap();
        let n = fixed.unwrap_or(3);
        let (z, ids, want) = first(n);
        let mut ort = OrtEngine::new(&onnx, g.latent, g.image, 1).unwrap();
        assert_eq!((ort.classes(), ort.slots()), (VOCABULARY, SLOTS));
        let diff = max_diff(&ort.generate_with(&z, &ids, n).unwrap(), &want);
        eprintln!("{file}: onnxruntime vs PyTorch {diff:.2e}");
        assert!(diff <= 1e-4, "{file}: onnxruntime vs PyTorch {diff}");
        let mut runner = OrtRunner::new(&onnx, 1).unwrap();
        let out = runner
            .run(&[Values::F32(z.clone()), Values::Index(ids.clone())], n)
            .unwrap();
        let Values::F32(got) = &out[0] else {
            panic!("float output")
        };
        assert!(max_diff(got, &want) <= 1e-4, "{file}: OrtRunner");
    }
}

fn options() -> QuantizeOptions {
    QuantizeOptions {
        calib: 64,
        eval: 32,
        ..Default::default()
    }
}

/// Seeded prompts' ids: `n` texts of 1 to 3 words filling the slots.
fn texts(seed: u64, n: usize) -> Vec<u32> {
    pocketgan_runtime::quantize::indices(seed, n, VOCABULARY, SLOTS)
}

#[test]
fn int8_stays_within_25_db_with_the_same_bytes_everywhere() {
    for file in [
        "stackgan_repeat_op17_dyn.onnx",
        "stackgan_repeat_op13_dyn.onnx",
        "stackgan_repeat_op17.onnx",
        "stackgan_repeat_op18_dynamo_dyn.onnx",
        "stackgan_interpolate_op17_dyn.onnx",
        "stackgan_expand_op17_dyn.onnx",
    ] {
        let onnx = fixture(file);
        let (pgq, report) = quantize(&onnx, &options()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let model = Model::parse(&pgq).unwrap();
        assert_eq!((model.classes(), model.slots()), (VOCABULARY, SLOTS));
        // The text's metadata travels into the .pgq.
        let spec = TextSpec::of_model(&pgq).unwrap().unwrap();
        assert_eq!((spec.vocabulary.len(), spec.length), (VOCABULARY, SLOTS));
        let g = latent_generator(&onnx).unwrap();
        let mut tract = TractEngine::new(&onnx, g.latent, g.image);
        let mut lowest = f64::INFINITY;
        // The fixed-batch export runs on tract at its batch only.
        let batches: &[usize] = if file.ends_with("_dyn.onnx") {
            &[1, 5]
        } else {
            &[2]
        };
        for &n in batches {
            let (z, ids) = (latents(11, n, 8), texts(12, n));
            let float = tract.generate_with(&z, &ids, n).unwrap();
            let mut bytes = Vec::new();
            for isa in Isa::available() {
                for threads in [1, 2] {
                    let mut e = Int8Engine::new(model, isa).with_threads(threads);
                    bytes.push(e.generate_quantized_with(&z, &ids, n).unwrap().to_vec());
                    let psnr = psnr_db(&float, &e.generate_with(&z, &ids, n).unwrap());
                    assert!(
                        psnr >= 25.0,
                        "{file} {} batch {n}: {psnr:.1} dB",
                        isa.name()
                    );
                    lowest = lowest.min(psnr);
                }
                // The general runner, split by samples over threads, gives the same images.
                let mut runner = Int8Runner::new(model, isa).with_threads(2);
                let out = runner
                    .run(&[Values::F32(z.clone()), Values::Index(ids.clone())], n)
                    .unwrap();
                let mut e = Int8Engine::new(model, isa);
                assert_eq!(out[0], Values::F32(e.generate_with(&z, &ids, n).unwrap()));
            }
            assert!(
                bytes.iter().all(|b| *b == bytes[0]),
                "{file} batch {n}: kernel families or threads differ"
            );
        }
        eprintln!(
            "{file}: quantizer's PSNR {:.1} dB over {} samples, lowest against tract {lowest:.1} dB",
            report.psnr_db, report.eval_samples
        );
        assert!(report.psnr_db >= 25.0, "{file}: {:.1} dB", report.psnr_db);
    }
}

#[test]
fn the_text_reaches_the_image_and_bad_ids_are_errors() {
    let onnx = fixture("stackgan_repeat_op17_dyn.onnx");
    let (pgq, _) = quantize(&onnx, &options()).unwrap();
    let model = Model::parse(&pgq).unwrap();
    let spec = TextSpec::of_model(&pgq).unwrap().unwrap();
    let g = latent_generator(&onnx).unwrap();
    let n = 4;
    let z = latents(3, n, 8);
    let prompt = |text: &str| spec.encode(text).unwrap().0.repeat(n);
    let mut int8 = Int8Engine::new(model, Isa::detect());
    let mut tract = TractEngine::new(&onnx, g.latent, g.image);
    for engine in [&mut int8 as &mut dyn Engine, &mut tract] {
        let apple = engine.generate_with(&z, &prompt("red apple"), n).unwrap();
        let again = engine.generate_with(&z, &prompt("Red, apple!"), n).unwrap();
        let cat = engine
            .generate_with(&z, &prompt("sleepy blue cat"), n)
            .unwrap();
        assert_eq!(apple, again, "{}", engine.name());
        let moved = max_diff(&apple, &cat);
        assert!(
            moved > 0.05,
            "{}: the text moves the image by {moved}",
            engine.name()
        );
        // An id past the vocabulary, or a sample's ids missing, is an error, not a panic.
        let mut bad = prompt("red apple");
        bad[SLOTS + 3] = VOCABULARY as u32;
        assert!(matches!(
            engine.generate_with(&z, &bad, n),
            Err(EngineError::Run(RunError::ClassRange {
                sample: 1,
                classes: VOCABULARY,
                ..
            }))
        ));
        assert!(matches!(
            engine.generate_with(&z, &prompt("red")[..n], n),
            Err(EngineError::Run(RunError::ClassCount { .. }))
        ));
    }
    // The float executor refuses an id past the vocabulary too.
    let graph = FloatGraph::from_onnx_bytes(&onnx).unwrap();
    let mut text = vec![1.0; SLOTS];
    text[5] = VOCABULARY as f32;
    assert!(graph.run(&[("z", &z[..8]), ("text", &text)], 1).is_err());
}

fn pocketgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .args(args)
        .output()
        .expect("pocketgan runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = pocketgan(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pocketgan {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn fail(args: &[&str]) -> String {
    let out = pocketgan(args);
    assert!(!out.status.success(), "pocketgan {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn generate_with_text_on_the_command_line() {
    let work = std::env::temp_dir().join(format!("pocketgan-text-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let p = |name: &str| work.join(name).to_string_lossy().into_owned();
    let onnx = dir().join("stackgan_repeat_op17_dyn.onnx");
    let onnx = onnx.to_str().unwrap();
    ok(&["quantize", onnx, "--calib", "64", "--out", &p("s.pgq")]);
    let (inspect, _) = ok(&["inspect", &p("s.pgq")]);
    assert!(
        inspect.contains("16 token ids in 0..50")
            && inspect.contains("text: a vocabulary of 49 words (id 0 reserved), 16 token slots"),
        "{inspect}"
    );
    let npy_of = |name: &str| npy::parse(&std::fs::read(p(name)).unwrap()).unwrap();
    // The .pgq, the ONNX file quantized in memory, tract (and onnxruntime): a grid of 4 from
    // one prompt.
    let mut runs = vec![
        (p("s.pgq"), "int8", "pgq"),
        (onnx.to_string(), "int8", "onnx"),
        (onnx.to_string(), "tract", "tract"),
    ];
    if cfg!(feature = "ort") {
        runs.push((onnx.to_string(), "ort", "ort"));
    }
    for (model, engine, name) in runs {
        let png = format!("{name}.png");
        let (_, stderr) = ok(&[
            "generate",
            &model,
            "--engine",
            engine,
            "--text",
            "a red apple",
            "--n",
            "4",
            "--out",
            &p(&png),
            "--save-npy",
            &p(&format!("{name}.npy")),
        ]);
        assert!(
            stderr.contains("skipped words not in the vocabulary: a"),
            "{stderr}"
        );
        let grid = image::open(p(&png)).unwrap();
        assert_eq!(
            (grid.width(), grid.height()),
            (2 * 18 + 2, 2 * 18 + 2),
            "{name}"
        );
        assert_eq!(npy_of(&format!("{name}.npy")).shape, [4, 3, 16, 16]);
    }
    // The int8 images are the float ones within quantization error.
    assert!(psnr_db(&npy_of("tract.npy").data, &npy_of("pgq.npy").data) >= 25.0);
    // The same prompt and seed give the same images; another prompt others.
    let run = |text: &str, seed: &str, out: &str| {
        ok(&[
            "generate",
            &p("s.pgq"),
            "--text",
            text,
            "--n",
            "4",
            "--seed",
            seed,
            "--out",
            &p("x.png"),
            "--save-npy",
            &p(out),
        ]);
        npy_of(out).data
    };
    let apple = run("red apple", "5", "a.npy");
    assert_eq!(apple, run("Red, APPLE!", "5", "b.npy"));
    assert_ne!(apple, run("green pear", "5", "d.npy"));
    assert_ne!(apple, run("red apple", "6", "e.npy"));
    // Errors that say what to do.
    let err = fail(&[
        "generate",
        &p("s.pgq"),
        "--text",
        "xyzzy plugh",
        "--out",
        &p("x.png"),
    ]);
    assert!(
        err.contains("no word of \"xyzzy plugh\" is in the model's vocabulary"),
        "{err}"
    );
    let err = fail(&["generate", &p("s.pgq"), "--out", &p("x.png")]);
    assert!(
        err.contains("text-conditioned generator") && err.contains("--text"),
        "{err}"
    );
    let err = fail(&[
        "generate",
        &p("s.pgq"),
        "--text",
        "red",
        "--class",
        "3",
        "--out",
        &p("x.png"),
    ]);
    assert!(err.contains("--class"), "{err}");
    let plain = common::repo_root().join("tests/fixtures/generator_tiny.onnx");
    let err = fail(&[
        "generate",
        plain.to_str().unwrap(),
        "--text",
        "red",
        "--out",
        &p("x.png"),
    ]);
    assert!(
        err.contains("--text") && err.contains("not a text-conditioned generator"),
        "{err}"
    );
    std::fs::remove_dir_all(work).ok();
}
