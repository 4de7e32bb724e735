//! The stabilisation tricks change what they say they change, and nothing at their neutral value:
//! one-sided label smoothing moves D's loss from the first step (G's only through D), a rate of
//! its own for D moves G's loss from the first step (G steps through the updated D) and D's own
//! loss from the second; at target 1 and at D's rate equal to --lr every metric is the baseline's.
//! Feature matching changes G's loss only; instance noise what D sees; the minibatch standard
//! deviation D's verdicts; historical averaging nothing at the first step (every network is its
//! own mean) and the gradients from the second. With every trick on, an interrupted and resumed
//! run is the uninterrupted one.
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
    run_with(config, dir, name, &[None])
}

/// [`run`], in one or more sittings: each stops after the given number of iterations (or
/// runs to the end) and the next resumes.
fn run_with(
    config: &TrainConfig,
    dir: &std::path::Path,
    name: &str,
    sittings: &[Option<u64>],
) -> Vec<[f32; 6]> {
    let out = dir.join(name);
    for (i, stop_at) in sittings.iter().enumerate() {
        let opts = RunOptions {
            quiet: true,
            resume: i > 0,
            stop_at: *stop_at,
            ..Default::default()
        };
        train(config, &out, &opts).unwrap();
    }
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

    let mut matching = tiny();
    matching.feature_matching = true;
    let matching = run(&matching, dir.path(), "matching");
    // Step 1: D's step is the baseline's; G's loss is another objective.
    assert_eq!(matching[0][0], base[0][0]);
    assert_eq!(matching[0][2..5], base[0][2..5]);
    assert_ne!(matching[0][1], base[0][1]);

    let mut noise = tiny();
    noise.instance_noise = Some(0.5);
    let noise = run(&noise, dir.path(), "noise");
    // Step 1: D reads the same batches with noise, so its opinions differ.
    assert_ne!(noise[0][2..4], base[0][2..4]);

    let mut stddev = tiny();
    stddev.model.minibatch_stddev = true;
    let stddev = run(&stddev, dir.path(), "stddev");
    assert_ne!(stddev[0][0], base[0][0]);

    let mut history = tiny();
    history.historical_averaging = Some(10.0);
    let history = run(&history, dir.path(), "history");
    // Step 1: every network is at its own mean, so the pull is zero. Step 2: D's loss is
    // measured before its update (the same), its gradient includes the pull (not the same).
    assert_eq!(history[0], base[0]);
    assert_eq!(history[1][0], base[1][0]);
    assert_ne!(history[1][4], base[1][4]);

    let mut all = tiny();
    all.feature_matching = true;
    all.model.minibatch_stddev = true;
    all.instance_noise = Some(0.2);
    all.historical_averaging = Some(1.0);
    all.checkpoint_every = 1;
    let whole = run(&all, dir.path(), "all");
    let resumed = run_with(&all, dir.path(), "all-resumed", &[Some(2), None]);
    assert_eq!(resumed, whole);
}
