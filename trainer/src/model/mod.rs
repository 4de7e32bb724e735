//! GAN architectures: the original MLP GAN and DCGAN, optionally class-conditional (cGAN, ACGAN in
//! its TAC-GAN form) or semi-supervised (SGAN). One config describes both networks.
//!
//! An architecture module builds the bodies: a generator from a vector to a sample, and a
//! discriminator from a sample to a feature vector. This module adds what conditioning needs
//! around them: the class embedding joined to z, the label plane joined to D's input, and D's
//! heads (real/fake score, class logits, and for ACGAN the twin classifier's logits).

pub mod dcgan;
pub mod gru;
pub mod layers;
pub mod minibatch_stddev;
pub mod mlp;
pub mod progan;
pub mod resnet;
pub mod seqgan;
pub mod stackgan;
pub mod timegan;
pub mod unet;

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::TensorData;

use crate::data::SampleKind;
use minibatch_stddev::minibatch_stddev;

/// How class labels take part in the game.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Conditioning {
    /// An unconditional GAN.
    #[default]
    None,
    /// Mirza & Osindero (2014): a class embedding joined to z in G, and a learned label plane
    /// joined to D's input as one more channel.
    Cgan,
    /// Odena et al. (2017) made unbiased by TAC-GAN (Gong et al. 2019): G as in cGAN; D sees only
    /// the sample; its classifier head learns the classes of real samples, a twin head those of
    /// fakes, and G minimises the classifier's cross-entropy minus the twin's.
    Acgan,
    /// Odena (2016), Salimans et al. (2016): unconditional G; D has K class logits and its
    /// real/fake score is their log-sum-exp (the K+1th "fake" logit fixed at 0). D trains on a
    /// small labelled subset (cross-entropy) plus all images (the GAN loss).
    Sgan,
}

impl Conditioning {
    /// Whether G takes a class (and so the exported ONNX has a `class` input).
    pub fn conditions_generator(self) -> bool {
        matches!(self, Conditioning::Cgan | Conditioning::Acgan)
    }
    /// Whether D has class logits.
    pub fn classifies(self) -> bool {
        matches!(self, Conditioning::Acgan | Conditioning::Sgan)
    }
    pub fn uses_labels(self) -> bool {
        self != Conditioning::None
    }
}

/// Which architecture to build.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Goodfellow et al. (2014): fully connected generator and discriminator.
    Mlp,
    /// Radford et al. (2015): transposed convolutions, batch norm, strided convolutions.
    Dcgan,
}

/// Size of G's class embedding unless chosen (cGAN, ACGAN).
pub const EMBED: usize = 16;

/// Everything needed to rebuild both networks; flattened into the command line (see the
/// `config` module), where each default is written once.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct ModelConfig {
    #[arg(long = "model", value_enum, default_value_t = Architecture::Dcgan)]
    pub architecture: Architecture,
    /// Size of the latent vector z (mlp: 2 on toy data).
    #[arg(long, default_value_t = 64)]
    pub latent: usize,
    /// DCGAN base width (channels of the last hidden feature map, doubled per resolution step) /
    /// MLP hidden units (mlp: 128 on toy data, else 512).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// The sample the generator makes and the discriminator reads (the data's, or the shape the
    /// `--size` and `--channels` flags ask for).
    #[arg(skip = SampleKind::Image { channels: 1, height: 28, width: 28 })]
    pub sample: SampleKind,
    /// Use the labels: cgan (G and D take the class), acgan (G takes it, D predicts it),
    /// sgan (semi-supervised D with K class logits, trained on --labelled samples per class).
    #[arg(long = "cond", value_enum, default_value_t = Conditioning::None)]
    #[serde(default)]
    pub conditioning: Conditioning,
    /// Number of classes K (conditional models; 0 otherwise), from the data.
    #[arg(skip)]
    #[serde(default)]
    pub classes: usize,
    /// Size of G's class embedding, joined to z (cgan, acgan).
    #[arg(long, default_value_t = EMBED)]
    #[serde(default = "default_embed")]
    pub embed: usize,
    /// Batch norm in D's hidden layers (DCGAN's); off for a critic whose loss constrains each
    /// sample's gradient (WGAN-GP), set by the loss.
    #[arg(skip = true)]
    #[serde(default = "default_d_batch_norm")]
    pub d_batch_norm: bool,
    /// Minibatch standard deviation (Karras et al. 2018; --family gan): one more feature for D's
    /// heads, the spread of D's features over a group of 4 samples, against mode collapse.
    #[arg(long)]
    #[serde(default)]
    pub minibatch_stddev: bool,
}

fn default_embed() -> usize {
    EMBED
}

/// Runs saved before the choice had DCGAN's batch-normalised D.
fn default_d_batch_norm() -> bool {
    true
}

impl ModelConfig {
    /// Length of the vector G's body reads: z, plus the class embedding when G is conditional.
    pub fn generator_input(&self) -> usize {
        self.latent
            + if self.conditioning.conditions_generator() {
                self.embed
            } else {
                0
            }
    }

    /// Channels of the sample D's body reads: one more (the label plane) for cGAN.
    pub fn discriminator_channels(&self) -> usize {
        let [_, c, _, _] = self.sample.batch_dims(1);
        c + usize::from(self.conditioning == Conditioning::Cgan)
    }

    /// Check the combination before building anything, so bad flags give an error, not a panic.
    /// (The number of classes comes from the data: the training loop checks it.)
    pub fn validate(&self) -> Result<(), String> {
        if self.latent == 0 || self.width == 0 {
            return Err("latent size and width must be positive".into());
        }
        if self.conditioning.conditions_generator() && self.embed == 0 {
            return Err("the class embedding size must be positive".into());
        }
        match (self.architecture, self.sample) {
            (Architecture::Dcgan, SampleKind::Points { .. }) => {
                Err("dcgan makes images; use --model mlp for toy data".into())
            }
            (_, SampleKind::Series { .. }) => {
                Err("time series are trained with --family timegan".into())
            }
            (
                Architecture::Dcgan,
                SampleKind::Image {
                    channels,
                    height,
                    width,
                },
            ) => {
                if height != width || dcgan::base_size(height).is_none() {
                    return Err(format!(
                        "dcgan supports 28x28, 32x32 and 64x64 images, not {height}x{width}"
                    ));
                }
                if !matches!(channels, 1 | 3) {
                    return Err(format!("dcgan supports 1 or 3 channels, not {channels}"));
                }
                Ok(())
            }
            (Architecture::Mlp, _) => Ok(()),
        }
    }

    pub fn init(&self, device: &Device) -> (Generator, Discriminator) {
        let (g, d, features) = match self.architecture {
            Architecture::Mlp => {
                let (g, d) = mlp::init(self, device);
                (GeneratorBody::Mlp(g), DiscriminatorBody::Mlp(d), self.width)
            }
            Architecture::Dcgan => {
                let (g, d, features) = dcgan::init(self, device);
                (
                    GeneratorBody::Dcgan(g),
                    DiscriminatorBody::Dcgan(d),
                    features,
                )
            }
        };
        let cond = self.conditioning;
        let [_, _, h, w] = self.sample.batch_dims(1);
        let generator = Generator {
            class_embedding: cond
                .conditions_generator()
                .then(|| EmbeddingConfig::new(self.classes, self.embed).init(device)),
            classes: if cond.conditions_generator() {
                self.classes
            } else {
                0
            },
            body: g,
        };
        let heads_read = features + usize::from(self.minibatch_stddev);
        let discriminator = Discriminator {
            minibatch_stddev: self.minibatch_stddev,
            label_plane: (cond == Conditioning::Cgan)
                .then(|| EmbeddingConfig::new(self.classes, h * w).init(device)),
            body: d,
            score: (cond != Conditioning::Sgan).then(|| self.head(heads_read, 1, device)),
            class_logits: cond
                .classifies()
                .then(|| self.head(heads_read, self.classes, device)),
            twin_logits: (cond == Conditioning::Acgan)
                .then(|| self.head(heads_read, self.classes, device)),
        };
        (generator, discriminator)
    }

    /// One of D's output layers, initialised as the architecture's other layers.
    fn head(&self, features: usize, out: usize, device: &Device) -> Linear {
        let config = LinearConfig::new(features, out);
        match self.architecture {
            Architecture::Dcgan => config.with_initializer(dcgan::WEIGHT_INIT),
            Architecture::Mlp => config,
        }
        .init(device)
    }
}

// One body lives for the whole run; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum GeneratorBody {
    Mlp(mlp::MlpGenerator),
    Dcgan(dcgan::DcganGenerator),
    Progan(progan::ProganGenerator),
}

#[derive(Module, Debug)]
pub struct Generator {
    /// `[K, E]`: row `class` is joined to z (cGAN, ACGAN).
    class_embedding: Option<Embedding>,
    classes: usize,
    body: GeneratorBody,
}

/// The class of sample `i` when a conditional generator is given none: every class in turn.
pub fn default_class(i: usize, classes: usize) -> usize {
    i % classes.max(1)
}

/// Classes as the `[N]` int tensor the embeddings read.
pub fn class_tensor(classes: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = classes.len();
    Tensor::from_data(TensorData::new(classes, [n]), device)
}

/// [`default_class`] of samples `0..n`.
fn default_classes(n: usize, classes: usize, device: &Device) -> Tensor<1, Int> {
    class_tensor(
        (0..n).map(|i| default_class(i, classes) as i64).collect(),
        device,
    )
}

impl Generator {
    /// z `[N, latent]` (and for conditional generators the classes `[N]`) -> samples `[N, C, H, W]`
    /// in `[-1, 1]` (images) or `[N, 1, 1, D]` (points). A conditional generator given no classes
    /// draws sample `i` of class [`default_class`]; an unconditional one ignores classes.
    pub fn forward(&self, z: Tensor<2>, classes: Option<Tensor<1, Int>>) -> Tensor<4> {
        let x = match &self.class_embedding {
            Some(embedding) => {
                let [n, _] = z.dims();
                let classes =
                    classes.unwrap_or_else(|| default_classes(n, self.classes, &z.device()));
                let e = embedding.forward(classes.reshape([n, 1]));
                let [_, _, dim] = e.dims();
                Tensor::cat(vec![z, e.reshape([n, dim])], 1)
            }
            None => z,
        };
        match &self.body {
            GeneratorBody::Mlp(g) => g.forward(x),
            GeneratorBody::Dcgan(g) => g.forward(x),
            GeneratorBody::Progan(g) => g.forward(x),
        }
    }

    /// A Progressive GAN generator, drawing at its own growth ([`progan::ProganGenerator::at`]).
    pub fn progan(g: progan::ProganGenerator) -> Generator {
        Generator {
            class_embedding: None,
            classes: 0,
            body: GeneratorBody::Progan(g),
        }
    }

    /// The Progressive GAN generator inside, if it is one (it exports as a graph with a fading
    /// branch, not as a chain of [`Self::layers`]).
    pub fn as_progan(&self) -> Option<&progan::ProganGenerator> {
        match &self.body {
            GeneratorBody::Progan(g) => Some(g),
            _ => None,
        }
    }

    /// Number of classes G is conditioned on (0 for an unconditional generator).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The network in inference form (BatchNorm with running statistics), layer by layer; empty
    /// for a Progressive GAN generator, which is not a chain while a stage fades in (see
    /// [`Self::as_progan`]).
    pub fn layers(&self) -> Vec<layers::Layer> {
        let body = match &self.body {
            GeneratorBody::Mlp(g) => g.layers(),
            GeneratorBody::Dcgan(g) => g.layers(),
            GeneratorBody::Progan(_) => Vec::new(),
        };
        self.class_embedding
            .iter()
            .map(layers::Layer::class_embedding)
            .chain(body)
            .collect()
    }
}

// One body lives for the whole run; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum DiscriminatorBody {
    Mlp(mlp::MlpDiscriminator),
    Dcgan(dcgan::DcganDiscriminator),
}

#[derive(Module, Debug)]
pub struct Discriminator {
    /// `[K, H*W]`: row `class`, as an image plane, is joined to the input as a channel (cGAN).
    label_plane: Option<Embedding>,
    body: DiscriminatorBody,
    /// Whether the heads also read [`minibatch_stddev`] of the body's features.
    minibatch_stddev: bool,
    /// Features -> one real/fake score (absent for SGAN, whose score comes from the class logits).
    score: Option<Linear>,
    /// Features -> K class logits (ACGAN, SGAN). ACGAN trains it on real samples only.
    class_logits: Option<Linear>,
    /// Features -> K class logits of TAC-GAN's twin classifier, trained on fakes (ACGAN).
    twin_logits: Option<Linear>,
}

/// What D says about a batch.
pub struct Verdict {
    /// `[N, 1]` raw scores (logits for the BCE losses).
    pub score: Tensor<2>,
    /// `[N, K]` class logits (ACGAN, SGAN).
    pub class_logits: Option<Tensor<2>>,
    /// `[N, K]` logits of the twin classifier (ACGAN).
    pub twin_logits: Option<Tensor<2>>,
    /// `[N, F]` the body's features, the layer before the heads (feature matching's).
    pub features: Tensor<2>,
}

impl Discriminator {
    /// samples `[N, C, H, W]` (and, for cGAN, their classes `[N]`) -> D's verdict. A cGAN
    /// discriminator given no classes judges sample `i` as class [`default_class`].
    pub fn judge(&self, x: Tensor<4>, classes: Option<Tensor<1, Int>>) -> Verdict {
        let x = match &self.label_plane {
            Some(plane) => {
                let p = label_planes(plane, &x, classes);
                Tensor::cat(vec![x, p], 1)
            }
            None => x,
        };
        let features = match &self.body {
            DiscriminatorBody::Mlp(d) => d.forward(x),
            DiscriminatorBody::Dcgan(d) => d.forward(x),
        };
        let read = if self.minibatch_stddev {
            let spread = minibatch_stddev(features.clone());
            Tensor::cat(vec![features.clone(), spread], 1)
        } else {
            features.clone()
        };
        let class_logits = self.class_logits.as_ref().map(|l| l.forward(read.clone()));
        let twin_logits = self.twin_logits.as_ref().map(|l| l.forward(read.clone()));
        let score = match (&self.score, &class_logits) {
            (Some(l), _) => l.forward(read),
            // SGAN: D(x) = Z(x) / (Z(x) + 1) with Z = sum exp(logits), so the logit is log Z.
            (None, Some(logits)) => logsumexp(logits.clone()),
            (None, None) => unreachable!("every discriminator has a score or class logits"),
        };
        Verdict {
            score,
            class_logits,
            twin_logits,
            features,
        }
    }

    /// D's directional derivative at samples `x [N, C, H, W]` along `t` (same shape), per sample,
    /// `[N, 1]`: `t . grad_x score(x)`, with D's parameters tracked and the classes a cGAN D reads
    /// held fixed (their label plane's tangent is zero). It is the forward-mode twin of the input
    /// gradient: D is piecewise linear (LeakyReLU, linear layers, no batch norm), so this is the
    /// tangent pushed through each layer's linear part with the activation pattern at `x`.
    /// `None` for a critic where that does not hold (batch norm, SGAN's log-sum-exp score, the
    /// minibatch standard deviation, which mixes the samples).
    pub fn directional(
        &self,
        x: Tensor<4>,
        t: Tensor<4>,
        classes: Option<Tensor<1, Int>>,
    ) -> Option<Tensor<2>> {
        if self.minibatch_stddev {
            return None;
        }
        let (x, t) = match &self.label_plane {
            Some(plane) => {
                let plane = label_planes(plane, &x, classes);
                let [n, _, h, w] = x.dims();
                let zeros = Tensor::zeros([n, 1, h, w], &t.device());
                (
                    Tensor::cat(vec![x, plane], 1),
                    Tensor::cat(vec![t, zeros], 1),
                )
            }
            None => (x, t),
        };
        let features = match &self.body {
            DiscriminatorBody::Mlp(d) => d.tangent(x, t),
            DiscriminatorBody::Dcgan(d) => d.tangent(x, t)?,
        };
        Some(features.matmul(self.score.as_ref()?.weight.val()))
    }

    /// samples `[N, C, H, W]` -> scores `[N, 1]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.judge(x, None).score
    }
}

/// cGAN's label planes `[N, 1, H, W]` for samples `x` of `classes` ([`default_class`] when none
/// are given).
fn label_planes(plane: &Embedding, x: &Tensor<4>, classes: Option<Tensor<1, Int>>) -> Tensor<4> {
    let [n, _, h, w] = x.dims();
    let k = plane.weight.dims()[0];
    let classes = classes.unwrap_or_else(|| default_classes(n, k, &x.device()));
    plane.forward(classes.reshape([n, 1])).reshape([n, 1, h, w])
}

/// `log(sum(exp(x)))` over dim 1, stable: `[N, K] -> [N, 1]`.
pub fn logsumexp(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().max_dim(1).detach();
    (x - max.clone()).exp().sum_dim(1).log() + max
}

/// Burn's parameter RNG is global per backend and parameters draw from it lazily, on first use.
/// Seeding and drawing every parameter under one lock keeps initialisation a function of the seed
/// even when several runs share a process (tests run in parallel).
pub(crate) static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Draws every lazily initialised parameter now.
pub(crate) struct Materialize;

impl burn::module::ModuleMapper for Materialize {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        burn::module::Param::from_mapped_value(id, tensor, mapper)
    }
}
