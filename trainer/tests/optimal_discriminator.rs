//! The optimal discriminator, measured on toy:mix1d: with G frozen and D trained on toward its
//! optimum, D comes within 0.05 of D* = p_data / (p_data + p_g) (mean |D - D*| over the points
//! D trains on), and the minimax value's Jensen-Shannon estimate meets the divergence computed
//! from the densities. Before that training, at the same G, neither holds: the test can fail.

use pocketgan_trainer::config::TrainConfig;
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::metrics::optimal::{self, OptimalNumbers};
use pocketgan_trainer::model::Architecture;
use pocketgan_trainer::run::RunDir;
use pocketgan_trainer::train::{train, RunOptions};

/// G trains for 100 iterations and then stays as it is.
const FROZEN_AT: u64 = 100;

fn config(steps: u64) -> TrainConfig {
    let mut c = TrainConfig::new(
        &"toy:mix1d".parse::<DataSource>().unwrap(),
        Architecture::Mlp,
        GanLoss::Nonsaturating,
    );
    (c.steps, c.batch, c.seed) = (steps, 256, 0);
    c.freeze_g_after = Some(FROZEN_AT);
    // D's rate decays linearly to zero over the last 70% of the run, so that it settles.
    (c.lr_decay, c.lr_decay_start) = (true, 0.3);
    c.sample_every = steps;
    c
}

/// The run in `dir` trained (or resumed) until `stop_at` iterations are done, and its numbers.
fn numbers(dir: &std::path::Path, config: &TrainConfig, stop_at: u64) -> OptimalNumbers {
    let opts = RunOptions {
        quiet: true,
        resume: dir.exists(),
        stop_at: (stop_at < config.steps).then_some(stop_at),
        ..Default::default()
    };
    train(config, dir, &opts).unwrap();
    let (analysis, step) = optimal::of_run(&RunDir(dir.into())).unwrap().unwrap();
    assert_eq!(step, stop_at);
    analysis.numbers
}

#[test]
fn a_discriminator_trained_against_a_frozen_generator_reaches_the_optimum() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = config(3000);
    // Where G is frozen, then after 2,900 more iterations of D alone.
    let early = numbers(&run, &config, FROZEN_AT);
    let late = numbers(&run, &config, config.steps);
    // The same G (frozen at the same iteration), so the same divergence.
    assert!((early.jsd - late.jsd).abs() < 1e-9, "{early:?} {late:?}");
    assert!(late.jsd > 0.05, "G is not the data yet: {late:?}");
    // D's distance to its optimum, and the minimax value's divergence against the densities'.
    let value_gap = |n: &OptimalNumbers| (n.jsd_from_value.unwrap() - n.jsd).abs();
    assert!(early.gap.unwrap() > 0.1, "{early:?}");
    assert!(value_gap(&early) > 0.05, "{early:?}");
    assert!(late.gap.unwrap() < 0.05, "{late:?}");
    assert!(value_gap(&late) < 0.02, "{late:?}");
}
