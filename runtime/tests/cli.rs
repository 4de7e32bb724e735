//! The `pocketgan` command end to end: quantize, inspect, generate on both engines (grid, latent
//! files, raw output, latent walk) and clear errors for bad input.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::{npy, quantize::psnr_db};
use std::path::PathBuf;
use std::process::{Command, Output};

fn pocketgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .args(args)
        .output()
        .expect("pocketgan runs")
}

fn ok(args: &[&str]) -> String {
    let out = pocketgan(args);
    assert!(
        out.status.success(),
        "pocketgan {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fail(args: &[&str]) -> String {
    let out = pocketgan(args);
    assert!(!out.status.success(), "pocketgan {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn workdir(test: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("pocketgan-cli-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join("g.onnx");
    std::fs::copy(
        common::repo_root().join("tests/fixtures/generator_tiny.onnx"),
        &onnx,
    )
    .unwrap();
    (dir, onnx.to_string_lossy().into_owned())
}

#[test]
fn quantize_inspect_generate() {
    let (dir, onnx) = workdir("generate");
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let report = ok(&["quantize", &onnx, "--calib", "32", "--out", &p("g.pgq")]);
    assert!(report.contains("output PSNR vs float"), "{report}");
    let inspect = ok(&["inspect", &p("g.pgq")]);
    assert!(
        inspect.contains("ConvTranspose2d") && inspect.contains("arena:"),
        "{inspect}"
    );

    // The same latents through both engines, raw outputs compared.
    let z = pocketgan_runtime::quantize::latents(5, 6, 16);
    std::fs::write(p("z.npy"), npy::encode(&[6, 16], &z)).unwrap();
    ok(&[
        "generate",
        &p("g.pgq"),
        "--latents",
        &p("z.npy"),
        "--save-npy",
        &p("int8.npy"),
        "--out",
        &p("int8.png"),
    ]);
    ok(&[
        "generate",
        &onnx,
        "--engine",
        "tract",
        "--latents",
        &p("z.npy"),
        "--save-npy",
        &p("f32.npy"),
        "--out",
        &p("f32.png"),
    ]);
    let a = npy::parse(&std::fs::read(p("int8.npy")).unwrap()).unwrap();
    let b = npy::parse(&std::fs::read(p("f32.npy")).unwrap()).unwrap();
    assert_eq!(a.shape, [6, 1, 28, 28]);
    assert_eq!(a.shape, b.shape);
    assert!(psnr_db(&b.data, &a.data) > 30.0);
    let grid = image::open(p("int8.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 30 + 2, 2 * 30 + 2));

    ok(&[
        "generate",
        &p("g.pgq"),
        "--interpolate",
        "5",
        "--out",
        &p("walk.gif"),
    ]);
    let gif = std::fs::read(p("walk.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a"));
    ok(&[
        "generate",
        &p("g.pgq"),
        "--n",
        "4",
        "--isa",
        "scalar",
        "--out",
        &p("scalar.png"),
    ]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_gives_clear_errors() {
    let (dir, onnx) = workdir("errors");
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    ok(&["quantize", &onnx, "--calib", "8", "--out", &p("g.pgq")]);
    let mut bytes = std::fs::read(p("g.pgq")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(p("flipped.pgq"), &bytes).unwrap();
    assert!(
        fail(&["generate", &p("flipped.pgq"), "--out", &p("x.png")]).contains("checksum mismatch")
    );
    std::fs::write(p("cut.pgq"), &bytes[..100]).unwrap();
    assert!(fail(&["inspect", &p("cut.pgq")]).contains("truncated"));
    std::fs::write(p("cut.onnx"), &std::fs::read(&onnx).unwrap()[..1000]).unwrap();
    assert!(fail(&["quantize", &p("cut.onnx")]).contains("cannot quantize"));
    assert!(fail(&["generate", &p("g.pgq"), "--engine", "tract"]).contains("int8 model"));
    assert!(fail(&["generate", &p("missing.pgq")]).contains("cannot read"));
    std::fs::write(p("z.npy"), npy::encode(&[2, 3], &[0.0; 6])).unwrap();
    assert!(fail(&["generate", &p("g.pgq"), "--latents", &p("z.npy")]).contains("needs [N, 16]"));
    assert!(fail(&["generate", &p("g.pgq"), "--class", "3"]).contains("unconditional"));
    std::fs::remove_dir_all(dir).ok();
}

/// A conditional generator from `tests/scripts/torch_style_generators.py` (Python's `onnx`).
fn conditional_workdir(test: &str) -> (PathBuf, String) {
    let (dir, _) = workdir(test);
    let script = common::repo_root().join("tests/scripts/torch_style_generators.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(&dir)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "needs python3 with onnx and numpy");
    let onnx = dir.join("cgan.onnx").to_string_lossy().into_owned();
    (dir, onnx)
}

#[test]
fn conditional_generate_with_class() {
    let (dir, onnx) = conditional_workdir("conditional");
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    ok(&["quantize", &onnx, "--calib", "64", "--out", &p("c.pgq")]);
    let inspect = ok(&["inspect", &p("c.pgq")]);
    assert!(
        inspect.contains("10 classes") && inspect.contains("Embed"),
        "{inspect}"
    );

    // --class K on both engines, same latents: the class reaches both, and they agree.
    let z = pocketgan_runtime::quantize::latents(5, 6, 16);
    std::fs::write(p("z.npy"), npy::encode(&[6, 16], &z)).unwrap();
    let run = |model: &str, engine: &str, class: &str, out: &str| {
        ok(&[
            "generate",
            model,
            "--engine",
            engine,
            "--class",
            class,
            "--latents",
            &p("z.npy"),
            "--save-npy",
            &p(out),
            "--out",
            &p("grid.png"),
        ]);
        npy::parse(&std::fs::read(p(out)).unwrap()).unwrap()
    };
    let int8_3 = run(&p("c.pgq"), "int8", "3", "int8_3.npy");
    let f32_3 = run(&onnx, "tract", "3", "f32_3.npy");
    let f32_4 = run(&onnx, "tract", "4", "f32_4.npy");
    assert_eq!(int8_3.shape, [6, 1, 28, 28]);
    assert!(psnr_db(&f32_3.data, &int8_3.data) > 30.0);
    assert!(
        psnr_db(&f32_3.data, &f32_4.data) < 25.0,
        "classes 3 and 4 look alike"
    );

    // Without --class: one row per class, ten samples a row.
    ok(&["generate", &p("c.pgq"), "--out", &p("rows.png")]);
    let grid = image::open(p("rows.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (10 * 30 + 2, 10 * 30 + 2));
    ok(&[
        "generate",
        &p("c.pgq"),
        "--n",
        "20",
        "--save-npy",
        &p("rows.npy"),
        "--out",
        &p("rows.png"),
    ]);
    let rows = npy::parse(&std::fs::read(p("rows.npy")).unwrap()).unwrap();
    let grid = image::open(p("rows.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (2 * 30 + 2, 10 * 30 + 2));
    // Sample 2k+1 is class k: the same as drawing that class alone with that sample's latent.
    let z20 = pocketgan_runtime::quantize::latents(0, 20, 16);
    std::fs::write(p("z7.npy"), npy::encode(&[1, 16], &z20[7 * 16..8 * 16])).unwrap();
    ok(&[
        "generate",
        &p("c.pgq"),
        "--class",
        "3",
        "--latents",
        &p("z7.npy"),
        "--save-npy",
        &p("s7.npy"),
        "--out",
        &p("s7.png"),
    ]);
    let s7 = npy::parse(&std::fs::read(p("s7.npy")).unwrap()).unwrap();
    assert_eq!(&rows.data[7 * 784..8 * 784], &s7.data[..]);

    assert!(fail(&["generate", &p("c.pgq"), "--class", "10"]).contains("out of range"));
    assert!(
        fail(&["generate", &onnx, "--engine", "tract", "--class", "10"]).contains("out of range")
    );
    let bench = ok(&["bench", &onnx, "--pgq", &p("c.pgq"), "--reps", "2"]);
    assert!(bench.contains("int8") && bench.contains("tract"), "{bench}");
    // Every op of the model has its row in the per-op table, its times adding up to the whole.
    let json = ok(&[
        "bench",
        &onnx,
        "--pgq",
        &p("c.pgq"),
        "--reps",
        "2",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let layers = json["layers"].as_array().unwrap();
    let ops = pocketgan_runtime::Model::parse(&std::fs::read(p("c.pgq")).unwrap())
        .unwrap()
        .ops()
        .count();
    assert_eq!(layers.len(), ops, "{json}");
    assert!(layers.iter().all(|l| l["batch_us"].as_f64().unwrap() > 0.0));
    let macs: u64 = layers
        .iter()
        .map(|l| l["macs_per_sample"].as_u64().unwrap())
        .sum();
    assert_eq!(macs, json["macs_per_sample"].as_u64().unwrap());
    assert!(bench.contains("per op, int8 at batch 64"), "{bench}");
    std::fs::remove_dir_all(dir).ok();
}
