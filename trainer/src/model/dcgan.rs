//! DCGAN (Radford et al., 2015). For 28x28 with width 64 this is the reference network of
//! `shared/anchors/README.md`:
//! G: z -> Linear -> [2w,7,7] -> BN -> ReLU -> ConvT(2w->w, k4 s2 p1) -> BN -> ReLU -> ConvT(w->C) -> Tanh
//! D: Conv(C->w, k4 s2 p1) -> LeakyReLU -> Conv(w->2w) -> BN -> LeakyReLU -> Linear(2w*7*7 -> 1)
//! (WGAN-GP's critic: the same without BN)
//! (the last Linear is D's score head, built by `model`; this body ends at the flattened features).
//! 32 and 64 px start from 4x4 and add one up/down-sampling step per doubling.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, LeakyRelu, LeakyReluConfig, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::prelude::*;

use super::layers::Layer;
use super::ModelConfig;
use crate::data::SampleKind;
use crate::ops::activation::{leaky_relu, leaky_relu_tangent};
use crate::ops::conv::{conv2d, conv2d_linear, conv_transpose2d};
use crate::ops::norm::{batch_norm_act, Activation};

/// The smallest feature map for an image side, when the side is supported.
pub fn base_size(side: usize) -> Option<usize> {
    match side {
        28 => Some(7),
        32 | 64 => Some(4),
        _ => None,
    }
}

/// DCGAN's initialisation: N(0, 0.02) weights, BN gamma N(1, 0.02).
pub(crate) const WEIGHT_INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

#[derive(Module, Debug)]
pub struct UpBlock {
    conv: ConvTranspose2d,
    norm: BatchNorm,
}

#[derive(Module, Debug)]
pub struct DcganGenerator {
    project: Linear,
    project_norm: BatchNorm,
    /// Upsampling blocks with BN + ReLU.
    blocks: Vec<UpBlock>,
    /// Last upsampling to the image channels, then tanh.
    to_image: ConvTranspose2d,
    /// `[channels, side, side]` of the first feature map.
    base: [usize; 3],
}

#[derive(Module, Debug)]
pub struct DownBlock {
    conv: Conv2d,
    /// Absent in a critic without batch norm (`ModelConfig::d_batch_norm`, WGAN-GP).
    norm: Option<BatchNorm>,
}

#[derive(Module, Debug)]
pub struct DcganDiscriminator {
    /// First downsampling, no batch norm (as in DCGAN).
    from_image: Conv2d,
    blocks: Vec<DownBlock>,
    act: LeakyRelu,
}

pub(crate) fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(channels).init(device);
    bn.gamma = Initializer::Normal {
        mean: 1.0,
        std: 0.02,
    }
    .init([channels], device);
    bn
}

fn up(cin: usize, cout: usize, device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new([cin, cout], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_initializer(WEIGHT_INIT)
        .init(device)
}

fn down(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_initializer(WEIGHT_INIT)
        .init(device)
}

/// The two bodies and the length of D's feature vector.
pub fn init(config: &ModelConfig, device: &Device) -> (DcganGenerator, DcganDiscriminator, usize) {
    let SampleKind::Image {
        channels, height, ..
    } = config.sample
    else {
        unreachable!("validated: dcgan needs images")
    };
    let base = base_size(height).expect("validated image side");
    let steps = (height / base).trailing_zeros() as usize; // 2 for 28 and 32, 4 for 64 px
    let top = config.width << (steps - 1); // channels of the base feature map
    let w = config.width;

    let mut blocks = Vec::new();
    let mut c = top;
    for _ in 0..steps - 1 {
        blocks.push(UpBlock {
            conv: up(c, c / 2, device),
            norm: batch_norm(c / 2, device),
        });
        c /= 2;
    }
    let generator = DcganGenerator {
        project: LinearConfig::new(config.generator_input(), top * base * base)
            .with_initializer(WEIGHT_INIT)
            .init(device),
        project_norm: batch_norm(top, device),
        blocks,
        to_image: up(w, channels, device),
        base: [top, base, base],
    };

    let mut blocks = Vec::new();
    let mut c = w;
    for _ in 0..steps - 1 {
        blocks.push(DownBlock {
            conv: down(c, c * 2, device),
            norm: config.d_batch_norm.then(|| batch_norm(c * 2, device)),
        });
        c *= 2;
    }
    let discriminator = DcganDiscriminator {
        from_image: down(config.discriminator_channels(), w, device),
        blocks,
        act: LeakyReluConfig::new().with_negative_slope(0.2).init(),
    };
    (generator, discriminator, top * base * base)
}

impl DcganGenerator {
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let [c, h, w] = self.base;
        let n = z.dims()[0];
        let x = self.project.forward(z).reshape([n, c, h, w]);
        let mut x = batch_norm_act(&self.project_norm, x, Activation::Relu);
        for block in &self.blocks {
            let y = conv_transpose2d(&block.conv, x);
            x = batch_norm_act(&block.norm, y, Activation::Relu);
        }
        burn::tensor::activation::tanh(conv_transpose2d(&self.to_image, x))
    }

    pub fn layers(&self) -> Vec<Layer> {
        let mut out = vec![
            Layer::linear(&self.project),
            Layer::Reshape { dims: self.base },
            Layer::batch_norm(&self.project_norm),
            Layer::Relu,
        ];
        for block in &self.blocks {
            out.extend([
                Layer::conv_transpose(&block.conv),
                Layer::batch_norm(&block.norm),
                Layer::Relu,
            ]);
        }
        out.extend([Layer::conv_transpose(&self.to_image), Layer::Tanh]);
        out
    }
}

impl DcganDiscriminator {
    /// Images `[N, C, H, W]` -> features `[N, F]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = leaky_relu(&self.act, conv2d(&self.from_image, x));
        for block in &self.blocks {
            let y = conv2d(&block.conv, x);
            x = match &block.norm {
                Some(norm) => batch_norm_act(norm, y, Activation::LeakyRelu(&self.act)),
                None => leaky_relu(&self.act, y),
            };
        }
        x.flatten(1, 3)
    }

    /// The tangent `t [N, C, H, W]` at images `x` through the body: `J(x) t`, the features'
    /// directional derivative, linear in `t` with D's parameters tracked. `None` with batch norm,
    /// which is not piecewise linear per sample.
    pub fn tangent(&self, x: Tensor<4>, t: Tensor<4>) -> Option<Tensor<2>> {
        // The point's pass only decides each unit's slope: no gradient is wanted from it.
        let z = conv2d(&self.from_image, x).detach();
        let mut t = leaky_relu_tangent(&self.act, z.clone(), conv2d_linear(&self.from_image, t));
        let mut x = leaky_relu(&self.act, z);
        for block in &self.blocks {
            if block.norm.is_some() {
                return None;
            }
            let z = conv2d(&block.conv, x).detach();
            t = leaky_relu_tangent(&self.act, z.clone(), conv2d_linear(&block.conv, t));
            x = leaky_relu(&self.act, z);
        }
        Some(t.flatten(1, 3))
    }
}
