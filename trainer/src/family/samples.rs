//! Samples from a latent generator in inference mode (BatchNorm's running statistics): the fixed
//! grid of the sample pictures, and fresh seeded batches for `eval` and the quality watch.

use burn::module::Module;
use burn::prelude::*;

use super::latents;
use crate::config::TrainConfig;
use crate::model::{class_tensor, default_class, Generator};

/// The sample grid's size and classes: one row per class for a conditional generator with few
/// classes (`K x K` samples), else 64 samples.
pub fn grid_classes(generator: &Generator) -> (usize, Option<Vec<i64>>) {
    match generator.classes() {
        k @ 2..=16 => (k * k, Some((0..k * k).map(|i| (i / k) as i64).collect())),
        0 => (64, None),
        k => (
            64,
            Some((0..64).map(|i| default_class(i, k) as i64).collect()),
        ),
    }
}

/// The fixed latent batch that every sample grid uses.
pub fn grid_latents(config: &TrainConfig, n: usize, device: &Device) -> Tensor<2> {
    latents(config.seed, u64::MAX, n, config.model.latent, device)
}

/// Latents per forward pass of [`generate_from`]: a whole evaluation set at once (10,000 samples)
/// would hold every activation of every sample, tens of GB for a 64 px generator of 3x3
/// convolutions.
const GENERATE_CHUNK: usize = 250;

/// Run the generator in inference mode on latents `z` (and, for a conditional generator,
/// `classes`; without them sample `i` is of class `i mod K`), [`GENERATE_CHUNK`] samples at a
/// time.
pub fn generate_from(generator: &Generator, z: Tensor<2>, classes: Option<&[i64]>) -> Vec<f32> {
    let device = z.device().without_autodiff();
    let z = z.to_device(&device);
    let generator = generator.valid();
    let [n, _] = z.dims();
    // Sample i's class is i mod K across the whole set, not within a chunk.
    let k = generator.classes();
    let every: Vec<i64> = (0..n)
        .map(|i| crate::model::default_class(i, k) as i64)
        .collect();
    let classes = classes.or((k > 0).then_some(every.as_slice()));
    let mut out = Vec::new();
    for start in (0..n).step_by(GENERATE_CHUNK) {
        let end = (start + GENERATE_CHUNK).min(n);
        let classes = classes
            .map(|c| class_tensor(c[start.min(c.len())..end.min(c.len())].to_vec(), &device));
        let part = generator
            .forward(z.clone().slice([start..end]), classes)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        out.extend(part);
    }
    out
}

/// The sample grid from the fixed latent batch ([`grid_classes`]: a row per class for a
/// conditional generator).
pub fn fixed(generator: &Generator, config: &TrainConfig, device: &Device) -> Vec<f32> {
    let (n, classes) = grid_classes(generator);
    generate_from(
        generator,
        grid_latents(config, n, &device.clone().without_autodiff()),
        classes.as_deref(),
    )
}

/// `n` samples from fresh latents (seeded); a conditional generator draws every class in turn.
pub fn generate(
    generator: &Generator,
    config: &TrainConfig,
    n: usize,
    seed: u64,
    device: &Device,
) -> Vec<f32> {
    let z = latents(
        seed,
        u64::MAX - 1,
        n,
        config.model.latent,
        &device.clone().without_autodiff(),
    );
    generate_from(generator, z, None)
}
