//! The unconditional GAN (Goodfellow et al. 2014; DCGAN, Radford et al. 2015): G maps z to a
//! sample, D scores samples as real or fake.

use super::pair::{Game, Pair};
use super::Iteration;
use crate::history::StepMetrics;

pub struct Unconditional;

impl Game for Unconditional {
    fn step(pair: &mut Pair<Self>, it: &mut Iteration<'_>) -> StepMetrics {
        let loss = it.config.loss;
        let mut last = None;
        for stream in it.critic_streams() {
            let b = it.batches(stream);
            let fake = pair.g().forward(b.z, None);
            // (1) D: minimise the loss' D objective on a real and a detached fake batch, e.g.
            //     -[log D(x) + log(1 - D(G(z)))] for the BCE losses (only D's parameters move),
            //     + WGAN-GP's lambda (|grad D(x^)| - 1)^2.
            let v = pair.judge(b.real.clone(), &fake, None, None, it, stream);
            let loss_d =
                loss.discriminator_targeting(v.real.score, v.fake.score, it.config.real_target());
            let loss_d = pair.with_penalty(loss_d, b.real.clone(), &fake, None, it, stream);
            last = Some((pair.update_d(loss_d, v.opinions, it), fake, b.real, stream));
        }
        let (critic, fake, real, stream) = last.expect("an iteration has at least one critic step");
        // (2) G: minimise the loss' G objective through a frozen D, e.g. -log D(G(z)) for the
        //     nonsaturating loss, or with feature matching |E f(x) - E f(G(z))|^2 (only G's
        //     parameters move).
        let (_, loss_g) = pair.generator_loss(fake, None, real, None, it, stream);
        pair.update_g(loss_g, critic, it)
    }
}
