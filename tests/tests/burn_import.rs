//! Our ONNX export, re-imported into Burn by burn-onnx's code generation (tests/build.rs), computes
//! what the Burn generator it was exported from computes.
//!
//! The fixture is the export of a small DCGAN trained two steps; after changing the model or the
//! exporter, regenerate it with the commands in `fixtures/README.md`.

use burn::prelude::*;
use pocketgan_tests::{burn_generate, max_abs_diff, train_quietly};
use pocketgan_trainer::config::{EmaChoice, TrainConfig};
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::family;
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;

#[allow(dead_code)]
mod imported {
    include!(concat!(env!("OUT_DIR"), "/model/generator_tiny.rs"));
}

#[test]
fn burn_onnx_reimport_matches_the_burn_generator() {
    // The run of fixtures/README.md, made through the library.
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
    // The fixture's run predates the defaults' lr 1e-3 and moving average.
    config.lr = 2e-4;
    config.ema = EmaChoice::Off;
    let dir = tempfile::tempdir().unwrap();
    let state = train_quietly(&config, &dir.path().join("fixture"));

    let device = Device::flex();
    let model = imported::Model::from_embedded(&device);
    for n in [1, 4] {
        let z = family::latents(5, n as u64, n, config.model.latent, &device);
        let want = burn_generate(state.family.as_ref(), z.clone(), None);
        let got: Vec<f32> = model.forward(z).into_data().try_into_vec().unwrap();
        let d = max_abs_diff(&want, &got);
        assert!(
            d <= 1e-4,
            "batch {n}: max abs diff {d} (stale fixture? see fixtures/README.md)"
        );
    }
}
