//! The `pocketgan` command end to end: quantize, inspect, generate on both engines (grid, latent
//! files, raw output, latent walk) and clear errors for bad input.
#![cfg(feature = "std")]

use pocketgan_runtime::{npy, quantize::psnr_db};
use std::path::{Path, PathBuf};
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
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/generator_tiny.onnx"),
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
