//! SeqGAN (Yu et al. 2017): a generator of discrete token sequences trained by policy gradient,
//! the discriminator's opinion of finished sequences as the reward, each token's share estimated
//! by Monte Carlo rollouts. As in the authors' `sequence_gan.py`, a run has three phases, each a
//! number of iterations of the training loop (`config.seqgan`):
//!
//! 1. G's maximum-likelihood pre-training (`--pretrain-g-steps`): on a batch of real sequences,
//!    minimise the mean per-token negative log-likelihood `-mean log G(y_t | y_<t)`.
//! 2. D's pre-training (`--pretrain-d-steps`): on a batch of real sequences and a batch freshly
//!    sampled from G, minimise the cross-entropy of D's two-class softmax (real = 1, fake = 0)
//!    plus `--d-l2` times the L2 of D's output layer, with dropout (keep 0.75).
//! 3. Adversarial rounds (the rest of `--steps`). (a) G: sample a batch Y from G; the reward of
//!    token t is `Q(Y_1:t)`, the mean of D's probability of "real" over `--rollouts` completions
//!    of `Y_1:t` by the rollout network (`Y` itself for t = T); minimise
//!    `-mean_b sum_t Q(Y_1:t) log G(y_t | Y_<t)` (REINFORCE, no baseline, as the authors).
//!    (b) The rollout network, a delayed copy of G, moves towards G: embedding copied, every other
//!    weight `r <- 0.8 r + 0.2 g` (`--rollout-update`, the authors' `rollout.py`). (c) D: as in
//!    phase 2, `--round-d-steps` times, each on fresh samples of the updated G.
//!
//! G's Adam (lr 0.01, TensorFlow's betas 0.9 / 0.999, gradients clipped to norm 5 per parameter;
//! the authors clip the global norm) starts afresh at the first adversarial round, as the authors
//! use a second optimizer there; D's Adam has lr `--d-lr` (1e-4).
//!
//! NLL-oracle, the oracle's mean per-token NLL of `--eval-samples` sequences from G, is logged
//! every `--eval-every` iterations of G's pre-training and every `--eval-every-rounds`
//! adversarial rounds, at the ends of the phases and at the last iteration (the `nll_oracle`
//! column; empty elsewhere). `loss_d` is 0 in iterations that do not train D,
//! `loss_g` 0 in those that do not train G.
//!
//! Every random draw (G's samples, rollouts, dropout masks, the data order) is a function of
//! (seed, step), and the rollout network is part of the checkpoint: a resumed run is exact.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{adam, checkpoint_sections, load_net, Family, Iteration, Net, OnnxFile};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::oracle::{self, stream_seed, Lstm};
use crate::data::DataSource;
use crate::error::TrainError;
use crate::export::{ExportError, OnnxMetadata};
use crate::history::{StepMetrics, Terms};
use crate::model::seqgan::{token_tensor, CnnDiscriminator, LstmGenerator};
use pocketgan_runtime::tokens::TokenSpec;

/// The columns after the common ones in `metrics.csv`: the phase (1, 2, 3), G's MLE loss, its
/// policy-gradient loss, the mean reward of its samples, and NLL-oracle.
pub const TERMS: [&str; 5] = ["phase", "g_mle", "g_pg", "reward", "nll_oracle"];
/// The authors' gradient clipping of G.
const G_CLIP: f32 = 5.0;
/// The authors' `init_matrix`: G's weights N(0, 0.1).
const G_INIT_STD: f32 = 0.1;
/// Sequences D scores at once when judging rollouts.
const D_CHUNK: usize = 1024;

/// Random streams of an iteration, each mixed with the step.
const FAKES: u64 = 0xFA4E;
const ROLLOUTS: u64 = 0x5011;
const DROPOUT: u64 = 0xD50;
const EVAL: u64 = 0xE7A1;

/// Which phase iteration `step` (0-based) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PretrainG,
    PretrainD,
    /// Round number, from 0.
    Adversarial(u64),
}

pub fn phase(config: &TrainConfig, step: u64) -> Phase {
    let s = &config.seqgan;
    if step < s.pretrain_g_steps {
        Phase::PretrainG
    } else if step < s.pretrain_g_steps + s.pretrain_d_steps {
        Phase::PretrainD
    } else {
        Phase::Adversarial(step - s.pretrain_g_steps - s.pretrain_d_steps)
    }
}

pub struct SeqGan {
    pub generator: Net<LstmGenerator>,
    pub discriminator: Net<CnnDiscriminator>,
    /// The delayed copy of G that completes sequences for the rewards.
    pub rollout: Lstm,
    /// The synthetic benchmark's oracle (`--data oracle`); none for users' text.
    pub oracle: Option<Lstm>,
    /// What the tokens are: their length per sequence ([`SeqGan::len`]), and for the export,
    /// ids (the oracle) or a text run's vocabulary.
    pub tokens: TokenSpec,
}

const GENERATOR: (&str, &str) = ("generator", "adam_g");
const DISCRIMINATOR: (&str, &str) = ("discriminator", "adam_d");
const ROLLOUT: &str = "rollout";

/// G's Adam: the authors' (TensorFlow's betas, the run's lr), gradients clipped.
fn adam_g(config: &TrainConfig) -> burn::optim::ModuleOptimizer {
    let _ = config;
    burn::optim::AdamConfig::new()
        .with_beta_1(config.beta1)
        .with_beta_2(config.beta2)
        .with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            G_CLIP,
        )))
        .init()
}

impl SeqGan {
    /// Tokens per sequence.
    fn len(&self) -> usize {
        self.tokens.length
    }

    pub fn init(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let (oracle, vocab) = match config.source()? {
            DataSource::Oracle(src) => {
                let oracle = src.oracle()?;
                let vocab = oracle.vocab;
                (Some(oracle), vocab)
            }
            DataSource::Text(_) if config.vocabulary.len() >= 2 => (None, config.vocabulary.len()),
            DataSource::Text(file) => {
                return Err(TrainError::Config(format!(
                    "text:{}: no vocabulary was built from it",
                    file.display()
                )))
            }
            _ => {
                return Err(TrainError::Config(
                    "seqgan trains on token sequences: --data oracle, oracle:V, oracle:DIR or \
                     text:FILE"
                        .into(),
                ))
            }
        };
        let len = oracle::LENGTH;
        // The oracle's sequences are ids from its start token, 0, as `TokenSpec::ids` has them.
        let tokens = match oracle {
            Some(_) => TokenSpec::ids(len),
            None => crate::data::text::token_spec(&config.vocabulary, config.seqgan.tokens),
        };
        let g = LstmGenerator::new(
            vocab,
            oracle::EMBED,
            oracle::HIDDEN,
            G_INIT_STD,
            config.seed,
            device,
        );
        let d = CnnDiscriminator::new(vocab, len, config.seed ^ 0xD15C, device);
        Ok(Self {
            rollout: g.to_lstm(),
            generator: Net::new(g, adam_g(config)),
            discriminator: Net::new(d, adam(config)),
            oracle,
            tokens,
        })
    }

    /// NLL-oracle of G: the oracle's mean per-token NLL of `n` sequences G samples from `seed`
    /// (`None` without an oracle).
    pub fn nll_oracle(&self, n: usize, seed: u64) -> Option<f64> {
        let oracle = self.oracle.as_ref()?;
        Some(oracle.nll(&self.sample(n, seed), self.len()))
    }

    /// `n` sequences of G (row-major, [`oracle::LENGTH`] tokens each), drawn from `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<u32> {
        self.generator.get().to_lstm().sample(n, self.len(), seed)
    }

    /// One D step on the real sequences `real` and G's fresh samples `fake` (row-major, `len`
    /// tokens each): the loss, D's mean probability of "real" on each, and the gradient's squared
    /// norm.
    fn train_d(
        &mut self,
        real: &[u32],
        fake: &[u32],
        config: &TrainConfig,
        dropout: u64,
        device: &Device,
    ) -> (f32, f32, f32, f32) {
        let n = real.len() / self.len();
        let tokens: Vec<u32> = real.iter().chain(fake).copied().collect();
        let d = self.discriminator.get();
        let logits = d.forward(token_tensor(&tokens, self.len(), device), Some(dropout));
        let labels: Vec<i64> = (0..2 * n).map(|i| (i < n) as i64).collect();
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [2 * n, 1]), device);
        let ce = -log_softmax(logits.clone(), 1).gather(1, labels).mean();
        let loss = ce + d.l2() * config.seqgan.d_l2;
        let p = softmax(logits.detach(), 1).narrow(1, 1, 1).reshape([2 * n]);
        let (p_real, p_fake) = (p.clone().narrow(0, 0, n).mean(), p.narrow(0, n, n).mean());
        let grad = self
            .discriminator
            .descend(&loss, config.seqgan.d_lr, device);
        let v = read(Tensor::cat(vec![loss.detach(), p_real, p_fake, grad], 0));
        (v[0], v[1], v[2], v[3].sqrt())
    }

    /// The real sequences of batch `stream`.
    fn real(&self, it: &mut Iteration<'_>, stream: u64) -> Vec<u32> {
        let idx = it.order.indices(stream).to_vec();
        idx.iter()
            .flat_map(|&i| it.data.sample(i).iter().map(|&v| v as u32))
            .collect()
    }
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN; 8])
}

/// Each token's reward `Q(Y_1:t)` for sequences `samples` (row-major, `len` each), row-major like
/// them: for t < T the mean of `score` over `n` completions of the first t tokens by `rollout`,
/// for t = T the score of the sequence itself. `score` maps sequences to their rewards (D's
/// probability of "real"); completion `(i, t, b)` draws from its own seed, a function of
/// `(seed, i, t, b)`.
pub fn rewards(
    samples: &[u32],
    len: usize,
    rollout: &Lstm,
    n: usize,
    seed: u64,
    score: &dyn Fn(&[u32]) -> Vec<f32>,
) -> Vec<f32> {
    let b = samples.len() / len;
    // Completions ordered (t, i, b) for t in 1..len.
    let mut done = vec![0u32; (len - 1) * n * b * len];
    done.par_chunks_mut(len).enumerate().for_each(|(k, seq)| {
        let (t, rest) = (k / (n * b) + 1, k % (n * b));
        let row = rest % b;
        let mut rng =
            <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(stream_seed(seed, k as u64));
        rollout.complete(&samples[row * len..row * len + t], seq, &mut rng);
    });
    let scores: Vec<f32> = done
        .chunks(D_CHUNK * len)
        .flat_map(|chunk| score(chunk))
        .chain(score(samples))
        .collect();
    let mut out = vec![0f32; b * len];
    for t in 1..len {
        for i in 0..n {
            for row in 0..b {
                out[row * len + t - 1] += scores[((t - 1) * n + i) * b + row] / n as f32;
            }
        }
    }
    let last = (len - 1) * n * b;
    for row in 0..b {
        out[row * len + len - 1] = scores[last + row];
    }
    out
}

/// The REINFORCE loss whose gradient estimates the policy gradient of the expected reward:
/// `-mean_b sum_t Q_bt log G(y_bt | y_b,<t)`, with `rewards` from [`rewards`].
pub fn policy_gradient_loss(
    g: &LstmGenerator,
    samples: &[u32],
    rewards: &[f32],
    len: usize,
    device: &Device,
) -> Tensor<1> {
    let b = samples.len() / len;
    let logp = g.token_log_probs(token_tensor(samples, len, device));
    let q = Tensor::<2>::from_data(TensorData::new(rewards.to_vec(), [b, len]), device);
    -(logp * q).sum_dim(1).mean()
}

/// The rollout network moved towards G as the authors' `update_params`: the embedding copied,
/// every other weight `r <- rate r + (1 - rate) g`.
pub fn update_rollout(rollout: &mut Lstm, g: &Lstm, rate: f32) {
    rollout.embedding.clone_from(&g.embedding);
    for (r, g) in [
        (&mut rollout.w, &g.w),
        (&mut rollout.u, &g.u),
        (&mut rollout.b, &g.b),
        (&mut rollout.wo, &g.wo),
        (&mut rollout.bo, &g.bo),
    ] {
        for (r, g) in r.iter_mut().zip(g) {
            *r = rate * *r + (1.0 - rate) * g;
        }
    }
}

fn lstm_arrays(l: &mut Lstm) -> [&mut Vec<f32>; 6] {
    [
        &mut l.embedding,
        &mut l.w,
        &mut l.u,
        &mut l.b,
        &mut l.wo,
        &mut l.bo,
    ]
}

impl Family for SeqGan {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        let config = it.config;
        let s = &config.seqgan;
        let (len, batch, seed, step) = (self.len(), config.batch, config.seed, it.step);
        let device = it.device.clone();
        let nan = f32::NAN;
        let (mut loss_d, mut loss_g, mut d_real, mut d_fake) = (0.0, 0.0, nan, nan);
        let (mut grad_d, mut grad_g) = (0.0, 0.0);
        let (mut g_mle, mut g_pg, mut reward) = (nan, nan, nan);
        let phase = phase(config, step);
        match phase {
            // (1) G's maximum likelihood: -mean log G(y_t | y_<t) on real sequences.
            Phase::PretrainG => {
                let real = self.real(it, step);
                let logp = self
                    .generator
                    .get()
                    .token_log_probs(token_tensor(&real, len, &device));
                let loss = -logp.mean();
                let grad = self.generator.descend(&loss, it.lr(), &device);
                let v = read(Tensor::cat(vec![loss.detach(), grad], 0));
                (loss_g, g_mle, grad_g) = (v[0], v[0], v[1].sqrt());
            }
            // (2) D's cross-entropy, real against G's fresh samples, + L2.
            Phase::PretrainD => {
                let real = self.real(it, step);
                let fake = self.generator.get().to_lstm().sample(
                    batch,
                    len,
                    stream_seed(seed ^ FAKES, step),
                );
                (loss_d, d_real, d_fake, grad_d) = self.train_d(
                    &real,
                    &fake,
                    config,
                    stream_seed(seed ^ DROPOUT, step),
                    &device,
                );
            }
            Phase::Adversarial(round) => {
                if round == 0 {
                    // The authors' adversarial updates use an optimizer of their own.
                    self.generator.optimizer = adam_g(config);
                }
                // (3a) G by REINFORCE, rewards from rollouts judged by D.
                let g_lstm = self.generator.get().to_lstm();
                let samples = g_lstm.sample(batch, len, stream_seed(seed ^ FAKES, step));
                let d = self.discriminator.get().valid();
                let inference = device.clone().without_autodiff();
                let score = |seqs: &[u32]| d.real_probability(token_tensor(seqs, len, &inference));
                let q = rewards(
                    &samples,
                    len,
                    &self.rollout,
                    s.rollouts,
                    stream_seed(seed ^ ROLLOUTS, step),
                    &score,
                );
                reward = q.iter().sum::<f32>() / q.len() as f32;
                let loss = policy_gradient_loss(self.generator.get(), &samples, &q, len, &device);
                let grad = self.generator.descend(&loss, it.lr(), &device);
                let v = read(Tensor::cat(vec![loss.detach(), grad], 0));
                (loss_g, g_pg, grad_g) = (v[0], v[0], v[1].sqrt());
                // (3b) The delayed copy follows G.
                let g_lstm = self.generator.get().to_lstm();
                update_rollout(&mut self.rollout, &g_lstm, s.rollout_update);
                // (3c) D on fresh samples of the updated G.
                let k = s.round_d_steps.max(1) as u64;
                let mut sums = [0f32; 4];
                for i in 0..k {
                    let stream = step * k + i;
                    let real = self.real(it, stream);
                    let fake = g_lstm.sample(batch, len, stream_seed(seed ^ FAKES ^ 0xD, stream));
                    let m = self.train_d(
                        &real,
                        &fake,
                        config,
                        stream_seed(seed ^ DROPOUT ^ 0xA, stream),
                        &device,
                    );
                    for (s, v) in sums.iter_mut().zip([m.0, m.1, m.2, m.3]) {
                        *s += v / k as f32;
                    }
                }
                [loss_d, d_real, d_fake, grad_d] = sums;
            }
        }
        let done = step + 1;
        let pretrain_end = s.pretrain_g_steps + s.pretrain_d_steps;
        // Every --eval-every G steps while G pre-trains, every --eval-every-rounds rounds after,
        // at the ends of the phases and at the last iteration (D's pre-training leaves G as it is).
        let periodic = match phase {
            Phase::PretrainG => done % s.eval_every.max(1) == 0,
            Phase::PretrainD => false,
            Phase::Adversarial(round) => (round + 1) % s.eval_every_rounds.max(1) == 0,
        };
        let nll = if periodic
            || done == config.steps
            || done == s.pretrain_g_steps
            || done == pretrain_end
        {
            self.nll_oracle(s.eval_samples, seed ^ EVAL)
                .map_or(nan, |v| v as f32)
        } else {
            nan
        };
        let phase_number = match phase {
            Phase::PretrainG => 1.0,
            Phase::PretrainD => 2.0,
            Phase::Adversarial(_) => 3.0,
        };
        StepMetrics {
            step: done,
            loss_d,
            loss_g,
            d_real,
            d_fake,
            grad_norm_d: grad_d,
            grad_norm_g: grad_g,
            seconds: 0.0,
            terms: Terms::new(&[phase_number, g_mle, g_pg, reward, nll]),
        }
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        let mut sections = checkpoint_sections([
            (GENERATOR, self.generator.records()?),
            (DISCRIMINATOR, self.discriminator.records()?),
        ]);
        let mut rollout = self.rollout.clone();
        let bytes: Vec<u8> = lstm_arrays(&mut rollout)
            .iter()
            .flat_map(|a| a.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        sections.push((ROLLOUT.into(), bytes));
        Ok(sections)
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.generator, ckpt, file, GENERATOR, None)?;
        load_net(&mut self.discriminator, ckpt, file, DISCRIMINATOR, None)?;
        let bytes = ckpt.section(ROLLOUT, file)?;
        let mut arrays = lstm_arrays(&mut self.rollout);
        let want: usize = arrays.iter().map(|a| a.len() * 4).sum();
        if bytes.len() != want {
            return Err(TrainError::Record {
                file: file.into(),
                reason: format!(
                    "the rollout network has {} bytes, this generator's needs {want}",
                    bytes.len()
                ),
            });
        }
        let mut values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for a in arrays.iter_mut() {
            for v in a.iter_mut() {
                *v = values.next().unwrap_or(0.0);
            }
        }
        Ok(())
    }

    /// Eight sequences from G, one per row, each token a cell coloured by its id.
    fn sample_picture(
        &self,
        config: &TrainConfig,
        _step: u64,
        _device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        const ROWS: usize = 8;
        const CELL: u32 = 8;
        let seqs = self
            .generator
            .get()
            .to_lstm()
            .sample(ROWS, self.len(), config.seed ^ 0x5A3);
        let mut img = image::RgbImage::new(CELL * self.len() as u32, CELL * ROWS as u32);
        for (i, &tok) in seqs.iter().enumerate() {
            let h = (tok as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let colour = image::Rgb([h as u8, (h >> 8) as u8, (h >> 16) as u8]);
            let (x, y) = (
                (i % self.len()) as u32 * CELL,
                (i / self.len()) as u32 * CELL,
            );
            for dy in 0..CELL - 1 {
                for dx in 0..CELL - 1 {
                    img.put_pixel(x + dx, y + dy, colour);
                }
            }
        }
        Ok(img)
    }

    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        let mut entries = meta.entries.clone();
        entries.extend(self.tokens.metadata());
        Ok(vec![OnnxFile {
            name: "generator.onnx".into(),
            bytes: self.generator.get().valid().onnx(&entries)?,
        }])
    }

    fn latent_generator(&self) -> Option<&crate::model::Generator> {
        None
    }

    fn terms(&self) -> &'static [&'static str] {
        &TERMS
    }
}
