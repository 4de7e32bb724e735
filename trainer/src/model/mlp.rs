//! The original GAN of Goodfellow et al. (2014): fully connected G and D.
//! G: z -> Linear -> ReLU -> Linear -> ReLU -> Linear (-> tanh for images)
//! D: x -> Linear -> LeakyReLU(0.2) -> Linear -> LeakyReLU(0.2) (-> Linear -> logit: the score head,
//! built by `model`)

use burn::nn::{LeakyRelu, LeakyReluConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::layers::Layer;
use super::ModelConfig;
use crate::data::SampleKind;
use crate::ops::activation::leaky_relu_tangent;

#[derive(Module, Debug)]
pub struct MlpGenerator {
    layers: Vec<Linear>,
    /// Images are squashed to [-1, 1]; toy points are left unbounded.
    tanh_output: bool,
    sample: [usize; 3],
}

#[derive(Module, Debug)]
pub struct MlpDiscriminator {
    layers: Vec<Linear>,
    act: LeakyRelu,
}

pub fn init(config: &ModelConfig, device: &Device) -> (MlpGenerator, MlpDiscriminator) {
    let numel = config.sample.numel();
    let [_, c, hh, w] = config.sample.batch_dims(1);
    let numel_in = numel / c * config.discriminator_channels();
    let h = config.width;
    let generator = MlpGenerator {
        layers: vec![
            LinearConfig::new(config.generator_input(), h).init(device),
            LinearConfig::new(h, h).init(device),
            LinearConfig::new(h, numel).init(device),
        ],
        tanh_output: matches!(config.sample, SampleKind::Image { .. }),
        sample: [c, hh, w],
    };
    let discriminator = MlpDiscriminator {
        layers: vec![
            LinearConfig::new(numel_in, h).init(device),
            LinearConfig::new(h, h).init(device),
        ],
        act: LeakyReluConfig::new().with_negative_slope(0.2).init(),
    };
    (generator, discriminator)
}

impl MlpGenerator {
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let last = self.layers.len() - 1;
        let mut x = z;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = burn::tensor::activation::relu(x);
            }
        }
        if self.tanh_output {
            x = burn::tensor::activation::tanh(x);
        }
        let [c, h, w] = self.sample;
        x.reshape([-1, c as i32, h as i32, w as i32])
    }

    pub fn layers(&self) -> Vec<Layer> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                out.push(Layer::Relu);
            }
            out.push(Layer::linear(layer));
        }
        if self.tanh_output {
            out.push(Layer::Tanh);
        }
        out.push(Layer::Reshape { dims: self.sample });
        out
    }
}

impl MlpDiscriminator {
    /// Samples `[N, C, H, W]` -> features `[N, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x.flatten(1, 3);
        for layer in &self.layers {
            x = self.act.forward(layer.forward(x));
        }
        x
    }

    /// The tangent `t [N, C, H, W]` at samples `x` through the body: `J(x) t`, linear in `t`
    /// with D's parameters tracked.
    pub fn tangent(&self, x: Tensor<4>, t: Tensor<4>) -> Tensor<2> {
        let (mut x, mut t) = (x.flatten(1, 3), t.flatten(1, 3));
        for layer in &self.layers {
            // The point's pass only decides each unit's slope: no gradient is wanted from it.
            let z = layer.forward(x).detach();
            t = leaky_relu_tangent(&self.act, z.clone(), t.matmul(layer.weight.val()));
            x = self.act.forward(z);
        }
        t
    }
}
