//! The `pocketgan-train` command end to end: a few training steps write a whole run folder, and the
//! bench times both CPU rows. Both run their loop on rayon's pool (`device::on_pool`).

use std::path::PathBuf;
use std::process::{Command, Output};

fn train_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(args)
        .output()
        .expect("pocketgan-train runs")
}

fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("pocketgan-train-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn train_writes_a_run_folder_on_two_threads() {
    let out = scratch("train");
    let run = out.to_string_lossy().into_owned();
    let args = [
        "train",
        "--steps",
        "4",
        "--batch",
        "16",
        "--threads",
        "2",
        "--quiet",
        "--out",
        &run,
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
    ];
    let res = train_cli(&args);
    assert!(
        res.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    let rows: Vec<&str> = metrics.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{metrics}");
    for row in rows {
        let loss_d: f32 = row
            .split(',')
            .nth(1)
            .expect("loss_d")
            .parse()
            .expect("a number");
        assert!(loss_d.is_finite() && loss_d > 0.0, "{row}");
    }
    for file in [
        "generator.onnx",
        "loss_curve.png",
        "samples/step_000004.png",
    ] {
        assert!(out.join(file).is_file(), "missing {file}");
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bench_times_flex_with_and_without_our_operators() {
    let res = train_cli(&[
        "bench",
        "--device",
        "cpu",
        "--warmup",
        "0",
        "--iters",
        "1",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).expect("JSON");
    assert_eq!(v["threads"], 2);
    let rows = v["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["backend"].as_str()).collect();
    assert_eq!(names, ["cpu", "cpu, burn ops"]);
    for r in rows {
        let ms = r["median_ms"].as_f64().expect("median");
        assert!(ms.is_finite() && ms > 0.0, "{r}");
    }
}

#[test]
fn a_missing_dataset_is_a_clear_error() {
    let out = scratch("missing");
    let res = train_cli(&[
        "train",
        "--data",
        "idx:/nonexistent/pocketgan",
        "--steps",
        "1",
        "--quiet",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("/nonexistent/pocketgan"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Flags the user gives win over the defaults that follow from other choices (the MLP's sizes on
/// toy data, WGAN's critic steps), and those not given take them; config.json records the result.
#[test]
fn given_flags_override_the_derived_defaults() {
    let config = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out = scratch(name);
        let run = out.to_string_lossy().into_owned();
        let mut args = vec![
            "train",
            "--data",
            "toy:ring8",
            "--model",
            "mlp",
            "--loss",
            "wgan",
            "--steps",
            "0",
            "--quiet",
            "--out",
            &run,
        ];
        args.extend_from_slice(extra);
        let res = train_cli(&args);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let text = std::fs::read_to_string(out.join("config.json")).expect("config.json");
        std::fs::remove_dir_all(&out).ok();
        serde_json::from_str(&text).expect("JSON")
    };
    let derived = config("derived", &[]);
    assert_eq!(derived["model"]["latent"], 2);
    assert_eq!(derived["model"]["width"], 128);
    assert_eq!(derived["critic_steps"], 5);
    assert_eq!(derived["weight_clip"], 0.01);
    let given = config(
        "given",
        &["--latent", "3", "--width", "16", "--critic-steps", "2"],
    );
    assert_eq!(given["model"]["latent"], 3);
    assert_eq!(given["model"]["width"], 16);
    assert_eq!(given["critic_steps"], 2);
}
