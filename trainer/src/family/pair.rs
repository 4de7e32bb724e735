//! One generator against one discriminator, each with its own Adam: the networks of today's four
//! families, which differ only in the [`Game`] they play. The pair stores itself in a checkpoint,
//! draws its sample picture and exports its generator the same way whatever the game.

use std::marker::PhantomData;
use std::path::Path;

use burn::module::Module;
use burn::prelude::*;

use super::ema::Ema;
use super::historical::HistoricalAverage;
use super::{
    adam, checkpoint_sections, load_net, read_metrics, samples, seeded_pair, Clip, Family,
    Iteration, Net, Noise, OnnxFile,
};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::SampleKind;
use crate::error::TrainError;
use crate::export::{export_generator, ExportError, OnnxMetadata};
use crate::history::StepMetrics;
use crate::loss::gradient_penalty;
use crate::metrics::optimal;
use crate::model::{Discriminator, Generator, Verdict};
use crate::render;

/// The rules of one G/D family: what one iteration does to the pair.
pub trait Game: Sized + 'static {
    /// One iteration: D's step(s), then G's.
    fn step(pair: &mut Pair<Self>, it: &mut Iteration<'_>) -> StepMetrics;

    /// Said beside the error when a checkpoint's discriminator does not fit this game's (a
    /// change of its shape that old runs cannot follow).
    const D_CHANGED: Option<&'static str> = None;
}

/// A generator and a discriminator with their optimizers, playing `G`.
pub struct Pair<G> {
    pub generator: Net<Generator>,
    pub discriminator: Net<Discriminator>,
    /// G's moving average ([`TrainConfig::ema_schedule`]), which samples and is exported.
    pub ema: Option<Ema<Generator>>,
    /// The means of G's and D's past weights (`--historical-averaging`).
    history: Option<(
        HistoricalAverage<Generator>,
        HistoricalAverage<Discriminator>,
    )>,
    config: TrainConfig,
    game: PhantomData<G>,
}

/// The checkpoint sections of a pair, in the order they are written.
/// Checkpoint sections (parameters, optimizer) of each network.
const GENERATOR: (&str, &str) = ("generator", "adam_g");
const DISCRIMINATOR: (&str, &str) = ("discriminator", "adam_d");
/// Checkpoint sections of the means of G's and D's past weights (historical averaging).
const HISTORY: [&str; 2] = ["history_g", "history_d"];

/// D's verdicts on a real and a fake batch ([`Pair::judge`]).
pub struct Judged {
    pub real: Verdict,
    pub fake: Verdict,
    /// `[2]`: D's mean opinion of each, as logged.
    pub opinions: Tensor<1>,
}

/// D's numbers from its last step of an iteration, kept until G's step has run.
pub struct CriticStep {
    loss: Tensor<1>,
    /// `[2]`: D's mean opinion of the real and of the fake batch.
    opinions: Tensor<1>,
    grad_squares: Tensor<1>,
}

impl<G: Game> Pair<G> {
    /// Fresh networks drawn from `config.seed`, fresh optimizers.
    pub fn init(config: &TrainConfig, device: &Device) -> Self {
        let (generator, discriminator) =
            seeded_pair(config.seed, device, || Ok(config.model.init(device)))
                .expect("building the networks cannot fail");
        Self {
            ema: config.ema_schedule().map(|_| Ema::new(&generator)),
            history: config.historical_averaging.map(|_| {
                (
                    HistoricalAverage::new(&generator),
                    HistoricalAverage::new(&discriminator),
                )
            }),
            generator: Net::new(generator, adam(config)),
            discriminator: Net::new(discriminator, adam(config)),
            config: config.clone(),
            game: PhantomData,
        }
    }

    pub fn g(&self) -> &Generator {
        self.generator.get()
    }

    pub fn d(&self) -> &Discriminator {
        self.discriminator.get()
    }

    /// The generator that samples, is evaluated and exported: the moving average if the run
    /// keeps one, else G itself.
    pub fn sampler(&self) -> &Generator {
        self.ema.as_ref().map_or(self.g(), Ema::get)
    }

    /// D as G's step sees it: no parameter of the copy requires a gradient, so G's loss moves
    /// only G.
    pub fn frozen_d(&self) -> Discriminator {
        self.d().clone().no_grad()
    }

    /// D's verdicts on a real batch and on a fake batch, detached so that D's loss does not reach
    /// G, with the classes a cGAN discriminator reads, in the critic pass of `stream` (whose
    /// instance noise D sees, with `--instance-noise`).
    pub fn judge(
        &self,
        real: Tensor<4>,
        fake: &Tensor<4>,
        real_classes: Option<Tensor<1, Int>>,
        fake_classes: Option<Tensor<1, Int>>,
        it: &Iteration<'_>,
        stream: u64,
    ) -> Judged {
        let real = it.noisy(real, stream, Noise::Real);
        let fake = it.noisy(fake.clone().detach(), stream, Noise::Fake);
        let real = self.d().judge(real, real_classes);
        let fake = self.d().judge(fake, fake_classes);
        let opinions = it
            .config
            .loss
            .opinions(real.score.clone(), fake.score.clone());
        Judged {
            real,
            fake,
            opinions,
        }
    }

    /// G's adversarial loss on `fake` (with the classes a cGAN D reads) through a frozen D, and
    /// D's verdict on it (for the class heads' terms): the loss' G objective, e.g. -log D(G(z));
    /// with `--feature-matching`, `|mean f(x) - mean f(G(z))|^2` instead, f being D's features on
    /// `real`, the last critic pass's real batch (with `real_classes`). With `--instance-noise`,
    /// D reads both noisy, as in its own step.
    pub fn generator_loss(
        &self,
        fake: Tensor<4>,
        classes: Option<Tensor<1, Int>>,
        real: Tensor<4>,
        real_classes: Option<Tensor<1, Int>>,
        it: &Iteration<'_>,
        stream: u64,
    ) -> (Verdict, Tensor<1>) {
        let d = self.frozen_d();
        let verdict = d.judge(it.noisy(fake, stream, Noise::GeneratorFake), classes);
        let loss = if it.config.feature_matching {
            let real = d.judge(it.noisy(real, stream, Noise::Real), real_classes);
            let gap = real.features.detach().mean_dim(0) - verdict.features.clone().mean_dim(0);
            gap.powi_scalar(2).sum()
        } else {
            it.config.loss.generator(verdict.score.clone())
        };
        (verdict, loss)
    }

    /// D's loss `loss` plus, for WGAN-GP, the gradient penalty at `x^ = a x + (1 - a) G(z)`
    /// (a uniform per sample, drawn from the iteration's `stream`) with `classes` for a cGAN
    /// critic; other losses' `loss` unchanged.
    pub fn with_penalty(
        &self,
        loss: Tensor<1>,
        real: Tensor<4>,
        fake: &Tensor<4>,
        classes: Option<Tensor<1, Int>>,
        it: &Iteration<'_>,
        stream: u64,
    ) -> Tensor<1> {
        if !it.config.loss.penalises_gradient() {
            return loss;
        }
        let fake = fake.clone().detach();
        let x_hat = fake.clone() + it.mix(stream) * (real - fake);
        let penalty = gradient_penalty(self.d(), x_hat, classes, it.config.gp_lambda)
            .expect("validated: a WGAN-GP critic has no batch norm and a score head");
        loss + penalty.loss
    }

    /// D's step down `loss` (only D's parameters move), then WGAN's clipping. `opinions` is D's
    /// mean opinion `[2]` of the real and the fake batch, for the metrics.
    pub fn update_d(
        &mut self,
        loss: Tensor<1>,
        opinions: Tensor<1>,
        it: &Iteration<'_>,
    ) -> CriticStep {
        let total = match &self.history {
            Some((_, d)) => pulled(loss.clone(), d, self.d(), &self.config),
            None => loss.clone(),
        };
        let grad_squares = self.discriminator.descend(&total, it.lr_d(), it.device);
        if let Some(c) = self.config.weight_clip {
            self.discriminator.map(&mut Clip(c));
        }
        if let Some((_, d)) = &mut self.history {
            d.update(self.discriminator.get(), it.step);
        }
        CriticStep {
            loss: loss.detach(),
            opinions: opinions.detach(),
            grad_squares,
        }
    }

    /// G's step down `loss` (only G's parameters move); the iteration's metrics, read in one sync.
    pub fn update_g(
        &mut self,
        loss: Tensor<1>,
        critic: CriticStep,
        it: &Iteration<'_>,
    ) -> StepMetrics {
        let total = match &self.history {
            Some((g, _)) => pulled(loss.clone(), g, self.g(), &self.config),
            None => loss.clone(),
        };
        let norm_g = if it.config.g_frozen_at(it.step) {
            // --freeze-g-after: G's gradient is measured, not followed; nothing of G moves.
            self.generator.measure(&total, it.device)
        } else {
            let norm_g = self.generator.descend(&total, it.lr_g(), it.device);
            self.follow_g(it);
            norm_g
        };
        read_metrics(
            it.step + 1,
            critic.loss,
            loss,
            critic.opinions,
            critic.grad_squares,
            norm_g,
        )
    }

    /// After G's step: its historical mean and its moving average take in the new weights.
    fn follow_g(&mut self, it: &Iteration<'_>) {
        if let Some((g, _)) = &mut self.history {
            g.update(self.generator.get(), it.step);
        }
        if let (Some(ema), Some(schedule)) = (&mut self.ema, self.config.ema_schedule()) {
            // The average's BatchNorm statistics follow its own activations on the last critic
            // pass's latents (and classes): no new random draw, so runs stay comparable.
            let stream = it.critic_streams().last().unwrap_or(it.step);
            let z = it.latents(stream);
            let conditional = self.generator.get().classes() > 0;
            let classes = conditional.then(|| it.fake_classes(stream));
            ema.update(self.generator.get(), schedule.beta(it.step), |g| {
                g.forward(z, classes);
            });
        }
    }
}

/// `loss` plus historical averaging's pull of `network` toward its mean `history`
/// (`--historical-averaging`): part of what the network descends, not of the loss it logs.
fn pulled<M: Module>(
    loss: Tensor<1>,
    history: &HistoricalAverage<M>,
    network: &M,
    config: &TrainConfig,
) -> Tensor<1> {
    match config
        .historical_averaging
        .and_then(|lambda| history.penalty(network, lambda))
    {
        Some(pull) => loss + pull,
        None => loss,
    }
}

impl<G: Game> Family for Pair<G> {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        G::step(self, it)
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        let mut sections = checkpoint_sections([
            (GENERATOR, self.generator.records()?),
            (DISCRIMINATOR, self.discriminator.records()?),
        ]);
        if let Some(ema) = &self.ema {
            sections.push(ema.section()?);
        }
        if let Some((g, d)) = &self.history {
            for (name, record) in HISTORY.into_iter().zip([g.record(), d.record()]) {
                let record = record.map_err(|e| {
                    TrainError::Config(format!("cannot serialise the {name} average: {e}"))
                })?;
                sections.push((name.into(), record));
            }
        }
        Ok(sections)
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.generator, ckpt, file, GENERATOR, None)?;
        load_net(
            &mut self.discriminator,
            ckpt,
            file,
            DISCRIMINATOR,
            G::D_CHANGED,
        )?;
        if let Some(ema) = &mut self.ema {
            ema.load_section(ckpt, file)?;
        }
        if let Some((g, d)) = &mut self.history {
            let record = |err: String| TrainError::Record {
                file: file.into(),
                reason: format!("the historical average: {err}"),
            };
            g.load(ckpt.section(HISTORY[0], file)?).map_err(record)?;
            d.load(ckpt.section(HISTORY[1], file)?).map_err(record)?;
        }
        Ok(())
    }

    fn sample_picture(
        &self,
        config: &TrainConfig,
        step: u64,
        device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        Ok(match config.model.sample {
            SampleKind::Image { .. } => render::image_grid(
                &samples::fixed(self.sampler(), config, device),
                config.model.sample,
            ),
            SampleKind::Points { .. } => {
                let mixture = config.source()?.mixture();
                let failed =
                    |reason| TrainError::Config(format!("cannot draw the samples: {reason}"));
                match mixture {
                    // A 1-D mixture: the densities, D and the optimal D*, from the raw G that
                    // D trains against.
                    Some(m) if m.dim() == 1 => {
                        let a = optimal::of_pair(&m, self.g(), self.d(), config, device)
                            .map_err(failed)?;
                        render::optimal_discriminator(&a, &optimal::caption(&a.numbers, step))
                            .map_err(failed)?
                    }
                    _ => {
                        let centers: Vec<[f32; 2]> = mixture
                            .map(|m| m.centers)
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|c| Some([*c.first()?, *c.get(1)?]))
                            .collect();
                        render::scatter(
                            &samples::generate(self.sampler(), config, 2000, config.seed, device),
                            &centers,
                        )
                        .map_err(failed)?
                    }
                }
            }
            // A pair never trains on series (validated).
            SampleKind::Series { .. } => image::RgbImage::new(1, 1),
        })
    }

    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        Ok(vec![OnnxFile {
            name: "generator.onnx".into(),
            bytes: export_generator(&self.sampler().valid(), meta)?,
        }])
    }

    fn latent_generator(&self) -> Option<&Generator> {
        Some(self.sampler())
    }

    fn raw_generator(&self) -> Option<&Generator> {
        Some(self.g())
    }

    fn discriminator(&self) -> Option<&Discriminator> {
        Some(self.d())
    }
}
