//! The stabilisation tricks change what they say they change, and nothing at their neutral value:
//! one-sided label smoothing moves D's loss from the first step (G's only through D), a rate of
//! its own for D moves G's loss from the first step (G steps through the updated D) and D's own
//! loss from the second; at target 1 and at D's rate equal to --lr every metric is the baseline's.
//!
//! One test, run by turns: every run draws its networks from the process-wide device generator.

use pocketgan_trainer::config::TrainConfig;
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::history::{self, StepMetrics};
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;
use pocketgan_trainer::train::{train, RunOptions};

fn tiny() -> TrainConfig {
    let mut c = TrainConfig::new(
        &DataSource::Digits,
        Architecture::Dcgan,
        GanLoss::Nonsaturating,
    );
    (c.steps, c.batch, c.model.width, c.model.latent, c.seed) = (3, 16, 8, 16, 5);
    c
}

/// Every metric but the wall-clock seconds, per step.
fn run(config: &TrainConfig, dir: &std::path::Path, name: &str) -> Vec<[f32; 6]> {
    let out = dir.join(name);
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    train(config, &out, &opts).unwrap();
    history::read(&out.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|m: &StepMetrics| {
            [
                m.loss_d,
                m.loss_g,
                m.d_real,
                m.d_fake,
                m.grad_norm_d,
                m.grad_norm_g,
            ]
        })
        .collect()
}

#[test]
fn tricks_change_what_they_say_and_nothing_at_their_neutral_value() {
    let dir = tempfile::tempdir().unwrap();
    let base = run(&tiny(), dir.path(), "base");

    let mut neutral = tiny();
    neutral.label_smoothing = Some(1.0);
    neutral.lr_d = Some(neutral.lr);
    neutral.lr_g = Some(neutral.lr);
    assert_eq!(run(&neutral, dir.path(), "neutral"), base);

    let mut smooth = tiny();
    smooth.label_smoothing = Some(0.9);
    let smooth = run(&smooth, dir.path(), "smooth");
    // Step 1: D's loss differs, D's opinions of the same batches (before its update) do not.
    assert_ne!(smooth[0][0], base[0][0]);
    assert_eq!(smooth[0][2..4], base[0][2..4]);

    let mut ttur = tiny();
    ttur.lr_d = Some(4.0 * ttur.lr);
    let ttur = run(&ttur, dir.path(), "ttur");
    // Step 1: D's loss is computed before its update (the same); G then steps through a D moved
    // four times as far, so G's loss differs; from step 2 on, D's differs too.
    assert_eq!(ttur[0][0], base[0][0]);
    assert_ne!(ttur[0][1], base[0][1]);
    assert_ne!(ttur[1][0], base[1][0]);
}
