//! SeqGAN on users' text (`--data text:FILE`) through the CLI: the run stores its vocabulary,
//! `eval` scores G's samples by BLEU against the held-out lines and by novelty, a generator
//! trained by maximum likelihood scores above a barely trained one, and a file that no longer
//! gives the run's vocabulary is refused.

use std::path::Path;
use std::process::Command;

fn pocketgan_train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pocketgan-train"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("pocketgan-train runs")
}

/// A SeqGAN run on `file` with `mle_steps` of pre-training and two adversarial rounds, then its
/// `eval --json`.
fn run_and_eval(file: &Path, out: &Path, mle_steps: &str) -> serde_json::Value {
    let (file, run) = (file.to_string_lossy(), out.to_string_lossy());
    let data = format!("text:{file}");
    let o = pocketgan_train(&[
        "train",
        "--family",
        "seqgan",
        "--data",
        &data,
        "--out",
        &run,
        "--seed",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--pretrain-g-steps",
        mle_steps,
        "--pretrain-d-steps",
        "5",
        "--adversarial-rounds",
        "2",
        "--rollouts",
        "2",
        "--round-d-steps",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = pocketgan_train(&["eval", &run, "--n", "500", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_text_run_stores_its_vocabulary_and_is_scored_by_bleu() {
    let dir = tempfile::tempdir().unwrap();
    // Words of a small language: consonant-vowel syllables, one to three per word.
    let (consonants, vowels) = (["b", "d", "k", "l", "m", "s", "t"], ["a", "e", "i", "o"]);
    let syllables: Vec<String> = consonants
        .iter()
        .flat_map(|c| vowels.iter().map(move |v| format!("{c}{v}")))
        .collect();
    let mut words = Vec::new();
    for (i, a) in syllables.iter().enumerate() {
        words.push(a.clone());
        for (j, b) in syllables
            .iter()
            .enumerate()
            .filter(|(j, _)| (i + j) % 3 == 0)
        {
            words.push(format!("{a}{b}"));
            words.push(format!(
                "{a}{b}{}",
                syllables[(i * 7 + j) % syllables.len()]
            ));
        }
    }
    let file = dir.path().join("words.txt");
    std::fs::write(&file, words.join("\n")).unwrap();

    let barely = run_and_eval(&file, &dir.path().join("barely"), "2");
    let trained = run_and_eval(&file, &dir.path().join("trained"), "300");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("trained/config.json")).unwrap())
            .unwrap();
    let vocabulary = config["vocabulary"].as_array().unwrap();
    assert_eq!(vocabulary[0], "<end>");
    assert_eq!(vocabulary.len(), 1 + 7 + 4, "{vocabulary:?}");

    let row = |r: &serde_json::Value, i: usize| r["rows"][i].clone();
    let bleu4 = |r: &serde_json::Value| row(r, 0)["bleu"][2].as_f64().unwrap();
    // The training lines are no novelty and near the BLEU ceiling.
    assert_eq!(row(&trained, 1)["novel"].as_f64().unwrap(), 0.0);
    assert!(
        row(&trained, 1)["bleu"][0].as_f64().unwrap() > 0.9,
        "{trained}"
    );
    assert_eq!(row(&trained, 0)["samples"].as_u64().unwrap(), 500);
    assert!(
        bleu4(&trained) > bleu4(&barely) + 0.1,
        "trained {trained}\nbarely {barely}"
    );

    // The file changed under the run: its vocabulary is not the stored one.
    std::fs::write(&file, words.join("\n").replace('k', "q")).unwrap();
    let run = dir.path().join("trained");
    let o = pocketgan_train(&["eval", &run.to_string_lossy()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not the one the run trained with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
