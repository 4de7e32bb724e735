//! SeqGAN on a tiny oracle (vocabulary 50) through the CLI: MLE pre-training, D pre-training and a
//! few adversarial rounds must leave a generator whose samples the oracle finds far likelier than
//! a random generator's (an untrained LSTM of G's shape and initial scale).

mod common;

use pocketgan_trainer::data::oracle::{OracleSource, LENGTH};
use std::process::Command;

#[test]
fn a_short_seqgan_run_beats_the_random_generator_on_nll_oracle() {
    let out = std::env::temp_dir().join(format!("pocketgan-seqgan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = out.to_string_lossy().into_owned();
    let args = [
        "train",
        "--family",
        "seqgan",
        "--data",
        "oracle:50",
        "--out",
        &run,
        "--seed",
        "2",
        "--threads",
        "1",
        "--quiet",
        "--pretrain-g-steps",
        "150",
        "--pretrain-d-steps",
        "10",
        "--adversarial-rounds",
        "3",
        "--eval-every",
        "50",
        "--eval-samples",
        "1000",
        "--rollouts",
        "4",
        "--round-d-steps",
        "1",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(args)
        .output()
        .expect("pocketgan-train runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");

    // The last NLL-oracle the run recorded.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "nll_oracle").unwrap();
    let nlls: Vec<f64> = lines
        .filter_map(|l| l.split(',').nth(col)?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect();
    assert!(
        nlls.len() >= 3,
        "NLL-oracle recorded at {} points",
        nlls.len()
    );
    let trained = *nlls.last().unwrap();

    // The random generator: an untrained LSTM as G starts (N(0, 0.1) weights), scored by the
    // same oracle on as many sequences.
    let oracle = OracleSource::parse(Some("50")).unwrap().oracle().unwrap();
    let random = pocketgan_trainer::data::oracle::Lstm::random(50, 32, 32, 0.1, 7);
    let random_nll = oracle.nll(&random.sample(1000, LENGTH, 9), LENGTH);
    eprintln!("NLL-oracle: random generator {random_nll:.3}, SeqGAN run {trained:.3} ({nlls:?})");
    assert!(
        trained < random_nll - 0.2,
        "SeqGAN {trained:.3} against the random generator's {random_nll:.3}"
    );

    // The exported one-step cell, sampled by the runtime on tract, is the same generator: its
    // NLL-oracle is Burn's within sampling noise (2,000 sequences each, different draws), far
    // from the random generator's. Quantized to int8 (calibrated on its own sequences), it
    // stays within the 0.05 nats of the float cell.
    let onnx = out.join("generator.onnx");
    let pgq = out.join("generator.pgq");
    let (bytes, report) = pocketgan_runtime::quantize::quantize(
        &std::fs::read(&onnx).unwrap(),
        &pocketgan_runtime::quantize::QuantizeOptions::default(),
    )
    .unwrap();
    std::fs::write(&pgq, bytes).unwrap();
    let kl = report.token_kl.expect("a token cell's report");
    let o = Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(["eval", &run, "--n", "2000", "--json", "--versus"])
        .arg(&onnx)
        .arg("--versus")
        .arg(&pgq)
        .output()
        .expect("pocketgan-train runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nll = |row: usize| report["rows"][row]["nll_oracle"].as_f64().unwrap();
    let (burn, tract, int8, floor) = (nll(0), nll(1), nll(2), nll(3));
    eprintln!(
        "eval: Burn {burn:.3}, the ONNX cell on tract {tract:.3}, int8 {int8:.3} (next-token KL {kl:.4}), the oracle {floor:.3}"
    );
    assert!(report["rows"][1]["name"]
        .as_str()
        .unwrap()
        .contains("tract"));
    assert!(report["rows"][2]["name"].as_str().unwrap().contains("int8"));
    assert!(
        (burn - tract).abs() < 0.1,
        "Burn {burn:.3}, tract {tract:.3}"
    );
    assert!(
        (int8 - tract).abs() < 0.05,
        "int8 {int8:.3}, tract {tract:.3}"
    );
    assert!(
        floor < burn,
        "the oracle's own samples {floor:.3} against G's {burn:.3}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A SeqGAN run interrupted in each phase (G's pre-training, D's pre-training, the adversarial
/// rounds with their rollout network) and resumed records the metrics of an uninterrupted run:
/// all three networks, both optimizers and the rollout copy come back from the checkpoint.
#[test]
fn a_seqgan_run_resumes_exactly_in_every_phase() {
    use pocketgan_trainer::config::{SampleShape, TrainConfig};
    use pocketgan_trainer::data::DataSource;
    use pocketgan_trainer::family::FamilyKind;
    use pocketgan_trainer::loss::GanLoss;
    use pocketgan_trainer::model::Architecture;
    use pocketgan_trainer::train::{train, Outcome, RunOptions};

    let root = std::env::temp_dir().join(format!("pocketgan-seqgan-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let source: DataSource = "oracle:20".parse().unwrap();
    let mut config = TrainConfig::new(&source, Architecture::Mlp, GanLoss::Nonsaturating);
    config.family = FamilyKind::Seqgan;
    config.seed = 3;
    let s = &mut config.seqgan;
    (s.pretrain_g_steps, s.pretrain_d_steps, s.adversarial_rounds) = (6, 4, 4);
    (s.eval_every, s.eval_samples, s.rollouts, s.round_d_steps) = (3, 200, 2, 1);
    config.complete(&source, SampleShape::default(), |_| false);
    config.checkpoint_every = 1;
    assert_eq!(config.steps, 14);
    let options = |resume, stop_at| RunOptions {
        resume,
        quiet: true,
        stop_at,
        ..Default::default()
    };
    let whole = root.join("whole");
    train(&config, &whole, &options(false, None)).unwrap();
    // Interrupted after step 4 (G's pre-training), 8 (D's) and 11 (an adversarial round).
    let split = root.join("split");
    for (resume, at) in [(false, 4), (true, 8), (true, 11)] {
        let outcome = train(&config, &split, &options(resume, Some(at))).unwrap();
        assert_eq!(outcome, Outcome::Interrupted { at_step: at });
    }
    train(&config, &split, &options(true, None)).unwrap();
    let (a, b) = (
        common::metrics_without_seconds(&whole),
        common::metrics_without_seconds(&split),
    );
    assert_eq!(a.len(), 15);
    assert_eq!(a, b);
    let _ = std::fs::remove_dir_all(&root);
}
