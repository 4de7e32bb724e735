//! A semi-supervised GAN's discriminator is a classifier: its accuracy on the held-out split,
//! beside the same network trained on the same labelled subset alone, is what the unlabelled
//! images and the generator bought (Odena 2016; Salimans et al. 2016).

use burn::prelude::*;

use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::family::pair::Pair;
use crate::family::sgan::{self, Sgan};
use crate::family::Family;
use crate::model::Discriminator;
use crate::run::RunDir;

use super::EvalError;

#[derive(Debug, Clone, serde::Serialize)]
pub struct SganReport {
    /// Labelled training images (per class x classes).
    pub labelled: usize,
    pub held_out: usize,
    /// SGAN's discriminator, arg-max of its class logits.
    pub sgan_accuracy: f64,
    /// The same network, same seed and number of updates, trained on the labelled subset only.
    pub supervised_only_accuracy: f64,
}

/// Accuracy of `d`'s class logits on samples `idx` of `ds` (0 if `d` has none).
pub fn accuracy(d: &Discriminator, ds: &Dataset, idx: &[usize], device: &Device) -> f64 {
    let d = d.valid();
    let mut hits = 0usize;
    for chunk in idx.chunks(500) {
        let x = ds.batch(chunk, device);
        let Some(logits) = d.judge(x, None).class_logits else {
            return 0.0;
        };
        let predicted: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .try_to_vec_as()
            .unwrap_or_default();
        hits += predicted
            .iter()
            .zip(chunk)
            .filter(|(p, &i)| **p == ds.labels[i] as i64)
            .count();
    }
    hits as f64 / idx.len().max(1) as f64
}

/// The classifier comparison of an SGAN run (`None` for other runs).
pub fn evaluate_run(
    run: &RunDir,
    config: &TrainConfig,
    ds: &Dataset,
) -> Result<Option<SganReport>, EvalError> {
    if config.model.conditioning != crate::model::Conditioning::Sgan {
        return Ok(None);
    }
    let device = config
        .device
        .device()
        .map_err(|e| EvalError::Model {
            file: run.0.clone(),
            reason: e.to_string(),
        })?
        .autodiff();
    // The discriminator itself, which the family trait does not show: the SGAN pair, loaded.
    // The same checkpoint the samples come from: the newest that restores.
    let (pair, step, _) = run.restore_latest(|ckpt, file| {
        let mut pair = Pair::<Sgan>::init(config, &device);
        pair.load(ckpt, file)?;
        Ok(pair)
    })?;
    let (train_idx, held_out) = sgan::split(ds);
    let train_ds = ds.subset(&train_idx);
    let updates = step * config.critic_steps.max(1) as u64;
    let baseline = sgan::train_supervised_only(config, &train_ds, updates, &device);
    let plain = device.clone().without_autodiff();
    Ok(Some(SganReport {
        labelled: train_ds
            .labelled_subset(config.labelled_per_class, config.seed)
            .len(),
        held_out: held_out.len(),
        sgan_accuracy: accuracy(pair.d(), ds, &held_out, &plain),
        supervised_only_accuracy: accuracy(&baseline, ds, &held_out, &plain),
    }))
}
