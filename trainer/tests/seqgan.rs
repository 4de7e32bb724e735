//! SeqGAN on a tiny oracle (vocabulary 50) through the CLI: MLE pre-training, D pre-training and a
//! few adversarial rounds must leave a generator whose samples the oracle finds far likelier than
//! a random generator's (an untrained LSTM of G's shape and initial scale).

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
    let _ = std::fs::remove_dir_all(&out);
}
