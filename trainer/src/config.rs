//! The run configuration: every choice that defines a run, saved as the run folder's `config.json`.
//!
//! [`TrainConfig`] is also the command line of `pocketgan-train train` (`#[command(flatten)]`): each
//! default is written once, in its field's `#[arg]` attribute (the serde defaults that let older
//! `config.json` files load use the same constants). The defaults that follow from other choices
//! (the MLP's sizes on toy data, WGAN's critic steps and clipping, the data's sample shape) are
//! filled in by [`TrainConfig::complete`], unless the user gave them.

use crate::data::text::Tokens;
use crate::data::{DataSource, SampleKind};
use crate::device::DeviceKind;
use crate::error::TrainError;
use crate::export::OnnxMetadata;
use crate::family::FamilyKind;
use crate::loss::GanLoss;
use crate::model::{Architecture, Conditioning, ModelConfig};

/// SGAN: labelled samples per class.
pub const LABELLED_PER_CLASS: usize = 10;
/// TAC-GAN's lambda_c. Lower trades class accuracy for variety (README, conditional models).
pub const AUX_WEIGHT: f32 = 1.0;
/// Pix2Pix's lambda: the weight of the L1 distance to the target beside the GAN term.
pub const L1_WEIGHT: f32 = 100.0;
/// Pix2Pix: images per batch unless chosen. The authors train with 1 to 4; 4 keeps the batch
/// statistics of BatchNorm close to theirs while giving the CPU's GEMMs some width.
pub const PIX2PIX_BATCH: usize = 4;
/// Pix2Pix: U-Net width unless chosen (the paper's 64 costs 4x the time; README, image-to-image).
pub const PIX2PIX_WIDTH: usize = 32;
/// CycleGAN's lambda: the weight of each direction's cycle-consistency L1 (the paper's 10).
pub const CYCLE_WEIGHT: f32 = 10.0;
/// CycleGAN's identity loss weight, as a share of lambda (the authors' `lambda_identity` 0.5).
pub const IDENTITY_SHARE: f32 = 0.5;
/// CycleGAN: images per batch unless chosen: the authors' 1 (instance norm does not need more).
pub const CYCLEGAN_BATCH: usize = 1;
/// CycleGAN: generator and discriminator width unless chosen (the paper's 64 costs 4x the time).
pub const CYCLEGAN_WIDTH: usize = 32;
/// Pix2Pix's and CycleGAN's Adam learning rate, the authors' (with betas 0.5 / 0.999).
pub const TRANSLATION_LR: f64 = 2e-4;
/// WGAN-GP's lambda, the paper's.
pub const GP_LAMBDA: f32 = 10.0;
/// WGAN-GP's Adam (Gulrajani et al. 2017, their DCGAN-style runs): lr 1e-4, betas (0.5, 0.9).
/// Other losses keep the flags' defaults, DCGAN's.
pub const WGAN_GP_ADAM: (f64, f32, f32) = (1e-4, 0.5, 0.9);

/// Everything that defines a run; saved as `config.json` in the run folder. The field order is
/// the order of `config.json`'s keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct TrainConfig {
    /// digits (built in), mnist, fashion-mnist, emoji, idx:DIR, folder:DIR, toy:ring8, toy:grid25, toy:mix1d;
    /// image pairs (pix2pix): pairs:google,twitter, edges:google|DIR, folder:A,B; token sequences
    /// (seqgan): oracle, oracle:V, oracle:DIR, text:FILE; time series (timegan): sines, stocks,
    /// energy, csv:FILE
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// gan: a generator from latents (and classes, see --cond) against one discriminator;
    /// pix2pix: paired image-to-image translation (U-Net G, PatchGAN D, GAN + L1);
    /// cyclegan: unpaired translation (two ResNet Gs, two PatchGAN Ds, LSGAN + cycle + identity);
    /// seqgan: token sequences by policy gradient; timegan: time series (five GRU networks);
    /// progan: images grown from 4x4 to full size (Progressive GAN, WGAN-GP).
    #[arg(long, value_enum, default_value_t = FamilyKind::Gan)]
    #[serde(default)]
    pub family: FamilyKind,
    #[command(flatten)]
    pub model: ModelConfig,
    #[arg(long, value_enum, default_value_t = GanLoss::Nonsaturating)]
    pub loss: GanLoss,
    /// Training iterations (each: D step(s) then one G step). The default fits the README's
    /// first command in under five minutes on two cores (README, "The default run").
    #[arg(long, default_value_t = 4000)]
    pub steps: u64,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate: 1e-3 (measured on digits and fashion-mnist: at 1,200 steps FID less
    /// than half of DCGAN's 2e-4; README, "The default run"). Pix2Pix and CycleGAN keep their
    /// authors' 2e-4, WGAN-GP its paper's 1e-4, SeqGAN its authors' 0.01.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Adam's betas, DCGAN's (0.5, 0.999).
    #[arg(skip = 0.5_f32)]
    pub beta1: f32,
    #[arg(skip = 0.999_f32)]
    pub beta2: f32,
    /// D steps per G step (default 5 for wgan, else 1).
    #[arg(long, default_value_t = 1)]
    pub critic_steps: usize,
    /// Decay the learning rate linearly to zero over the run (sharpens the modes of toy mixtures;
    /// on by default for pix2pix, over the second half of the run as the authors do).
    #[arg(long)]
    #[serde(default)]
    pub lr_decay: bool,
    /// The share of the run before the decay starts (0: from the first step).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub lr_decay_start: f64,
    /// WGAN: clip D's weights to +-c after each D step (set by the loss).
    #[arg(skip)]
    pub weight_clip: Option<f32>,
    #[arg(long, default_value_t = 300)]
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    #[arg(long = "keep", default_value_t = 3)]
    pub keep_checkpoints: usize,
    #[arg(long, default_value_t = 100)]
    pub sample_every: u64,
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// The dataset's class names, recorded for the exported model's metadata.
    #[arg(skip)]
    #[serde(default)]
    pub class_names: Vec<String>,
    /// A `text:` run's vocabulary (id order; 0 is the end token), so that its samples read back
    /// without the file.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vocabulary: Vec<String>,
    /// SGAN: labelled samples per class (the rest of the data is used without labels).
    #[arg(long = "labelled", default_value_t = LABELLED_PER_CLASS)]
    #[serde(default = "default_labelled")]
    pub labelled_per_class: usize,
    /// ACGAN: weight of the auxiliary classifier terms (TAC-GAN's lambda_c) in D's and G's losses.
    #[arg(long, default_value_t = AUX_WEIGHT)]
    #[serde(default = "default_aux_weight")]
    pub aux_weight: f32,
    /// Pix2Pix: weight of the L1 distance between G's output and the target (the paper's lambda).
    #[arg(long, default_value_t = L1_WEIGHT)]
    #[serde(default = "default_l1_weight")]
    pub l1_weight: f32,
    /// Pix2Pix, CycleGAN: weight of the GAN term(s) in G's loss (0: pix2pix's L1-only ablation;
    /// cyclegan's cycle- and identity-only autoencoders).
    #[arg(long, default_value_t = 1.0)]
    #[serde(default = "default_gan_weight")]
    pub gan_weight: f32,
    /// CycleGAN: weight of the cycle-consistency L1 in each direction (the paper's lambda).
    #[arg(long, default_value_t = CYCLE_WEIGHT)]
    #[serde(default = "default_cycle_weight")]
    pub cycle_weight: f32,
    /// CycleGAN: weight of the identity L1 (G_AB(B) close to B), as a share of --cycle-weight.
    #[arg(long, default_value_t = IDENTITY_SHARE)]
    #[serde(default = "default_identity_share")]
    pub identity_share: f32,
    /// WGAN-GP: weight lambda of the gradient penalty lambda (|grad_x D(x^)| - 1)^2.
    #[arg(long, default_value_t = GP_LAMBDA)]
    #[serde(default = "default_gp_lambda")]
    pub gp_lambda: f32,
    /// One-sided label smoothing (Salimans et al. 2016; --family gan, BCE and lsgan losses): D's
    /// target for real samples, e.g. 0.9, instead of 1; fakes keep 0.
    #[arg(long)]
    #[serde(default)]
    pub label_smoothing: Option<f32>,
    /// Two time-scale update rule (Heusel et al. 2017; --family gan): D's own learning rate
    /// (default --lr), following the same schedule.
    #[arg(long)]
    #[serde(default)]
    pub lr_d: Option<f64>,
    /// G's own learning rate (default --lr), following the same schedule.
    #[arg(long)]
    #[serde(default)]
    pub lr_g: Option<f64>,
    /// Feature matching (Salimans et al. 2016; --family gan): G's adversarial term becomes the
    /// squared distance between D's mean features (the layer before its heads) on a real and on
    /// a fake batch; D trains as before.
    #[arg(long)]
    #[serde(default)]
    pub feature_matching: bool,
    /// Instance noise (Sønderby et al. 2016; --family gan): Gaussian noise of this standard
    /// deviation (in data units; images span [-1, 1]) added to every sample D reads, real and
    /// fake, annealed linearly to zero at the end of the run.
    #[arg(long, value_name = "SIGMA")]
    #[serde(default)]
    pub instance_noise: Option<f32>,
    /// Freeze G from this iteration on (--family gan): D alone keeps training against a fixed
    /// G, toward the optimal discriminator, while G's loss and gradient norm are still logged
    /// (the tutorial's experiment: with the minimax loss, G's gradient vanishes as D wins).
    #[arg(long, value_name = "STEP")]
    #[serde(default)]
    pub freeze_g_after: Option<u64>,
    /// Historical averaging (Salimans et al. 2016; --family gan): each network's loss gains
    /// LAMBDA times the squared distance of its parameters from their average over all past
    /// iterations.
    #[arg(long, value_name = "LAMBDA")]
    #[serde(default)]
    pub historical_averaging: Option<f32>,
    /// The generator's exponential moving average (--family gan): auto (a half-life of a
    /// twentieth of the run; the default: at lr 1e-3 it lowers the FID by a sixth), off, or a
    /// half-life in iterations. The average draws the sample
    /// grids, is evaluated and exported; the raw G trains on, and checkpoints keep both.
    #[arg(long, default_value = "auto")]
    #[serde(default)]
    pub ema: EmaChoice,
    #[command(flatten)]
    #[serde(default)]
    pub seqgan: SeqGanConfig,
    #[command(flatten)]
    #[serde(default)]
    pub timegan: TimeGanConfig,
    #[command(flatten)]
    #[serde(default)]
    pub progan: ProganConfig,
    #[command(flatten)]
    #[serde(default)]
    pub stackgan: StackganConfig,
}

/// `--ema`, as given and as saved in `config.json` ([`TrainConfig::ema_schedule`] reads it).
/// Runs saved before the average existed read as `off`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum EmaChoice {
    #[default]
    Off,
    Auto,
    /// A half-life in iterations.
    HalfLife(f64),
}

/// `--ema auto`: the half-life as a share of the run's iterations.
pub const EMA_SHARE: f64 = 0.05;

impl std::str::FromStr for EmaChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            _ => match s.parse::<f64>() {
                Ok(h) if h.is_finite() && h > 0.0 => Ok(Self::HalfLife(h)),
                _ => Err(format!(
                    "--ema is auto, off or a positive half-life in iterations, not {s:?}"
                )),
            },
        }
    }
}

impl std::fmt::Display for EmaChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Auto => f.write_str("auto"),
            Self::HalfLife(h) => write!(f, "{h}"),
        }
    }
}

impl From<EmaChoice> for String {
    fn from(e: EmaChoice) -> String {
        e.to_string()
    }
}

impl TryFrom<String> for EmaChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// SeqGAN's phases and their lengths (`family::seqgan`), the authors' defaults scaled to a CPU.
/// The authors: G pre-trained 120 epochs of 10,000 sequences (18,720 batches of 64); D
/// pre-trained 50 x 3 epochs of 10,000 real and 10,000 fresh fakes (~47,000 batches); 200
/// adversarial rounds, each one G step and 5 x 3 epochs of D.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct SeqGanConfig {
    /// SeqGAN: G's maximum-likelihood pre-training iterations (batches of real sequences).
    #[arg(long, default_value_t = 1500)]
    pub pretrain_g_steps: u64,
    /// SeqGAN: D's pre-training iterations (each a real batch against fresh samples of G).
    #[arg(long, default_value_t = 300)]
    pub pretrain_d_steps: u64,
    /// SeqGAN: adversarial rounds after pre-training (the run's --steps unless given).
    #[arg(long, default_value_t = 100)]
    pub adversarial_rounds: u64,
    /// SeqGAN: Monte Carlo completions per token for its reward.
    #[arg(long, default_value_t = 16)]
    pub rollouts: usize,
    /// SeqGAN: the rollout network's update rate (r <- rate r + (1 - rate) g).
    #[arg(long, default_value_t = 0.8)]
    pub rollout_update: f32,
    /// SeqGAN: D steps per adversarial round, each on fresh samples.
    #[arg(long, default_value_t = 5)]
    pub round_d_steps: usize,
    /// SeqGAN: D's Adam learning rate (the authors' 1e-4; --lr is G's).
    #[arg(long, default_value_t = 1e-4)]
    pub d_lr: f64,
    /// SeqGAN: weight of the L2 penalty on D's output layer (the authors' 0.2).
    #[arg(long, default_value_t = 0.2)]
    pub d_l2: f32,
    /// SeqGAN: G's pre-training iterations between NLL-oracle evaluations.
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// SeqGAN: adversarial rounds between NLL-oracle evaluations (the authors' 5).
    #[arg(long, default_value_t = 5)]
    #[serde(default = "default_eval_every_rounds")]
    pub eval_every_rounds: u64,
    /// SeqGAN: G's samples NLL-oracle scores (the paper's 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub eval_samples: usize,
    /// SeqGAN on --data text:FILE: each character a token, or each whitespace-separated word.
    #[arg(long, value_enum, default_value_t = Tokens::Char)]
    #[serde(default)]
    pub tokens: Tokens,
}

/// [`SeqGanConfig::eval_every_rounds`] of runs from before it existed.
fn default_eval_every_rounds() -> u64 {
    5
}

impl Default for SeqGanConfig {
    fn default() -> Self {
        command_line_defaults().seqgan
    }
}

/// TimeGAN's networks and phases (`family::timegan`). The authors train each phase for 10,000
/// iterations of batch 128; the defaults here are scaled to two CPU cores (README, TimeGAN).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct TimeGanConfig {
    /// TimeGAN: iterations of the autoencoder alone (phase 1).
    #[arg(long, default_value_t = 2000)]
    pub embedding_steps: u64,
    /// TimeGAN: iterations of the supervisor alone (phase 2).
    #[arg(long, default_value_t = 2000)]
    pub supervised_steps: u64,
    /// TimeGAN: joint iterations (phase 3; the run's --steps is the sum of the phases unless
    /// given).
    #[arg(long, default_value_t = 2000)]
    pub joint_steps: u64,
    /// TimeGAN: GRU units of every network (the authors' 24).
    #[arg(long, default_value_t = 24)]
    pub gru_hidden: usize,
    /// TimeGAN: GRU layers of every network but the supervisor, which has one fewer (the
    /// authors' 3).
    #[arg(long, default_value_t = 3)]
    pub gru_layers: usize,
    /// Per feature, the training data's minimum and maximum: the networks see the data scaled
    /// to [0, 1] by them (filled in from the data).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale: Vec<[f32; 2]>,
}

impl Default for TimeGanConfig {
    fn default() -> Self {
        command_line_defaults().timegan
    }
}

/// Progressive GAN's growth (`family::progan`). The authors show 600,000 (CelebA-HQ) to 800,000
/// real images per fade-in and per stabilisation, at 512 maps; the defaults are scaled to two CPU
/// cores (README, Progressive GAN).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct ProganConfig {
    /// ProGAN: real images shown in each phase (every stage's fade-in and its stabilisation; the
    /// 4x4 stage has no fade-in). The run's --steps follows from it unless given.
    #[arg(long, default_value_t = 12_000)]
    pub phase_images: u64,
    /// ProGAN: the drift term's weight, `drift * mean D(x)^2` on real images (the authors'
    /// 1e-3), which keeps the critic's scores near zero.
    #[arg(long, default_value_t = 1e-3)]
    pub drift: f32,
}

impl Default for ProganConfig {
    fn default() -> Self {
        command_line_defaults().progan
    }
}

/// StackGAN's text conditioning and stages (`family::stackgan`), scaled from the authors'
/// StackGAN-v1 (condition 128, KL 2.0, 600 epochs per stage) to emoji on two CPU cores (README,
/// StackGAN).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct StackganConfig {
    /// StackGAN: iterations of Stage-I (32 px) before Stage-II (64 px) trains on the frozen
    /// Stage-I; the rest of --steps is Stage-II's.
    #[arg(long, default_value_t = 2000)]
    pub stage1_steps: u64,
    /// StackGAN: the conditioning augmentation's KL weight (the authors' 2.0).
    #[arg(long, default_value_t = 2.0)]
    pub kl: f32,
    /// StackGAN: token slots per text (longer texts keep their first words).
    #[arg(long, default_value_t = 16)]
    pub slots: usize,
    /// StackGAN: word embedding size of the text encoder.
    #[arg(long, default_value_t = 64)]
    pub text_embed: usize,
    /// StackGAN: conditioning code size (the authors' 128).
    #[arg(long, default_value_t = 32)]
    pub condition: usize,
}

impl Default for StackganConfig {
    fn default() -> Self {
        command_line_defaults().stackgan
    }
}

/// StackGAN's width and batch (`family::stackgan`).
pub const STACKGAN_WIDTH: usize = 16;
pub const STACKGAN_STEPS: u64 = 3500;

/// Progressive GAN's batch (the authors' 16 at 64 px), lr and Adam betas (0, 0.99) unless given;
/// its width gives 64, 64, 64, 32, 16 maps at 4 to 64 px.
pub const PROGAN_BATCH: usize = 16;
pub const PROGAN_LR: f64 = 1e-3;
pub const PROGAN_WIDTH: usize = 16;

/// TimeGAN's batch, the authors' 128, unless --batch is given.
pub const TIMEGAN_BATCH: usize = 128;

/// SeqGAN's G learning rate, the authors' 0.01, unless --lr is given.
pub const SEQGAN_LR: f64 = 0.01;

fn default_l1_weight() -> f32 {
    L1_WEIGHT
}

fn default_cycle_weight() -> f32 {
    CYCLE_WEIGHT
}

fn default_identity_share() -> f32 {
    IDENTITY_SHARE
}

fn default_gan_weight() -> f32 {
    1.0
}

fn default_labelled() -> usize {
    LABELLED_PER_CLASS
}

fn default_aux_weight() -> f32 {
    AUX_WEIGHT
}

fn default_gp_lambda() -> f32 {
    GP_LAMBDA
}

/// The sample shape flags: image side and channels, when not the data's own.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct SampleShape {
    /// Image side for image data (28, 32 or 64 for dcgan).
    #[arg(long)]
    pub size: Option<usize>,
    /// Image channels (1 or 3).
    #[arg(long)]
    pub channels: Option<usize>,
}

/// The command line's defaults, through clap, so that they are written only in the attributes.
#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    config: TrainConfig,
}

/// The configuration the command line gives without flags: where every default is written.
fn command_line_defaults() -> TrainConfig {
    use clap::Parser;
    Defaults::try_parse_from(["pocketgan-train"])
        .expect("the command line's defaults parse (tested)")
        .config
}

impl TrainConfig {
    /// Defaults for a dataset, model and loss (the reference DCGAN for 28x28 images).
    pub fn new(data: &DataSource, architecture: Architecture, loss: GanLoss) -> Self {
        let mut config = command_line_defaults();
        config.model.architecture = architecture;
        config.loss = loss;
        config.complete(data, SampleShape::default(), |_| false);
        config
    }

    /// Fill in the choices that follow from the data, architecture and loss, except those the
    /// user gave (`given(field)`, the clap argument id, which is the field's name).
    pub fn complete(
        &mut self,
        data: &DataSource,
        shape: SampleShape,
        given: impl Fn(&str) -> bool,
    ) {
        self.data = data.to_string();
        self.model.sample = data.native_kind();
        if let SampleKind::Image {
            channels,
            height,
            width,
        } = &mut self.model.sample
        {
            if let Some(s) = shape.size {
                (*height, *width) = (s, s);
            }
            if let Some(c) = shape.channels {
                *channels = c;
            }
        }
        if self.model.architecture == Architecture::Mlp {
            if !given("width") {
                self.model.width = if data.is_toy() { 128 } else { 512 };
            }
            if !given("latent") {
                self.model.latent = if data.is_toy() { 2 } else { 64 };
            }
        }
        if !given("critic_steps") {
            self.critic_steps = self.loss.default_critic_steps();
        }
        if self.family == FamilyKind::Pix2pix {
            // The authors' schedule: constant, then linear to zero over the second half.
            if !given("lr_decay") {
                self.lr_decay = true;
            }
            if !given("lr_decay_start") {
                self.lr_decay_start = 0.5;
            }
            if !given("batch") {
                self.batch = PIX2PIX_BATCH;
            }
            if !given("lr") {
                self.lr = TRANSLATION_LR;
            }
            if !given("width") {
                self.model.width = PIX2PIX_WIDTH;
            }
        }
        if self.family == FamilyKind::Cyclegan {
            // The authors' schedule (constant, then linear to zero over the second half), batch,
            // and least-squares GAN loss.
            if !given("lr_decay") {
                self.lr_decay = true;
            }
            if !given("lr_decay_start") {
                self.lr_decay_start = 0.5;
            }
            if !given("batch") {
                self.batch = CYCLEGAN_BATCH;
            }
            if !given("lr") {
                self.lr = TRANSLATION_LR;
            }
            if !given("width") {
                self.model.width = CYCLEGAN_WIDTH;
            }
            if !given("loss") {
                self.loss = GanLoss::Lsgan;
            }
        }
        if self.family == FamilyKind::Seqgan {
            // The authors' Adam (TensorFlow's betas) and the run's length from its phases.
            if !given("lr") {
                self.lr = SEQGAN_LR;
            }
            (self.beta1, self.beta2) = (0.9, 0.999);
            if !given("steps") {
                let s = &self.seqgan;
                self.steps = s.pretrain_g_steps + s.pretrain_d_steps + s.adversarial_rounds;
            }
        }
        if self.family == FamilyKind::Timegan {
            // The authors' Adam (TensorFlow's defaults: lr 1e-3 is already --lr's), batch, and
            // the run's length from its phases.
            (self.beta1, self.beta2) = (0.9, 0.999);
            if !given("batch") {
                self.batch = TIMEGAN_BATCH;
            }
            if !given("steps") {
                let t = &self.timegan;
                self.steps = t.embedding_steps + t.supervised_steps + t.joint_steps;
            }
        }
        if self.family == FamilyKind::Progan {
            // WGAN-GP with the drift term, one critic step per G step (the authors'), their
            // Adam and batch, and the run's length from the growth schedule.
            if !given("loss") {
                self.loss = GanLoss::WganGp;
            }
            if !given("critic_steps") {
                self.critic_steps = 1;
            }
            if !given("batch") {
                self.batch = PROGAN_BATCH;
            }
            if !given("width") {
                self.model.width = PROGAN_WIDTH;
            }
        }
        if self.family == FamilyKind::Stackgan {
            // The authors' Adam betas (0.5, 0.999) and BCE game; the learning rate stays the
            // project's 1e-3 rather than their 2e-4: the run is a tenth of their 600 epochs per
            // stage, and at 200 Stage-I iterations 1e-3 drew face-like shapes where 2e-4 drew
            // blurs (one comparison, README StackGAN).
            if !given("width") {
                self.model.width = STACKGAN_WIDTH;
            }
            if !given("steps") {
                self.steps = STACKGAN_STEPS;
            }
        }
        self.weight_clip = self.loss.default_weight_clip();
        self.model.d_batch_norm = !self.loss.penalises_gradient();
        if self.loss.penalises_gradient() {
            let (lr, beta1, beta2) = WGAN_GP_ADAM;
            if !given("lr") {
                self.lr = lr;
            }
            (self.beta1, self.beta2) = (beta1, beta2);
        }
        if self.family == FamilyKind::Progan {
            if !given("lr") {
                self.lr = PROGAN_LR;
            }
            (self.beta1, self.beta2) = (0.0, 0.99);
            if !given("steps") {
                self.steps = crate::family::progan::Schedule::new(self).total_steps();
            }
        }
    }

    /// The stabilisation tricks apply to one G against one D, with a loss they make sense for.
    fn validate_tricks(&self) -> Result<(), TrainError> {
        let refuse = |why: String| Err(TrainError::Config(why));
        let gan = self.family == FamilyKind::Gan;
        if let Some(t) = self.label_smoothing {
            if !(t > 0.0 && t <= 1.0) {
                return refuse(format!(
                    "--label-smoothing is the real samples' target in (0, 1], e.g. 0.9, not {t}"
                ));
            }
            if !gan || !self.loss.smooths_labels() {
                return refuse(format!(
                    "--label-smoothing softens the real label of the BCE and lsgan losses of \
                     --family gan; {} has no such label",
                    if gan {
                        format!("--loss {:?}", self.loss).to_lowercase()
                    } else {
                        format!("--family {:?}", self.family).to_lowercase()
                    }
                ));
            }
        }
        let family = format!("--family {:?}", self.family).to_lowercase();
        let positive = [
            ("--instance-noise", self.instance_noise),
            ("--historical-averaging", self.historical_averaging),
        ];
        for (flag, value) in positive {
            match value {
                Some(v) if !(v.is_finite() && v > 0.0) => {
                    return refuse(format!("{flag} must be a positive number, not {v}"))
                }
                Some(_) if !gan => {
                    return refuse(format!("{flag} applies to --family gan, not {family}"))
                }
                _ => {}
            }
        }
        for (flag, on) in [
            ("--freeze-g-after", self.freeze_g_after.is_some()),
            ("--feature-matching", self.feature_matching),
            ("--minibatch-stddev", self.model.minibatch_stddev),
        ] {
            if on && !gan {
                return refuse(format!("{flag} applies to --family gan, not {family}"));
            }
        }
        if self.model.minibatch_stddev {
            if self.loss.penalises_gradient() {
                return refuse(
                    "--minibatch-stddev mixes the samples of a batch inside D, so WGAN-GP's \
                     penalty on each sample's own input gradient is not defined for it"
                        .into(),
                );
            }
            if self.batch < 2 {
                return refuse(
                    "--minibatch-stddev measures the spread of a batch: it needs --batch 2 or \
                     more"
                        .into(),
                );
            }
        }
        for (flag, lr) in [("--lr-d", self.lr_d), ("--lr-g", self.lr_g)] {
            match lr {
                Some(lr) if !(lr.is_finite() && lr > 0.0) => {
                    return refuse(format!("{flag} must be a positive number, not {lr}"))
                }
                Some(_) if !gan => {
                    return refuse(format!(
                        "{flag} sets one network's rate in --family gan; {} uses --lr",
                        format!("{:?}", self.family).to_lowercase()
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The facts stored in an exported generator's `metadata_props`, after `steps` iterations.
    pub fn onnx_metadata(&self, steps: u64) -> OnnxMetadata {
        let config = self;
        let [_, c, h, w] = config.model.sample.batch_dims(1);
        let entries: Vec<(String, String)> = vec![
            ("pocketgan.version".into(), env!("CARGO_PKG_VERSION").into()),
            ("pocketgan.latent".into(), config.model.latent.to_string()),
            ("pocketgan.image_shape".into(), format!("{c},{h},{w}")),
            ("pocketgan.dataset".into(), config.data.clone()),
            ("pocketgan.class_names".into(), config.class_names.join(",")),
            (
                "pocketgan.conditioning".into(),
                format!("{:?}", config.model.conditioning).to_lowercase(),
            ),
            ("pocketgan.steps".into(), steps.to_string()),
            (
                "pocketgan.architecture".into(),
                format!("{:?}", config.model.architecture).to_lowercase(),
            ),
            (
                "pocketgan.loss".into(),
                format!("{:?}", config.loss).to_lowercase(),
            ),
        ];
        let mut entries = entries;
        if config.family != FamilyKind::Gan {
            // An image-to-image generator has no latent: its input is the image to translate.
            // (ProGAN's has one, and no conditioning.)
            if !matches!(config.family, FamilyKind::Progan | FamilyKind::Stackgan) {
                entries.retain(|(k, _)| k != "pocketgan.latent");
            }
            entries.retain(|(k, _)| k != "pocketgan.conditioning");
            entries.push((
                "pocketgan.family".into(),
                format!("{:?}", config.family).to_lowercase(),
            ));
        }
        if config.model.conditioning.conditions_generator() {
            entries.push(("pocketgan.classes".into(), config.model.classes.to_string()));
        }
        if config.family == FamilyKind::Stackgan {
            // A text model: its prompts are read by `pocketgan_runtime::text`.
            use pocketgan_runtime::text::{LENGTH_KEY, VOCABULARY_KEY};
            entries.push((
                VOCABULARY_KEY.into(),
                serde_json::to_string(&config.vocabulary).unwrap_or_default(),
            ));
            entries.push((LENGTH_KEY.into(), config.stackgan.slots.to_string()));
        }
        if config.family == FamilyKind::Seqgan {
            // A token cell: its sequences are described by the family's own keys.
            entries.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "pocketgan.image_shape"
                        | "pocketgan.architecture"
                        | "pocketgan.loss"
                        | "pocketgan.class_names"
                )
            });
        }
        if let SampleKind::Series { length, features } = config.model.sample {
            // A series generator reads noise [N, T, F] and writes series of the same shape; the
            // image GANs' architecture and loss do not describe it (its family does).
            entries.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "pocketgan.image_shape" | "pocketgan.architecture" | "pocketgan.loss"
                )
            });
            entries.push((
                "pocketgan.series_shape".into(),
                format!("{length},{features}"),
            ));
        }
        OnnxMetadata {
            entries,
            latent: config.model.latent,
            sample_dims: [c, h, w],
        }
    }

    /// The learning rate for iteration `step` (0-based): constant, or with `lr_decay` constant
    /// until `lr_decay_start` of the run and then linear to zero at its end.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.lr * self.schedule(step)
    }

    /// D's learning rate for iteration `step`: `--lr-d` (else `--lr`) on the same schedule.
    pub fn lr_d_at(&self, step: u64) -> f64 {
        self.lr_d.unwrap_or(self.lr) * self.schedule(step)
    }

    /// G's learning rate for iteration `step`: `--lr-g` (else `--lr`) on the same schedule.
    pub fn lr_g_at(&self, step: u64) -> f64 {
        self.lr_g.unwrap_or(self.lr) * self.schedule(step)
    }

    /// The share of the learning rate at iteration `step`: 1, or with `lr_decay` 1 until
    /// `lr_decay_start` of the run and then linear to 0 at its end.
    fn schedule(&self, step: u64) -> f64 {
        if !self.lr_decay {
            return 1.0;
        }
        let steps = self.steps.max(1) as f64;
        let start = (self.lr_decay_start * steps).floor();
        let left = (steps - start).max(1.0);
        (1.0 - (step as f64 - start).max(0.0) / left).max(0.0)
    }

    /// The standard deviation of the instance noise at iteration `step` (0-based): `--instance-noise`
    /// annealed linearly from the first iteration to zero after the last; `None` without it.
    pub fn instance_noise_at(&self, step: u64) -> Option<f32> {
        let sigma = self.instance_noise?;
        let left = 1.0 - step as f64 / self.steps.max(1) as f64;
        Some((sigma as f64 * left.max(0.0)) as f32)
    }

    /// Whether G stays as it is in iteration `step` (`--freeze-g-after`).
    pub fn g_frozen_at(&self, step: u64) -> bool {
        self.freeze_g_after.is_some_and(|from| step >= from)
    }

    /// D's label for real samples: `--label-smoothing`, else 1.
    pub fn real_target(&self) -> f32 {
        self.label_smoothing.unwrap_or(1.0)
    }

    /// The generator's moving average, if the run keeps one (`auto`: for `--family gan`, with
    /// a half-life of [`EMA_SHARE`] of the run's iterations).
    pub fn ema_schedule(&self) -> Option<crate::family::ema::EmaSchedule> {
        let half_life = match self.ema {
            _ if self.family != FamilyKind::Gan => return None,
            EmaChoice::Off => return None,
            EmaChoice::Auto => (EMA_SHARE * self.steps as f64).max(1.0),
            EmaChoice::HalfLife(h) => h,
        };
        Some(crate::family::ema::EmaSchedule { half_life })
    }

    pub fn source(&self) -> Result<DataSource, TrainError> {
        Ok(self.data.parse()?)
    }

    /// Check what can be checked without the data, so bad flags give an error, not a panic.
    pub fn validate(&self) -> Result<(), TrainError> {
        let oracle = self.data.starts_with("oracle") || self.data.starts_with("text:");
        match (self.family, self.model.sample) {
            (FamilyKind::Seqgan, _) if oracle => self.validate_seqgan(),
            (FamilyKind::Seqgan, _) => Err(
                "seqgan trains on token sequences: --data oracle, oracle:V, oracle:DIR or \
                 text:FILE"
                    .into(),
            ),
            (_, _) if oracle => Err(format!(
                "{} is token sequences: train it with --family seqgan",
                self.data
            )),
            (FamilyKind::Timegan, SampleKind::Series { .. }) => self.validate_timegan(),
            (FamilyKind::Timegan, _) => Err(
                "timegan trains on time series: --data sines, stocks, energy or csv:FILE".into(),
            ),
            (_, SampleKind::Series { .. }) => Err(format!(
                "{} is time series: train it with --family timegan",
                self.data
            )),
            (FamilyKind::Gan, _) => self.model.validate(),
            (FamilyKind::Progan, SampleKind::Image { .. }) => self.validate_progan(),
            (FamilyKind::Stackgan, SampleKind::Image { .. }) => self.validate_stackgan(),
            (FamilyKind::Pix2pix, SampleKind::Image { height, width, .. }) if height == width => {
                crate::model::unet::levels(height).map(|_| ())
            }
            (FamilyKind::Cyclegan, SampleKind::Image { height, width, .. }) if height == width => {
                crate::model::resnet::blocks(height)
                    .and_then(|_| crate::model::unet::patch_side(height))
                    .map(|_| ())
            }
            (family, sample) => Err(format!(
                "{} translates square images, not {sample:?}",
                format!("{family:?}").to_lowercase()
            )),
        }
        .map_err(TrainError::Config)?;
        if self.model.width == 0 {
            return Err(TrainError::Config("--width must be positive".into()));
        }
        if self.batch == 0
            || self.critic_steps == 0
            || self.checkpoint_every == 0
            || self.sample_every == 0
            || self.keep_checkpoints == 0
        {
            return Err(TrainError::Config(
                "--batch, --critic-steps, --keep and the intervals must be positive".into(),
            ));
        }
        // NaN fails every comparison, so each test is written to pass only for good values.
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::Config(format!(
                "--lr must be a positive number, not {}",
                self.lr
            )));
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return Err(TrainError::Config(format!(
                "Adam's betas must be in [0, 1), not {} and {}",
                self.beta1, self.beta2
            )));
        }
        if self
            .weight_clip
            .is_some_and(|c| !(c.is_finite() && c > 0.0))
        {
            return Err(TrainError::Config(
                "the weight clip must be a positive number".into(),
            ));
        }
        self.check_limits()?;
        if !(self.aux_weight.is_finite() && self.aux_weight >= 0.0) {
            return Err(TrainError::Config(format!(
                "the auxiliary weight must be a non-negative number, not {}",
                self.aux_weight
            )));
        }
        if matches!(self.ema, EmaChoice::HalfLife(_)) && self.family != FamilyKind::Gan {
            return Err(TrainError::Config(
                "--ema averages the generator of --family gan only".into(),
            ));
        }
        self.validate_tricks()?;
        if !(0.0..1.0).contains(&self.lr_decay_start) {
            return Err(TrainError::Config(format!(
                "--lr-decay-start is a share of the run in [0, 1), not {}",
                self.lr_decay_start
            )));
        }
        if self.family == FamilyKind::Pix2pix {
            let weights = [self.l1_weight, self.gan_weight];
            if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || weights == [0.0; 2] {
                return Err(TrainError::Config(format!(
                    "pix2pix's --l1-weight and --gan-weight must be non-negative numbers, not \
                     both zero; got {} and {}",
                    self.l1_weight, self.gan_weight
                )));
            }
            if self.model.conditioning != Conditioning::None {
                return Err(TrainError::Config(
                    "pix2pix is conditioned on its input image; --cond does not apply".into(),
                ));
            }
        }
        if self.family == FamilyKind::Cyclegan {
            self.validate_cyclegan()?;
        }
        if self.loss.penalises_gradient() {
            self.validate_gradient_penalty()?;
        } else if self.gp_lambda != GP_LAMBDA {
            return Err(TrainError::Config(
                "--gp-lambda is the weight of WGAN-GP's penalty: use it with --loss wgan-gp".into(),
            ));
        }
        if self.model.conditioning == Conditioning::Sgan && self.labelled_per_class == 0 {
            return Err(TrainError::Config(
                "sgan needs at least one labelled sample per class".into(),
            ));
        }
        Ok(())
    }
}

impl TrainConfig {
    /// The flags given with `--resume` (`given`: each flag's clap argument id, which is its
    /// field's name, and the flag as typed) whose values differ from the run's saved configuration `saved`, each described: a resumed
    /// run keeps its configuration, so such a flag would be silently ignored. `--steps` may
    /// change, and flags that are not part of the configuration are not compared.
    pub fn resume_conflicts(&self, saved: &TrainConfig, given: &[(String, String)]) -> Vec<String> {
        fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        let path = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        // The sample shape is compared whole (--size and --channels).
                        if k == "sample" {
                            out.push((path, v.clone()));
                        } else {
                            leaves(&path, v, out);
                        }
                    }
                }
                _ => out.push((prefix.to_string(), v.clone())),
            }
        }
        let flat = |c: &TrainConfig| {
            let mut out = Vec::new();
            leaves("", &serde_json::to_value(c).unwrap_or_default(), &mut out);
            out
        };
        let (mine, theirs) = (flat(self), flat(saved));
        let mut conflicts = Vec::new();
        for (id, flag) in given.iter().filter(|(id, _)| id.as_str() != "steps") {
            let field = match id.as_str() {
                "size" | "channels" => "sample",
                other => other,
            };
            for (path, value) in &mine {
                if path.rsplit('.').next() != Some(field) {
                    continue;
                }
                let old = theirs.iter().find(|(p, _)| p == path).map(|(_, v)| v);
                if old != Some(value) {
                    conflicts.push(format!(
                        "{flag} gives {value} but the run has {}",
                        old.map_or("nothing".into(), |v| v.to_string())
                    ));
                }
            }
        }
        conflicts
    }

    /// The documented limits (README, Limits) that the configuration alone decides, checked
    /// before anything is allocated: the batch, the image side and a batch's bytes. The
    /// networks' size is checked by [`crate::family::check_size`].
    fn check_limits(&self) -> Result<(), TrainError> {
        use pocketgan_runtime::limits::{check, MAX_TENSOR_BYTES, MAX_TRAIN_BATCH, MAX_TRAIN_SIDE};
        let over = |e: pocketgan_runtime::limits::LimitError| TrainError::Config(e.to_string());
        check("--batch", self.batch as u128, MAX_TRAIN_BATCH as u128).map_err(over)?;
        if let SampleKind::Image { height, width, .. } = self.model.sample {
            check(
                "the image side (--size)",
                height.max(width) as u128,
                MAX_TRAIN_SIDE as u128,
            )
            .map_err(over)?;
        }
        check(
            "the bytes of one training batch",
            self.batch as u128 * self.model.sample.numel() as u128 * 4,
            MAX_TENSOR_BYTES as u128,
        )
        .map_err(over)
    }

    /// Progressive GAN's image, loss and schedule.
    fn validate_progan(&self) -> Result<(), String> {
        let SampleKind::Image {
            channels,
            height,
            width,
        } = self.model.sample
        else {
            return Err("progan trains on images".into());
        };
        if height != width || crate::model::progan::stages(height).is_none() {
            return Err(format!(
                "progan grows square images from 4x4 by doublings: a side of 8, 16, 32, 64 ...                  (--size), not {height}x{width}"
            ));
        }
        if !(channels == 1 || channels == 3) {
            return Err(format!("progan draws 1 or 3 channels, not {channels}"));
        }
        if !self.loss.penalises_gradient() {
            return Err(
                "progan trains with WGAN-GP's penalty and the drift term (--loss wgan-gp)".into(),
            );
        }
        if self.model.conditioning != Conditioning::None {
            return Err("progan is unconditional here: --cond does not apply".into());
        }
        if self.batch < 2 {
            return Err(
                "progan's critic reads the minibatch standard deviation: --batch 2 or more".into(),
            );
        }
        let p = &self.progan;
        if p.phase_images == 0 || !(p.drift.is_finite() && p.drift >= 0.0) {
            return Err(format!(
                "--phase-images must be positive and --drift a non-negative number, got {} and {}",
                p.phase_images, p.drift
            ));
        }
        Ok(())
    }

    /// StackGAN's data, image and text sizes.
    fn validate_stackgan(&self) -> Result<(), String> {
        let SampleKind::Image {
            channels,
            height,
            width,
        } = self.model.sample
        else {
            return Err("stackgan trains on images".into());
        };
        if self.data != "emoji" {
            return Err(format!(
                "stackgan trains on captioned images: --data emoji (names and emojilib keywords), \
                 not {}",
                self.data
            ));
        }
        use crate::model::stackgan::STAGE2_SIDE;
        if (height, width) != (STAGE2_SIDE, STAGE2_SIDE) || channels != 3 {
            return Err(format!(
                "stackgan draws 32 px then 64 px colour images: --size 64 --channels 3, not \
                 {channels}x{height}x{width}"
            ));
        }
        if self.loss != GanLoss::Nonsaturating {
            return Err("stackgan plays the authors' BCE game: --loss nonsaturating".into());
        }
        if self.model.conditioning != Conditioning::None {
            return Err(
                "stackgan is conditioned on text, not classes: --cond does not apply".into(),
            );
        }
        let s = &self.stackgan;
        if s.slots == 0 || s.slots > 64 || s.text_embed == 0 || s.condition == 0 {
            return Err(format!(
                "--slots must be in 1..=64 and --text-embed and --condition positive, got {}, {} \
                 and {}",
                s.slots, s.text_embed, s.condition
            ));
        }
        if !(s.kl.is_finite() && s.kl >= 0.0) {
            return Err(format!("--kl must be a non-negative number, not {}", s.kl));
        }
        if self.batch < 2 {
            return Err("stackgan pairs each image with another's text: --batch 2 or more".into());
        }
        Ok(())
    }

    /// TimeGAN's network sizes.
    fn validate_timegan(&self) -> Result<(), String> {
        let t = &self.timegan;
        if t.gru_hidden == 0 || t.gru_layers < 2 {
            return Err(format!(
                "timegan needs --gru-hidden of at least 1 and --gru-layers of at least 2 (the \
                 supervisor has one layer fewer), got {} and {}",
                t.gru_hidden, t.gru_layers
            ));
        }
        if t.gru_hidden > 4096 || t.gru_layers > 64 {
            return Err(format!(
                "--gru-hidden {} and --gru-layers {} are over the limits (4096 and 64)",
                t.gru_hidden, t.gru_layers
            ));
        }
        Ok(())
    }

    /// SeqGAN's phase lengths and rates.
    fn validate_seqgan(&self) -> Result<(), String> {
        let s = &self.seqgan;
        if s.rollouts == 0
            || s.eval_samples == 0
            || s.round_d_steps == 0
            || s.eval_every_rounds == 0
        {
            return Err(
                "seqgan's --rollouts, --eval-samples, --round-d-steps and --eval-every-rounds must be positive".into(),
            );
        }
        if !(0.0..=1.0).contains(&s.rollout_update) {
            return Err(format!(
                "--rollout-update is a share in [0, 1], not {}",
                s.rollout_update
            ));
        }
        if !(s.d_lr > 0.0 && s.d_lr.is_finite() && s.d_l2 >= 0.0 && s.d_l2.is_finite()) {
            return Err(format!(
                "--d-lr must be positive and --d-l2 non-negative, got {} and {}",
                s.d_lr, s.d_l2
            ));
        }
        Ok(())
    }

    /// CycleGAN's weights and loss: its generator loss is the authors' (least squares, or the
    /// vanilla GAN's cross-entropy), and its input is an image, not classes.
    fn validate_cyclegan(&self) -> Result<(), TrainError> {
        let weights = [self.cycle_weight, self.identity_share, self.gan_weight];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(TrainError::Config(format!(
                "cyclegan's --cycle-weight, --identity-share and --gan-weight must be \
                 non-negative numbers, got {}, {} and {}",
                self.cycle_weight, self.identity_share, self.gan_weight
            )));
        }
        if !matches!(self.loss, GanLoss::Lsgan | GanLoss::Nonsaturating) {
            return Err(TrainError::Config(format!(
                "cyclegan trains with lsgan (the paper's) or nonsaturating, not {:?}",
                self.loss
            )));
        }
        if self.model.conditioning != Conditioning::None {
            return Err(TrainError::Config(
                "cyclegan is conditioned on its input image; --cond does not apply".into(),
            ));
        }
        Ok(())
    }

    /// Where WGAN-GP's penalty cannot apply: a batch-normalised critic (each score would depend
    /// on the batch, not only on its sample) and SGAN, whose D is a K-class classifier whose
    /// real/fake logit is the log-sum-exp of the class logits, not a critic's free score.
    fn validate_gradient_penalty(&self) -> Result<(), TrainError> {
        if !(self.gp_lambda.is_finite() && self.gp_lambda >= 0.0) {
            return Err(TrainError::Config(format!(
                "the gradient penalty's weight must be a non-negative number, not {}",
                self.gp_lambda
            )));
        }
        if self.model.d_batch_norm {
            return Err(TrainError::Config(
                "wgan-gp needs a critic without batch norm (the penalty is per sample)".into(),
            ));
        }
        if self.family.translates() {
            return Err(TrainError::Config(
                "wgan-gp's penalty is written for the DCGAN and MLP critics; pix2pix's PatchGAN \
                 trains with nonsaturating, lsgan or hinge"
                    .into(),
            ));
        }
        if self.model.conditioning == Conditioning::Sgan {
            return Err(TrainError::Config(
                "wgan-gp does not apply to --cond sgan: its D is a classifier whose real/fake logit \
                 is the log-sum-exp of its class logits, not a Wasserstein critic; use --cond none, \
                 cgan or acgan"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults parse, and are those of the README: the reference DCGAN on digits.
    #[test]
    fn defaults_are_the_reference_dcgan() {
        let c = TrainConfig::new(
            &DataSource::Digits,
            Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        assert_eq!((c.steps, c.batch, c.seed, c.lr), (4000, 64, 0, 1e-3));
        assert_eq!(c.ema_schedule().map(|s| s.half_life), Some(200.0));
        assert_eq!((c.beta1, c.beta2, c.critic_steps), (0.5, 0.999, 1));
        assert_eq!((c.model.latent, c.model.width, c.model.embed), (64, 64, 16));
        assert_eq!(
            (c.checkpoint_every, c.keep_checkpoints, c.sample_every),
            (300, 3, 100)
        );
        assert_eq!(c.weight_clip, None);
        let w = TrainConfig::new(&DataSource::Ring8, Architecture::Mlp, GanLoss::Wgan);
        assert_eq!((w.model.latent, w.model.width), (2, 128));
        assert_eq!((w.critic_steps, w.weight_clip), (5, Some(0.01)));
        assert_eq!(w.model.sample, SampleKind::Points { dim: 2 });
        assert!(w.model.d_batch_norm);
        let gp = TrainConfig::new(&DataSource::Digits, Architecture::Dcgan, GanLoss::WganGp);
        assert_eq!(
            (gp.critic_steps, gp.weight_clip, gp.gp_lambda),
            (5, None, 10.0)
        );
        assert_eq!((gp.lr, gp.beta1, gp.beta2), (1e-4, 0.5, 0.9));
        assert!(!gp.model.d_batch_norm);
        assert_eq!(c.gp_lambda, 10.0);
        assert!(c.model.d_batch_norm);
    }

    /// WGAN-GP is refused where its penalty cannot apply, with the reason.
    #[test]
    fn wgan_gp_is_refused_where_it_cannot_apply() {
        let gp = TrainConfig::new(&DataSource::Digits, Architecture::Dcgan, GanLoss::WganGp);
        assert!(gp.validate().is_ok());
        let mut sgan = gp.clone();
        sgan.model.conditioning = Conditioning::Sgan;
        assert!(sgan.validate().unwrap_err().to_string().contains("sgan"));
        let mut bn = gp.clone();
        bn.model.d_batch_norm = true;
        assert!(bn
            .validate()
            .unwrap_err()
            .to_string()
            .contains("batch norm"));
        let mut other = TrainConfig::new(&DataSource::Digits, Architecture::Dcgan, GanLoss::Wgan);
        other.gp_lambda = 5.0;
        assert!(other
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--loss wgan-gp"));
    }

    /// `--ema` reads auto, off or a positive half-life, keeps `auto` in `config.json` (its
    /// half-life follows the run's length) and is refused where there is no latent generator.
    #[test]
    fn ema_choices_parse_and_apply_to_gan_runs_only() {
        assert_eq!("off".parse(), Ok(EmaChoice::Off));
        assert_eq!("250".parse(), Ok(EmaChoice::HalfLife(250.0)));
        for bad in ["0", "-3", "nan", "inf", "soon"] {
            assert!(bad.parse::<EmaChoice>().is_err(), "{bad}");
        }
        let mut c = TrainConfig::new(
            &DataSource::Digits,
            Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        c.steps = 3000;
        assert_eq!(c.ema_schedule().map(|s| s.half_life), Some(150.0));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["ema"], "auto");
        c.family = FamilyKind::Pix2pix;
        c.data = "pairs:google,twitter".into();
        c.model.sample = c.data.parse::<DataSource>().unwrap().native_kind();
        c.validate().unwrap();
        assert_eq!(c.ema_schedule(), None);
        c.ema = EmaChoice::HalfLife(10.0);
        assert!(c.validate().unwrap_err().to_string().contains("--ema"));
    }

    /// The tricks are refused where they mean nothing, with the reason.
    #[test]
    fn tricks_are_refused_where_they_do_not_apply() {
        let base = TrainConfig::new(
            &DataSource::Digits,
            Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        let refused = |edit: &dyn Fn(&mut TrainConfig), why: &str| {
            let mut c = base.clone();
            edit(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        };
        refused(&|c| c.label_smoothing = Some(0.0), "in (0, 1]");
        refused(&|c| c.label_smoothing = Some(1.5), "in (0, 1]");
        refused(
            &|c| {
                c.loss = GanLoss::Hinge;
                c.label_smoothing = Some(0.9)
            },
            "--loss hinge has no such label",
        );
        refused(&|c| c.lr_d = Some(0.0), "--lr-d must be a positive number");
        refused(
            &|c| c.lr_g = Some(f64::NAN),
            "--lr-g must be a positive number",
        );
        let mut fine = base.clone();
        (fine.label_smoothing, fine.lr_d, fine.lr_g) = (Some(0.9), Some(4e-4), Some(1e-4));
        fine.validate().unwrap();
        assert_eq!((fine.lr_d_at(0), fine.lr_g_at(0)), (4e-4, 1e-4));
        fine.lr_decay = true;
        assert_eq!(fine.lr_d_at(fine.steps / 2), 2e-4);

        refused(
            &|c| c.instance_noise = Some(0.0),
            "--instance-noise must be a positive",
        );
        refused(
            &|c| c.historical_averaging = Some(f32::INFINITY),
            "--historical-averaging must be a positive",
        );
        refused(
            &|c| {
                c.loss = GanLoss::WganGp;
                c.model.d_batch_norm = false;
                c.model.minibatch_stddev = true
            },
            "WGAN-GP's",
        );
        refused(
            &|c| {
                c.batch = 1;
                c.model.minibatch_stddev = true
            },
            "--batch 2 or more",
        );
        let mut pix2pix = TrainConfig::new(
            &DataSource::Digits,
            Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        pix2pix.family = FamilyKind::Pix2pix;
        pix2pix.data = "pairs:google,twitter".into();
        pix2pix.model.sample = pix2pix.data.parse::<DataSource>().unwrap().native_kind();
        pix2pix.validate().unwrap();
        pix2pix.feature_matching = true;
        let e = pix2pix.validate().unwrap_err().to_string();
        assert!(
            e.contains("--feature-matching applies to --family gan"),
            "{e}"
        );

        let mut all = base.clone();
        all.feature_matching = true;
        all.model.minibatch_stddev = true;
        (all.instance_noise, all.historical_averaging) = (Some(0.1), Some(1e-3));
        all.validate().unwrap();
        // The noise is annealed linearly to zero.
        all.steps = 100;
        assert_eq!(all.instance_noise_at(0), Some(0.1));
        assert!((all.instance_noise_at(50).unwrap() - 0.05).abs() < 1e-7);
        assert_eq!(all.instance_noise_at(100), Some(0.0));
        assert_eq!(base.instance_noise_at(0), None);
    }

    /// A `config.json` written before the conditional models (no `conditioning`, `classes`,
    /// `embed`, `class_names`, `labelled_per_class`, `aux_weight`, `lr_decay`) still loads, and
    /// as a run without the generator's moving average (its checkpoints hold none).
    #[test]
    fn old_config_files_load() {
        let old = r#"{"data":"digits","model":{"architecture":"dcgan","latent":64,"width":64,
            "sample":{"kind":"image","channels":1,"height":28,"width":28}},"loss":"nonsaturating",
            "steps":1200,"batch":64,"seed":0,"lr":0.0002,"beta1":0.5,"beta2":0.999,
            "critic_steps":1,"weight_clip":null,"checkpoint_every":300,"keep_checkpoints":3,
            "sample_every":100,"device":"cpu"}"#;
        let c: TrainConfig = serde_json::from_str(old).unwrap();
        let mut want = TrainConfig::new(
            &DataSource::Digits,
            Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        want.class_names.clear();
        // Defaults that changed since: the file keeps its own values.
        (want.steps, want.lr) = (1200, 2e-4);
        assert_eq!(want.ema, EmaChoice::Auto);
        assert_eq!(want.ema_schedule().map(|s| s.half_life), Some(60.0));
        want.ema = EmaChoice::Off;
        assert_eq!(c, want);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), c);
    }
}
