//! Pix2Pix's networks (Isola et al. 2017, as the authors' `UnetGenerator` and
//! `NLayerDiscriminator` build them): a U-Net generator whose decoder reads every encoder level
//! through a skip connection, and a PatchGAN discriminator that scores overlapping patches of an
//! (input, output) pair.
//!
//! U-Net for a side of 2^n (n down-samplings to 1x1), width w; level i has w * min(2^(i-1), 8)
//! channels:
//! ```text
//! down 1:  Conv(C -> w)                              outermost: no activation before, no norm
//! down i:  LeakyReLU(0.2) -> Conv -> BatchNorm        (innermost: no norm)
//! up n:    ReLU -> ConvT -> BatchNorm                 innermost: reads down n alone
//! up i:    ReLU(cat[down i, up i+1]) -> ConvT -> BatchNorm (-> Dropout 0.5 for the n-5 levels
//!          of width 8w below the innermost)
//! up 1:    ReLU(cat[down 1, up 2]) -> ConvT(-> C) -> Tanh
//! ```
//! Every convolution is 4x4, stride 2, padding 1; only the outermost up-convolution has a bias
//! (BatchNorm's shift makes the others redundant), as in the authors' code.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, LeakyRelu, LeakyReluConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};

use super::dcgan::{batch_norm, WEIGHT_INIT};
use super::layers::Layer;
use crate::export::onnx::{attr_int, GraphWriter};
use crate::export::ExportError;
use crate::ops::activation::leaky_relu;
use crate::ops::conv::{conv2d, conv_transpose2d};
use crate::ops::norm::{batch_norm_act, instance_norm_act, Activation};

/// The smallest side the U-Net takes: its five outer levels are fixed (w, 2w, 4w, 8w, 8w).
pub const MIN_SIDE: usize = 32;

/// The side of the U-Net's input, checked: a power of two of at least [`MIN_SIDE`].
pub fn levels(side: usize) -> Result<usize, String> {
    if side >= MIN_SIDE && side.is_power_of_two() {
        Ok(side.trailing_zeros() as usize)
    } else {
        Err(format!(
            "the U-Net takes square images whose side is a power of two of at least {MIN_SIDE}, \
             not {side}"
        ))
    }
}

#[derive(Module, Debug)]
pub struct Level {
    conv: Conv2d,
    norm: Option<BatchNorm>,
}

#[derive(Module, Debug)]
pub struct UpLevel {
    conv: ConvTranspose2d,
    norm: Option<BatchNorm>,
}

#[derive(Module, Debug)]
pub struct Unet {
    /// Outermost first.
    down: Vec<Level>,
    /// Innermost first.
    up: Vec<UpLevel>,
    act: LeakyRelu,
    /// Up levels (innermost first, after the innermost itself) that drop out half their
    /// activations in training.
    dropout_levels: [usize; 2],
}

fn conv(cin: usize, cout: usize, stride: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [4, 4])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .with_initializer(WEIGHT_INIT)
        .init(device)
}

fn up_conv(cin: usize, cout: usize, bias: bool, device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new([cin, cout], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_bias(bias)
        .with_initializer(WEIGHT_INIT)
        .init(device)
}

impl Unet {
    /// A U-Net from `[channels, side, side]` images to images of the same shape.
    pub fn new(
        channels: usize,
        side: usize,
        width: usize,
        device: &Device,
    ) -> Result<Self, String> {
        let n = levels(side)?;
        let c = |i: usize| {
            if i == 0 {
                channels
            } else {
                width << (i - 1).min(3)
            }
        };
        let down = (1..=n)
            .map(|i| Level {
                conv: conv(c(i - 1), c(i), 2, false, device),
                norm: (i != 1 && i != n).then(|| batch_norm(c(i), device)),
            })
            .collect();
        let up = (1..=n)
            .rev()
            .map(|i| {
                let cin = if i == n { c(i) } else { 2 * c(i) };
                UpLevel {
                    conv: up_conv(cin, c(i - 1), i == 1, device),
                    norm: (i != 1).then(|| batch_norm(c(i - 1), device)),
                }
            })
            .collect();
        Ok(Self {
            down,
            up,
            act: LeakyReluConfig::new().with_negative_slope(0.2).init(),
            // Levels 5..n-1 (1-based, from the outermost) are the 8w levels below the innermost:
            // up positions 1..=n-5 counted from the innermost.
            dropout_levels: [1, n.saturating_sub(4)],
        })
    }

    /// Images `[N, C, H, W]` in [-1, 1] -> images of the same shape. `dropout`: the seed of the
    /// training pass's dropout masks; `None` in inference (the exported model has no dropout).
    pub fn forward(&self, x: Tensor<4>, dropout: Option<u64>) -> Tensor<4> {
        let mut rng = dropout.map(rand::rngs::StdRng::seed_from_u64);
        // Encoder: keep every level's output for the decoder.
        let mut skips: Vec<Tensor<4>> = Vec::with_capacity(self.down.len());
        let mut h = x;
        for (i, level) in self.down.iter().enumerate() {
            let a = if i == 0 { h } else { leaky_relu(&self.act, h) };
            let y = conv2d(&level.conv, a);
            h = match &level.norm {
                Some(bn) => batch_norm_act(bn, y, Activation::Identity),
                None => y,
            };
            skips.push(h.clone());
        }
        skips.pop(); // the innermost output is `h` itself
                     // Decoder: each level reads the level above joined with the encoder's output at its side.
        let last = self.up.len() - 1;
        for (k, level) in self.up.iter().enumerate() {
            let y = conv_transpose2d(&level.conv, relu(h));
            h = match &level.norm {
                Some(bn) => batch_norm_act(bn, y, Activation::Identity),
                None => tanh(y),
            };
            if let Some(rng) = rng
                .as_mut()
                .filter(|_| (self.dropout_levels[0]..self.dropout_levels[1]).contains(&k))
            {
                h = drop_half(h, rng);
            }
            if k != last {
                let skip = skips.pop().expect("one skip per level but the innermost");
                h = Tensor::cat(vec![skip, h], 1);
            }
        }
        h
    }

    /// The generator in ONNX: input `input_name` `[N, C, H, W]`, output `output_name`.
    pub fn write_onnx(
        &self,
        g: &mut GraphWriter,
        input: &str,
        output: &str,
    ) -> Result<(), ExportError> {
        let layer = |g: &mut GraphWriter, x: &str, l: Layer, out: Option<&str>| g.layer(x, &l, out);
        let conv = Layer::exportable_conv;
        let slope = self.act.negative_slope;
        let mut skips = Vec::new();
        let mut h = input.to_string();
        for (i, level) in self.down.iter().enumerate() {
            if i != 0 {
                h = layer(g, &h, Layer::LeakyRelu { slope }, None)?;
            }
            h = layer(g, &h, conv(&level.conv)?, None)?;
            if let Some(bn) = &level.norm {
                h = layer(g, &h, Layer::batch_norm(bn), None)?;
            }
            skips.push(h.clone());
        }
        skips.pop();
        let last = self.up.len() - 1;
        for (k, level) in self.up.iter().enumerate() {
            h = layer(g, &h, Layer::Relu, None)?;
            h = layer(g, &h, Layer::conv_transpose(&level.conv), None)?;
            h = match &level.norm {
                Some(bn) => layer(g, &h, Layer::batch_norm(bn), None)?,
                None => layer(g, &h, Layer::Tanh, Some(output))?,
            };
            if k != last {
                let skip = skips.pop().expect("one skip per level but the innermost");
                h = g.node(
                    "Concat",
                    &[&skip, &h],
                    vec![],
                    vec![attr_int("axis", 1)],
                    None,
                );
            }
        }
        Ok(())
    }
}

/// Dropout with p = 0.5 as PyTorch trains it: each activation is zeroed or doubled, from `rng`.
fn drop_half(x: Tensor<4>, rng: &mut rand::rngs::StdRng) -> Tensor<4> {
    let shape = x.dims();
    let mask: Vec<f32> = (0..x.shape().num_elements())
        .map(|_| if rng.random::<bool>() { 2.0 } else { 0.0 })
        .collect();
    let mask = Tensor::from_data(TensorData::new(mask, shape), &x.device());
    x * mask
}

/// How a PatchGAN normalises its hidden levels: Pix2Pix's BatchNorm, or CycleGAN's InstanceNorm
/// without affine parameters (the authors' `norm='instance'`), whose convolutions then have a
/// bias, as theirs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    Batch,
    Instance,
}

/// The 70x70 PatchGAN of the paper at 256 px (three stride-2 levels, then two stride-1
/// convolutions): one logit per overlapping patch of the input, `[N, C, H, W] -> [N, P]`.
#[derive(Module, Debug)]
pub struct PatchGan {
    from_image: Conv2d,
    /// Two stride-2 levels and one stride-1 level, each Conv -> Norm -> LeakyReLU.
    levels: Vec<Level>,
    to_logit: Conv2d,
    act: LeakyRelu,
    /// Not stored in checkpoints (it is the family's choice): instance-normalised levels hold no
    /// BatchNorm, so the records of a Pix2Pix D are those it had before the choice existed.
    #[module(skip)]
    norm: Norm,
}

/// The side of a PatchGAN's logit map for images of side `side` (three halvings, then two 4x4
/// stride-1 convolutions that each take 1 off), or why there is none.
pub fn patch_side(side: usize) -> Result<usize, String> {
    (side / 8)
        .checked_sub(2)
        .filter(|&p| p >= 1)
        .ok_or_else(|| {
            format!("the PatchGAN discriminator needs images of at least 24 px, not {side}")
        })
}

impl PatchGan {
    pub fn new(channels: usize, width: usize, norm: Norm, device: &Device) -> Self {
        let level = |cin: usize, cout: usize, stride: usize| Level {
            conv: conv(cin, cout, stride, norm == Norm::Instance, device),
            norm: (norm == Norm::Batch).then(|| batch_norm(cout, device)),
        };
        Self {
            from_image: conv(channels, width, 2, true, device),
            levels: vec![
                level(width, 2 * width, 2),
                level(2 * width, 4 * width, 2),
                level(4 * width, 8 * width, 1),
            ],
            to_logit: conv(8 * width, 1, 1, true, device),
            act: LeakyReluConfig::new().with_negative_slope(0.2).init(),
            norm,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = leaky_relu(&self.act, conv2d(&self.from_image, x));
        let act = Activation::LeakyRelu(&self.act);
        for level in &self.levels {
            let y = conv2d(&level.conv, h);
            h = match &level.norm {
                Some(bn) => batch_norm_act(bn, y, act),
                None => instance_norm_act(y, super::resnet::EPSILON, act),
            };
        }
        conv2d(&self.to_logit, h).flatten(1, 3)
    }

    pub fn norm(&self) -> Norm {
        self.norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes of the paper's 64 px U-Net (six levels, one dropout level) and its PatchGAN.
    #[test]
    fn shapes_follow_the_image_side() {
        let device = Device::flex();
        assert!(levels(48).is_err() && levels(16).is_err());
        let g = Unet::new(3, 64, 4, &device).unwrap();
        assert_eq!((g.down.len(), g.up.len()), (6, 6));
        assert_eq!(g.dropout_levels, [1, 2]);
        let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        assert_eq!(g.forward(x.clone(), None).dims(), [2, 3, 64, 64]);
        assert_eq!(g.forward(x, Some(1)).dims(), [2, 3, 64, 64]);
        assert_eq!(Unet::new(3, 32, 4, &device).unwrap().dropout_levels, [1, 1]);
        assert_eq!(patch_side(64), Ok(6));
        assert_eq!(patch_side(24), Ok(1));
        assert!(patch_side(16).is_err());
        // 64 -> 32 -> 16 -> 8 -> 7 -> 6: 36 patches, whichever the norm.
        for norm in [Norm::Batch, Norm::Instance] {
            let d = PatchGan::new(6, 4, norm, &device);
            let pair = Tensor::<4>::ones([2, 6, 64, 64], &device);
            assert_eq!(d.forward(pair).dims(), [2, 36]);
            let has_bn = d.levels.iter().all(|l| l.norm.is_some());
            let biased = d.levels.iter().all(|l| l.conv.bias.is_some());
            assert_eq!(
                (has_bn, biased),
                (norm == Norm::Batch, norm == Norm::Instance)
            );
        }
    }
}
