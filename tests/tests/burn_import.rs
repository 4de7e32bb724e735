//! Our ONNX export, re-imported into Burn by burn-onnx's code generation (tests/build.rs), computes
//! what the Burn generator it was exported from computes.
//!
//! The fixture is the export of a small DCGAN trained two steps; after changing the model or the
//! exporter, regenerate it with the commands in `fixtures/README.md`.

use burn::prelude::*;
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;
use pocketgan_trainer::train::{self, RunDir, RunOptions, State, TrainConfig};

#[allow(dead_code)]
mod imported {
    include!(concat!(env!("OUT_DIR"), "/model/generator_tiny.rs"));
}

/// The run of `fixtures/README.md`, made through the library.
fn fixture_state() -> (TrainConfig, State) {
    let mut config = TrainConfig::new(
        &DataSource::Digits,
        Architecture::Dcgan,
        GanLoss::Nonsaturating,
    );
    config.model.width = 8;
    config.model.latent = 16;
    config.batch = 16;
    config.seed = 11;
    config.steps = 2;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("fixture");
    train::train(
        &config,
        &run,
        &RunOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap();
    let state = train::load_latest(&RunDir(run), &config, &Device::flex().autodiff()).unwrap();
    (config, state)
}

#[test]
fn burn_onnx_reimport_matches_the_burn_generator() {
    let (config, state) = fixture_state();
    let device = Device::flex();
    let model = imported::Model::from_embedded(&device);
    for n in [1, 4] {
        let z = train::latents(5, n as u64, n, config.model.latent, &device);
        let want: Vec<f32> = state
            .generator
            .valid()
            .forward(z.clone())
            .into_data()
            .try_into_vec()
            .unwrap();
        let got: Vec<f32> = model.forward(z).into_data().try_into_vec().unwrap();
        assert_eq!(want.len(), got.len());
        let d = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d <= 1e-4,
            "batch {n}: max abs diff {d} (stale fixture? see the module docs)"
        );
    }
}
