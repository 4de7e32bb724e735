//! Progressive GAN (Karras et al. 2018, and the authors' code): G and D grow from 4x4 to the
//! data's side, one doubling per stage; each new block fades in over one phase (alpha 0 -> 1,
//! the real images cross-faded the same way) and then stabilises for one phase. The game is
//! WGAN-GP plus the drift term, one critic step per G step; G's samples and export come from an
//! exponential moving average of its weights (its half-life scaled to the phase, [`Schedule::ema_beta`]). Adam's state is reset at every
//! phase, as the authors' `reset_opt_for_new_lod`.
//!
//! The stage and alpha are functions of the step ([`Schedule`]); the networks hold every stage's
//! blocks from the start, so a checkpoint at any stage and alpha resumes exactly.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;

use super::ema::Ema;
use super::{
    checkpoint_sections, load_net, read_metrics, samples, seeded_pair, Family, Iteration, Net,
    OnnxFile,
};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::SampleKind;
use crate::error::TrainError;
use crate::export::{export_generator, ExportError, OnnxMetadata};
use crate::history::{StepMetrics, Terms};
use crate::model::progan::{
    self, downsample, upsample, ProganDiscriminator, ProganGenerator, Progress,
};
use crate::model::Generator;
use crate::render;

/// The family's own columns of `metrics.csv`.
pub const TERMS: [&str; 5] = ["stage", "alpha", "penalty", "drift", "grad_norm_x"];

/// The authors' moving average: 0.999 per iteration (`G_smoothing`), whose half-life (693
/// iterations) is 1.85% of their phases of 600,000 images at batch 16 (37,500 iterations).
pub const EMA_BETA: f32 = 0.999;
/// The authors' half-life as a share of a phase: a short schedule keeps it, so that an average
/// does not carry a new block's untrained weights into the next phase (at 0.999 per iteration,
/// 22% of them remained after a 1,500-iteration stage of the README's first run).
pub const EMA_HALF_LIFE_PER_PHASE: f64 = 693.0 / 37_500.0;

const GENERATOR: (&str, &str) = ("generator", "adam_g");
const DISCRIMINATOR: (&str, &str) = ("discriminator", "adam_d");

/// The growth: `2 * stages - 1` phases of the same number of iterations (`--phase-images` real
/// images each): stage 0 stable, then every later stage's fade-in and its stabilisation. Past the
/// last phase the full-size networks stay stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    stages: usize,
    batch: u64,
    phase_images: u64,
    phase_steps: u64,
}

impl Schedule {
    pub fn new(config: &TrainConfig) -> Self {
        let side = match config.model.sample {
            SampleKind::Image { height, .. } => height,
            _ => 0,
        };
        let batch = config.batch.max(1) as u64;
        let phase_images = config.progan.phase_images.max(1);
        Schedule {
            stages: progan::stages(side).unwrap_or(1),
            batch,
            phase_images,
            phase_steps: phase_images.div_ceil(batch),
        }
    }

    fn phases(&self) -> u64 {
        2 * self.stages as u64 - 1
    }

    /// Iterations of the whole growth.
    pub fn total_steps(&self) -> u64 {
        self.phases() * self.phase_steps
    }

    /// The growth at iteration `step` (0-based).
    pub fn at(&self, step: u64) -> Progress {
        let phase = step / self.phase_steps;
        if phase >= self.phases() {
            return Progress {
                stage: self.stages - 1,
                alpha: 1.0,
            };
        }
        let stage = phase.div_ceil(2) as usize;
        let alpha = if phase % 2 == 1 {
            let shown = (step % self.phase_steps) * self.batch;
            (shown as f64 / self.phase_images as f64).min(1.0) as f32
        } else {
            1.0
        };
        Progress { stage, alpha }
    }

    /// G's moving average weight per iteration: the half-life [`EMA_HALF_LIFE_PER_PHASE`] of a
    /// phase, at most the authors' [`EMA_BETA`] (their phases give exactly that).
    pub fn ema_beta(&self) -> f32 {
        let half_life = (EMA_HALF_LIFE_PER_PHASE * self.phase_steps as f64).max(1.0);
        (0.5f64.powf(1.0 / half_life) as f32).min(EMA_BETA)
    }

    /// The iteration halfway through the last stage's fade-in (alpha about 0.5).
    pub fn last_fade_midpoint(&self) -> u64 {
        (self.phases() - 2) * self.phase_steps + self.phase_steps / 2
    }

    /// Whether iteration `step` starts a phase after the first (where Adam's state is reset).
    pub fn starts_phase(&self, step: u64) -> bool {
        step > 0 && step.is_multiple_of(self.phase_steps) && step < self.total_steps()
    }

    /// The stage whose stabilisation ends after `steps` iterations, if one does.
    pub fn stage_done(&self, steps: u64) -> Option<usize> {
        let phase = (steps / self.phase_steps).checked_sub(1)?;
        (steps.is_multiple_of(self.phase_steps) && phase % 2 == 0 && phase < self.phases())
            .then(|| phase.div_ceil(2) as usize)
    }
}

/// Adam as the authors use it: the run's lr and betas (0, 0.99 by default) and epsilon 1e-8,
/// which matters with the equalised learning rate's unit-scale weights.
fn adam(config: &TrainConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(config.beta1)
        .with_beta_2(config.beta2)
        .with_epsilon(1e-8)
        .init()
}

/// The two networks `config` asks for (fresh, from the device's current seed).
pub fn networks(
    config: &TrainConfig,
    device: &Device,
) -> Result<(ProganGenerator, ProganDiscriminator), TrainError> {
    let SampleKind::Image {
        channels, height, ..
    } = config.model.sample
    else {
        return Err(TrainError::Config("progan trains on images".into()));
    };
    progan::init(
        channels,
        height,
        config.model.latent,
        config.model.width,
        device,
    )
    .ok_or_else(|| TrainError::Config(format!("progan cannot grow to a side of {height}")))
}

pub struct ProGan {
    generator: Net<ProganGenerator>,
    discriminator: Net<ProganDiscriminator>,
    ema: Ema<ProganGenerator>,
    /// The average at the current growth: what draws pictures, is evaluated and exported.
    sampler: Generator,
    /// The trained G at the current growth (`eval --raw`).
    raw: Generator,
    schedule: Schedule,
}

impl ProGan {
    pub fn init(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let (g, d) = seeded_pair(config.seed, device, || networks(config, device))?;
        let ema = Ema::new(&g);
        let schedule = Schedule::new(config);
        let sampler = Generator::progan(ema.get().clone().at(schedule.at(0)));
        let raw = Generator::progan(g.clone().at(schedule.at(0)));
        Ok(ProGan {
            generator: Net::new(g, adam(config)),
            discriminator: Net::new(d, adam(config)),
            ema,
            sampler,
            raw,
            schedule,
        })
    }

    /// The average and the trained G at the growth reached after `steps` iterations: the next
    /// iteration's.
    fn refresh_sampler(&mut self, steps: u64) {
        let p = self.schedule.at(steps);
        self.sampler = Generator::progan(self.ema.get().clone().at(p));
        self.raw = Generator::progan(self.generator.get().clone().at(p));
    }

    /// Real images at stage `p`'s side: pooled down from the data's, and while a stage fades in,
    /// blended with their own coarser version as G's output is (the authors' real-image fade).
    fn reals(&self, x: Tensor<4>, p: Progress) -> Tensor<4> {
        let mut x = x;
        for _ in p.stage + 1..self.schedule.stages {
            x = downsample(x);
        }
        if p.fading() {
            let coarse = upsample(downsample(x.clone()), 2);
            x = x * p.alpha + coarse * (1.0 - p.alpha);
        }
        x
    }
}

impl Family for ProGan {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        let p = self.schedule.at(it.step);
        if self.schedule.starts_phase(it.step) {
            self.generator.optimizer = adam(it.config);
            self.discriminator.optimizer = adam(it.config);
        }
        let (device, lr) = (it.device.clone(), it.lr());
        let (lambda, drift) = (it.config.gp_lambda, it.config.progan.drift);
        let mut last = None;
        let mut z_last = None;
        for stream in it.critic_streams().collect::<Vec<_>>() {
            // D: maximise D(x) - D(G(z)), with the gradient penalty at interpolates and the
            // drift term keeping the real scores near 0.
            let batches = it.batches(stream);
            let real = self.reals(batches.real, p);
            let fake = self
                .generator
                .get()
                .forward_at(batches.z.clone(), p)
                .detach();
            let d = self.discriminator.get();
            let (d_real, d_fake) = (d.forward(real.clone(), p), d.forward(fake.clone(), p));
            let x_hat = fake.clone() + it.mix(stream) * (real - fake);
            let penalty = d.gradient_penalty(x_hat, p, lambda);
            let drift_term = d_real.clone().powi_scalar(2).mean() * drift;
            let (real_mean, fake_mean) = (d_real.mean(), d_fake.mean());
            let wasserstein = fake_mean.clone() - real_mean.clone();
            let loss = wasserstein + penalty.loss.clone() + drift_term.clone();
            let opinions = Tensor::cat(vec![real_mean, fake_mean], 0).detach();
            let grad = self.discriminator.descend(&loss, lr, &device);
            last = Some((loss, opinions, grad, penalty, drift_term));
            z_last = Some(batches.z);
        }
        let (loss_d, opinions, grad_d, penalty, drift_term) =
            last.expect("at least one critic step (validated)");
        // G: maximise D(G(z)) through the updated, frozen critic.
        let z = z_last.expect("a latent batch");
        let frozen = self.discriminator.get().clone().no_grad();
        let loss_g = -frozen
            .forward(self.generator.get().forward_at(z, p), p)
            .mean();
        let grad_g = self.generator.descend(&loss_g, lr, &device);
        self.ema
            .update(self.generator.get(), self.schedule.ema_beta(), |_| ());
        self.refresh_sampler(it.step + 1);
        let extra: Vec<f32> = Tensor::cat(
            vec![
                penalty.loss.detach(),
                drift_term.detach(),
                penalty.mean_norm,
            ],
            0,
        )
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN; 3]);
        let mut m = read_metrics(it.step + 1, loss_d, loss_g, opinions, grad_d, grad_g);
        m.terms = Terms::new(&[p.stage as f32, p.alpha, extra[0], extra[1], extra[2]]);
        m
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        let mut sections = checkpoint_sections([
            (GENERATOR, self.generator.records()?),
            (DISCRIMINATOR, self.discriminator.records()?),
        ]);
        sections.push(self.ema.section()?);
        Ok(sections)
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.generator, ckpt, file, GENERATOR, None)?;
        load_net(&mut self.discriminator, ckpt, file, DISCRIMINATOR, None)?;
        self.ema.load_section(ckpt, file)?;
        self.refresh_sampler(ckpt.step);
        Ok(())
    }

    /// The moving average's samples of the fixed latents at the current growth, upsampled to
    /// the data's side.
    fn sample_picture(
        &self,
        config: &TrainConfig,
        _step: u64,
        device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        Ok(render::image_grid(
            &samples::fixed(&self.sampler, config, device),
            config.model.sample,
        ))
    }

    fn milestone(&self, steps: u64) -> Option<String> {
        let stage = self.schedule.stage_done(steps)?;
        Some(format!("stage_{stage}_{}px.png", progan::BASE << stage))
    }

    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        Ok(vec![OnnxFile {
            name: "generator.onnx".into(),
            bytes: export_generator(&self.sampler, meta)?,
        }])
    }

    fn latent_generator(&self) -> Option<&Generator> {
        Some(&self.sampler)
    }

    fn raw_generator(&self) -> Option<&Generator> {
        Some(&self.raw)
    }

    fn terms(&self) -> &'static [&'static str] {
        &TERMS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataSource;
    use crate::loss::GanLoss;
    use crate::model::Architecture;

    fn config(side: usize, phase_images: u64, batch: usize) -> TrainConfig {
        let mut c = TrainConfig::new(&DataSource::Digits, Architecture::Dcgan, GanLoss::WganGp);
        c.family = crate::family::FamilyKind::Progan;
        c.model.sample = SampleKind::Image {
            channels: 3,
            height: side,
            width: side,
        };
        c.batch = batch;
        c.progan.phase_images = phase_images;
        c
    }

    /// The authors' phases give their 0.999; the README's default (750 iterations a phase) a
    /// half-life of 14 iterations.
    #[test]
    fn the_average_keeps_the_authors_half_life_per_phase() {
        let authors = Schedule::new(&config(64, 600_000, 16));
        assert!(
            (authors.ema_beta() - 0.999).abs() < 2e-6,
            "{}",
            authors.ema_beta()
        );
        let ours = Schedule::new(&config(64, 12_000, 16));
        let half_life = (0.5f64).ln() / (ours.ema_beta() as f64).ln();
        assert!((half_life - 13.86).abs() < 0.05, "{half_life}");
    }

    #[test]
    fn the_schedule_grows_through_every_stage() {
        // 16 px: stages 4, 8, 16 px; 5 phases of ceil(40 / 16) = 3 iterations.
        let s = Schedule::new(&config(16, 40, 16));
        assert_eq!(s.total_steps(), 15);
        let at = |step| {
            let p = s.at(step);
            (p.stage, p.alpha)
        };
        assert_eq!([at(0), at(2)], [(0, 1.0), (0, 1.0)]);
        // Stage 1 fades in: 0, 16 and 32 of 40 images shown.
        assert_eq!([at(3), at(4), at(5)], [(1, 0.0), (1, 0.4), (1, 0.8)]);
        assert_eq!([at(6), at(8)], [(1, 1.0), (1, 1.0)]);
        assert_eq!(
            [at(9), at(12), at(14), at(99)],
            [(2, 0.0), (2, 1.0), (2, 1.0), (2, 1.0)]
        );
        let resets: Vec<u64> = (0..20).filter(|&t| s.starts_phase(t)).collect();
        assert_eq!(resets, [3, 6, 9, 12]);
        // 3-iteration phases: the average's half-life is 1 iteration.
        assert_eq!(s.ema_beta(), 0.5);
        let done: Vec<(u64, usize)> = (0..20)
            .filter_map(|t| s.stage_done(t).map(|k| (t, k)))
            .collect();
        assert_eq!(done, [(3, 0), (9, 1), (15, 2)]);
    }
}
