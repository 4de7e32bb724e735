//! Bad input through the `pocketgan-train` command: every configuration value is validated when
//! parsed, oversized requests are refused before anything is allocated, and a run folder can
//! always be resumed or restarted. Each case asserts the exit code and the key words of the
//! message, and that no panic or abort (a signal) happened.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn train_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("pocketgan-train runs")
}

/// `args` ends with `code` without a panic or a signal, and stderr holds every one of `words`.
fn refused_with(code: i32, args: &[&str], words: &[&str]) -> String {
    let o = train_cli(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.signal(), None, "{args:?} was killed: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(o.status.code(), Some(code), "{args:?}: {stderr}");
    for w in words {
        assert!(stderr.contains(w), "{args:?}: {w:?} not in {stderr}");
    }
    stderr
}

fn succeeds(args: &[&str]) -> Output {
    let o = train_cli(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pocketgan-bad-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A tiny toy run's flags (an MLP on ring8: a step takes milliseconds).
fn toy(out: &str, steps: &str) -> Vec<String> {
    [
        "train",
        "--data",
        "toy:ring8",
        "--model",
        "mlp",
        "--width",
        "16",
        "--batch",
        "16",
        "--steps",
        steps,
        "--checkpoint-every",
        "4",
        "--sample-every",
        "100",
        "--quiet",
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `v` with `flag` set to `value` (replaced where `v` has it, else appended).
fn with(v: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut v = v.to_vec();
    match v.iter().position(|a| a == flag) {
        Some(i) => v[i + 1] = value.into(),
        None => v.extend([flag.into(), value.into()]),
    }
    v
}

#[test]
fn invalid_and_oversized_configurations_are_refused_before_training() {
    let dir = scratch("config");
    let out = s(&dir.join("run"));
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    image::RgbImage::new(8, 8).save(flat.join("a.png")).unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (flat, empty) = (
        format!("folder:{}", s(&flat)),
        format!("folder:{}", s(&empty)),
    );
    let onnx =
        s(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/generator_tiny.onnx"));
    let train = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["train", "--steps", "2", "--quiet", "--out", &out];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect()
    };
    let cases: Vec<(i32, Vec<String>, Vec<&str>)> = vec![
        // Learning rates: NaN used to be written into config.json as null.
        (
            1,
            train(&["--lr", "nan"]),
            vec!["--lr must be a positive number", "NaN"],
        ),
        (
            1,
            train(&["--lr=-1"]),
            vec!["--lr must be a positive number"],
        ),
        (
            1,
            train(&["--lr", "0"]),
            vec!["--lr must be a positive number"],
        ),
        (
            1,
            train(&["--lr", "inf"]),
            vec!["--lr must be a positive number"],
        ),
        (2, train(&["--lr", "fast"]), vec!["--lr"]),
        (
            1,
            train(&["--lr-decay-start", "2"]),
            vec!["--lr-decay-start"],
        ),
        (
            1,
            train(&["--lr-decay-start", "nan"]),
            vec!["--lr-decay-start"],
        ),
        // Sizes: a width of a million asked for 25 GB and aborted.
        (
            1,
            train(&["--width", "1000000"]),
            vec!["parameter count", "over the limit"],
        ),
        (
            1,
            train(&[
                "--family",
                "pix2pix",
                "--data",
                "pairs:google,twitter",
                "--width",
                "100000",
            ]),
            vec!["parameter count", "over the limit"],
        ),
        (1, train(&["--width", "0"]), vec!["width must be positive"]),
        (1, train(&["--batch", "0"]), vec!["--batch", "positive"]),
        (
            1,
            train(&["--batch", "100000"]),
            vec!["--batch", "over the limit"],
        ),
        (
            1,
            train(&["--model", "mlp", "--size", "100000"]),
            vec!["image side", "over the limit"],
        ),
        (1, train(&["--size", "48"]), vec!["dcgan supports"]),
        (1, train(&["--channels", "2"]), vec!["1 or 3 channels"]),
        (1, train(&["--keep", "0"]), vec!["--keep"]),
        (1, train(&["--critic-steps", "0"]), vec!["--critic-steps"]),
        (1, train(&["--checkpoint-every", "0"]), vec!["intervals"]),
        (
            1,
            train(&["--aux-weight=-1", "--cond", "acgan"]),
            vec!["auxiliary weight"],
        ),
        // Families, losses and data that do not go together.
        (
            1,
            train(&["--family", "seqgan"]),
            vec!["token sequences", "--data oracle"],
        ),
        (1, train(&["--data", "oracle:50"]), vec!["--family seqgan"]),
        (
            1,
            train(&[
                "--family",
                "pix2pix",
                "--data",
                "pairs:google,twitter",
                "--cond",
                "cgan",
            ]),
            vec!["--cond does not apply"],
        ),
        (
            1,
            train(&[
                "--family",
                "pix2pix",
                "--data",
                "pairs:google,twitter",
                "--l1-weight",
                "nan",
            ]),
            vec!["--l1-weight"],
        ),
        (
            1,
            train(&[
                "--family",
                "cyclegan",
                "--data",
                "pairs:google,twitter",
                "--cycle-weight=-1",
            ]),
            vec!["--cycle-weight"],
        ),
        (
            1,
            train(&[
                "--family",
                "cyclegan",
                "--data",
                "pairs:google,twitter",
                "--loss",
                "wgan",
            ]),
            vec!["lsgan"],
        ),
        (
            1,
            train(&["--loss", "wgan-gp", "--cond", "sgan"]),
            vec!["--cond sgan"],
        ),
        (
            1,
            train(&["--gp-lambda", "5"]),
            vec!["--gp-lambda", "wgan-gp"],
        ),
        (
            1,
            train(&[
                "--family",
                "seqgan",
                "--data",
                "oracle:50",
                "--rollout-update",
                "2",
            ]),
            vec!["--rollout-update"],
        ),
        (
            1,
            train(&[
                "--family",
                "seqgan",
                "--data",
                "oracle:50",
                "--rollouts",
                "0",
            ]),
            vec!["--rollouts"],
        ),
        // Data that is missing or laid out wrongly.
        (1, train(&["--data", "nosuch"]), vec!["nosuch"]),
        (
            1,
            train(&["--data", "folder:/nonexistent/pocketgan"]),
            vec!["/nonexistent/pocketgan"],
        ),
        (
            1,
            train(&["--data", &flat]),
            vec!["one subfolder per class"],
        ),
        (1, train(&["--data", &empty]), vec!["no images found"]),
        (
            1,
            train(&["--family", "seqgan", "--data", "oracle:/nonexistent/oracle"]),
            vec!["/nonexistent/oracle"],
        ),
        (
            1,
            train(&[
                "--family",
                "pix2pix",
                "--data",
                "folder:/nonexistent/a,/nonexistent/b",
            ]),
            vec!["/nonexistent/a"],
        ),
        // Resuming what is not there.
        (
            1,
            train(&["--resume"]),
            vec!["nothing to resume", "config.json"],
        ),
        // Export and eval of what is not a run or does not fit.
        (
            1,
            vec!["export".into(), s(&dir.join("none"))],
            vec!["config.json"],
        ),
        (
            1,
            vec!["eval".into(), onnx.clone(), "--n".into(), "0".into()],
            vec!["--n must be at least 2"],
        ),
        (
            1,
            vec!["eval".into(), onnx.clone(), "--n".into(), "1".into()],
            vec!["--n must be at least 2"],
        ),
        (
            1,
            vec![
                "eval".into(),
                onnx.clone(),
                "--n".into(),
                "100000000".into(),
            ],
            vec!["over the limit"],
        ),
        (
            1,
            vec![
                "eval".into(),
                onnx.clone(),
                "--data".into(),
                "toy:ring8".into(),
                "--n".into(),
                "100".into(),
            ],
            vec!["toy:ring8", "[2]"],
        ),
        (
            1,
            vec![
                "eval".into(),
                onnx.clone(),
                "--data".into(),
                "nosuch".into(),
            ],
            vec!["nosuch"],
        ),
        (
            1,
            vec!["eval".into(), s(&dir.join("missing.onnx"))],
            vec!["missing.onnx"],
        ),
        (
            1,
            vec!["eval".into(), onnx.clone(), "--versus".into(), onnx.clone()],
            vec!["--versus", "image-to-image"],
        ),
    ];
    for (code, a, words) in &cases {
        refused_with(*code, &args(a), words);
        assert!(
            !Path::new(&out).join("config.json").exists(),
            "{a:?} left a run behind"
        );
    }
    eprintln!("{} refused configurations checked", cases.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run that diverges before its first checkpoint says so and leaves a folder that trains again
/// (it used to claim a kept checkpoint, and refuse the folder as "already holding a run"); one
/// with a checkpoint is kept and resumable.
#[test]
fn run_folders_without_a_checkpoint_restart() {
    let dir = scratch("restart");
    let out = s(&dir.join("run"));
    let diverging = with(&toy(&out, "8"), "--lr", "1e30");
    let e = refused_with(1, &args(&diverging), &["diverged"]);
    if Path::new(&out)
        .join("checkpoints/step_000004.ckpt")
        .exists()
    {
        assert!(e.contains("is kept"), "{e}");
    } else {
        assert!(e.contains("No checkpoint was written yet"), "{e}");
        // The same folder trains again with a sane rate.
        succeeds(&args(&toy(&out, "2")));
    }
    let _ = std::fs::remove_dir_all(&out);
    // A run killed before its first checkpoint (config.json, no checkpoint): --resume starts it
    // from step 0, and so does a fresh run.
    succeeds(&args(&toy(&out, "2")));
    let checkpoints = Path::new(&out).join("checkpoints");
    std::fs::remove_dir_all(&checkpoints).unwrap();
    let mut resume = toy(&out, "2");
    resume.push("--resume".into());
    let o = succeeds(&args(&resume));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("starting it from step 0"), "{e}");
    std::fs::remove_dir_all(&checkpoints).unwrap();
    succeeds(&args(&toy(&out, "2")));
    // With a checkpoint, a fresh run is refused (nothing is overwritten) and --resume goes on.
    refused_with(
        1,
        &args(&toy(&out, "4")),
        &["already holds a run", "--resume"],
    );
    let mut resume = toy(&out, "6");
    resume.push("--resume".into());
    succeeds(&args(&resume));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--resume` with a flag that would change the run is refused rather than ignored; the same
/// flags as the run's own are accepted.
#[test]
fn resume_refuses_conflicting_flags() {
    let dir = scratch("conflict");
    let out = s(&dir.join("run"));
    succeeds(&args(&toy(&out, "2")));
    let mut again = toy(&out, "4");
    again.push("--resume".into());
    let wider = with(&with(&again, "--width", "32"), "--lr", "0.003");
    refused_with(
        1,
        &args(&wider),
        &[
            "--width gives 32 but the run has 16",
            "--lr gives 0.003",
            "only --steps may change",
        ],
    );
    let other_data = with(&again, "--data", "toy:grid25");
    refused_with(1, &args(&other_data), &["--data gives \"toy:grid25\""]);
    // The run's own flags (toy() repeats them) and a new --steps resume.
    succeeds(&args(&again));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A corrupt newest checkpoint: resume and export fall back to the older one and say so, and the
/// corrupt file is kept aside; a truncated metrics.csv is reported, not silently gapped.
#[test]
fn corrupt_newest_checkpoint_falls_back_and_a_metrics_gap_is_reported() {
    let dir = scratch("fallback");
    let out = dir.join("run");
    let run = s(&out);
    let mut t = toy(&run, "8");
    t.extend(["--keep", "3"].map(String::from));
    succeeds(&args(&t));
    let newest = out.join("checkpoints/step_000008.ckpt");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let o = succeeds(&["export", &run]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("step_000008.ckpt") && e.contains("step 4"),
        "{e}"
    );
    // eval judges the older checkpoint too, and says so.
    let o = succeeds(&["eval", &run, "--n", "100"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("judged an older checkpoint") && e.contains("step_000008.ckpt"),
        "{e}"
    );
    // metrics.csv cut in the middle of a row: the torn row is dropped, the gap reported.
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let cut = metrics.lines().take(3).map(|l| l.len() + 1).sum::<usize>() + 5;
    std::fs::write(out.join("metrics.csv"), &metrics[..cut]).unwrap();
    let mut resume = toy(&run, "12");
    resume.push("--resume".into());
    let o = succeeds(&args(&resume));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("kept as") && e.contains("resuming from the checkpoint of step 4"),
        "{e}"
    );
    assert!(
        e.contains("rows up to step 2") && e.contains("3..=4"),
        "{e}"
    );
    assert!(out.join("checkpoints/step_000008.ckpt.corrupt").exists());
    let rows = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let steps: Vec<u64> = rows
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 5, 6, 7, 8, 9, 10, 11, 12]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGINT writes a checkpoint and exits 130 (it used to exit 0 like a finished run).
#[test]
fn an_interrupted_run_exits_130() {
    let dir = scratch("sigint");
    let out = dir.join("run");
    let t = toy(&s(&out), "1000000");
    let child = Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(&t)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training is under way (any checkpoint), then Ctrl-C. Not a named step:
    // with `--keep` a fast machine deletes step 4 within milliseconds, and a poll can miss it.
    let has_checkpoint = || {
        std::fs::read_dir(out.join("checkpoints")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "ckpt"))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !has_checkpoint() {
        assert!(
            std::time::Instant::now() < deadline,
            "training never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("--resume"));
    let _ = std::fs::remove_dir_all(&dir);
}
