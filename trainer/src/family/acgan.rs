//! ACGAN (Odena et al. 2017) in its unbiased form, TAC-GAN (Gong et al. 2019): G as in cGAN; D
//! sees only the sample, with a classifier head trained on real samples and a twin classifier head
//! trained on fakes; G minimises the classifier's cross-entropy minus the twin's
//! ([`crate::loss::tac_discriminator_loss`], [`crate::loss::tac_generator_loss`]).

use super::pair::{Game, Pair};
use super::Iteration;
use crate::history::StepMetrics;
use crate::loss::{tac_discriminator_loss, tac_generator_loss};

pub struct Acgan;

impl Game for Acgan {
    const D_CHANGED: Option<&'static str> = Some(
        "ACGAN's discriminator gained TAC-GAN's twin classifier head on 2026-11-27; a run saved \
         before that must be trained again",
    );

    fn step(pair: &mut Pair<Self>, it: &mut Iteration<'_>) -> StepMetrics {
        let (loss, lambda) = (it.config.loss, it.config.aux_weight);
        let mut last = None;
        for stream in it.critic_streams() {
            let b = it.batches(stream);
            let y = it.fake_classes(stream);
            let fake = pair.g().forward(b.z, Some(y.clone()));
            // (1) D: minimise the loss' D objective on a real and a detached fake batch
            //     + lambda [CE(classifier(x), label) + CE(twin(G(z, y)), y)]
            //     + WGAN-GP's penalty on the score head (the class heads are not constrained).
            let v = pair.judge(b.real.clone(), &fake, None, None, it, stream);
            let mut loss_d = loss.discriminator_targeting(
                v.real.score.clone(),
                v.fake.score.clone(),
                it.config.real_target(),
            );
            loss_d = pair.with_penalty(loss_d, b.real.clone(), &fake, None, it, stream);
            let labels = it.data.label_batch(&b.idx, it.device);
            if let Some(aux) = tac_discriminator_loss(v.real, v.fake, labels, y.clone()) {
                loss_d = loss_d + aux * lambda;
            }
            last = Some((
                pair.update_d(loss_d, v.opinions, it),
                fake,
                y,
                b.real,
                stream,
            ));
        }
        let (critic, fake, y, real, stream) =
            last.expect("an iteration has at least one critic step");
        // (2) G: minimise the loss' G objective (or feature matching's distance)
        //     + lambda [CE(classifier(G(z, y)), y) - CE(twin(G(z, y)), y)] through a frozen D.
        let (verdict, mut loss_g) = pair.generator_loss(fake, None, real, None, it, stream);
        if let Some(aux) = tac_generator_loss(verdict, y) {
            loss_g = loss_g + aux * lambda;
        }
        pair.update_g(loss_g, critic, it)
    }
}
