//! CycleGAN's generator (Zhu et al. 2017, as the authors' `ResnetGenerator` builds it with
//! `norm='instance'`): an encoder of two stride-2 convolutions, a chain of residual blocks at a
//! quarter of the side, and a decoder of two transposed convolutions, width w:
//! ```text
//! ReflectPad 3 -> Conv 7x7 (C -> w)   -> IN -> ReLU
//! Conv 3x3 s2 p1 (w -> 2w)            -> IN -> ReLU
//! Conv 3x3 s2 p1 (2w -> 4w)           -> IN -> ReLU
//! B x residual block at 4w: h + IN(Conv(ReflectPad 1(ReLU(IN(Conv(ReflectPad 1(h)))))))
//! ConvT 3x3 s2 p1 op1 (4w -> 2w)      -> IN -> ReLU
//! ConvT 3x3 s2 p1 op1 (2w -> w)       -> IN -> ReLU
//! ReflectPad 3 -> Conv 7x7 (w -> C)   -> Tanh
//! ```
//! InstanceNorm has no affine parameters (PyTorch's default, which the authors keep), so every
//! convolution has a bias, as theirs do.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::tanh;
use burn::tensor::ops::PadMode;

use super::dcgan::WEIGHT_INIT;
use super::layers::Layer;
use crate::export::onnx::GraphWriter;
use crate::export::ExportError;
use crate::ops::conv::{conv2d, conv_transpose2d};
use crate::ops::norm::{instance_norm_act, Activation};

/// PyTorch's `InstanceNorm2d` epsilon.
pub const EPSILON: f64 = 1e-5;
/// The smallest side: the residual blocks work at a quarter of it and pad it by 1 on each side,
/// which reflection allows only for a side of at least 2 (so 8 px); 16 keeps 4x4 there.
pub const MIN_SIDE: usize = 16;

/// Residual blocks for images of side `side`: the paper's 6 from 64 px (their 128 px choice; 9 at
/// 256), 3 below, where the 8x8 map of a 32 px image is covered by fewer 3x3 layers and a
/// narrow test run costs half as much. Errors for a side the network cannot take.
pub fn blocks(side: usize) -> Result<usize, String> {
    if side < MIN_SIDE || side % 4 != 0 {
        return Err(format!(
            "the ResNet generator takes square images whose side is a multiple of 4 of at least \
             {MIN_SIDE}, not {side}"
        ));
    }
    Ok(match side {
        256.. => 9,
        64.. => 6,
        _ => 3,
    })
}

#[derive(Module, Debug)]
pub struct ResidualBlock {
    first: Conv2d,
    second: Conv2d,
}

#[derive(Module, Debug)]
pub struct ResnetGenerator {
    /// 7x7 after a reflection pad of 3.
    stem: Conv2d,
    /// Two stride-2 3x3 convolutions.
    down: Vec<Conv2d>,
    blocks: Vec<ResidualBlock>,
    /// Two stride-2 3x3 transposed convolutions.
    up: Vec<ConvTranspose2d>,
    /// 7x7 after a reflection pad of 3, to the image's channels.
    to_image: Conv2d,
}

fn conv(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(if pad == 0 {
            PaddingConfig2d::Valid
        } else {
            PaddingConfig2d::Explicit(pad, pad, pad, pad)
        })
        .with_bias(true)
        .with_initializer(WEIGHT_INIT)
        .init(device)
}

fn reflect(x: Tensor<4>, pad: usize) -> Tensor<4> {
    x.pad((pad, pad, pad, pad), PadMode::Reflect)
}

fn norm_relu(x: Tensor<4>) -> Tensor<4> {
    instance_norm_act(x, EPSILON, Activation::Relu)
}

impl ResnetGenerator {
    /// A generator from `[channels, side, side]` images to images of the same shape, `blocks`
    /// residual blocks (see [`blocks`]) at width 4 x `width`.
    pub fn new(channels: usize, width: usize, blocks: usize, device: &Device) -> Self {
        let inner = 4 * width;
        Self {
            stem: conv(channels, width, 7, 1, 0, device),
            down: vec![
                conv(width, 2 * width, 3, 2, 1, device),
                conv(2 * width, inner, 3, 2, 1, device),
            ],
            blocks: (0..blocks)
                .map(|_| ResidualBlock {
                    first: conv(inner, inner, 3, 1, 0, device),
                    second: conv(inner, inner, 3, 1, 0, device),
                })
                .collect(),
            up: [(inner, 2 * width), (2 * width, width)]
                .into_iter()
                .map(|(cin, cout)| {
                    ConvTranspose2dConfig::new([cin, cout], [3, 3])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .with_padding_out([1, 1])
                        .with_bias(true)
                        .with_initializer(WEIGHT_INIT)
                        .init(device)
                })
                .collect(),
            to_image: conv(width, channels, 7, 1, 0, device),
        }
    }

    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Images `[N, C, H, W]` in [-1, 1] -> images of the same shape. Training and inference are
    /// the same computation (instance norm keeps no running statistics).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = norm_relu(conv2d(&self.stem, reflect(x, 3)));
        for c in &self.down {
            h = norm_relu(conv2d(c, h));
        }
        for b in &self.blocks {
            let r = norm_relu(conv2d(&b.first, reflect(h.clone(), 1)));
            let r = conv2d(&b.second, reflect(r, 1));
            h = h + instance_norm_act(r, EPSILON, Activation::Identity);
        }
        for c in &self.up {
            h = norm_relu(conv_transpose2d(c, h));
        }
        tanh(conv2d(&self.to_image, reflect(h, 3)))
    }

    /// The generator in ONNX as PyTorch exports the authors' network: input `input`
    /// `[N, C, H, W]`, output `output`.
    pub fn write_onnx(
        &self,
        g: &mut GraphWriter,
        input: &str,
        output: &str,
    ) -> Result<(), ExportError> {
        let conv = Layer::exportable_conv;
        let norm = |c: usize| Layer::InstanceNorm {
            channels: c,
            epsilon: EPSILON,
        };
        let out_channels = |c: &Conv2d| c.weight.dims()[0];
        let pad = |p| Layer::ReflectPad { pad: p };
        let chain = |g: &mut GraphWriter, x: &str, layers: Vec<Layer>, out: Option<&str>| {
            let last = layers.len() - 1;
            let mut h = x.to_string();
            for (i, l) in layers.iter().enumerate() {
                h = g.layer(&h, l, out.filter(|_| i == last))?;
            }
            Ok::<_, ExportError>(h)
        };
        let c = out_channels(&self.stem);
        let mut h = chain(
            g,
            input,
            vec![pad(3), conv(&self.stem)?, norm(c), Layer::Relu],
            None,
        )?;
        for d in &self.down {
            h = chain(
                g,
                &h,
                vec![conv(d)?, norm(out_channels(d)), Layer::Relu],
                None,
            )?;
        }
        for b in &self.blocks {
            let c = out_channels(&b.first);
            let r = chain(
                g,
                &h,
                vec![
                    pad(1),
                    conv(&b.first)?,
                    norm(c),
                    Layer::Relu,
                    pad(1),
                    conv(&b.second)?,
                    norm(c),
                ],
                None,
            )?;
            h = g.node("Add", &[&h, &r], vec![], vec![], None);
        }
        for u in &self.up {
            let c = u.weight.dims()[1];
            h = chain(
                g,
                &h,
                vec![Layer::conv_transpose(u), norm(c), Layer::Relu],
                None,
            )?;
        }
        chain(
            g,
            &h,
            vec![pad(3), conv(&self.to_image)?, Layer::Tanh],
            Some(output),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn blocks_follow_the_side() {
        assert_eq!(blocks(32), Ok(3));
        assert_eq!(blocks(64), Ok(6));
        assert_eq!(blocks(128), Ok(6));
        assert_eq!(blocks(256), Ok(9));
        assert!(blocks(12).is_err() && blocks(34).is_err());
    }

    /// The image's shape comes back; the residual chain works at a quarter of the side.
    #[test]
    fn shapes() {
        let device = Device::flex();
        for (side, b) in [(32, 3), (64, 6)] {
            let g = ResnetGenerator::new(3, 4, b, &device);
            let x = Tensor::<4>::zeros([2, 3, side, side], &device);
            assert_eq!(g.forward(x).dims(), [2, 3, side, side]);
            assert_eq!(g.blocks(), b);
        }
        let autodiff = device.autodiff();
        let g = ResnetGenerator::new(1, 2, 1, &autodiff);
        let x = Tensor::<4>::ones([1, 1, 16, 16], &autodiff);
        assert_eq!(g.forward(x).dims(), [1, 1, 16, 16]);
    }

    /// Reflection padding mirrors without repeating the edge, as PyTorch's ReflectionPad2d:
    /// row [1 2 3] padded by 2 is [3 2 1 2 3 2 1] (worked by hand), on both axes.
    #[test]
    fn reflect_pad_values() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
                [1, 1, 3, 3],
            ),
            &device,
        );
        let y: Vec<f32> = reflect(x, 2).into_data().try_to_vec().unwrap();
        #[rustfmt::skip]
        let want = [
            9., 8., 7., 8., 9., 8., 7.,
            6., 5., 4., 5., 6., 5., 4.,
            3., 2., 1., 2., 3., 2., 1.,
            6., 5., 4., 5., 6., 5., 4.,
            9., 8., 7., 8., 9., 8., 7.,
            6., 5., 4., 5., 6., 5., 4.,
            3., 2., 1., 2., 3., 2., 1.,
        ];
        assert_eq!(y, want);
    }

    /// The padding's gradient sends each padded position's gradient back to the value it
    /// mirrors: with upstream gradient `w[p] = p` (position index in the padded 7x7), each input
    /// value's gradient is the sum of `w` over the positions that copy it (worked out here by
    /// mapping every padded position to its source).
    #[test]
    fn reflect_pad_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::ones([1, 1, 3, 3], &device).require_grad();
        let w: Vec<f32> = (0..49).map(|p| p as f32).collect();
        let w = Tensor::<4>::from_data(TensorData::new(w, [1, 1, 7, 7]), &device);
        let grads = (reflect(x.clone(), 2) * w).sum().backward();
        let got: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        // Padded index i (0..7) copies input index |i - 2| reflected: 2,1,0,1,2,1,0.
        let source = [2usize, 1, 0, 1, 2, 1, 0];
        let mut want = [0.0f32; 9];
        for r in 0..7 {
            for c in 0..7 {
                want[source[r] * 3 + source[c]] += (r * 7 + c) as f32;
            }
        }
        assert_eq!(got, want);
    }
}
