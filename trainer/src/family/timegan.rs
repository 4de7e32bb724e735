//! TimeGAN (Yoon et al. 2019): real-valued time series generated in a learned embedding space.
//! Five GRU networks ([`crate::model::timegan`]): an autoencoder (embedder E, recovery R), a
//! generator G of embeddings from noise, a supervisor S that steps embeddings forward in time, and
//! a discriminator D on embeddings. As in the authors' `timegan.py`, a run has three phases, each
//! a number of iterations of the training loop (`config.timegan`):
//!
//! 1. Embedding (`--embedding-steps`): the autoencoder alone, minimising `10 sqrt(MSE(X, R(E(X))))`.
//! 2. Supervised (`--supervised-steps`): S alone (G takes no part in the loss), minimising
//!    `L_S = MSE(H_2:T, S(H)_1:T-1)` with `H = E(X)`: S learns the embedding's next step.
//! 3. Joint (the rest of `--steps`), each iteration:
//!    (a) twice: G and S minimise
//!        `BCE(D(S(G(Z))), 1) + g BCE(D(G(Z)), 1) + 100 sqrt(L_S) + 100 (|sd(X^) - sd(X)| +
//!        |mean(X^) - mean(X)|)` with `X^ = R(S(G(Z)))`, the moments over the batch at each step
//!        and feature (the "moment loss"); then, on the same batch, the autoencoder minimises
//!        `10 sqrt(MSE(X, R(E(X)))) + 0.1 L_S`;
//!    (b) D's loss `BCE(D(H), 1) + BCE(D(S(G(Z))), 0) + g BCE(D(G(Z)), 0)` on a fresh batch, and a
//!        step down it only while it is above 0.15 (the authors' check: D must not win outright).
//!
//! `g` (gamma) is 1; Z is uniform in [0, 1) with as many features as the data. Every network
//! sees the data min-max scaled per feature over the training set (`config.timegan.scale`); the
//! samples are scaled back. The optimizers are the authors' Adam (lr 1e-3, betas 0.9 / 0.999,
//! epsilon 1e-8); the autoencoder's and the generators' start afresh with the joint phase, as the
//! authors give that phase optimizers of their own.
//!
//! `loss_g` is the loss of the network(s) trained besides D (the autoencoder's in phase 1, S's in
//! phase 2, G's and S's in phase 3), `loss_d` D's checked loss (0 before phase 3); the terms are
//! the phase, `e_loss = sqrt(MSE(X, R(E(X))))`, `s_loss = sqrt(L_S)`, G's adversarial term, its
//! moment term, and whether D stepped.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};

use super::{checkpoint_sections, load_net, Family, Iteration, Net, OnnxFile};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::SampleKind;
use crate::error::TrainError;
use crate::export::{ExportError, OnnxMetadata};
use crate::history::{StepMetrics, Terms};
use crate::model::timegan::{Autoencoder, Generators, SeriesNet, TimeGanShape};

/// The columns after the common ones in `metrics.csv`.
pub const TERMS: [&str; 6] = ["phase", "e_loss", "s_loss", "g_u", "g_v", "d_trained"];
/// The authors' gamma: the weight of the terms on G's own (unsupervised) embeddings.
const GAMMA: f32 = 1.0;
/// D steps only while its loss is above this.
const D_THRESHOLD: f32 = 0.15;
/// Random streams.
const NOISE: u64 = 0x2015E;
const PICTURE: u64 = 0x9C7;

/// Which phase iteration `step` (0-based) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Embedding,
    Supervised,
    /// Iteration number within the joint phase, from 0.
    Joint(u64),
}

pub fn phase(config: &TrainConfig, step: u64) -> Phase {
    let t = &config.timegan;
    if step < t.embedding_steps {
        Phase::Embedding
    } else if step < t.embedding_steps + t.supervised_steps {
        Phase::Supervised
    } else {
        Phase::Joint(step - t.embedding_steps - t.supervised_steps)
    }
}

pub struct TimeGan {
    pub autoencoder: Net<Autoencoder>,
    pub generators: Net<Generators>,
    pub discriminator: Net<SeriesNet>,
    pub length: usize,
    pub features: usize,
    /// Per feature: the training data's minimum and its range (+1e-7).
    min: Vec<f32>,
    range: Vec<f32>,
}

const AUTOENCODER: (&str, &str) = ("autoencoder", "adam_autoencoder");
const GENERATORS: (&str, &str) = ("generators", "adam_generators");
const DISCRIMINATOR: (&str, &str) = ("discriminator", "adam_d");

/// The authors' Adam: TensorFlow's defaults (also their post-hoc networks').
pub fn adam() -> burn::optim::ModuleOptimizer {
    burn::optim::AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .init()
}

impl TimeGan {
    pub fn init(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let SampleKind::Series { length, features } = config.model.sample else {
            return Err(TrainError::Config(
                "timegan trains on time series: --data sines, stocks, energy or csv:FILE".into(),
            ));
        };
        let t = &config.timegan;
        if t.scale.len() != features || features == 0 {
            return Err(TrainError::Config(format!(
                "the run's scaling has {} features where its data has {features}",
                t.scale.len()
            )));
        }
        let shape = TimeGanShape {
            features,
            hidden: t.gru_hidden,
            layers: t.gru_layers,
        };
        let (autoencoder, generators, discriminator) = shape.init(config.seed, device);
        Ok(Self {
            autoencoder: Net::new(autoencoder, adam()),
            generators: Net::new(generators, adam()),
            discriminator: Net::new(discriminator, adam()),
            length,
            features,
            min: t.scale.iter().map(|s| s[0]).collect(),
            range: t.scale.iter().map(|s| s[1] - s[0] + 1e-7).collect(),
        })
    }

    /// The real batch of `stream`, scaled, `[B, T, F]`.
    fn real(&self, it: &mut Iteration<'_>, stream: u64) -> Tensor<3> {
        let idx = it.order.indices(stream).to_vec();
        let mut v = Vec::with_capacity(idx.len() * self.length * self.features);
        for &i in &idx {
            v.extend(
                it.data.sample(i).iter().enumerate().map(|(k, x)| {
                    (x - self.min[k % self.features]) / self.range[k % self.features]
                }),
            );
        }
        Tensor::from_data(
            TensorData::new(v, [idx.len(), self.length, self.features]),
            it.device,
        )
    }

    /// Noise `[n, T, F]`, uniform in [0, 1), for `stream`.
    fn noise(&self, seed: u64, stream: u64, n: usize, device: &Device) -> Tensor<3> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream ^ NOISE,
        );
        let v: Vec<f32> = (0..n * self.length * self.features)
            .map(|_| rng.random::<f32>())
            .collect();
        Tensor::from_data(TensorData::new(v, [n, self.length, self.features]), device)
    }

    /// `n` series from noise drawn from `seed`, in the data's units, row-major `[n, T, F]`.
    pub fn generate(&self, n: usize, seed: u64, device: &Device) -> Vec<f32> {
        let inference = device.clone().without_autodiff();
        let mut out = Vec::with_capacity(n * self.length * self.features);
        // In chunks, so that a large n does not hold every GRU state at once.
        for (c, start) in (0..n).step_by(1024).enumerate() {
            let m = (n - start).min(1024);
            out.extend(self.series_of(self.noise(seed, c as u64, m, &inference)));
        }
        out
    }
}

/// The ONNX graph's input and output names.
pub const ONNX_NOISE: &str = "noise";
pub const ONNX_SERIES: &str = "series";

impl TimeGan {
    /// [`Family::export`]'s graph, as bytes.
    pub fn onnx(&self, meta: &OnnxMetadata) -> Result<Vec<u8>, ExportError> {
        use crate::export::onnx::{attr_ints, tensor, GraphWriter, FLOAT};
        use crate::model::layers::Weights;
        let (gens, ae) = (
            self.generators.get().valid(),
            self.autoencoder.get().valid(),
        );
        let dims = [None, Some(self.length), Some(self.features)];
        let mut g = GraphWriter::default();
        let z = g.input(ONNX_NOISE, FLOAT, &dims);
        // The GRUs read time-major sequences.
        let flip = || vec![attr_ints("perm", &[1, 0, 2])];
        let x = g.node("Transpose", &[&z], vec![], flip(), None);
        let e_hat = gens.generator.write_onnx(&mut g, &x);
        let h_hat = gens.supervisor.write_onnx(&mut g, &e_hat);
        let x_hat = ae.recovery.write_onnx(&mut g, &h_hat);
        let values = |v: &[f32]| Weights {
            dims: vec![v.len()],
            values: v.to_vec(),
        };
        let x = g.node(
            "Mul",
            &[&x_hat],
            vec![tensor("range", &values(&self.range))],
            vec![],
            None,
        );
        let x = g.node(
            "Add",
            &[&x],
            vec![tensor("min", &values(&self.min))],
            vec![],
            None,
        );
        g.node("Transpose", &[&x], vec![], flip(), Some(ONNX_SERIES));
        g.output(ONNX_SERIES, FLOAT, &dims);
        use onnx_ir::Message;
        // The noise's distribution, so that engines and the quantizer draw it as training did.
        let mut entries = meta.entries.clone();
        entries.push((
            pocketgan_runtime::latent::NOISE_KEY.into(),
            pocketgan_runtime::latent::Noise::Uniform.name().into(),
        ));
        g.finish("pocketgan_timegan", &entries)
            .write_to_bytes()
            .map_err(|e| ExportError::Graph(e.to_string()))
    }

    /// The series `R(S(G(z)))` of noise `z` `[N, T, F]`, in the data's units, row-major.
    pub fn series_of(&self, z: Tensor<3>) -> Vec<f32> {
        let inference = z.device().without_autodiff();
        let z = z.to_device(&inference);
        let x = self
            .autoencoder
            .get()
            .recovery
            .valid()
            .forward(self.generators.get().valid().embeddings(z).0);
        let v = x.into_data().try_to_vec::<f32>().unwrap_or_default();
        v.iter()
            .enumerate()
            .map(|(k, x)| x * self.range[k % self.features] + self.min[k % self.features])
            .collect()
    }
}

/// `net(x)` as a constant of the autodiff graph: computed without one. (A forward pass through
/// tracked parameters that no backward pass ever consumes stays in Burn's graph: the supervised
/// phase, which never steps the embedder, slowed down step after step until this.)
fn constant(net: &SeriesNet, x: Tensor<3>) -> Tensor<3> {
    Tensor::from_inner(net.valid().forward(x.inner()))
}

/// Phase 1's objective, the autoencoder's reconstruction `10 sqrt(MSE(X, R(E(X))))`, and the
/// MSE itself.
pub fn embedding_loss(ae: &Autoencoder, x: Tensor<3>) -> (Tensor<1>, Tensor<1>) {
    let e_t0 = mse(x.clone(), ae.recovery.forward(ae.embedder.forward(x)));
    (e_t0.clone().sqrt() * 10.0, e_t0)
}

/// G's and S's joint objective and its terms.
pub struct GeneratorLoss {
    /// `adversarial + 100 sqrt(supervised) + 100 moments`.
    pub total: Tensor<1>,
    /// `BCE(D(S(G(Z))), 1) + gamma BCE(D(G(Z)), 1)`.
    pub adversarial: Tensor<1>,
    /// `L_S` on the real embeddings (E is not trained by it: they are constants here).
    pub supervised: Tensor<1>,
    pub moments: Tensor<1>,
}

/// Phase 3's objective of G and S on real series `x` and noise `z`.
pub fn generator_loss(
    ae: &Autoencoder,
    gens: &Generators,
    d: &SeriesNet,
    x: Tensor<3>,
    z: Tensor<3>,
) -> GeneratorLoss {
    let h = constant(&ae.embedder, x.clone());
    let (h_hat, e_hat) = gens.embeddings(z);
    let adversarial = bce(d.forward(h_hat.clone()), true) + bce(d.forward(e_hat), true) * GAMMA;
    let supervised = supervised(gens, h);
    let moments = moments(ae.recovery.forward(h_hat), x);
    GeneratorLoss {
        total: adversarial.clone() + supervised.clone().sqrt() * 100.0 + moments.clone() * 100.0,
        adversarial,
        supervised,
        moments,
    }
}

/// Phase 3's objective of the autoencoder, `10 sqrt(MSE(X, R(E(X)))) + 0.1 L_S` (S is not trained
/// by it), and the MSE.
pub fn autoencoder_loss(
    ae: &Autoencoder,
    gens: &Generators,
    x: Tensor<3>,
) -> (Tensor<1>, Tensor<1>) {
    let h = ae.embedder.forward(x.clone());
    let e_t0 = mse(x, ae.recovery.forward(h.clone()));
    (e_t0.clone().sqrt() * 10.0 + supervised(gens, h) * 0.1, e_t0)
}

/// D's objective `BCE(D(H), 1) + BCE(D(S(G(Z))), 0) + gamma BCE(D(G(Z)), 0)` (E, G and S are
/// constants here), with D's logits on the real and on the supervised fake embeddings.
pub fn discriminator_loss(
    ae: &Autoencoder,
    gens: &Generators,
    d: &SeriesNet,
    x: Tensor<3>,
    z: Tensor<3>,
) -> (Tensor<1>, Tensor<3>, Tensor<3>) {
    let h = constant(&ae.embedder, x);
    let (h_hat, e_hat) = gens.valid().embeddings(z.inner());
    let (h_hat, e_hat) = (Tensor::from_inner(h_hat), Tensor::from_inner(e_hat));
    let (y_real, y_fake) = (d.forward(h), d.forward(h_hat));
    let loss = bce(y_real.clone(), true)
        + bce(y_fake.clone(), false)
        + bce(d.forward(e_hat), false) * GAMMA;
    (loss, y_real, y_fake)
}

/// Mean squared difference.
fn mse(a: Tensor<3>, b: Tensor<3>) -> Tensor<1> {
    (a - b).powi_scalar(2).mean()
}

/// The supervised loss `MSE(H_2:T, S(H)_1:T-1)`: S's one-step-ahead error on embeddings `h`.
pub fn supervised(gens: &Generators, h: Tensor<3>) -> Tensor<1> {
    let t = h.dims()[1];
    let s = gens.supervisor.forward(h.clone());
    mse(h.narrow(1, 1, t - 1), s.narrow(1, 0, t - 1))
}

/// Sigmoid cross-entropy of logits against an all-`label` target, averaged (TensorFlow's
/// `sigmoid_cross_entropy`).
fn bce(logits: Tensor<3>, label: bool) -> Tensor<1> {
    if label {
        -log_sigmoid(logits).mean()
    } else {
        -log_sigmoid(-logits).mean()
    }
}

/// The moment loss: mean over steps and features of `|sd(a) - sd(b)| + |mean(a) - mean(b)|`,
/// the moments taken over the batch (the authors' `tf.nn.moments(., [0])`, sd with +1e-6).
fn moments(fake: Tensor<3>, real: Tensor<3>) -> Tensor<1> {
    let stats = |x: Tensor<3>| {
        let mean = x.clone().mean_dim(0);
        let var = (x - mean.clone()).powi_scalar(2).mean_dim(0);
        (mean, (var + 1e-6).sqrt())
    };
    let ((mf, sf), (mr, sr)) = (stats(fake), stats(real));
    (sf - sr).abs().mean() + (mf - mr).abs().mean()
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN; 16])
}

impl Family for TimeGan {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        let config = it.config;
        let (seed, step, lr) = (config.seed, it.step, it.lr());
        let device = it.device.clone();
        let nan = f32::NAN;
        let (mut loss_d, mut loss_g, mut d_real, mut d_fake) = (0.0, 0.0, nan, nan);
        let (mut grad_d, mut grad_g) = (0.0, 0.0);
        let (mut e_loss, mut s_loss, mut g_u, mut g_v, mut d_trained) = (nan, nan, nan, nan, 0.0);
        let phase = phase(config, step);
        match phase {
            // (1) The autoencoder: 10 sqrt(MSE(X, R(E(X)))).
            Phase::Embedding => {
                let x = self.real(it, step);
                let (loss, e_t0) = embedding_loss(self.autoencoder.get(), x);
                let grad = self.autoencoder.descend(&loss, lr, &device);
                let v = read(Tensor::cat(vec![loss.detach(), e_t0.detach(), grad], 0));
                (loss_g, e_loss, grad_g) = (v[0], v[1].sqrt(), v[2].sqrt());
            }
            // (2) The supervisor: the embedding's next step, L_S.
            Phase::Supervised => {
                let x = self.real(it, step);
                let h = constant(&self.autoencoder.get().embedder, x);
                let l_s = supervised(self.generators.get(), h);
                let grad = self.generators.descend(&l_s, lr, &device);
                let v = read(Tensor::cat(vec![l_s.detach(), grad], 0));
                (loss_g, s_loss, grad_g) = (v[0], v[0].sqrt(), v[1].sqrt());
            }
            Phase::Joint(i) => {
                if i == 0 {
                    // The joint phase's own optimizers (the authors' G_solver and E_solver).
                    self.autoencoder.optimizer = adam();
                    self.generators.optimizer = adam();
                }
                for k in 0..2 {
                    let stream = step * 3 + k;
                    let x = self.real(it, stream);
                    let z = self.noise(seed, stream, config.batch, &device);
                    // (3a) G and S: fool D on both embeddings, step like the data, match its
                    // moments.
                    let g = generator_loss(
                        self.autoencoder.get(),
                        self.generators.get(),
                        self.discriminator.get(),
                        x.clone(),
                        z,
                    );
                    let grad = self.generators.descend(&g.total, lr, &device);
                    // The autoencoder, on the same batch: reconstruct, and keep the embedding
                    // one that S can step.
                    let (e_total, e_t0) =
                        autoencoder_loss(self.autoencoder.get(), self.generators.get(), x);
                    self.autoencoder.descend(&e_total, lr, &device);
                    let r = read(Tensor::cat(
                        vec![
                            g.total.detach(),
                            g.adversarial.detach(),
                            g.supervised.detach(),
                            g.moments.detach(),
                            e_t0.detach(),
                            grad,
                        ],
                        0,
                    ));
                    (loss_g, g_u, s_loss, g_v, e_loss, grad_g) =
                        (r[0], r[1], r[2].sqrt(), r[3], r[4].sqrt(), r[5].sqrt());
                }
                // (3b) D on real embeddings against both kinds of fakes, while it is not winning.
                let stream = step * 3 + 2;
                let x = self.real(it, stream);
                let z = self.noise(seed, stream, config.batch, &device);
                let (loss, y_real, y_fake) = discriminator_loss(
                    self.autoencoder.get(),
                    self.generators.get(),
                    self.discriminator.get(),
                    x,
                    z,
                );
                let r = read(Tensor::cat(
                    vec![
                        loss.clone().detach(),
                        sigmoid(y_real.detach()).mean(),
                        sigmoid(y_fake.detach()).mean(),
                    ],
                    0,
                ));
                (loss_d, d_real, d_fake) = (r[0], r[1], r[2]);
                if loss_d > D_THRESHOLD {
                    let grad = self.discriminator.descend(&loss, lr, &device);
                    grad_d = read(grad)[0].sqrt();
                    d_trained = 1.0;
                }
            }
        }
        let phase_number = match phase {
            Phase::Embedding => 1.0,
            Phase::Supervised => 2.0,
            Phase::Joint(_) => 3.0,
        };
        StepMetrics {
            step: step + 1,
            loss_d,
            loss_g,
            d_real,
            d_fake,
            grad_norm_d: grad_d,
            grad_norm_g: grad_g,
            seconds: 0.0,
            terms: Terms::new(&[phase_number, e_loss, s_loss, g_u, g_v, d_trained]),
        }
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        Ok(checkpoint_sections([
            (AUTOENCODER, self.autoencoder.records()?),
            (GENERATORS, self.generators.records()?),
            (DISCRIMINATOR, self.discriminator.records()?),
        ]))
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.autoencoder, ckpt, file, AUTOENCODER, None)?;
        load_net(&mut self.generators, ckpt, file, GENERATORS, None)?;
        load_net(&mut self.discriminator, ckpt, file, DISCRIMINATOR, None)
    }

    /// Four generated series, each feature a line.
    fn sample_picture(
        &self,
        config: &TrainConfig,
        _step: u64,
        device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        let fake = self.generate(4, config.seed ^ PICTURE, device);
        Ok(series_picture(
            &fake,
            self.length,
            self.features,
            &self.min,
            &self.range,
        ))
    }

    /// The generator path `R(S(G(Z)))` scaled back to the data's units: input `noise`
    /// `[N, T, F]` (uniform in [0, 1)), output `series` `[N, T, F]`.
    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        Ok(vec![OnnxFile {
            name: "generator.onnx".into(),
            bytes: self.onnx(meta)?,
        }])
    }

    fn latent_generator(&self) -> Option<&crate::model::Generator> {
        None
    }

    fn terms(&self) -> &'static [&'static str] {
        &TERMS
    }
}

/// Series `[n, T, F]` side by side, one panel each, every feature a line in its own colour,
/// each feature's axis spanning `min .. min + range`.
pub fn series_picture(
    values: &[f32],
    length: usize,
    features: usize,
    min: &[f32],
    range: &[f32],
) -> image::RgbImage {
    const W: u32 = 128;
    const H: u32 = 96;
    let n = values.len() / (length * features).max(1);
    let mut img = image::RgbImage::from_pixel(W * n.max(1) as u32, H, image::Rgb([255; 3]));
    let palette = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
    ];
    for s in 0..n {
        let x0 = (s as u32 * W) as f32;
        for y in 0..H {
            img.put_pixel(s as u32 * W, y, image::Rgb([200; 3]));
        }
        for f in 0..features {
            let at = |t: usize| {
                let v = values[(s * length + t) * features + f];
                let u = ((v - min[f]) / range[f]).clamp(0.0, 1.0);
                (
                    x0 + 4.0 + t as f32 * (W as f32 - 8.0) / (length - 1).max(1) as f32,
                    (H as f32 - 4.0) - u * (H as f32 - 8.0),
                )
            };
            let colour = image::Rgb(palette[f % palette.len()]);
            for t in 1..length {
                imageproc::drawing::draw_line_segment_mut(&mut img, at(t - 1), at(t), colour);
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataSource;
    use crate::loss::GanLoss;
    use crate::model::Architecture;

    /// The exported generator, run by tract on noise of its own batch, gives Burn's series
    /// within 1e-4 (the GRU gates reordered, the reset applied after the product as PyTorch).
    #[test]
    fn the_onnx_generator_runs_in_tract_as_in_burn() {
        use tract_onnx::prelude::*;
        let source: DataSource = "sines".parse().unwrap();
        let mut config = TrainConfig::new(&source, Architecture::Mlp, GanLoss::Nonsaturating);
        config.family = crate::family::FamilyKind::Timegan;
        config.complete(&source, Default::default(), |_| false);
        config.timegan.scale = (0..5)
            .map(|k| [0.5 - k as f32 * 0.1, 1.0 + k as f32])
            .collect();
        let device = Device::flex().autodiff();
        let tg = TimeGan::init(&config, &device).unwrap();
        let bytes = tg.onnx(&config.onnx_metadata(0)).unwrap();
        let n = 3;
        let z = tg.noise(9, 0, n, &device.clone().without_autodiff());
        let zv = z.clone().into_data().try_to_vec::<f32>().unwrap();
        let want = tg.series_of(z);
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap()
            .with_input_fact(0, f32::fact([n, 24, 5]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let input = tract_ndarray::Array3::from_shape_vec((n, 24, 5), zv).unwrap();
        let y = model.run(tvec!(Tensor::from(input).into())).unwrap();
        let got: Vec<f32> = y[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "largest difference {worst}");
        // Not trivially equal: the series vary along time and features.
        assert!(want.iter().any(|&v| (v - want[0]).abs() > 1e-3));
    }
}
