//! Helpers shared by the end-to-end tests in `tests/`.

use std::path::Path;

use burn::prelude::*;
use pocketgan_trainer::train::{self, RunDir, RunOptions, State, TrainConfig};

/// The short toy run: small enough for CI, long enough to cover the ring.
pub const RING8_STEPS: u64 = 6000;
pub const RING8_BATCH: usize = 256;
pub const RING8_LR: f64 = 1e-3;

/// Train `config` into `run` without a progress bar and return the newest checkpoint's state.
pub fn train_quietly(config: &TrainConfig, run: &Path) -> State {
    let opts = RunOptions {
        watch: false,
        quiet: true,
        ..Default::default()
    };
    train::train(config, run, &opts).unwrap();
    let dir = RunDir(run.to_path_buf());
    let saved = dir.read_config().unwrap();
    train::load_latest(&dir, &saved, &Device::flex().autodiff()).unwrap()
}

/// The generator's output for `z` in inference mode, flattened.
pub fn burn_generate(state: &State, z: Tensor<2>) -> Vec<f32> {
    train::generate_from(&state.generator, z)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
