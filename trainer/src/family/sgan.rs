//! The semi-supervised GAN (Odena 2016; Salimans et al. 2016): an unconditional G; D has K class
//! logits and its real/fake logit is their log-sum-exp. D learns the classes from a few labelled
//! samples per class and real-versus-fake from all of them, so the unlabelled images and G's fakes
//! train the classifier too.

use burn::prelude::*;
use rand::SeedableRng;

use super::pair::{Game, Pair};
use super::Iteration;
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::history::StepMetrics;
use crate::loss::class_loss;
use crate::model::Discriminator;

pub struct Sgan;

impl Game for Sgan {
    fn step(pair: &mut Pair<Self>, it: &mut Iteration<'_>) -> StepMetrics {
        let loss = it.config.loss;
        let mut last = None;
        for stream in it.critic_streams() {
            let b = it.batches(stream);
            let fake = pair.g().forward(b.z, None);
            // (1) D: minimise the loss' D objective on a real and a detached fake batch
            //     + CE(D's class logits(x), label) on a batch of the labelled subset.
            let v = pair.judge(b.real.clone(), &fake, None, None, it, stream);
            let mut loss_d =
                loss.discriminator_targeting(v.real.score, v.fake.score, it.config.real_target());
            let config = it.config;
            let subset = it
                .order
                .labelled(it.data, config.labelled_per_class, config.seed);
            let labelled = labelled_batch(subset, config.batch, config.seed, stream);
            let logits = if labelled.is_empty() {
                None
            } else {
                pair.d()
                    .judge(it.data.batch(&labelled, it.device), None)
                    .class_logits
            };
            if let Some(logits) = logits {
                loss_d = loss_d + class_loss(logits, it.data.label_batch(&labelled, it.device));
            }
            last = Some((pair.update_d(loss_d, v.opinions, it), fake, b.real, stream));
        }
        let (critic, fake, real, stream) = last.expect("an iteration has at least one critic step");
        // (2) G: minimise the loss' G objective through a frozen D, whose real/fake logit is the
        //     log-sum-exp of its class logits; or with feature matching (Salimans et al.'s
        //     semi-supervised recipe) the distance between D's mean features on real and fake.
        let (_, loss_g) = pair.generator_loss(fake, None, real, None, it, stream);
        pair.update_g(loss_g, critic, it)
    }
}

/// SGAN's labelled batch for `stream`: drawn with replacement from the labelled subset.
fn labelled_batch(subset: &[usize], batch: usize, seed: u64, stream: u64) -> Vec<usize> {
    use rand::Rng;
    if subset.is_empty() {
        return Vec::new();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ stream ^ 0x5EED_1ABE);
    (0..batch.min(subset.len()))
        .map(|_| subset[rng.random_range(0..subset.len())])
        .collect()
}

/// SGAN trains on the judge's training split only, so the held-out split measures its classifier.
pub fn split(ds: &Dataset) -> (Vec<usize>, Vec<usize>) {
    crate::data::split(ds.len(), 0)
}

/// SGAN's baseline: D's network initialised from the same seed and trained by cross-entropy on
/// the labelled subset alone, for `updates` Adam steps (as many as SGAN's D took).
pub fn train_supervised_only(
    config: &TrainConfig,
    ds: &Dataset,
    updates: u64,
    device: &Device,
) -> Discriminator {
    let mut pair = Pair::<Sgan>::init(config, device);
    let subset = ds.labelled_subset(config.labelled_per_class, config.seed);
    for stream in 0..updates {
        let labelled = labelled_batch(&subset, config.batch, config.seed, stream);
        if labelled.is_empty() {
            break;
        }
        if let Some(logits) = pair
            .d()
            .judge(ds.batch(&labelled, device), None)
            .class_logits
        {
            let loss = class_loss(logits, ds.label_batch(&labelled, device));
            let lr = config.lr_at(stream / config.critic_steps.max(1) as u64);
            pair.discriminator.descend(&loss, lr, device);
        }
    }
    pair.d().clone()
}
