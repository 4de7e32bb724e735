//! Hostile models and inputs through the `pocketgan` command: each must end with exit code 1 and
//! an error that names the problem, never a panic or an abort (a signal). The models are small
//! edits of a real export (`tests/fixtures/generator_tiny.onnx`) written by
//! `runtime/tests/fixtures/bad/make.py`.
#![cfg(feature = "std")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Runs `pocketgan args` and checks a clean failure (exit 1) whose stderr holds every one of
/// `words`.
fn refused(args: &[&str], words: &[&str]) {
    refused_with(1, args, words)
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
        // `run` plans the ONNX file with tract directly (TractRunner).
        let z = out.join("z16.npy");
        std::fs::write(&z, pocketgan_runtime::npy::encode(&[1, 16], &[0.0; 16])).unwrap();
        let input = format!("z={}", z.display());
        let run_out = out.join("run").to_string_lossy().into_owned();
        let run_words: &[&str] = match file {
            "resize_10000.onnx" => &["over the limit"],
            "zero_channels.onnx" => &["empty tensor"],
            _ => words,
        };
        refused(
            &["run", &f, "--input", &input, "--out", &run_out],
            run_words,
        );
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

/// Runs `pocketgan args` and checks it ends with `code` (1: the command refused; 2: clap refused
/// a flag's value) without a panic or a signal, its stderr holding every one of `words`.
fn refused_with(code: i32, args: &[&str], words: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("pocketgan runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), None, "{args:?} was killed: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(o.status.code(), Some(code), "{args:?}: {stderr}");
    for w in words {
        assert!(stderr.contains(w), "{args:?}: {w:?} not in {stderr}");
    }
}

/// Oversized requests are refused before anything is allocated (they used to abort with
/// "memory allocation of 25 GB failed"), invalid values when parsed, and files that are not
/// files before they are opened (reading /dev/zero grew without bound; a FIFO waited forever).
#[test]
fn oversized_invalid_and_unreadable_requests_are_refused() {
    let root = std::env::temp_dir().join(format!("pocketgan-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let tmp = |name: &str| root.join(name).to_string_lossy().into_owned();
    let pgq = common::repo_root()
        .join("firmware/models/digits.pgq")
        .to_string_lossy()
        .into_owned();
    let onnx = common::repo_root()
        .join("tests/fixtures/generator_tiny.onnx")
        .to_string_lossy()
        .into_owned();
    let png = tmp("g.png");
    let fifo = tmp("fifo.pgq");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let truncated = tmp("truncated.pgq");
    let bytes = std::fs::read(&pgq).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let wrong_latents = tmp("z.npy");
    std::fs::write(
        &wrong_latents,
        pocketgan_runtime::npy::encode(&[2, 7], &[0.0; 14]),
    )
    .unwrap();
    let not_npy = tmp("z_bad.npy");
    std::fs::write(&not_npy, b"not an npy file").unwrap();
    let dev_zero_pgq = "/dev/zero";
    let missing = tmp("missing.pgq");
    let cases: Vec<(i32, Vec<&str>, Vec<&str>)> = vec![
        // Requests over the documented limits.
        (
            1,
            vec!["generate", &pgq, "--n", "100000000", "--out", &png],
            vec!["--n", "over the limit"],
        ),
        (
            1,
            vec![
                "generate",
                &onnx,
                "--engine",
                "tract",
                "--n",
                "100000000",
                "--out",
                &png,
            ],
            vec!["over the limit"],
        ),
        (
            1,
            vec![
                "generate",
                &pgq,
                "--interpolate",
                "100000000",
                "--out",
                &png,
            ],
            vec!["--interpolate", "over the limit"],
        ),
        (
            2,
            vec!["quantize", &onnx, "--calib", "100000000"],
            vec!["--calib", "over the limit"],
        ),
        (
            2,
            vec!["quantize", &onnx, "--calib", "0"],
            vec!["--calib must be at least 1"],
        ),
        (
            2,
            vec!["generate", &pgq, "--threads", "0", "--out", &png],
            vec!["--threads must be at least 1"],
        ),
        (
            2,
            vec!["generate", &pgq, "--threads", "100000", "--out", &png],
            vec!["--threads", "over the limit"],
        ),
        (
            2,
            vec!["bench", &onnx, "--reps", "0"],
            vec!["--reps must be at least 1"],
        ),
        (
            2,
            vec!["bench", &onnx, "--threads", "0"],
            vec!["--threads must be at least 1"],
        ),
        // Values that make no sense.
        (
            2,
            vec!["quantize", &onnx, "--percentile", "200"],
            vec!["(0, 100]"],
        ),
        (
            2,
            vec!["quantize", &onnx, "--percentile", "0"],
            vec!["(0, 100]"],
        ),
        (
            2,
            vec!["quantize", &onnx, "--percentile", "NaN"],
            vec!["(0, 100]"],
        ),
        (
            2,
            vec!["quantize", &onnx, "--percentile", "high"],
            vec!["such as 99.99"],
        ),
        (
            1,
            vec!["generate", &pgq, "--n", "0", "--out", &png],
            vec!["--n must be at least 1"],
        ),
        (
            1,
            vec!["generate", &pgq, "--class", "99", "--out", &png],
            vec!["class 99 is out of range"],
        ),
        (
            1,
            vec!["generate", &pgq, "--isa", "nosuch", "--out", &png],
            vec!["unknown kernel family nosuch"],
        ),
        (
            1,
            vec!["generate", &pgq, "--engine", "tract", "--out", &png],
            vec!["int8 model", "ONNX"],
        ),
        (
            1,
            vec!["generate", &pgq, "--latents", &wrong_latents, "--out", &png],
            vec!["[2, 7]", "needs [N, "],
        ),
        (
            1,
            vec!["generate", &pgq, "--latents", &not_npy, "--out", &png],
            vec!["cannot read latents", "z_bad.npy"],
        ),
        // Files that are not models, or not files.
        (
            1,
            vec!["inspect", dev_zero_pgq],
            vec!["/dev/zero", "not a regular file"],
        ),
        (
            1,
            vec!["inspect", &fifo],
            vec!["fifo.pgq", "not a regular file"],
        ),
        (
            1,
            vec!["generate", &fifo, "--out", &png],
            vec!["not a regular file"],
        ),
        (
            1,
            vec!["inspect", root.to_str().unwrap()],
            vec!["not a regular file"],
        ),
        (
            1,
            vec!["inspect", &missing],
            vec!["missing.pgq", "No such file"],
        ),
        (
            1,
            vec!["inspect", &truncated],
            vec!["invalid model", "truncated.pgq"],
        ),
        (
            1,
            vec!["generate", &truncated, "--out", &png],
            vec!["invalid model"],
        ),
        (1, vec!["inspect", &onnx], vec!["quantize", "first"]),
        (1, vec!["quantize", &not_npy], vec!["cannot quantize"]),
        // Outputs that cannot be written name their path.
        (
            1,
            vec!["generate", &pgq, "--out", "/nonexistent/dir/g.png"],
            vec!["/nonexistent/dir/g.png"],
        ),
        (
            1,
            vec![
                "generate",
                &pgq,
                "--interpolate",
                "4",
                "--out",
                "/nonexistent/dir/walk.gif",
            ],
            vec!["/nonexistent/dir/walk.gif"],
        ),
        (
            1,
            vec![
                "generate",
                &pgq,
                "--save-npy",
                "/nonexistent/dir/g.npy",
                "--out",
                &png,
            ],
            vec!["/nonexistent/dir/g.npy"],
        ),
        (
            1,
            vec!["quantize", &onnx, "--out", "/nonexistent/dir/g.pgq"],
            vec!["/nonexistent/dir/g.pgq"],
        ),
    ];
    for (code, args, words) in &cases {
        refused_with(*code, args, words);
    }
    eprintln!("{} refused requests checked", cases.len());
    let _ = std::fs::remove_dir_all(&root);
}
