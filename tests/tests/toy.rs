//! A short MLP GAN run on the 8-Gaussian ring covers every mode with mostly high-quality samples.

use burn::prelude::*;
use pocketgan_tests::{train_quietly, RING8_BATCH, RING8_LR, RING8_STEPS};
use pocketgan_trainer::config::TrainConfig;
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::family::samples;
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;

#[test]
fn ring8_covers_all_modes() {
    let dir = tempfile::tempdir().unwrap();
    let source = DataSource::Ring8;
    let mut config = TrainConfig::new(&source, Architecture::Mlp, GanLoss::Nonsaturating);
    config.steps = RING8_STEPS;
    config.batch = RING8_BATCH;
    config.lr = RING8_LR;
    config.seed = 1;
    let state = train_quietly(&config, &dir.path().join("ring8"));

    let generator = state.family.latent_generator().unwrap();
    let points = samples::generate(generator, &config, 2500, 99, &Device::flex());
    let c = source.mixture().unwrap().coverage(&points);
    println!("ring8 after {} steps: {c:?}", config.steps);
    assert_eq!(c.modes_covered, 8, "{c:?}");
    assert!(c.high_quality >= 0.8, "{c:?}");
}
