//! GAN architectures: the original MLP GAN and DCGAN. One config describes both networks.

pub mod dcgan;
pub mod layers;
pub mod mlp;

use burn::prelude::*;

use crate::data::SampleKind;

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

/// Everything needed to rebuild both networks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// Size of the latent vector z.
    pub latent: usize,
    /// DCGAN: channels of the last hidden feature map (doubles per resolution step); MLP: hidden units.
    pub width: usize,
    /// The sample the generator makes and the discriminator reads.
    pub sample: SampleKind,
}

impl ModelConfig {
    /// The reference DCGAN of `shared/anchors` for 28x28 grayscale digits.
    pub fn reference_dcgan() -> Self {
        Self {
            architecture: Architecture::Dcgan,
            latent: 64,
            width: 64,
            sample: SampleKind::Image {
                channels: 1,
                height: 28,
                width: 28,
            },
        }
    }

    /// Check the combination before building anything, so bad flags give an error, not a panic.
    pub fn validate(&self) -> Result<(), String> {
        if self.latent == 0 || self.width == 0 {
            return Err("latent size and width must be positive".into());
        }
        match (self.architecture, self.sample) {
            (Architecture::Dcgan, SampleKind::Points { .. }) => {
                Err("dcgan makes images; use --model mlp for toy data".into())
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
        match self.architecture {
            Architecture::Mlp => {
                let (g, d) = mlp::init(self, device);
                (Generator::Mlp(g), Discriminator::Mlp(d))
            }
            Architecture::Dcgan => {
                let (g, d) = dcgan::init(self, device);
                (Generator::Dcgan(g), Discriminator::Dcgan(d))
            }
        }
    }
}

#[derive(Module, Debug)]
pub enum Generator {
    Mlp(mlp::MlpGenerator),
    Dcgan(dcgan::DcganGenerator),
}

impl Generator {
    /// z `[N, latent]` -> samples `[N, C, H, W]` in `[-1, 1]` (images) or `[N, 1, 1, D]` (points).
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        match self {
            Generator::Mlp(g) => g.forward(z),
            Generator::Dcgan(g) => g.forward(z),
        }
    }

    /// The network in inference form (BatchNorm with running statistics), layer by layer.
    pub fn layers(&self) -> Vec<layers::Layer> {
        match self {
            Generator::Mlp(g) => g.layers(),
            Generator::Dcgan(g) => g.layers(),
        }
    }
}

#[derive(Module, Debug)]
pub enum Discriminator {
    Mlp(mlp::MlpDiscriminator),
    Dcgan(dcgan::DcganDiscriminator),
}

impl Discriminator {
    /// samples `[N, C, H, W]` -> logits `[N, 1]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Discriminator::Mlp(d) => d.forward(x),
            Discriminator::Dcgan(d) => d.forward(x),
        }
    }
}

/// The 4-D shape of a batch of samples; toy points travel as `[N, 1, 1, D]`.
pub fn batch_dims(sample: SampleKind, n: usize) -> [usize; 4] {
    match sample {
        SampleKind::Image {
            channels,
            height,
            width,
        } => [n, channels, height, width],
        SampleKind::Points { dim } => [n, 1, 1, dim],
    }
}
