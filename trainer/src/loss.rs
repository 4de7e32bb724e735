//! Adversarial losses. D returns one raw score per sample (a logit for the BCE losses).

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Goodfellow et al.'s minimax game: G minimises log(1 - D(G(z))). Saturates early in training.
    Minimax,
    /// G maximises log D(G(z)) instead: same fixed point, strong gradients when D wins.
    Nonsaturating,
    /// Least squares GAN (Mao et al., 2017), targets 1 for real and 0 for fake.
    Lsgan,
    /// Wasserstein GAN (Arjovsky et al., 2017): critic scores, weight clipping, n_critic D steps per G step.
    Wgan,
    /// Hinge loss (Lim & Ye 2017; Miyato et al. 2018).
    Hinge,
}

impl GanLoss {
    /// Loss of D on scores for real and (detached) fake samples.
    pub fn discriminator(self, real: Tensor<2>, fake: Tensor<2>) -> Tensor<1> {
        match self {
            // BCE with logits: -log D(x) - log(1 - D(G(z))).
            GanLoss::Minimax | GanLoss::Nonsaturating => {
                -log_sigmoid(real).mean() - log_sigmoid(-fake).mean()
            }
            GanLoss::Lsgan => {
                (real - 1.0).powi_scalar(2).mean() * 0.5 + fake.powi_scalar(2).mean() * 0.5
            }
            GanLoss::Wgan => fake.mean() - real.mean(),
            GanLoss::Hinge => relu(-real + 1.0).mean() + relu(fake + 1.0).mean(),
        }
    }

    /// Loss of G on D's scores for fake samples.
    pub fn generator(self, fake: Tensor<2>) -> Tensor<1> {
        match self {
            // log(1 - sigmoid(s)) = log_sigmoid(-s)
            GanLoss::Minimax => log_sigmoid(-fake).mean(),
            GanLoss::Nonsaturating => -log_sigmoid(fake).mean(),
            GanLoss::Lsgan => (fake - 1.0).powi_scalar(2).mean() * 0.5,
            GanLoss::Wgan | GanLoss::Hinge => -fake.mean(),
        }
    }

    /// D's mean opinion of a batch, as logged: a probability for the BCE losses, the raw score otherwise.
    pub fn opinion(self, scores: Tensor<2>) -> Tensor<1> {
        match self {
            GanLoss::Minimax | GanLoss::Nonsaturating => sigmoid(scores).mean(),
            _ => scores.mean(),
        }
    }

    /// Whether [`Self::opinion`] is a probability, so that D(G(z)) near 0 means D wins and G's
    /// gradients vanish (the BCE losses). Other losses' scores have no such fixed scale.
    pub fn opinion_is_probability(self) -> bool {
        matches!(self, GanLoss::Minimax | GanLoss::Nonsaturating)
    }

    /// D steps per G step.
    pub fn default_critic_steps(self) -> usize {
        if self == GanLoss::Wgan {
            5
        } else {
            1
        }
    }

    /// Clip D's weights to +-c after every D step (WGAN's Lipschitz constraint).
    pub fn default_weight_clip(self) -> Option<f32> {
        (self == GanLoss::Wgan).then_some(0.01)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor<2> {
        Tensor::<1>::from_floats(v, &Device::default()).reshape([v.len(), 1])
    }

    fn scalar(x: Tensor<1>) -> f32 {
        x.into_scalar::<f32>()
    }

    #[test]
    fn bce_losses_match_their_formulas() {
        let (real, fake) = (t(&[2.0, -1.0]), t(&[0.5, -3.0]));
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        let want_d = -((s(2.0).ln() + s(-1.0).ln()) / 2.0)
            - ((1.0 - s(0.5)).ln() + (1.0 - s(-3.0)).ln()) / 2.0;
        assert!(
            (scalar(GanLoss::Nonsaturating.discriminator(real, fake.clone())) - want_d).abs()
                < 1e-5
        );
        let want_ns = -(s(0.5).ln() + s(-3.0).ln()) / 2.0;
        assert!((scalar(GanLoss::Nonsaturating.generator(fake.clone())) - want_ns).abs() < 1e-5);
        let want_mm = ((1.0 - s(0.5)).ln() + (1.0 - s(-3.0)).ln()) / 2.0;
        assert!((scalar(GanLoss::Minimax.generator(fake)) - want_mm).abs() < 1e-5);
    }

    #[test]
    fn other_losses_match_their_formulas() {
        let (real, fake) = (t(&[2.0, 0.0]), t(&[0.5, -3.0]));
        assert!(
            (scalar(GanLoss::Lsgan.discriminator(real.clone(), fake.clone()))
                // mean((real - 1)^2) = (1 + 1) / 2; mean(fake^2) = (0.25 + 9) / 2
                - (0.5 * 1.0 + 0.5 * (0.25 + 9.0) / 2.0))
                .abs()
                < 1e-5
        );
        assert!(
            (scalar(GanLoss::Wgan.discriminator(real.clone(), fake.clone())) - (-1.25 - 1.0)).abs()
                < 1e-5
        );
        // hinge: relu(1-2)=0, relu(1-0)=1 -> 0.5; relu(1.5)=1.5, relu(-2)=0 -> 0.75
        assert!((scalar(GanLoss::Hinge.discriminator(real, fake.clone())) - 1.25).abs() < 1e-5);
        assert!((scalar(GanLoss::Hinge.generator(fake)) - 1.25).abs() < 1e-5);
    }
}
