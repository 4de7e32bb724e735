//! TimeGAN's five networks (Yoon et al. 2019, the authors' `timegan.py`): each a stack of GRU
//! layers read step by step, then one fully connected layer applied at every step.
//!
//! | network       | reads            | layers     | head                |
//! |---------------|------------------|------------|---------------------|
//! | embedder      | series X         | L          | H units, sigmoid    |
//! | recovery      | embeddings H     | L          | F units, sigmoid    |
//! | generator     | noise Z (F wide) | L          | H units, sigmoid    |
//! | supervisor    | embeddings H     | L - 1      | H units, sigmoid    |
//! | discriminator | embeddings H     | L          | 1 logit             |
//!
//! The embedder and recovery train together (an autoencoder), as do the generator and the
//! supervisor: the authors give each pair one optimizer.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use rand::SeedableRng;

use super::gru::{uniform_param, Gru};
use super::layers::Weights;
use crate::export::onnx::{tensor, GraphWriter};

/// A GRU stack and a per-step fully connected head.
#[derive(Module, Debug)]
pub struct SeriesNet {
    pub gru: Gru,
    /// `[H, out]`.
    pub head_w: Param<Tensor<2>>,
    pub head_b: Param<Tensor<1>>,
    /// Whether the head ends in a sigmoid (all but the discriminator).
    pub squash: bool,
}

impl SeriesNet {
    pub fn new(
        input: usize,
        hidden: usize,
        layers: usize,
        out: usize,
        squash: bool,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x4EAD);
        let k = 1.0 / (hidden as f32).sqrt();
        Self {
            gru: Gru::new(input, hidden, layers, seed, device),
            head_w: uniform_param([hidden, out], k, &mut rng, device),
            head_b: uniform_param([out], k, &mut rng, device),
            squash,
        }
    }

    /// Outputs `[B, T, out]` for inputs `[B, T, input]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let s = self.gru.forward(x);
        let [b, t, h] = s.dims();
        let [_, out] = self.head_w.dims();
        let y = (s.reshape([b * t, h]).matmul(self.head_w.val()) + self.head_b.val().unsqueeze())
            .reshape([b, t, out]);
        if self.squash {
            sigmoid(y)
        } else {
            y
        }
    }
}

impl SeriesNet {
    /// This network as ONNX, time-major `[T, N, input]` in, `[T, N, out]` out.
    pub fn write_onnx(&self, g: &mut GraphWriter, x: &str) -> String {
        let s = self.gru.write_onnx(g, x);
        let y = g.node(
            "MatMul",
            &[&s],
            vec![tensor("weight", &Weights::of(self.head_w.val()))],
            vec![],
            None,
        );
        let y = g.node(
            "Add",
            &[&y],
            vec![tensor("bias", &Weights::of(self.head_b.val()))],
            vec![],
            None,
        );
        if self.squash {
            g.node("Sigmoid", &[&y], vec![], vec![], None)
        } else {
            y
        }
    }
}

/// The autoencoder between the data and the embedding space.
#[derive(Module, Debug)]
pub struct Autoencoder {
    pub embedder: SeriesNet,
    pub recovery: SeriesNet,
}

/// The generator of embeddings from noise, and the supervisor that steps embeddings forward.
#[derive(Module, Debug)]
pub struct Generators {
    pub generator: SeriesNet,
    pub supervisor: SeriesNet,
}

impl Generators {
    /// Embeddings `H_hat = S(G(Z))` of noise `[B, T, F]`, and `E_hat = G(Z)`.
    pub fn embeddings(&self, z: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let e_hat = self.generator.forward(z);
        (self.supervisor.forward(e_hat.clone()), e_hat)
    }
}

/// Sizes of the five networks: `features` of the data, `hidden` units, `layers` GRU layers.
#[derive(Debug, Clone, Copy)]
pub struct TimeGanShape {
    pub features: usize,
    pub hidden: usize,
    pub layers: usize,
}

impl TimeGanShape {
    /// The three trained parts, every weight drawn from `seed`.
    pub fn init(self, seed: u64, device: &Device) -> (Autoencoder, Generators, SeriesNet) {
        let Self {
            features: f,
            hidden: h,
            layers: l,
        } = self;
        let net = |i: u64, input, layers, out, squash| {
            SeriesNet::new(
                input,
                h,
                layers,
                out,
                squash,
                seed.wrapping_mul(31) ^ i,
                device,
            )
        };
        (
            Autoencoder {
                embedder: net(1, f, l, h, true),
                recovery: net(2, h, l, f, true),
            },
            Generators {
                generator: net(3, f, l, h, true),
                supervisor: net(4, h, l.saturating_sub(1).max(1), h, true),
            },
            net(5, h, l, 1, false),
        )
    }
}
