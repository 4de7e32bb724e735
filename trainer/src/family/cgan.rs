//! The conditional GAN (Mirza & Osindero 2014): G takes z and a class (a learned embedding joined
//! to z), D judges (sample, class) pairs (a learned label plane joined as one more channel).

use super::pair::{Game, Pair};
use super::Iteration;
use crate::history::StepMetrics;

pub struct Cgan;

impl Game for Cgan {
    fn step(pair: &mut Pair<Self>, it: &mut Iteration<'_>) -> StepMetrics {
        let loss = it.config.loss;
        let mut last = None;
        for stream in it.critic_streams() {
            let b = it.batches(stream);
            let y = it.fake_classes(stream);
            let fake = pair.g().forward(b.z, Some(y.clone()));
            // (1) D: minimise the loss' D objective on real (sample, label) pairs and detached
            //     (G(z, y), y) pairs, e.g. -[log D(x, label) + log(1 - D(G(z, y), y))].
            //     WGAN-GP's penalty judges each interpolate with the real sample's label: the
            //     constraint is on the image's gradient for a given class.
            let labels = it.data.label_batch(&b.idx, it.device);
            let v = pair.judge(
                b.real.clone(),
                &fake,
                Some(labels.clone()),
                Some(y.clone()),
                it,
                stream,
            );
            let loss_d =
                loss.discriminator_targeting(v.real.score, v.fake.score, it.config.real_target());
            let loss_d = pair.with_penalty(
                loss_d,
                b.real.clone(),
                &fake,
                Some(labels.clone()),
                it,
                stream,
            );
            let critic = pair.update_d(loss_d, v.opinions, it);
            last = Some((critic, fake, y, b.real, labels, stream));
        }
        let (critic, fake, y, real, labels, stream) =
            last.expect("an iteration has at least one critic step");
        // (2) G: minimise the loss' G objective on (G(z, y), y) through a frozen D, e.g.
        //     -log D(G(z, y), y), or with feature matching the distance between D's mean
        //     features on real (sample, label) pairs and on (G(z, y), y).
        let (_, loss_g) = pair.generator_loss(fake, Some(y), real, Some(labels), it, stream);
        pair.update_g(loss_g, critic, it)
    }
}
