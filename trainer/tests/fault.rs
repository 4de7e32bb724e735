//! Training killed at any point resumes to exactly the run it would have been: SIGKILL before the
//! first checkpoint, in the middle of a checkpoint write, and at seeded random moments, each
//! followed by `--resume`, must end with the same metrics at every step (every column but the
//! wall-clock seconds: both networks' losses, opinions and gradient norms, so D and both Adam
//! states are followed too) and the same exported generator, byte for byte, as an uninterrupted
//! run. (Checkpoint files themselves differ between any two runs: Burn's records carry
//! per-process parameter ids.)

mod common;

use common::metrics_without_seconds as metrics;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const STEPS: &str = "1200";

fn train(out: &Path, resume: bool) -> Child {
    let mut args: Vec<String> = [
        "train",
        "--data",
        "toy:ring8",
        "--model",
        "mlp",
        "--width",
        "64",
        "--batch",
        "64",
        "--steps",
        STEPS,
        "--checkpoint-every",
        "10",
        "--sample-every",
        "1000",
        "--keep",
        "2",
        "--quiet",
        "--out",
    ]
    .map(String::from)
    .to_vec();
    args.push(out.to_string_lossy().into_owned());
    if resume {
        args.push("--resume".into());
    }
    Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pocketgan-train starts")
}

fn finish(child: Child) {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn generator(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("generator.onnx")).unwrap()
}

fn partial_writes(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out.join("checkpoints"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}

fn has_checkpoint(out: &Path) -> bool {
    std::fs::read_dir(out.join("checkpoints"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "ckpt"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    BeforeFirstCheckpoint,
    DuringCheckpointWrite,
    AtRandom,
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_run() {
    let root = std::env::temp_dir().join(format!("pocketgan-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let reference = root.join("reference");
    let started = Instant::now();
    finish(train(&reference, false));
    // Random kills fall anywhere in a run's length (each resumed run is shorter).
    let length = started.elapsed().as_millis() as u64;

    let out = root.join("killed");
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let plan = [
        Kill::BeforeFirstCheckpoint,
        Kill::DuringCheckpointWrite,
        Kill::AtRandom,
        Kill::DuringCheckpointWrite,
        Kill::AtRandom,
        Kill::DuringCheckpointWrite,
        Kill::AtRandom,
    ];
    let mut landed = Vec::new();
    for kill in plan {
        let resume = out.join("config.json").exists();
        let mut child = train(&out, resume);
        let started = Instant::now();
        let delay = Duration::from_millis(rng.random_range(0..length.max(2) / 2));
        loop {
            let now = match kill {
                Kill::BeforeFirstCheckpoint => out.join("config.json").exists(),
                Kill::DuringCheckpointWrite => !partial_writes(&out).is_empty(),
                Kill::AtRandom => started.elapsed() >= delay,
            };
            if now || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill: the rest of the plan has nothing to kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Where the kill landed, as the folder shows it.
        let at = match kill {
            Kill::BeforeFirstCheckpoint if !has_checkpoint(&out) => Some(kill),
            Kill::DuringCheckpointWrite if !partial_writes(&out).is_empty() => Some(kill),
            Kill::AtRandom => Some(kill),
            _ => None,
        };
        landed.extend(at);
    }
    let resume = out.join("config.json").exists();
    finish(train(&out, resume));

    assert!(
        landed.contains(&Kill::BeforeFirstCheckpoint),
        "no kill landed before the first checkpoint: {landed:?}"
    );
    assert!(
        landed.contains(&Kill::DuringCheckpointWrite),
        "no kill landed during a checkpoint write: {landed:?}"
    );
    assert_eq!(metrics(&out), metrics(&reference));
    assert_eq!(metrics(&out).len(), 1201);
    assert!(landed.len() >= 5, "only {landed:?} kills landed");
    assert!(
        generator(&out) == generator(&reference),
        "the resumed run's generator differs from the uninterrupted run's"
    );
    eprintln!("kills landed: {landed:?}");
    let _ = std::fs::remove_dir_all(&root);
}
