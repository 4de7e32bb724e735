//! A generator in inference form, as a flat list of standard layers with their weights.
//! This is what the ONNX exporter writes; the runtime's int8 format mirrors it.

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::PaddingConfig2d;
use burn::nn::{BatchNorm, Embedding, Linear};
use burn::prelude::*;

/// A float tensor taken out of Burn: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

impl Weights {
    pub fn of<const D: usize>(t: Tensor<D>) -> Self {
        let dims = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        Self { dims, values }
    }

    fn param<const D: usize>(p: &Param<Tensor<D>>) -> Self {
        Self::of(p.val())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// The conditional generator's first step: row `class` of `table` `[K, E]` joined after z,
    /// `[N, latent] -> [N, latent + E]` (ONNX: Gather + Concat).
    ClassEmbedding {
        table: Weights,
    },
    /// `y = x W + b`, W `[in, out]`.
    Linear {
        weight: Weights,
        bias: Option<Weights>,
    },
    /// Reshape `[N, ...]` to `[N, c, h, w]`.
    Reshape {
        dims: [usize; 3],
    },
    /// Inference batch norm over channel axis 1.
    BatchNorm {
        gamma: Weights,
        beta: Weights,
        mean: Weights,
        var: Weights,
        epsilon: f64,
    },
    /// Weight `[C_in, C_out, kH, kW]` (the layout of ONNX and PyTorch).
    ConvTranspose {
        weight: Weights,
        bias: Option<Weights>,
        stride: [usize; 2],
        padding: [usize; 2],
        output_padding: [usize; 2],
    },
    /// Weight `[C_out, C_in, kH, kW]`, symmetric padding.
    Conv {
        weight: Weights,
        bias: Option<Weights>,
        stride: [usize; 2],
        padding: [usize; 2],
    },
    Relu,
    LeakyRelu {
        slope: f64,
    },
    Tanh,
    /// Mirror padding of the last two axes by `pad` on every side, excluding the edge (PyTorch's
    /// `ReflectionPad2d`, ONNX `Pad` mode `reflect`).
    ReflectPad {
        pad: usize,
    },
    /// Each position's channel vector scaled to unit mean square (Progressive GAN's pixel norm):
    /// `x / sqrt(mean_c x^2 + epsilon)`.
    PixelNorm {
        epsilon: f64,
    },
    /// Nearest-neighbour upsampling of the last two axes by an integer factor.
    Upsample {
        factor: usize,
    },
    /// Each sample's channel normalised by its own statistics, no affine parameters (PyTorch's
    /// `InstanceNorm2d` default; its ONNX export carries scale 1 and bias 0).
    InstanceNorm {
        channels: usize,
        epsilon: f64,
    },
}

impl Layer {
    pub fn class_embedding(e: &Embedding) -> Self {
        Layer::ClassEmbedding {
            table: Weights::param(&e.weight),
        }
    }

    pub fn linear(l: &Linear) -> Self {
        Layer::Linear {
            weight: Weights::param(&l.weight),
            bias: l.bias.as_ref().map(Weights::param),
        }
    }

    pub fn batch_norm(bn: &BatchNorm) -> Self {
        Layer::BatchNorm {
            gamma: Weights::param(&bn.gamma),
            beta: Weights::param(&bn.beta),
            mean: Weights::of(bn.running_mean.value()),
            var: Weights::of(bn.running_var.value()),
            epsilon: bn.epsilon,
        }
    }

    /// A convolution with explicit, symmetric padding (what the image-to-image networks use);
    /// `None` for another padding.
    pub fn conv(c: &Conv2d) -> Option<Self> {
        let padding = match c.padding {
            PaddingConfig2d::Valid => [0, 0],
            PaddingConfig2d::Explicit(top, left, bottom, right)
                if (top, left) == (bottom, right) =>
            {
                [top, left]
            }
            _ => return None,
        };
        Some(Layer::Conv {
            weight: Weights::param(&c.weight),
            bias: c.bias.as_ref().map(Weights::param),
            stride: c.stride,
            padding,
        })
    }

    /// [`Layer::conv`], or the export error for a padding the exporter does not write.
    pub fn exportable_conv(c: &Conv2d) -> Result<Self, crate::export::ExportError> {
        Self::conv(c)
            .ok_or_else(|| crate::export::ExportError::Graph("unsupported conv padding".into()))
    }

    pub fn conv_transpose(c: &ConvTranspose2d) -> Self {
        Layer::ConvTranspose {
            weight: Weights::param(&c.weight),
            bias: c.bias.as_ref().map(Weights::param),
            stride: c.stride,
            padding: c.padding,
            output_padding: c.padding_out,
        }
    }
}
