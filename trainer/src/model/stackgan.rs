//! StackGAN (Zhang et al. 2017, and the authors' StackGAN-v1 code), scaled to 64 px emoji.
//!
//! **Text encoder** (ours: the paper uses a pre-trained char-CNN-RNN we do not have): each text is
//! `slots` token ids (short texts repeated cyclically, [`pocketgan_runtime::text`]); the encoder
//! averages their learned embeddings. Stage-I learns the table; Stage-II reads it frozen, as the
//! paper's stages share one fixed text embedding. Exported as `Gather` + `Flatten` followed by the
//! conditioning's `Gemm`, whose weight holds the average (each slot's copy of the weight / slots).
//!
//! **Conditioning augmentation**: `relu(fc(t))` split into mu and log-variance, `c = mu +
//! exp(logvar / 2) * eps`, with a KL term towards N(0, I) in G's loss; each stage has its own.
//! Inference (and the export) uses `c = mu`.
//!
//! **Stage-I G** (`z ++ c` -> 32 px): a dense layer to `8w x 4 x 4`, then three blocks of nearest
//! 2x upsampling, 3x3 conv, batch norm and ReLU, and a 3x3 conv to the image with tanh.
//!
//! **Stage-II G** (Stage-I image + text -> 64 px): 3x3 conv + ReLU, a 4x4 stride-2 conv + BN +
//! ReLU to 16x16, joined with its own `c` replicated over the map, 3x3 conv + BN + ReLU, two
//! residual blocks (`relu(x + BN(conv(relu(BN(conv(x))))))`), two upsampling blocks and a 3x3 conv
//! to the image with tanh.
//!
//! **Discriminators** are matching-aware: 4x4 stride-2 convs (BN and LeakyReLU 0.2 after the
//! first) down to 4x4, joined with the text's code replicated over the map, a 3x3 conv + BN +
//! LeakyReLU and a 4x4 conv to one logit. Stage-II's has also an unconditional logit, as the
//! authors'. Each D encodes the text with its own table and dense layer (the paper's D reads the
//! fixed embedding; ours must learn what words look like from the matching loss).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, Embedding, EmbeddingConfig, LeakyRelu, LeakyReluConfig, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};

use super::dcgan::{batch_norm, WEIGHT_INIT};
use super::layers::{Layer, Weights};
use super::progan::upsample;
use crate::export::onnx::{attr_int, int64s, tensor, GraphWriter};
use crate::export::ExportError;
use crate::ops::conv::conv2d;
use crate::ops::norm::{batch_norm_act, Activation};

/// Stage-I's side; Stage-II doubles it.
pub const STAGE1_SIDE: usize = 32;
/// Stage-II's side.
pub const STAGE2_SIDE: usize = 64;
/// The side where Stage-II joins the text (the paper's 16x16 of 64 px inputs).
const JOIN_SIDE: usize = 16;
/// The discriminators' last feature map.
const D_SIDE: usize = 4;
/// LeakyReLU slope of the discriminators.
const SLOPE: f64 = 0.2;

/// The sizes that shape every network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Words in the vocabulary (id 0 reserved).
    pub vocabulary: usize,
    /// Token slots per text.
    pub slots: usize,
    /// Word embedding size.
    pub embed: usize,
    /// Conditioning code size (the paper's 128).
    pub condition: usize,
    /// Noise size.
    pub latent: usize,
    /// Base width.
    pub width: usize,
    pub channels: usize,
}

fn conv(cin: usize, cout: usize, kernel: usize, stride: usize, bias: bool, d: &Device) -> Conv2d {
    let pad = if stride == 2 { 1 } else { kernel / 2 };
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(if kernel == D_SIDE && stride == 1 {
            PaddingConfig2d::Valid
        } else {
            PaddingConfig2d::Explicit(pad, pad, pad, pad)
        })
        .with_bias(bias)
        .with_initializer(WEIGHT_INIT)
        .init(d)
}

fn dense(input: usize, output: usize, d: &Device) -> Linear {
    LinearConfig::new(input, output)
        .with_initializer(WEIGHT_INIT)
        .init(d)
}

/// `code` `[N, C]` as a `[N, C, side, side]` map (the paper's `repeat`).
fn replicate(code: Tensor<2>, side: usize) -> Tensor<4> {
    let [n, c] = code.dims();
    code.reshape([n, c, 1, 1]).expand([n, c, side, side])
}

/// The text's token ids `[N, slots]` to the average of their embeddings `[N, E]`.
#[derive(Module, Debug)]
pub struct TextEncoder {
    table: Embedding,
}

impl TextEncoder {
    fn new(dims: &Dims, d: &Device) -> Self {
        TextEncoder {
            table: EmbeddingConfig::new(dims.vocabulary, dims.embed).init(d),
        }
    }

    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [n, _] = tokens.dims();
        let e = self.table.forward(tokens);
        let width = e.dims()[2];
        e.mean_dim(1).reshape([n, width])
    }

    /// `Gather` + `Flatten`: the slots' embeddings side by side `[N, slots x E]`.
    fn write_onnx(&self, g: &mut GraphWriter, tokens: &str) -> String {
        let table = g.initializer(tensor(
            "text_embedding",
            &Weights::of(self.table.weight.val()),
        ));
        let rows = g.named_node(
            "gather_text",
            "Gather",
            &[&table, tokens],
            vec![],
            vec![attr_int("axis", 0)],
            Some("text_rows"),
        );
        g.named_node(
            "flatten_text",
            "Flatten",
            &[&rows],
            vec![],
            vec![attr_int("axis", 1)],
            Some("text_slots"),
        )
    }
}

/// Conditioning augmentation: the text embedding to mu and log-variance.
#[derive(Module, Debug)]
pub struct Augmentation {
    fc: Linear,
    condition: usize,
}

/// The code a text gives one stage: its mean and log-variance `[N, C]` each.
pub struct Code {
    pub mu: Tensor<2>,
    pub logvar: Tensor<2>,
}

impl Code {
    /// `mu + exp(logvar / 2) * eps`.
    pub fn sample(&self, eps: Tensor<2>) -> Tensor<2> {
        self.mu.clone() + (self.logvar.clone() * 0.5).exp() * eps
    }

    /// KL(N(mu, sigma^2) || N(0, 1)), averaged over the elements as the authors do.
    pub fn kl(&self) -> Tensor<1> {
        let mu2 = self.mu.clone().powi_scalar(2);
        let term = -self.logvar.clone().exp() - mu2 + self.logvar.clone() + 1.0;
        term.mean() * -0.5
    }
}

impl Augmentation {
    fn new(embed: usize, condition: usize, d: &Device) -> Self {
        Augmentation {
            fc: dense(embed, 2 * condition, d),
            condition,
        }
    }

    pub fn forward(&self, text: Tensor<2>) -> Code {
        let x = relu(self.fc.forward(text));
        let c = self.condition;
        Code {
            mu: x.clone().narrow(1, 0, c),
            logvar: x.narrow(1, c, c),
        }
    }

    /// `relu` of the mu half of the dense layer on the slots' embeddings side by side: the
    /// layer's weight repeated once per slot and divided by the slots, so that it reads their
    /// average.
    fn write_onnx(
        &self,
        g: &mut GraphWriter,
        slots_in: &str,
        slots: usize,
    ) -> Result<String, ExportError> {
        let w = Weights::of(self.fc.weight.val());
        let (embed, out) = (w.dims[0], w.dims[1]);
        let c = self.condition;
        let mut tiled = Vec::with_capacity(slots * embed * c);
        for _ in 0..slots {
            for row in w.values.chunks(out) {
                tiled.extend(row[..c].iter().map(|v| v / slots as f32));
            }
        }
        let weight = Weights {
            dims: vec![slots * embed, c],
            values: tiled,
        };
        let bias = self.fc.bias.as_ref().map(|b| {
            let b = Weights::of(b.val());
            Weights {
                dims: vec![c],
                values: b.values[..c].to_vec(),
            }
        });
        let mu = g.layer(slots_in, &Layer::Linear { weight, bias }, None)?;
        g.layer(&mu, &Layer::Relu, None)
    }
}

/// Nearest 2x upsampling, 3x3 conv, BN, ReLU.
#[derive(Module, Debug)]
pub struct UpBlock {
    conv: Conv2d,
    norm: BatchNorm,
}

impl UpBlock {
    fn new(cin: usize, cout: usize, d: &Device) -> Self {
        UpBlock {
            conv: conv(cin, cout, 3, 1, false, d),
            norm: batch_norm(cout, d),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm_act(
            &self.norm,
            conv2d(&self.conv, upsample(x, 2)),
            Activation::Relu,
        )
    }

    fn layers(&self) -> Result<Vec<Layer>, ExportError> {
        Ok(vec![
            Layer::Upsample { factor: 2 },
            Layer::exportable_conv(&self.conv)?,
            Layer::batch_norm(&self.norm),
            Layer::Relu,
        ])
    }
}

/// Conv + BN (+ ReLU).
#[derive(Module, Debug)]
pub struct ConvNorm {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvNorm {
    fn new(cin: usize, cout: usize, kernel: usize, stride: usize, d: &Device) -> Self {
        ConvNorm {
            conv: conv(cin, cout, kernel, stride, false, d),
            norm: batch_norm(cout, d),
        }
    }

    fn forward(&self, x: Tensor<4>, act: Activation) -> Tensor<4> {
        batch_norm_act(&self.norm, conv2d(&self.conv, x), act)
    }

    fn layers(&self, act: Option<Layer>) -> Result<Vec<Layer>, ExportError> {
        let mut l = vec![
            Layer::exportable_conv(&self.conv)?,
            Layer::batch_norm(&self.norm),
        ];
        l.extend(act);
        Ok(l)
    }
}

#[derive(Module, Debug)]
pub struct Residual {
    first: ConvNorm,
    second: ConvNorm,
}

/// Writes `layers` in a chain from `x`; returns the last output.
fn chain(g: &mut GraphWriter, x: &str, layers: &[Layer]) -> Result<String, ExportError> {
    let mut x = x.to_string();
    for l in layers {
        x = g.layer(&x, l, None)?;
    }
    Ok(x)
}

/// Stage-I: noise and text to a 32 px image.
#[derive(Module, Debug)]
pub struct Stage1Generator {
    pub text: TextEncoder,
    pub augment: Augmentation,
    project: Linear,
    project_norm: BatchNorm,
    ups: Vec<UpBlock>,
    to_image: Conv2d,
    base: usize,
}

impl Stage1Generator {
    pub fn new(dims: &Dims, d: &Device) -> Self {
        let base = 8 * dims.width;
        let ups = (0..3)
            .map(|i| UpBlock::new(base >> i, base >> (i + 1), d))
            .collect();
        Stage1Generator {
            text: TextEncoder::new(dims, d),
            augment: Augmentation::new(dims.embed, dims.condition, d),
            project: dense(dims.latent + dims.condition, base * D_SIDE * D_SIDE, d),
            project_norm: batch_norm(base, d),
            ups,
            to_image: conv(base >> 3, dims.channels, 3, 1, false, d),
            base,
        }
    }

    /// The 32 px image of noise `z` and code `c` (the paper's `cat(noise, c_code)`).
    pub fn draw(&self, z: Tensor<2>, c: Tensor<2>) -> Tensor<4> {
        let n = z.dims()[0];
        let x = self
            .project
            .forward(Tensor::cat(vec![z, c], 1))
            .reshape([n, self.base, D_SIDE, D_SIDE]);
        let mut x = batch_norm_act(&self.project_norm, x, Activation::Relu);
        for up in &self.ups {
            x = up.forward(x);
        }
        tanh(conv2d(&self.to_image, x))
    }

    fn write_onnx(&self, g: &mut GraphWriter, z: &str, code: &str) -> Result<String, ExportError> {
        let joined = g.node(
            "Concat",
            &[z, code],
            vec![],
            vec![attr_int("axis", 1)],
            None,
        );
        let mut layers = vec![
            Layer::linear(&self.project),
            Layer::Reshape {
                dims: [self.base, D_SIDE, D_SIDE],
            },
            Layer::batch_norm(&self.project_norm),
            Layer::Relu,
        ];
        for up in &self.ups {
            layers.extend(up.layers()?);
        }
        layers.push(Layer::exportable_conv(&self.to_image)?);
        layers.push(Layer::Tanh);
        chain(g, &joined, &layers)
    }
}

/// Stage-II: a Stage-I image and the text to a 64 px image.
#[derive(Module, Debug)]
pub struct Stage2Generator {
    pub augment: Augmentation,
    stem: Conv2d,
    down: ConvNorm,
    joint: ConvNorm,
    residual: Vec<Residual>,
    ups: Vec<UpBlock>,
    to_image: Conv2d,
}

impl Stage2Generator {
    pub fn new(dims: &Dims, d: &Device) -> Self {
        let w = dims.width;
        let inner = 2 * w;
        Stage2Generator {
            augment: Augmentation::new(dims.embed, dims.condition, d),
            stem: conv(dims.channels, w, 3, 1, false, d),
            down: ConvNorm::new(w, inner, 4, 2, d),
            joint: ConvNorm::new(inner + dims.condition, inner, 3, 1, d),
            residual: (0..2)
                .map(|_| Residual {
                    first: ConvNorm::new(inner, inner, 3, 1, d),
                    second: ConvNorm::new(inner, inner, 3, 1, d),
                })
                .collect(),
            ups: vec![UpBlock::new(inner, w, d), UpBlock::new(w, w, d)],
            to_image: conv(w, dims.channels, 3, 1, false, d),
        }
    }

    /// The 64 px image from Stage-I's `image` and code `c`.
    pub fn draw(&self, image: Tensor<4>, c: Tensor<2>) -> Tensor<4> {
        let x = relu(conv2d(&self.stem, image));
        let x = self.down.forward(x, Activation::Relu);
        let x = Tensor::cat(vec![x, replicate(c, JOIN_SIDE)], 1);
        let mut x = self.joint.forward(x, Activation::Relu);
        for r in &self.residual {
            let h = r.first.forward(x.clone(), Activation::Relu);
            x = relu(x + r.second.forward(h, Activation::Identity));
        }
        for up in &self.ups {
            x = up.forward(x);
        }
        tanh(conv2d(&self.to_image, x))
    }

    fn write_onnx(
        &self,
        g: &mut GraphWriter,
        image: &str,
        code: &str,
        out: &str,
    ) -> Result<(), ExportError> {
        let mut head = vec![Layer::exportable_conv(&self.stem)?, Layer::Relu];
        head.extend(self.down.layers(Some(Layer::Relu))?);
        let x = chain(g, image, &head)?;
        // The code as a [N, C, 1, 1] map, replicated by nearest upsampling.
        let c = self.augment.condition;
        let shape = int64s("shape", &[-1, c as i64, 1, 1]);
        let map = g.node("Reshape", &[code], vec![shape], vec![], None);
        let map = g.layer(&map, &Layer::Upsample { factor: JOIN_SIDE }, None)?;
        let joined = g.node(
            "Concat",
            &[&x, &map],
            vec![],
            vec![attr_int("axis", 1)],
            None,
        );
        let mut x = chain(g, &joined, &self.joint.layers(Some(Layer::Relu))?)?;
        for r in &self.residual {
            let h = chain(g, &x, &r.first.layers(Some(Layer::Relu))?)?;
            let h = chain(g, &h, &r.second.layers(None)?)?;
            let sum = g.node("Add", &[&x, &h], vec![], vec![], None);
            x = g.layer(&sum, &Layer::Relu, None)?;
        }
        let mut tail = Vec::new();
        for up in &self.ups {
            tail.extend(up.layers()?);
        }
        tail.push(Layer::exportable_conv(&self.to_image)?);
        let last = chain(g, &x, &tail)?;
        g.layer(&last, &Layer::Tanh, Some(out))?;
        Ok(())
    }
}

/// Both stages as one ONNX graph: inputs `z` `[N, latent]` and `text` `[N, slots]` (int64),
/// output the Stage-II image.
pub fn write_onnx(
    g: &mut GraphWriter,
    stage1: &Stage1Generator,
    stage2: &Stage2Generator,
    z: &str,
    tokens: &str,
    slots: usize,
    out: &str,
) -> Result<(), ExportError> {
    let text = stage1.text.write_onnx(g, tokens);
    let c1 = stage1.augment.write_onnx(g, &text, slots)?;
    let c2 = stage2.augment.write_onnx(g, &text, slots)?;
    let small = stage1.write_onnx(g, z, &c1)?;
    stage2.write_onnx(g, &small, &c2, out)
}

/// A matching-aware discriminator: image features joined with the text's code.
#[derive(Module, Debug)]
pub struct Discriminator {
    text: TextEncoder,
    compress: Linear,
    from_image: Conv2d,
    downs: Vec<ConvNorm>,
    joint: ConvNorm,
    logit: Conv2d,
    /// Stage-II's unconditional logit.
    unconditional: Option<Conv2d>,
    act: LeakyRelu,
}

/// D's logits `[N, 1]`: the matching one, and Stage-II's unconditional one.
pub struct Logits {
    pub matching: Tensor<2>,
    pub unconditional: Option<Tensor<2>>,
}

impl Discriminator {
    /// For images of `side` (32: Stage-I; 64: Stage-II, with an unconditional logit).
    pub fn new(dims: &Dims, side: usize, d: &Device) -> Self {
        let w = dims.width;
        let steps = (side / D_SIDE).trailing_zeros() as usize;
        let top = w << (steps - 1);
        let downs = (1..steps)
            .map(|i| ConvNorm::new(w << (i - 1), w << i, 4, 2, d))
            .collect();
        Discriminator {
            text: TextEncoder::new(dims, d),
            compress: dense(dims.embed, dims.condition, d),
            from_image: conv(dims.channels, w, 4, 2, false, d),
            downs,
            joint: ConvNorm::new(top + dims.condition, top, 3, 1, d),
            logit: conv(top, 1, D_SIDE, 1, true, d),
            unconditional: (side > STAGE1_SIDE).then(|| conv(top, 1, D_SIDE, 1, true, d)),
            act: LeakyReluConfig::new().with_negative_slope(SLOPE).init(),
        }
    }

    /// The image's 4x4 feature map, read once for all the texts it is judged with.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.act.forward(conv2d(&self.from_image, images));
        for down in &self.downs {
            x = down.forward(x, Activation::LeakyRelu(&self.act));
        }
        x
    }

    /// Logits of images with features `x` read with texts `tokens`; the unconditional one (for
    /// a D that has it) when asked.
    pub fn judge(&self, x: Tensor<4>, tokens: Tensor<2, Int>, unconditional: bool) -> Logits {
        let n = x.dims()[0];
        let code = self
            .act
            .forward(self.compress.forward(self.text.forward(tokens)));
        let unconditional = match (&self.unconditional, unconditional) {
            (Some(u), true) => Some(conv2d(u, x.clone()).reshape([n, 1])),
            _ => None,
        };
        let joined = Tensor::cat(vec![x, replicate(code, D_SIDE)], 1);
        let h = self.joint.forward(joined, Activation::LeakyRelu(&self.act));
        Logits {
            matching: conv2d(&self.logit, h).reshape([n, 1]),
            unconditional,
        }
    }

    /// Logits of `images` read with texts `tokens`.
    pub fn forward(&self, images: Tensor<4>, tokens: Tensor<2, Int>) -> Logits {
        self.judge(self.features(images), tokens, true)
    }
}
