//! The training loop: per iteration, `critic_steps` D updates on real and detached fake batches
//! (only D's parameters move), then one G update through a frozen copy of D (only G's move).
//!
//! Every random draw is a pure function of (seed, step): the data order, the latents and the fixed
//! sample batch. A resumed run therefore replays exactly what an uninterrupted run would do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::{Gradients, TensorData};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::data::{self, BatchOrder, DataSource, Dataset, LoadOptions, SampleKind};
use crate::device::DeviceKind;
use crate::loss::GanLoss;
use crate::metrics::classifier::labels;
use crate::model::{
    batch_dims, class_tensor, default_class, Conditioning, Discriminator, Generator, ModelConfig,
    Verdict,
};
use crate::render;

/// Everything that defines a run; saved as `config.json` in the run folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub data: String,
    pub model: ModelConfig,
    pub loss: GanLoss,
    /// Iterations (each: `critic_steps` D updates and one G update).
    pub steps: u64,
    pub batch: usize,
    pub seed: u64,
    /// Adam, DCGAN's defaults: lr 2e-4, betas (0.5, 0.999).
    pub lr: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub critic_steps: usize,
    /// Decay both learning rates linearly to zero at `steps` (sharpens the modes of toy mixtures).
    #[serde(default)]
    pub lr_decay: bool,
    /// WGAN: clip D's weights to +-c after each D step.
    pub weight_clip: Option<f32>,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub sample_every: u64,
    pub device: DeviceKind,
    /// The dataset's class names, recorded for the exported model's metadata.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// SGAN: labelled samples per class (the rest of the data is used without labels).
    #[serde(default = "default_labelled")]
    pub labelled_per_class: usize,
    /// ACGAN: weight of the auxiliary classifier terms (TAC-GAN's lambda_c) in D's and G's losses.
    #[serde(default = "default_aux_weight")]
    pub aux_weight: f32,
}

fn default_labelled() -> usize {
    10
}

/// TAC-GAN's lambda_c. Lower trades class accuracy for variety (README, conditional models).
fn default_aux_weight() -> f32 {
    1.0
}

impl TrainConfig {
    /// The learning rate for iteration `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.lr_decay {
            self.lr * (1.0 - step as f64 / self.steps.max(1) as f64).max(0.0)
        } else {
            self.lr
        }
    }

    /// Defaults for a dataset, model and loss: the reference DCGAN for 28x28 images.
    pub fn new(data: &DataSource, architecture: crate::model::Architecture, loss: GanLoss) -> Self {
        let sample = data.native_kind();
        let mut model = ModelConfig::reference_dcgan();
        model.architecture = architecture;
        model.sample = sample;
        if architecture == crate::model::Architecture::Mlp {
            model.width = if data.is_toy() { 128 } else { 512 };
            model.latent = if data.is_toy() { 2 } else { 64 };
        }
        Self {
            data: data.to_string(),
            model,
            loss,
            steps: 1200,
            batch: 64,
            seed: 0,
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            lr_decay: false,
            critic_steps: loss.default_critic_steps(),
            weight_clip: loss.default_weight_clip(),
            checkpoint_every: 300,
            keep_checkpoints: 3,
            sample_every: 100,
            device: DeviceKind::Cpu,
            class_names: Vec::new(),
            labelled_per_class: default_labelled(),
            aux_weight: default_aux_weight(),
        }
    }

    pub fn source(&self) -> Result<DataSource, TrainError> {
        Ok(self.data.parse()?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceUnavailable),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    BadRun { file: PathBuf, reason: String },
    #[error("{file}: cannot restore weights: {reason}")]
    Record { file: PathBuf, reason: String },
    #[error("{what} became {value} at step {step}: training diverged. The last good checkpoint is kept in {dir}; try a lower learning rate or another loss")]
    NonFinite {
        what: &'static str,
        value: f32,
        step: u64,
        dir: PathBuf,
    },
    #[error("cannot resume: no checkpoint in {0}")]
    NothingToResume(PathBuf),
    #[error("{0} already holds a run: pass --resume to continue it, or choose another --out")]
    RunExists(PathBuf),
    #[error("ONNX export failed: {0}")]
    Export(#[from] crate::export::ExportError),
}

fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io {
        file: file.to_path_buf(),
        source: e,
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub loss_d: f32,
    pub loss_g: f32,
    /// D's mean opinion of real samples (probability for BCE losses, raw score otherwise).
    pub d_real: f32,
    /// D's mean opinion of fakes, before D's update.
    pub d_fake: f32,
    pub grad_norm_d: f32,
    pub grad_norm_g: f32,
    pub seconds: f64,
}

pub const METRICS_HEADER: &str = "step,loss_d,loss_g,d_real,d_fake,grad_norm_d,grad_norm_g,seconds";

impl StepMetrics {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{:.4}",
            self.step,
            self.loss_d,
            self.loss_g,
            self.d_real,
            self.d_fake,
            self.grad_norm_d,
            self.grad_norm_g,
            self.seconds
        )
    }

    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 8 {
            return None;
        }
        Some(Self {
            step: f[0].parse().ok()?,
            loss_d: f[1].parse().ok()?,
            loss_g: f[2].parse().ok()?,
            d_real: f[3].parse().ok()?,
            d_fake: f[4].parse().ok()?,
            grad_norm_d: f[5].parse().ok()?,
            grad_norm_g: f[6].parse().ok()?,
            seconds: f[7].parse().ok()?,
        })
    }
}

/// Read a run's `metrics.csv`.
pub fn read_metrics(run: &Path) -> Result<Vec<StepMetrics>, TrainError> {
    let file = run.join("metrics.csv");
    let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            StepMetrics::parse(l).ok_or_else(|| TrainError::BadRun {
                file: file.clone(),
                reason: format!("bad row `{l}`"),
            })
        })
        .collect()
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        steps: u64,
    },
    /// Stopped on request (Ctrl-C, or `stop_at`) after writing a checkpoint.
    Interrupted {
        at_step: u64,
    },
}

/// Knobs that do not change the results.
#[derive(Default)]
pub struct RunOptions<'a> {
    pub resume: bool,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Checked before every iteration; when set, checkpoint and stop (the Ctrl-C path).
    pub stop: Option<&'a AtomicBool>,
    /// Stop as if interrupted once this many iterations are done.
    pub stop_at: Option<u64>,
    /// Judge samples while training (labelled image data): `quality.csv` and warnings of mode
    /// collapse, collapsing diversity and a discriminator that wins outright.
    pub watch: bool,
}

/// The run folder's layout.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    pub fn onnx(&self) -> PathBuf {
        self.0.join("generator.onnx")
    }

    pub fn read_config(&self) -> Result<TrainConfig, TrainError> {
        let file = self.config();
        let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
        serde_json::from_str(&text).map_err(|e| TrainError::BadRun {
            file,
            reason: format!("bad config: {e}"),
        })
    }
}

/// The trained state in memory.
pub struct State {
    pub generator: Generator,
    pub discriminator: Discriminator,
    opt_g: ModuleOptimizer,
    opt_d: ModuleOptimizer,
    /// Iterations completed.
    pub step: u64,
}

/// Adam with DCGAN's lr and betas; epsilon stays Burn's default (1e-5; PyTorch uses 1e-8).
fn adam(config: &TrainConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(config.beta1)
        .with_beta_2(config.beta2)
        .init()
}

/// Burn's parameter RNG is global per backend and parameters draw from it lazily, on first use.
/// Seeding and drawing every parameter under one lock keeps initialisation a function of the seed
/// even when several runs share a process (tests run in parallel).
pub(crate) static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Draws every lazily initialised parameter now.
pub(crate) struct Materialize;

impl ModuleMapper for Materialize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

impl State {
    pub fn new(config: &TrainConfig, device: &Device) -> Self {
        let _guard = INIT_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(config.seed);
        let (generator, discriminator) = config.model.init(device);
        let generator = generator.map(&mut Materialize);
        let discriminator = discriminator.map(&mut Materialize);
        Self {
            generator,
            discriminator,
            opt_g: adam(config),
            opt_d: adam(config),
            step: 0,
        }
    }

    fn to_checkpoint(&self) -> Result<Checkpoint, TrainError> {
        let rec = |r: Result<burn::tensor::Bytes, burn::store::RecordError>| {
            r.map(|b| b.to_vec())
                .map_err(|e| TrainError::Config(format!("cannot serialise a record: {e}")))
        };
        Ok(Checkpoint {
            step: self.step,
            // `valid()` syncs BatchNorm running statistics that `into_record` alone can miss.
            sections: vec![
                (
                    "generator".into(),
                    rec(self.generator.valid().into_record().into_bytes())?,
                ),
                (
                    "discriminator".into(),
                    rec(self.discriminator.valid().into_record().into_bytes())?,
                ),
                ("adam_g".into(), rec(self.opt_g.to_record().into_bytes())?),
                ("adam_d".into(), rec(self.opt_d.to_record().into_bytes())?),
            ],
        })
    }

    /// Rebuild from a checkpoint; every section is validated against the config's shapes.
    pub fn from_checkpoint(
        config: &TrainConfig,
        device: &Device,
        ckpt: &Checkpoint,
        file: &Path,
    ) -> Result<Self, TrainError> {
        let bad = |e: burn::store::RecordError| TrainError::Record {
            file: file.into(),
            reason: e.to_string(),
        };
        let module_record = |name: &str| -> Result<burn::store::ModuleRecord, TrainError> {
            let bytes = burn::tensor::Bytes::from_bytes_vec(ckpt.section(name, file)?.to_vec());
            burn::store::ModuleRecord::from_bytes(bytes).map_err(bad)
        };
        let opt_record = |name: &str| -> Result<burn::optim::OptimizerRecord, TrainError> {
            let bytes = burn::tensor::Bytes::from_bytes_vec(ckpt.section(name, file)?.to_vec());
            burn::optim::OptimizerRecord::from_bytes(bytes).map_err(bad)
        };
        let mut state = Self::new(config, device);
        state.generator = state
            .generator
            .try_load_record(module_record("generator")?)
            .map_err(bad)?;
        state.discriminator = state
            .discriminator
            .try_load_record(module_record("discriminator")?)
            .map_err(|e| match bad(e) {
                TrainError::Record { file, reason }
                    if config.model.conditioning == Conditioning::Acgan =>
                {
                    TrainError::Record {
                        file,
                        reason: format!(
                            "{reason} (ACGAN's discriminator gained TAC-GAN's twin classifier \
                             head on 2026-11-27; a run saved before that must be trained again)"
                        ),
                    }
                }
                other => other,
            })?;
        state.opt_g = adam(config).load_record(opt_record("adam_g")?);
        state.opt_d = adam(config).load_record(opt_record("adam_d")?);
        state.step = ckpt.step;
        Ok(state)
    }
}

/// Standard normal latents for iteration `step`, critic pass `k`: a pure function of the seed.
pub fn latents(seed: u64, stream: u64, n: usize, latent: usize, device: &Device) -> Tensor<2> {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ stream);
    let v: Vec<f32> = (0..n * latent)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_data(TensorData::new(v, [n, latent]), device)
}

/// Uniform classes in `0..k` for the fake batch of `stream`: a pure function of the seed.
pub fn fake_classes(seed: u64, stream: u64, n: usize, k: usize, device: &Device) -> Tensor<1, Int> {
    use rand::Rng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream ^ 0xC1A5_5E5C,
    );
    class_tensor(
        (0..n)
            .map(|_| rng.random_range(0..k.max(1)) as i64)
            .collect(),
        device,
    )
}

/// The sample grid's size and classes: one row per class for a conditional generator with few
/// classes (`K x K` samples), else 64 samples.
pub fn grid_classes(generator: &Generator) -> (usize, Option<Vec<i64>>) {
    match generator.classes() {
        k @ 2..=16 => (k * k, Some((0..k * k).map(|i| (i / k) as i64).collect())),
        0 => (64, None),
        k => (
            64,
            Some((0..64).map(|i| default_class(i, k) as i64).collect()),
        ),
    }
}

/// The fixed latent batch that every sample grid uses.
pub fn sample_latents(config: &TrainConfig, n: usize, device: &Device) -> Tensor<2> {
    latents(config.seed, u64::MAX, n, config.model.latent, device)
}

fn real_batch(ds: &Dataset, idx: &[usize], device: &Device) -> Tensor<4> {
    let per = ds.kind.numel();
    let mut v = Vec::with_capacity(idx.len() * per);
    for &i in idx {
        v.extend_from_slice(ds.sample(i));
    }
    Tensor::from_data(TensorData::new(v, batch_dims(ds.kind, idx.len())), device)
}

/// Sum of squared gradients over a module's parameters, as a tensor (no sync).
struct GradSquares<'a> {
    grads: &'a Gradients,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for GradSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let s = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

fn grad_squares<M: Module>(module: &M, grads: &Gradients, device: &Device) -> Tensor<1> {
    let mut v = GradSquares { grads, total: None };
    module.visit(&mut v);
    v.total
        .unwrap_or_else(|| Tensor::zeros([1], &device.clone().without_autodiff()))
}

/// WGAN's weight clipping, applied to every float parameter of D.
struct Clip(f32);

impl ModuleMapper for Clip {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let grad = tensor.is_require_grad();
        let mut t = Tensor::from_inner(tensor.inner().clamp(-self.0, self.0));
        if grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// One iteration on an autodiff device. Returns the new state's metrics (without `seconds`).
/// Takes the state by value because Burn's optimizers consume and return the modules.
pub fn train_step(
    mut state: State,
    config: &TrainConfig,
    ds: &Dataset,
    order: &mut BatchOrder,
    device: &Device,
) -> (State, StepMetrics) {
    let step = state.step;
    let n = config.batch;
    let cond = config.model.conditioning;
    let k_classes = config.model.classes;
    let mut fake = None;
    let mut scalars_d = None;
    let critic_steps = config.critic_steps.max(1);
    for k in 0..critic_steps {
        let stream = step * critic_steps as u64 + k as u64;
        let idx = order.indices(stream).to_vec();
        let real = real_batch(ds, &idx, device);
        let z = latents(config.seed, stream, n, config.model.latent, device);
        let y_fake = cond
            .conditions_generator()
            .then(|| fake_classes(config.seed, stream, n, k_classes, device));
        let f = state.generator.forward(z, y_fake.clone());
        // Only cGAN's D reads the class; ACGAN's D predicts it.
        let (d_class_real, d_class_fake) = match cond {
            Conditioning::Cgan => (Some(labels(ds, &idx, device)), y_fake.clone()),
            _ => (None, None),
        };
        let v_real = state.discriminator.judge(real, d_class_real);
        let v_fake = state.discriminator.judge(f.clone().detach(), d_class_fake);
        let opinions = Tensor::cat(
            vec![
                config.loss.opinion(v_real.score.clone()),
                config.loss.opinion(v_fake.score.clone()),
            ],
            0,
        );
        let mut loss_d = config
            .loss
            .discriminator(v_real.score.clone(), v_fake.score.clone());
        match (cond, &y_fake) {
            (Conditioning::Acgan, Some(y_fake)) => {
                if let Some(aux) =
                    tac_discriminator_loss(v_real, v_fake, labels(ds, &idx, device), y_fake.clone())
                {
                    loss_d = loss_d + aux * config.aux_weight;
                }
            }
            (Conditioning::Sgan, _) => {
                let subset = order.labelled(ds, config.labelled_per_class, config.seed);
                let labelled = labelled_batch(subset, n, config.seed, stream);
                let logits = if labelled.is_empty() {
                    None
                } else {
                    state
                        .discriminator
                        .judge(real_batch(ds, &labelled, device), None)
                        .class_logits
                };
                if let Some(logits) = logits {
                    loss_d = loss_d + class_loss(logits, labels(ds, &labelled, device));
                }
            }
            _ => {}
        }
        let grads = loss_d.backward();
        let norm = grad_squares(&state.discriminator, &grads, device);
        let grads = GradientsParams::from_grads(grads, &state.discriminator);
        let mut d = state
            .opt_d
            .step(config.lr_at(step), state.discriminator, grads);
        if let Some(c) = config.weight_clip {
            d = d.map(&mut Clip(c));
        }
        state.discriminator = d;
        scalars_d = Some((loss_d.detach().inner(), opinions.detach().inner(), norm));
        fake = Some((f, y_fake));
    }
    // G step: D frozen (no parameter of the copy requires a gradient), G's graph from the last fake.
    let frozen_d = state.discriminator.clone().no_grad();
    let (fake, y_fake) = fake.expect("the critic loop runs at least once");
    let d_class = (cond == Conditioning::Cgan)
        .then(|| y_fake.clone())
        .flatten();
    let verdict = frozen_d.judge(fake, d_class);
    let mut loss_g = config.loss.generator(verdict.score.clone());
    if let (Conditioning::Acgan, Some(y)) = (cond, y_fake) {
        if let Some(aux) = tac_generator_loss(verdict, y) {
            loss_g = loss_g + aux * config.aux_weight;
        }
    }
    let grads = loss_g.backward();
    let norm_g = grad_squares(&state.generator, &grads, device);
    let grads = GradientsParams::from_grads(grads, &state.generator);
    state.generator = state.opt_g.step(config.lr_at(step), state.generator, grads);
    state.step += 1;

    let (loss_d, opinions, norm_d) = scalars_d.expect("the critic loop runs at least once");
    let all = Tensor::cat(
        vec![
            loss_d,
            loss_g.detach().inner(),
            opinions,
            norm_d.inner(),
            norm_g.inner(),
        ],
        0,
    );
    let v: Vec<f32> = all
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN; 6]);
    let metrics = StepMetrics {
        step: state.step,
        loss_d: v[0],
        loss_g: v[1],
        d_real: v[2],
        d_fake: v[3],
        grad_norm_d: v[4].sqrt(),
        grad_norm_g: v[5].sqrt(),
        seconds: 0.0,
    };
    (state, metrics)
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
fn class_loss(logits: Tensor<2>, classes: Tensor<1, Int>) -> Tensor<1> {
    burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, classes)
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

/// SGAN's baseline: D's network initialised from the same seed and trained by cross-entropy on
/// the labelled subset alone, for `updates` Adam steps (as many as SGAN's D took).
pub fn train_supervised_only(
    config: &TrainConfig,
    ds: &Dataset,
    updates: u64,
    device: &Device,
) -> Discriminator {
    let state = State::new(config, device);
    let (mut d, mut opt) = (state.discriminator, state.opt_d);
    let subset = ds.labelled_subset(config.labelled_per_class, config.seed);
    for stream in 0..updates {
        let labelled = labelled_batch(&subset, config.batch, config.seed, stream);
        if labelled.is_empty() {
            break;
        }
        if let Some(logits) = d
            .judge(real_batch(ds, &labelled, device), None)
            .class_logits
        {
            let loss = class_loss(logits, labels(ds, &labelled, device));
            let grads = GradientsParams::from_grads(loss.backward(), &d);
            d = opt.step(
                config.lr_at(stream / config.critic_steps.max(1) as u64),
                d,
                grads,
            );
        }
    }
    d
}

/// SGAN trains on the judge's training split only, so the held-out split measures its classifier.
pub fn sgan_split(ds: &Dataset) -> (Vec<usize>, Vec<usize>) {
    crate::metrics::classifier::split(ds.len(), 0)
}

/// Run the generator in inference mode (BatchNorm running statistics) on latents `z` (and, for a
/// conditional generator, `classes`; without them sample `i` is of class `i mod K`).
pub fn generate_from(generator: &Generator, z: Tensor<2>, classes: Option<&[i64]>) -> Vec<f32> {
    let device = z.device().without_autodiff();
    let z = z.to_device(&device);
    let classes = classes.map(|c| class_tensor(c.to_vec(), &device));
    generator
        .valid()
        .forward(z, classes)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The sample grid from the fixed latent batch ([`grid_classes`]: a row per class for a
/// conditional generator).
pub fn fixed_samples(generator: &Generator, config: &TrainConfig, device: &Device) -> Vec<f32> {
    let (n, classes) = grid_classes(generator);
    generate_from(
        generator,
        sample_latents(config, n, &device.clone().without_autodiff()),
        classes.as_deref(),
    )
}

/// Generate `n` samples from fresh latents (seeded).
pub fn generate(
    generator: &Generator,
    config: &TrainConfig,
    n: usize,
    seed: u64,
    device: &Device,
) -> Vec<f32> {
    let z = latents(
        seed,
        u64::MAX - 1,
        n,
        config.model.latent,
        &device.clone().without_autodiff(),
    );
    generate_from(generator, z, None)
}

fn save_samples(
    state: &State,
    config: &TrainConfig,
    run: &RunDir,
    device: &Device,
) -> Result<(), TrainError> {
    let file = run.samples().join(format!("step_{:06}.png", state.step));
    let img = match config.model.sample {
        SampleKind::Image { .. } => render::sample_grid(
            &fixed_samples(&state.generator, config, device),
            config.model.sample,
        ),
        SampleKind::Points { .. } => {
            let centers = config
                .source()?
                .mixture()
                .map(|m| m.centers)
                .unwrap_or_default();
            render::scatter(
                &generate(&state.generator, config, 2000, config.seed, device),
                &centers,
            )
        }
    };
    img.save(&file).map_err(|e| TrainError::BadRun {
        file,
        reason: e.to_string(),
    })
}

fn save_checkpoint(state: &State, config: &TrainConfig, run: &RunDir) -> Result<(), TrainError> {
    let dir = run.checkpoints();
    state
        .to_checkpoint()?
        .write(&dir.join(checkpoint::file_name(state.step)))?;
    checkpoint::prune(&dir, config.keep_checkpoints).map_err(io_err(&dir))
}

/// Load the newest checkpoint of a run.
pub fn load_latest(
    run: &RunDir,
    config: &TrainConfig,
    device: &Device,
) -> Result<State, TrainError> {
    let (_, file) = checkpoint::list(&run.checkpoints())
        .pop()
        .ok_or_else(|| TrainError::NothingToResume(run.0.clone()))?;
    let ckpt = Checkpoint::read(&file)?;
    State::from_checkpoint(config, device, &ckpt, &file)
}

fn loss_curve(run: &RunDir) -> Result<(), TrainError> {
    let rows = read_metrics(&run.0)?;
    let col = |f: fn(&StepMetrics) -> f32| rows.iter().map(f).collect::<Vec<f32>>();
    let (ld, lg, dr, df) = (
        col(|r| r.loss_d),
        col(|r| r.loss_g),
        col(|r| r.d_real),
        col(|r| r.d_fake),
    );
    let panels = vec![
        vec![
            render::Series {
                values: &ld,
                color: [210, 40, 40],
            },
            render::Series {
                values: &lg,
                color: [40, 80, 210],
            },
        ],
        vec![
            render::Series {
                values: &dr,
                color: [30, 150, 60],
            },
            render::Series {
                values: &df,
                color: [240, 140, 20],
            },
        ],
    ];
    let file = run.0.join("loss_curve.png");
    render::line_panels(&panels, &file).map_err(|e| TrainError::BadRun {
        file,
        reason: e.to_string(),
    })
}

/// Train (or resume) the run in `out`. Writes config, checkpoints, samples, metrics, the loss
/// curve and `generator.onnx`.
pub fn train(config: &TrainConfig, out: &Path, opts: &RunOptions) -> Result<Outcome, TrainError> {
    let run = RunDir(out.to_path_buf());
    // A resumed run keeps its saved configuration; only the number of steps is the caller's.
    let config = if opts.resume {
        let mut saved = run.read_config()?;
        saved.steps = config.steps;
        saved
    } else {
        if run.config().exists() {
            return Err(TrainError::RunExists(out.to_path_buf()));
        }
        config.clone()
    };
    let mut config = config;
    config.model.validate().map_err(TrainError::Config)?;
    if config.batch == 0
        || config.critic_steps == 0
        || config.checkpoint_every == 0
        || config.sample_every == 0
    {
        return Err(TrainError::Config(
            "batch, critic steps and intervals must be positive".into(),
        ));
    }
    let source = config.source()?;
    let (size, channels) = match config.model.sample {
        SampleKind::Image {
            channels, height, ..
        } => (Some(height), Some(channels)),
        SampleKind::Points { .. } => (None, None),
    };
    let ds = data::load(
        &source,
        &LoadOptions {
            size,
            channels,
            seed: config.seed,
            ..Default::default()
        },
    )?;
    if ds.kind != config.model.sample {
        return Err(TrainError::Config(format!(
            "the data's samples are {:?} but the model makes {:?}",
            ds.kind, config.model.sample
        )));
    }
    config.class_names = ds.class_names.clone();
    let cond = config.model.conditioning;
    let ds = if cond == Conditioning::Sgan {
        ds.subset(&sgan_split(&ds).0)
    } else {
        ds
    };
    if cond.uses_labels() {
        config.model.classes = ds.class_names.len();
        if config.model.classes < 2 {
            return Err(TrainError::Config(format!(
                "--cond {} needs labelled data with at least 2 classes; {} has {}",
                format!("{cond:?}").to_lowercase(),
                ds.name,
                config.model.classes
            )));
        }
        if let Some(&bad) = ds
            .labels
            .iter()
            .find(|&&l| l as usize >= config.model.classes)
        {
            return Err(TrainError::Config(format!(
                "{}: label {bad} but only {} class names",
                ds.name, config.model.classes
            )));
        }
    }
    if !(config.aux_weight.is_finite() && config.aux_weight >= 0.0) {
        return Err(TrainError::Config(format!(
            "the auxiliary weight must be a non-negative number, not {}",
            config.aux_weight
        )));
    }
    if config.model.conditioning == Conditioning::Sgan && config.labelled_per_class == 0 {
        return Err(TrainError::Config(
            "sgan needs at least one labelled sample per class".into(),
        ));
    }
    let mut order = BatchOrder::new(ds.len(), config.batch, config.seed)?;
    let device = config.device.device()?.autodiff();

    for dir in [run.0.clone(), run.checkpoints(), run.samples()] {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let mut state;
    if opts.resume {
        state = load_latest(&run, &config, &device)?;
        // Keep the metrics of the steps the checkpoint holds; later rows are replayed.
        let kept: Vec<String> = read_metrics(&run.0)?
            .iter()
            .filter(|m| m.step <= state.step)
            .map(|m| m.csv())
            .collect();
        let text = std::iter::once(METRICS_HEADER.to_string())
            .chain(kept)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        checkpoint::write_atomic(&run.metrics(), text.as_bytes())
            .map_err(io_err(&run.metrics()))?;
    } else {
        state = State::new(&config, &device);
        let json = serde_json::to_string_pretty(&config).expect("config serialises");
        checkpoint::write_atomic(&run.config(), json.as_bytes()).map_err(io_err(&run.config()))?;
        std::fs::write(run.metrics(), format!("{METRICS_HEADER}\n"))
            .map_err(io_err(&run.metrics()))?;
        save_samples(&state, &config, &run, &device)?;
    }
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(run.metrics())
        .map_err(io_err(&run.metrics()))?;

    let bar = if opts.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(config.steps)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(state.step);
    bar.reset_eta();
    // Quality signals for labelled image data (judge kept beside the run, in ../classifiers).
    let classifiers = out.parent().unwrap_or(Path::new(".")).join("classifiers");
    let mut watch = opts
        .watch
        .then(|| {
            crate::metrics::watch::Watch::new(&ds, &classifiers, &run.0.join("quality.csv"), 0)
        })
        .flatten();
    let started = Instant::now();
    let mut last_checkpoint = state.step;
    while state.step < config.steps {
        let stop_requested =
            opts.stop.is_some_and(|s| s.load(Ordering::SeqCst)) || opts.stop_at == Some(state.step);
        if stop_requested {
            if last_checkpoint != state.step {
                save_checkpoint(&state, &config, &run)?;
            }
            bar.abandon_with_message(format!(
                "interrupted: checkpoint at step {} written",
                state.step
            ));
            return Ok(Outcome::Interrupted {
                at_step: state.step,
            });
        }
        let t0 = Instant::now();
        let (next, mut m) = train_step(state, &config, &ds, &mut order, &device);
        state = next;
        m.seconds = t0.elapsed().as_secs_f64();
        for (what, value) in [("loss_d", m.loss_d), ("loss_g", m.loss_g)] {
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFinite {
                    what,
                    value,
                    step: m.step,
                    dir: run.checkpoints(),
                });
            }
        }
        writeln!(metrics, "{}", m.csv()).map_err(io_err(&run.metrics()))?;
        bar.set_position(state.step);
        bar.set_message(format!(
            "loss_d {:.3} loss_g {:.3} D(x) {:.3} D(G(z)) {:.3}",
            m.loss_d, m.loss_g, m.d_real, m.d_fake
        ));
        if state.step % config.sample_every == 0 || state.step == config.steps {
            save_samples(&state, &config, &run, &device)?;
            if let Some(w) = watch.as_mut() {
                let samples = generate(
                    &state.generator,
                    &config,
                    crate::metrics::watch::SAMPLES,
                    config.seed ^ 0x77a7c4,
                    &device,
                );
                let d_fake = config.loss.opinion_is_probability().then_some(m.d_fake);
                let (s, warnings) = w.check(state.step, &samples, d_fake);
                for warning in warnings {
                    bar.println(format!("warning: {warning}"));
                }
                bar.println(format!(
                    "step {}: {}/{} classes covered, KL(p||U) {:.3}, diversity {:.2}",
                    s.step, s.classes_covered, s.classes, s.kl_uniform, s.diversity
                ));
            }
        }
        if state.step % config.checkpoint_every == 0 || state.step == config.steps {
            save_checkpoint(&state, &config, &run)?;
            last_checkpoint = state.step;
        }
    }
    bar.finish_with_message(format!("done in {:.1}s", started.elapsed().as_secs_f64()));
    drop(metrics);
    // The export reads the newest checkpoint: make sure it is this step's (e.g. `--steps 0`).
    if checkpoint::list(&run.checkpoints()).last().map(|c| c.0) != Some(state.step) {
        save_checkpoint(&state, &config, &run)?;
    }
    loss_curve(&run)?;
    crate::export::export_run(&run.0, None)?;
    Ok(Outcome::Finished { steps: state.step })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::Layer;

    fn first_weights(state: &State) -> Vec<f32> {
        match &state.generator.layers()[0] {
            Layer::Linear { weight, .. } => weight.values.clone(),
            other => panic!("unexpected first layer {other:?}"),
        }
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

    /// Initialisation is a function of the seed even while other threads initialise other runs.
    #[test]
    fn init_is_seeded_under_concurrency() {
        let mut config = TrainConfig::new(
            &DataSource::Digits,
            crate::model::Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        config.model.width = 8;
        let device = Device::flex().autodiff();
        let reference = first_weights(&State::new(&config, &device));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (config, device, reference) = (&config, &device, &reference);
                s.spawn(move || {
                    for i in 0..20u64 {
                        let mut c = config.clone();
                        c.seed = if (t + i) % 2 == 0 {
                            config.seed
                        } else {
                            1000 + t
                        };
                        let w = first_weights(&State::new(&c, device));
                        assert_eq!(
                            w == *reference,
                            c.seed == config.seed,
                            "thread {t} iteration {i}"
                        );
                    }
                });
            }
        });
    }
}
