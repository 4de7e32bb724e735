//! The loss terms: the adversarial games (D returns one raw score per sample, a logit for the BCE
//! losses), WGAN-GP's gradient penalty, and the auxiliary class terms that ACGAN (as TAC-GAN) and
//! SGAN add to them.

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};

use crate::model::{Discriminator, Verdict};

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
    /// WGAN-GP (Gulrajani et al., 2017): WGAN's critic scores with a gradient penalty
    /// lambda (|grad_x D(x^)| - 1)^2 at interpolates of real and fake samples instead of clipping,
    /// and no batch norm in the critic ([`gradient_penalty`]).
    WganGp,
}

impl GanLoss {
    /// Loss of D on scores for real and (detached) fake samples.
    pub fn discriminator(self, real: Tensor<2>, fake: Tensor<2>) -> Tensor<1> {
        self.discriminator_targeting(real, fake, 1.0)
    }

    /// [`Self::discriminator`] with `real_target` as the label of real samples instead of 1:
    /// one-sided label smoothing (Salimans et al. 2016) for the BCE and least-squares losses
    /// ([`Self::smooths_labels`]); fakes keep their label 0. Other losses ignore it.
    pub fn discriminator_targeting(
        self,
        real: Tensor<2>,
        fake: Tensor<2>,
        real_target: f32,
    ) -> Tensor<1> {
        match self {
            // BCE with logits: -[t log D(x) + (1 - t) log(1 - D(x))] - log(1 - D(G(z))).
            GanLoss::Minimax | GanLoss::Nonsaturating => {
                let real_term = if real_target == 1.0 {
                    -log_sigmoid(real).mean()
                } else {
                    -(log_sigmoid(real.clone()) * real_target
                        + log_sigmoid(-real) * (1.0 - real_target))
                        .mean()
                };
                real_term - log_sigmoid(-fake).mean()
            }
            GanLoss::Lsgan => {
                (real - real_target).powi_scalar(2).mean() * 0.5 + fake.powi_scalar(2).mean() * 0.5
            }
            GanLoss::Wgan | GanLoss::WganGp => fake.mean() - real.mean(),
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
            GanLoss::Wgan | GanLoss::WganGp | GanLoss::Hinge => -fake.mean(),
        }
    }

    /// D's mean opinion of a batch, as logged: a probability for the BCE losses, the raw score otherwise.
    pub fn opinion(self, scores: Tensor<2>) -> Tensor<1> {
        match self {
            GanLoss::Minimax | GanLoss::Nonsaturating => sigmoid(scores).mean(),
            _ => scores.mean(),
        }
    }

    /// D's mean opinions `[2]` of a real and a fake batch, as logged ([`Self::opinion`]).
    pub fn opinions(self, real: Tensor<2>, fake: Tensor<2>) -> Tensor<1> {
        Tensor::cat(vec![self.opinion(real), self.opinion(fake)], 0)
    }

    /// Whether [`Self::opinion`] is a probability, so that D(G(z)) near 0 means D wins and G's
    /// gradients vanish (the BCE losses). Other losses' scores have no such fixed scale.
    pub fn opinion_is_probability(self) -> bool {
        matches!(self, GanLoss::Minimax | GanLoss::Nonsaturating)
    }

    /// D's raw score as its belief that a sample is real, for the losses whose optimal D is
    /// `D*(x) = t p_data(x) / (p_data(x) + p_g(x))`, `t` the real samples' target (1, or
    /// one-sided label smoothing's): the BCE losses (Goodfellow et al. 2014, proposition 1; the
    /// sigmoid of the logit) and least squares (Mao et al. 2017, proposition 1 with a = 0,
    /// b = t; the score itself). `None` for the critics' and hinge's scores, whose optimum is no
    /// such ratio.
    pub fn belief(self, score: f64) -> Option<f64> {
        match self {
            GanLoss::Minimax | GanLoss::Nonsaturating => Some(1.0 / (1.0 + (-score).exp())),
            GanLoss::Lsgan => Some(score),
            GanLoss::Wgan | GanLoss::WganGp | GanLoss::Hinge => None,
        }
    }

    /// Whether D's loss has a label for real samples that one-sided label smoothing can soften
    /// (BCE and least squares; the critics' and hinge's scores have no target).
    pub fn smooths_labels(self) -> bool {
        matches!(
            self,
            GanLoss::Minimax | GanLoss::Nonsaturating | GanLoss::Lsgan
        )
    }

    /// D steps per G step.
    pub fn default_critic_steps(self) -> usize {
        if matches!(self, GanLoss::Wgan | GanLoss::WganGp) {
            5
        } else {
            1
        }
    }

    /// Clip D's weights to +-c after every D step (WGAN's Lipschitz constraint).
    pub fn default_weight_clip(self) -> Option<f32> {
        (self == GanLoss::Wgan).then_some(0.01)
    }

    /// Whether D's loss adds WGAN-GP's gradient penalty ([`gradient_penalty`]). Such a critic
    /// has no batch norm: the penalty constrains each sample's score, which batch norm would make
    /// depend on the rest of the batch.
    pub fn penalises_gradient(self) -> bool {
        self == GanLoss::WganGp
    }
}

/// WGAN-GP's gradient penalty at the points `x_hat` (interpolates of real and fake samples).
pub struct GradientPenalty {
    /// `[1]`: lambda * mean_i (|g_i| - 1)^2, g_i = grad_x D(x^_i), with its gradient with respect
    /// to D's parameters.
    pub loss: Tensor<1>,
    /// `[1]`: mean_i |g_i|, detached (1 for a critic that meets the constraint).
    pub mean_norm: Tensor<1>,
}

/// WGAN-GP's penalty (Gulrajani et al. 2017) with first-order passes only.
///
/// Burn 0.22 cannot differentiate a gradient: `x.grad()` is an untracked tensor, so a penalty
/// built from it and put back into the graph is a constant whose gradient is zero (the trap of a
/// public Burn port). The penalty's gradient is still within reach: with `v = g / |g|` held
/// fixed, `d|g|/dtheta = d(v . g)/dtheta`, and `v . g` is D's directional derivative along v. So
/// `d/dtheta lambda mean (|g| - 1)^2` is one ordinary backward pass through
/// `sum_i w_i (v_i . g_i)` with constant weights `w_i = 2 lambda (|g_i| - 1) / N`.
///
/// The directional derivative is D's forward-mode tangent ([`Discriminator::directional`]), not
/// the central difference `(D(x^ + eps v) - D(x^ - eps v)) / (2 eps)`. The difference was tried
/// first and failed the PyTorch comparison on the DCGAN critic (cosine 0.13 for the second
/// convolution's weight, for any usable eps): a unit whose pre-activation changes sign within
/// +-eps changes its weights' gradient by O(1), which the division makes O(1/eps), while the
/// share of such units is only O(eps), so the error does not shrink with eps (and f32 forbids a
/// much smaller eps). D is piecewise linear, so the tangent pushed through each layer's linear
/// part with the activation pattern at x^ is the difference's exact limit, and is what PyTorch's
/// double backward computes (LeakyReLU's derivative has zero derivative). A double backward of
/// our flex convolution ops would give the same at the cost of every op's second derivative,
/// written and checked, and of D's other devices.
///
/// `classes` are what a cGAN critic reads. Returns `None` for a critic that is not piecewise
/// linear per sample (batch norm, SGAN's log-sum-exp score; [`crate::config`] refuses both).
pub fn gradient_penalty(
    d: &Discriminator,
    x_hat: Tensor<4>,
    classes: Option<Tensor<1, Int>>,
    lambda: f32,
) -> Option<GradientPenalty> {
    let frozen = d.clone().no_grad();
    gradient_penalty_with(
        x_hat,
        lambda,
        |x| frozen.judge(x, classes.clone()).score,
        |x, u| d.directional(x, u, classes.clone()),
    )
}

/// [`gradient_penalty`] for any critic, given as two passes over a batch of points:
/// `scores(x)`, the `[N, 1]` scores of a frozen copy (only the input gradient is wanted), and
/// `tangent(x, u)`, the directional derivative of the scores along `u` with the parameters
/// tracked (`J(x) u`, `[N, 1]`).
///
/// The surrogate is one batch tangent: with `u_i = w_i v_i`, `sum_i w_i (v_i . g_i)` is
/// `u . grad_x S` for `S = sum_j D(x)_j`, the sum of `J(x) u`. For a critic that judges each
/// sample alone it is the per-sample form; for one whose scores mix the samples (ProGAN's
/// minibatch standard deviation) it is still exact, since `g_i` is then `grad_{x_i} S`, what
/// PyTorch's `autograd.grad(D(x).sum(), x)` penalises.
pub fn gradient_penalty_with(
    x_hat: Tensor<4>,
    lambda: f32,
    scores: impl FnOnce(Tensor<4>) -> Tensor<2>,
    tangent: impl FnOnce(Tensor<4>, Tensor<4>) -> Option<Tensor<2>>,
) -> Option<GradientPenalty> {
    let dims = x_hat.dims();
    let n = dims[0];
    let x_hat = x_hat.detach();
    // g_i = grad_{x_i} sum_j D(x^)_j, through the frozen critic.
    let x = x_hat.clone().require_grad();
    let grads = scores(x.clone()).sum().backward();
    let unreached = x_hat.clone();
    let g = x
        .grad(&grads)
        .unwrap_or_else(|| unreached.inner().zeros_like())
        .reshape([n as i32, -1]);
    let norm = g.clone().powi_scalar(2).sum_dim(1).sqrt(); // [N, 1]
    let v = g / norm.clone().clamp_min(1e-12);
    let weight = (norm.clone() - 1.0) * (2.0 * lambda / n as f32); // [N, 1]
                                                                   // u_i = w_i v_i: the surrogate's value sum_i w_i |g_i|, as a function of D's parameters.
    let u = Tensor::from_inner((v * weight).reshape(dims));
    let surrogate = tangent(x_hat, u)?.sum();
    // The loss's value is the penalty itself; its gradient is the surrogate's (whose value,
    // sum_i w_i |g_i|, means nothing on its own).
    let value = (norm.clone() - 1.0).powi_scalar(2).mean() * lambda;
    Some(GradientPenalty {
        loss: surrogate.clone() - surrogate.detach() + Tensor::from_inner(value),
        mean_norm: Tensor::from_inner(norm.mean()),
    })
}

/// ACGAN's auxiliary terms of D's loss, as TAC-GAN (Gong et al. 2019) has them: the classifier head
/// learns the classes of real samples only and the twin head those of the (detached) fakes, each
/// through D's shared features. Odena et al. also fit the classifier to fakes, which lets D learn G's
/// labelling of its samples instead of the real one; fitting it to real samples alone instead makes G
/// draw only what the classifier is surest of (Shu et al. 2017), which the twin corrects for G.
/// `None` for a discriminator without the two heads.
pub fn tac_discriminator_loss(
    real: Verdict,
    fake: Verdict,
    real_classes: Tensor<1, Int>,
    fake_classes: Tensor<1, Int>,
) -> Option<Tensor<1>> {
    Some(class_loss(real.class_logits?, real_classes) + class_loss(fake.twin_logits?, fake_classes))
}

/// ACGAN's auxiliary term of G's loss (TAC-GAN): the classifier's cross-entropy on G's samples
/// minus the twin's. The first makes samples recognisable as their class; the second, subtracted,
/// cancels its pull towards the classifier's most confident samples, so that G matches the real
/// class-conditional distribution rather than collapsing onto it. `None` without the two heads.
pub fn tac_generator_loss(fake: Verdict, classes: Tensor<1, Int>) -> Option<Tensor<1>> {
    Some(class_loss(fake.class_logits?, classes.clone()) - class_loss(fake.twin_logits?, classes))
}

/// Cross-entropy of class logits `[N, K]` against classes `[N]`.
pub fn class_loss(logits: Tensor<2>, classes: Tensor<1, Int>) -> Tensor<1> {
    burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::class_tensor;
    use burn::tensor::Gradients;

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

    /// One-sided label smoothing: real samples' BCE against target t, least squares against t;
    /// fakes unchanged; t = 1 is the plain loss.
    #[test]
    fn smoothed_real_labels_match_their_formulas() {
        let (real, fake) = (t(&[2.0, -1.0]), t(&[0.5, -3.0]));
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        let bce = |x: f32, target: f32| -(target * s(x).ln() + (1.0 - target) * (1.0 - s(x)).ln());
        let fake_term = -((1.0 - s(0.5)).ln() + (1.0 - s(-3.0)).ln()) / 2.0;
        let want = (bce(2.0, 0.9) + bce(-1.0, 0.9)) / 2.0 + fake_term;
        let got = GanLoss::Nonsaturating.discriminator_targeting(real.clone(), fake.clone(), 0.9);
        assert!((scalar(got) - want).abs() < 1e-5);
        let plain = GanLoss::Nonsaturating.discriminator(real.clone(), fake.clone());
        let at_one =
            GanLoss::Nonsaturating.discriminator_targeting(real.clone(), fake.clone(), 1.0);
        assert_eq!(scalar(plain), scalar(at_one));
        // (2 - 0.9)^2 and (-1 - 0.9)^2, halved means; fakes (0.25 + 9) / 2 halved.
        let want_ls = 0.5 * (1.1f32 * 1.1 + 1.9 * 1.9) / 2.0 + 0.5 * (0.25 + 9.0) / 2.0;
        let got_ls = GanLoss::Lsgan.discriminator_targeting(real, fake, 0.9);
        assert!((scalar(got_ls) - want_ls).abs() < 1e-5);
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

    /// `d loss / d logits` of a test's loss, `[N * K]` (zeros for a tensor the loss never read).
    fn grad_of(logits: &Tensor<2>, grads: &Gradients) -> Vec<f32> {
        let n = logits.dims().iter().product();
        logits
            .grad(grads)
            .map(|g| g.into_data().try_to_vec::<f32>().unwrap())
            .unwrap_or_else(|| vec![0.0; n])
    }

    /// Cross-entropy's gradient: `(softmax(logits) - onehot(class)) / N`, row by row.
    fn ce_grad(logits: &[[f32; 3]; 2], classes: [usize; 2]) -> Vec<f32> {
        logits
            .iter()
            .zip(classes)
            .flat_map(|(row, class)| {
                let z: f32 = row.iter().map(|v| v.exp()).sum();
                (0..3).map(move |k| (row[k].exp() / z - f32::from(k == class)) / 2.0)
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    /// TAC-GAN's routing: D's classifier learns from real samples only and the twin from fakes
    /// only; G's term pulls the asked-for class up in the classifier and down in the twin.
    #[test]
    fn tac_losses_route_each_head_to_its_data() {
        let device = Device::flex().autodiff();
        let values = [
            [[0.3, -1.0, 2.0], [1.5, 0.2, -0.4]],
            [[-0.7, 0.9, 0.1], [0.0, 1.1, -2.0]],
            [[2.2, -0.3, 0.5], [-1.2, 0.4, 0.8]],
            [[0.6, 0.6, -0.9], [1.0, -1.5, 0.3]],
        ];
        let [real_c, real_t, fake_c, fake_t] =
            values.map(|v| Tensor::<2>::from_floats(v, &device).require_grad());
        let (y_real, y_fake) = ([2usize, 0], [1usize, 2]);
        let classes = |y: [usize; 2]| class_tensor(y.map(|c| c as i64).to_vec(), &device);
        let verdict = |c: &Tensor<2>, t: &Tensor<2>| Verdict {
            score: Tensor::zeros([2, 1], &device),
            class_logits: Some(c.clone()),
            twin_logits: Some(t.clone()),
            features: Tensor::zeros([2, 1], &device),
        };

        let loss = tac_discriminator_loss(
            verdict(&real_c, &real_t),
            verdict(&fake_c, &fake_t),
            classes(y_real),
            classes(y_fake),
        )
        .unwrap();
        let grads = loss.backward();
        assert!(close(
            &grad_of(&real_c, &grads),
            &ce_grad(&values[0], y_real)
        ));
        assert!(close(
            &grad_of(&fake_t, &grads),
            &ce_grad(&values[3], y_fake)
        ));
        assert!(
            close(&grad_of(&real_t, &grads), &[0.0; 6]),
            "twin saw reals"
        );
        assert!(
            close(&grad_of(&fake_c, &grads), &[0.0; 6]),
            "classifier saw fakes"
        );

        let loss = tac_generator_loss(verdict(&fake_c, &fake_t), classes(y_fake)).unwrap();
        let grads = loss.backward();
        assert!(close(
            &grad_of(&fake_c, &grads),
            &ce_grad(&values[2], y_fake)
        ));
        let minus: Vec<f32> = ce_grad(&values[3], y_fake).iter().map(|g| -g).collect();
        assert!(
            close(&grad_of(&fake_t, &grads), &minus),
            "G must fight the twin"
        );

        // A discriminator without the twin (SGAN's) has no TAC terms.
        let no_twin = |c: &Tensor<2>| Verdict {
            twin_logits: None,
            ..verdict(c, c)
        };
        assert!(tac_generator_loss(no_twin(&fake_c), classes(y_fake)).is_none());
    }
}
