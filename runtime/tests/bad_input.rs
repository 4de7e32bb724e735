//! Hostile models and inputs through the `pocketgan` command: each must end with exit code 1 and
//! an error that names the problem, never a panic or an abort (a signal). The models are small
//! edits of a real export (`tests/fixtures/generator_tiny.onnx`) written by
//! `runtime/tests/fixtures/bad/make.py`.
#![cfg(feature = "std")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Runs `pocketgan args` and checks a clean failure whose stderr holds every one of `words`.
fn refused(args: &[&str], words: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("pocketgan runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.signal(),
        None,
        "{args:?} was killed (abort?): {stderr}"
    );
    assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for w in words {
        assert!(stderr.contains(w), "{args:?}: {w:?} not in {stderr}");
    }
}

fn bad(name: &str) -> String {
    let p = common::repo_root()
        .join("runtime/tests/fixtures/bad")
        .join(name);
    p.to_string_lossy().into_owned()
}

#[test]
fn hostile_models_are_refused_by_every_command() {
    let out = std::env::temp_dir().join(format!("pocketgan-bad-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let png = out.join("g.png").to_string_lossy().into_owned();
    let pgq = out.join("g.pgq").to_string_lossy().into_owned();
    for (file, words) in [
        // A Resize by 10,000: 20 TB to allocate before the checks.
        ("resize_10000.onnx", &["over the limit", "per sample"][..]),
        // A last layer with no output channels: tract's picture divided by zero.
        ("zero_channels.onnx", &["empty tensor"][..]),
        // A BatchNorm whose variance is negative: every engine ran it silently.
        (
            "bn_negative_var.onnx",
            &["variance", "not a non-negative"][..],
        ),
    ] {
        let f = bad(file);
        refused(&["generate", &f, "--out", &png], words);
        refused(&["generate", &f, "--engine", "tract", "--out", &png], words);
        refused(&["quantize", &f, "--out", &pgq], words);
        refused(&["bench", &f, "--reps", "1"], words);
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn non_finite_latents_are_refused() {
    let out = std::env::temp_dir().join(format!("pocketgan-bad-latents-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let onnx = common::repo_root().join("tests/fixtures/generator_tiny.onnx");
    let onnx = onnx.to_string_lossy().into_owned();
    let png = out.join("g.png").to_string_lossy().into_owned();
    for v in [f32::NAN, f32::INFINITY] {
        let mut z = vec![0.5f32; 2 * 16];
        z[17] = v;
        let path = out.join("z.npy");
        std::fs::write(&path, pocketgan_runtime::npy::encode(&[2, 16], &z)).unwrap();
        let path = path.to_string_lossy().into_owned();
        for engine in ["int8", "tract"] {
            refused(
                &[
                    "generate",
                    &onnx,
                    "--engine",
                    engine,
                    "--latents",
                    &path,
                    "--out",
                    &png,
                ],
                &["finite"],
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
