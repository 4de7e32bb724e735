//! Progressive GAN (Karras et al. 2018), as the authors' code builds it: G and D grow from 4x4 to
//! the full side one doubling at a time, each new block faded in with `alpha`.
//!
//! G: pixel-normalised z -> dense to 4x4 -> 3x3 conv, then per doubling: nearest upsample and two
//!    3x3 convs; each conv followed by LeakyReLU 0.2 and pixel norm; a 1x1 `to_rgb` per stage,
//!    linear. Fading in stage `s`: `alpha * to_rgb[s](h_s) + (1 - alpha) * up(to_rgb[s-1](h_s-1))`.
//! D: a 1x1 `from_rgb` per stage, then per halving: two 3x3 convs and a 2x2 average pool; at 4x4
//!    the minibatch standard deviation as one more channel, a 3x3 conv, a dense layer over the
//!    4x4 map and the linear score. Fading in: the new block's output blended with
//!    `from_rgb[s-1](pool(x))`.
//!
//! Every weight is drawn from N(0, 1) and scaled at run time by He's constant
//! `gain / sqrt(fan_in)` (the equalised learning rate): Adam then moves every layer at the same
//! relative rate. The scale multiplies the (small) weight inside the fast convolution, and is
//! folded into the weights on export.
//!
//! Every block of every stage is built at the start, so the record, the optimizer state and the
//! moving average have one shape for the whole run; the stage and alpha are arguments
//! ([`Progress`]), not weights.
//!
//! D also runs as a dual pass ([`ProganDiscriminator::dual`]): the score and its directional
//! derivative along a tangent, which WGAN-GP's penalty needs (see `loss::gradient_penalty_with`).
//! Convolutions and pools are linear, LeakyReLU's slope pattern is a constant, and the minibatch
//! standard deviation, the one smooth layer, pushes the tangent through its derivative at the
//! (tracked) activations.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LeakyRelu, LeakyReluConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::layers::{Layer, Weights};
use super::minibatch_stddev::{minibatch_stddev, minibatch_stddev_tangent};
use crate::ops::activation::{leaky_relu, leaky_relu_tangent};
use crate::ops::conv::conv2d_scaled;
use crate::ops::pixel_norm::pixel_norm_act;

/// Pixel norm's epsilon (the authors' 1e-8).
pub const PIXEL_NORM_EPSILON: f64 = 1e-8;
/// LeakyReLU's negative slope everywhere.
pub const SLOPE: f64 = 0.2;
/// The feature map every stage starts from.
pub const BASE: usize = 4;

/// Where the growth is: the stage `s` (side `4 * 2^s`) and how far its new block has faded in
/// (1 once stable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub stage: usize,
    pub alpha: f32,
}

impl Progress {
    /// The side of stage `stage`'s images.
    pub fn side(self) -> usize {
        BASE << self.stage
    }

    /// Whether the stage's new block is still fading in (stage 0 has no old one).
    pub fn fading(self) -> bool {
        self.stage > 0 && self.alpha < 1.0
    }
}

/// Stages for an image side: 4, 8, ..., side px. `None` unless the side is a power of two >= 8.
pub fn stages(side: usize) -> Option<usize> {
    (side >= 2 * BASE && side.is_power_of_two())
        .then(|| (side / BASE).trailing_zeros() as usize + 1)
}

/// Feature maps of stage `k` of `stages`: `width * min(2^(last - k), 4)`. A multiple of the width,
/// so that the parameter count is a quadratic in it (`family::parameters`). The authors' 64 px
/// CelebA networks have 512, 512, 512, 256, 128 maps; `--width 16` gives 64, 64, 64, 32, 16.
pub fn channels(width: usize, stages: usize, k: usize) -> usize {
    width << (stages - 1 - k).min(2)
}

/// A convolution with an equalised learning rate: weights N(0, 1), input scaled by
/// `gain / sqrt(fan_in)`, zero bias.
#[derive(Module, Debug)]
pub struct EqConv {
    conv: Conv2d,
    scale: f32,
}

impl EqConv {
    fn new(cin: usize, cout: usize, kernel: usize, gain: f64, device: &Device) -> Self {
        let pad = kernel / 2;
        let conv = Conv2dConfig::new([cin, cout], [kernel, kernel])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            })
            .with_bias(false)
            .init(device);
        // A parameter of its own (a zeroed copy of Burn's would not be trained).
        let conv = Conv2d {
            bias: Some(Initializer::Zeros.init([cout], device)),
            ..conv
        };
        let scale = (gain / ((cin * kernel * kernel) as f64).sqrt()) as f32;
        EqConv { conv, scale }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d_scaled(&self.conv, self.scale, x, true)
    }

    /// The linear part, for a tangent.
    fn linear(&self, t: Tensor<4>) -> Tensor<4> {
        conv2d_scaled(&self.conv, self.scale, t, false)
    }

    /// The layer with its scale folded into the weight, times `factor` (a fade's blend weight).
    fn layer(&self, factor: f32) -> Layer {
        let weight = Weights::of(self.conv.weight.val() * (self.scale * factor));
        let bias = self
            .conv
            .bias
            .as_ref()
            .map(|b| Weights::of(b.val() * factor));
        let pad = self.conv.weight.dims()[2] / 2;
        Layer::Conv {
            weight,
            bias,
            stride: [1, 1],
            padding: [pad, pad],
        }
    }
}

/// A dense layer with an equalised learning rate.
#[derive(Module, Debug)]
pub struct EqLinear {
    linear: Linear,
    scale: f32,
}

impl EqLinear {
    fn new(input: usize, output: usize, gain: f64, device: &Device) -> Self {
        let linear = LinearConfig::new(input, output)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            })
            .with_bias(false)
            .init(device);
        let linear = Linear {
            bias: Some(Initializer::Zeros.init([output], device)),
            ..linear
        };
        let scale = (gain / (input as f64).sqrt()) as f32;
        EqLinear { linear, scale }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear.forward(x * self.scale)
    }

    fn linear(&self, t: Tensor<2>) -> Tensor<2> {
        (t * self.scale).matmul(self.linear.weight.val())
    }

    fn layer(&self) -> Layer {
        Layer::Linear {
            weight: Weights::of(self.linear.weight.val() * self.scale),
            bias: self.linear.bias.as_ref().map(|b| Weights::of(b.val())),
        }
    }
}

/// Each position's feature vector scaled to unit mean square over the channels (axis 1).
pub fn pixel_norm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let mean_square = x.clone().powi_scalar(2).mean_dim(1);
    x / (mean_square + PIXEL_NORM_EPSILON).sqrt()
}

/// Nearest-neighbour upsampling by an integer factor.
pub fn upsample(x: Tensor<4>, factor: usize) -> Tensor<4> {
    if factor == 1 {
        return x;
    }
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, factor, w, factor])
        .reshape([n, c, h * factor, w * factor])
}

/// 2x2 average pooling.
pub fn downsample(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .mean_dim(5)
        .mean_dim(3)
        .reshape([n, c, h / 2, w / 2])
}

/// `a * alpha + b * (1 - alpha)`.
fn blend(a: Tensor<4>, b: Tensor<4>, alpha: f32) -> Tensor<4> {
    a * alpha + b * (1.0 - alpha)
}

/// A generator's export ([`ProganGenerator::branch_layers`]): the trunk, the new stage's output
/// layers, and while fading, the trunk layer count where the old branch leaves and its layers.
pub type Branches = (Vec<Layer>, Vec<Layer>, Option<(usize, Vec<Layer>)>);

#[derive(Module, Debug)]
pub struct UpBlock {
    first: EqConv,
    second: EqConv,
}

#[derive(Module, Debug)]
pub struct ProganGenerator {
    /// z `[N, latent]` -> the 4x4 map (the authors' dense layer, gain sqrt(2) / 4).
    stem: EqLinear,
    stem_conv: EqConv,
    /// `blocks[k - 1]` makes stage k's map from stage k - 1's.
    blocks: Vec<UpBlock>,
    /// `to_rgb[k]`: stage k's map -> image channels.
    to_rgb: Vec<EqConv>,
    act: LeakyRelu,
    /// The growth [`Self::forward`] draws at (set by [`Self::at`]; not a weight).
    stage: usize,
    alpha: f32,
}

#[derive(Module, Debug)]
pub struct DownBlock {
    first: EqConv,
    second: EqConv,
}

#[derive(Module, Debug)]
pub struct ProganDiscriminator {
    /// `from_rgb[k]`: stage k's image -> its map.
    from_rgb: Vec<EqConv>,
    /// `blocks[k - 1]` takes stage k's map to stage k - 1's.
    blocks: Vec<DownBlock>,
    /// After the minibatch standard deviation (one more channel), at 4x4.
    last_conv: EqConv,
    /// The 4x4 map, flattened -> `channels(0)` features.
    dense: EqLinear,
    score: EqLinear,
    act: LeakyRelu,
}

/// The two networks for images of `image_channels` x `side` x `side`, `latent` values in.
pub fn init(
    image_channels: usize,
    side: usize,
    latent: usize,
    width: usize,
    device: &Device,
) -> Option<(ProganGenerator, ProganDiscriminator)> {
    let stages = stages(side)?;
    let ch = |k| channels(width, stages, k);
    let he = 2f64.sqrt();
    let act = LeakyReluConfig::new().with_negative_slope(SLOPE).init();
    let generator = ProganGenerator {
        stem: EqLinear::new(latent, ch(0) * BASE * BASE, he / 4.0, device),
        stem_conv: EqConv::new(ch(0), ch(0), 3, he, device),
        blocks: (1..stages)
            .map(|k| UpBlock {
                first: EqConv::new(ch(k - 1), ch(k), 3, he, device),
                second: EqConv::new(ch(k), ch(k), 3, he, device),
            })
            .collect(),
        to_rgb: (0..stages)
            .map(|k| EqConv::new(ch(k), image_channels, 1, 1.0, device))
            .collect(),
        act: act.clone(),
        stage: stages - 1,
        alpha: 1.0,
    };
    let discriminator = ProganDiscriminator {
        from_rgb: (0..stages)
            .map(|k| EqConv::new(image_channels, ch(k), 1, he, device))
            .collect(),
        blocks: (1..stages)
            .map(|k| DownBlock {
                first: EqConv::new(ch(k), ch(k), 3, he, device),
                second: EqConv::new(ch(k), ch(k - 1), 3, he, device),
            })
            .collect(),
        last_conv: EqConv::new(ch(0) + 1, ch(0), 3, he, device),
        dense: EqLinear::new(ch(0) * BASE * BASE, ch(0), he, device),
        score: EqLinear::new(ch(0), 1, 1.0, device),
        act,
    };
    Some((generator, discriminator))
}

impl ProganGenerator {
    /// Stages this generator grows through.
    pub fn stages(&self) -> usize {
        self.to_rgb.len()
    }

    /// This generator drawing at `p` from [`Self::forward`] (a cheap copy of tensor handles).
    pub fn at(self, p: Progress) -> Self {
        Self {
            stage: p.stage.min(self.stages() - 1),
            alpha: p.alpha,
            ..self
        }
    }

    /// The growth [`Self::forward`] draws at.
    pub fn progress(&self) -> Progress {
        Progress {
            stage: self.stage,
            alpha: self.alpha,
        }
    }

    fn conv_act(&self, conv: &EqConv, x: Tensor<4>) -> Tensor<4> {
        pixel_norm_act(conv.forward(x), SLOPE, PIXEL_NORM_EPSILON)
    }

    /// z `[N, latent]` -> images `[N, C, side, side]` of stage `p` (side `4 * 2^p.stage`).
    pub fn forward_at(&self, z: Tensor<2>, p: Progress) -> Tensor<4> {
        let n = z.dims()[0];
        let c0 = self.stem_conv.conv.weight.dims()[0];
        let x = self
            .stem
            .forward(pixel_norm(z))
            .reshape([n, c0, BASE, BASE]);
        let mut h = pixel_norm_act(x, SLOPE, PIXEL_NORM_EPSILON);
        h = self.conv_act(&self.stem_conv, h);
        let mut previous = None;
        for block in &self.blocks[..p.stage] {
            previous = Some(h.clone());
            let x = upsample(h, 2);
            h = self.conv_act(&block.second, self.conv_act(&block.first, x));
        }
        let rgb = self.to_rgb[p.stage].forward(h);
        match previous {
            Some(old) if p.fading() => {
                let old = upsample(self.to_rgb[p.stage - 1].forward(old), 2);
                blend(rgb, old, p.alpha)
            }
            _ => rgb,
        }
    }

    /// z -> images at the growth set by [`Self::at`], upsampled to the full side, so that every
    /// picture, evaluation and export has the data's shape whatever the stage.
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let p = self.progress();
        upsample(self.forward_at(z, p), 1 << (self.stages() - 1 - p.stage))
    }

    /// The layers up to stage `stage`'s map, and how many of them make stage `stage - 1`'s map
    /// (where a fading stage's old branch leaves; 0 for stage 0).
    fn trunk(&self, stage: usize) -> (Vec<Layer>, usize) {
        let act = Layer::LeakyRelu { slope: SLOPE };
        let norm = Layer::PixelNorm {
            epsilon: PIXEL_NORM_EPSILON,
        };
        let c0 = self.stem_conv.conv.weight.dims()[0];
        let mut out = vec![
            norm.clone(),
            self.stem.layer(),
            Layer::Reshape {
                dims: [c0, BASE, BASE],
            },
            act.clone(),
            norm.clone(),
            self.stem_conv.layer(1.0),
            act.clone(),
            norm.clone(),
        ];
        let mut previous = 0;
        for block in &self.blocks[..stage] {
            previous = out.len();
            out.push(Layer::Upsample { factor: 2 });
            for conv in [&block.first, &block.second] {
                out.extend([conv.layer(1.0), act.clone(), norm.clone()]);
            }
        }
        (out, previous)
    }

    /// The exported form: `(trunk, new, old)`, where the image is `new(trunk(z))`, plus
    /// `old(trunk up to stage - 1)` while fading. `new` and `old` carry the blend weights in
    /// their `to_rgb` layers and end upsampled to the full side.
    pub fn branch_layers(&self) -> Branches {
        let p = self.progress();
        let full = |stage: usize| 1usize << (self.stages() - 1 - stage);
        let (trunk, previous) = self.trunk(p.stage);
        let weight = if p.fading() { p.alpha } else { 1.0 };
        let mut new = vec![self.to_rgb[p.stage].layer(weight)];
        if full(p.stage) > 1 {
            new.push(Layer::Upsample {
                factor: full(p.stage),
            });
        }
        let old = p.fading().then(|| {
            let layers = vec![
                self.to_rgb[p.stage - 1].layer(1.0 - p.alpha),
                Layer::Upsample {
                    factor: full(p.stage - 1),
                },
            ];
            (previous, layers)
        });
        (trunk, new, old)
    }
}

impl ProganGenerator {
    /// The ONNX graph of this generator at its growth: input z `[N, latent]`, output the image
    /// `[N, C, side, side]` at the full side. While a stage fades in, the previous stage's
    /// `to_rgb` branches off the trunk and the two are added (their blend weights are folded into
    /// the two `to_rgb` convolutions).
    pub fn model_proto(
        &self,
        meta: &crate::export::OnnxMetadata,
    ) -> Result<onnx_ir::ModelProto, crate::export::ExportError> {
        use crate::export::onnx::{GraphWriter, FLOAT};
        let output = pocketgan_runtime::ONNX_OUTPUT;
        let mut g = GraphWriter::default();
        let mut x = g.input(
            pocketgan_runtime::ONNX_INPUT,
            FLOAT,
            &[None, Some(meta.latent)],
        );
        let (trunk, new, old) = self.branch_layers();
        let mut branch = None;
        for (i, layer) in trunk.iter().enumerate() {
            x = g.layer(&x, layer, None)?;
            if old.as_ref().is_some_and(|(at, _)| *at == i + 1) {
                branch = Some(x.clone());
            }
        }
        let fading = old.is_some();
        for (i, layer) in new.iter().enumerate() {
            let last = i + 1 == new.len() && !fading;
            x = g.layer(&x, layer, last.then_some(output))?;
        }
        if let (Some((_, layers)), Some(mut y)) = (old, branch) {
            for layer in &layers {
                y = g.layer(&y, layer, None)?;
            }
            g.node("Add", &[&x, &y], vec![], vec![], Some(output));
        }
        let [c, h, w] = meta.sample_dims;
        g.output(output, FLOAT, &[None, Some(c), Some(h), Some(w)]);
        Ok(g.finish("pocketgan_progan_generator", &meta.entries))
    }
}

impl ProganDiscriminator {
    fn stages(&self) -> usize {
        self.from_rgb.len()
    }

    /// `(act(conv(x)), its tangent along t)`. The tangent's slopes follow the pre-activation.
    fn conv_act(
        &self,
        conv: &EqConv,
        x: Tensor<4>,
        t: Option<Tensor<4>>,
    ) -> (Tensor<4>, Option<Tensor<4>>) {
        let z = conv.forward(x);
        let t = t.map(|t| leaky_relu_tangent(&self.act, z.clone(), conv.linear(t)));
        (leaky_relu(&self.act, z), t)
    }

    /// WGAN-GP's penalty at interpolates `x_hat` of stage `p` (`loss::gradient_penalty_with`,
    /// the tangent from [`Self::dual`]).
    pub fn gradient_penalty(
        &self,
        x_hat: Tensor<4>,
        p: Progress,
        lambda: f32,
    ) -> crate::loss::GradientPenalty {
        let frozen = self.clone().no_grad();
        crate::loss::gradient_penalty_with(
            x_hat,
            lambda,
            |x| frozen.forward(x, p),
            |x, u| self.dual(x, Some(u), p).1,
        )
        .expect("the dual pass always gives a tangent")
    }

    /// Scores `[N, 1]` of images `x` of stage `p`'s side.
    pub fn forward(&self, x: Tensor<4>, p: Progress) -> Tensor<2> {
        self.dual(x, None, p).0
    }

    /// The scores of images `x` `[N, C, side, side]` and, given a tangent `t` of the same shape,
    /// their directional derivative along it: `J(x) t` `[N, 1]`, where `J` is the Jacobian of
    /// the scores with respect to the whole batch (the minibatch standard deviation mixes the
    /// samples). Both are tracked functions of D's parameters.
    pub fn dual(
        &self,
        x: Tensor<4>,
        t: Option<Tensor<4>>,
        p: Progress,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let s = p.stage.min(self.stages() - 1);
        let (mut h, mut dh) = self.conv_act(&self.from_rgb[s], x.clone(), t.clone());
        for k in (1..=s).rev() {
            let block = &self.blocks[k - 1];
            let (y, dy) = self.conv_act(&block.first, h, dh);
            let (y, dy) = self.conv_act(&block.second, y, dy);
            (h, dh) = (downsample(y), dy.map(downsample));
            if k == s && p.fading() {
                // The previous stage's entry, on the pooled image, fading out.
                let (old, dold) = self.conv_act(
                    &self.from_rgb[s - 1],
                    downsample(x.clone()),
                    t.clone().map(downsample),
                );
                h = blend(h, old, p.alpha);
                dh = dh.zip(dold).map(|(a, b)| blend(a, b, p.alpha));
            }
        }
        // The minibatch standard deviation as a constant map, one more channel.
        let [n, _, hh, ww] = h.dims();
        let flat = h.clone().flatten::<2>(1, 3);
        let spread = minibatch_stddev(flat.clone())
            .reshape([n, 1, 1, 1])
            .expand([n, 1, hh, ww]);
        let dspread = dh.clone().map(|dh| {
            minibatch_stddev_tangent(flat, dh.flatten(1, 3))
                .reshape([n, 1, 1, 1])
                .expand([n, 1, hh, ww])
        });
        let h = Tensor::cat(vec![h, spread], 1);
        let dh = dh.zip(dspread).map(|(a, b)| Tensor::cat(vec![a, b], 1));
        let (h, dh) = self.conv_act(&self.last_conv, h, dh);
        let (h, dh) = (h.flatten::<2>(1, 3), dh.map(|d| d.flatten::<2>(1, 3)));
        let z = self.dense.forward(h);
        let dz = dh.map(|d| leaky_relu_tangent(&self.act, z.clone(), self.dense.linear(d)));
        let h = leaky_relu(&self.act, z);
        (self.score.forward(h), dz.map(|d| self.score.linear(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        values(a)
            .iter()
            .zip(values(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn resampling_matches_burns_own_ops() {
        use burn::tensor::module::{avg_pool2d, interpolate};
        use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions};
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 4, 6], Distribution::Normal(0.0, 1.0), &device);
        let ours = upsample(x.clone(), 2);
        let theirs = interpolate(
            x.clone(),
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([8, 12]),
        );
        assert_eq!(max_diff(ours, theirs), 0.0);
        let ours = downsample(x.clone());
        let theirs = avg_pool2d(x, AvgPoolOptions::new([2, 2]).with_stride([2, 2]));
        assert!(max_diff(ours, theirs) < 1e-6);
    }

    #[test]
    fn pixel_norm_gives_unit_mean_square_per_position() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![3.0f32, 0.0, 4.0, 2.0], [1, 2, 1, 2]),
            &device,
        );
        // Position 0: (3, 4), mean square 12.5; position 1: (0, 2), mean square 2.
        let y = values(pixel_norm(x));
        let want = [
            3.0 / 12.5f32.sqrt(),
            0.0,
            4.0 / 12.5f32.sqrt(),
            2.0 / 2f32.sqrt(),
        ];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{y:?}");
        }
    }

    /// Every parameter, biases included, is a trained leaf on an autodiff device: a resumed run
    /// (whose loaded parameters all train) is then the run it continues.
    #[test]
    fn every_parameter_is_trained() {
        use burn::module::{ModuleVisitor, Param};
        struct Count(usize, usize);
        impl ModuleVisitor for Count {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0 += 1;
                self.1 += p.val().is_require_grad() as usize;
            }
        }
        let (g, d) = init(3, 16, 8, 2, &Device::flex().autodiff()).unwrap();
        let (mut cg, mut cd) = (Count(0, 0), Count(0, 0));
        g.visit(&mut cg);
        d.visit(&mut cd);
        assert_eq!(
            (cg.0, cd.0),
            (cg.1, cd.1),
            "parameters that require a gradient"
        );
        assert!(cg.0 > 10 && cd.0 > 10);
    }

    #[test]
    fn channels_follow_the_stage_and_the_width() {
        assert_eq!(stages(64), Some(5));
        assert_eq!(stages(8), Some(2));
        assert_eq!((stages(28), stages(4)), (None, None));
        let c: Vec<usize> = (0..5).map(|k| channels(16, 5, k)).collect();
        assert_eq!(c, [64, 64, 64, 32, 16]);
    }

    /// Growing is continuous: a new block at alpha 0 draws exactly the previous stage's images
    /// (upsampled), and D at alpha 0 judges the pooled image as the previous stage's D does.
    #[test]
    fn growing_is_continuous() {
        let device = Device::flex();
        let (g, d) = init(3, 16, 8, 2, &device).unwrap();
        let z = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let at = |stage, alpha| Progress { stage, alpha };
        for s in 1..3 {
            let new = g.forward_at(z.clone(), at(s, 0.0));
            let old = upsample(g.forward_at(z.clone(), at(s - 1, 1.0)), 2);
            assert!(max_diff(new, old) < 1e-5, "G at stage {s}");
            let x = Tensor::<4>::random(
                [4, 3, 4 << s, 4 << s],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let new = d.forward(x.clone(), at(s, 0.0));
            let old = d.forward(downsample(x), at(s - 1, 1.0));
            assert!(max_diff(new, old) < 1e-5, "D at stage {s}");
        }
        // At full growth, forward() draws the full side; below it, upsampled to it.
        assert_eq!(
            g.clone().at(at(2, 1.0)).forward(z.clone()).dims(),
            [4, 3, 16, 16]
        );
        let low = g.clone().at(at(1, 1.0)).forward(z.clone());
        assert_eq!(low.dims(), [4, 3, 16, 16]);
        assert_eq!(max_diff(low, upsample(g.forward_at(z, at(1, 1.0)), 2)), 0.0);
    }

    /// The dual pass's tangent is the scores' directional derivative: a central difference of
    /// the scores along the tangent agrees, at a point away from LeakyReLU's kinks (a small step).
    #[test]
    fn the_tangent_is_the_directional_derivative() {
        let device = Device::flex();
        let (_, d) = init(3, 16, 8, 2, &device).unwrap();
        let p = Progress {
            stage: 2,
            alpha: 0.6,
        };
        let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let (_, tangent) = d.dual(x.clone(), Some(t.clone()), p);
        let eps = 1e-3;
        let plus = d.forward(x.clone() + t.clone() * eps, p);
        let minus = d.forward(x - t * eps, p);
        let diff = (plus - minus) / (2.0 * eps);
        let (a, b) = (values(tangent.unwrap()), values(diff));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 2e-2 * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }
}
