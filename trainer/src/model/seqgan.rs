//! SeqGAN's networks (Yu et al. 2017, the authors' `generator.py` and `discriminator.py`).
//!
//! G: an LSTM language model, embedding 32, hidden 32, the gates `x W + h U + b` of the oracle
//! (`data::oracle`), every weight N(0, 0.1) as the authors' `init_matrix`. It trains here, in Burn,
//! teacher-forced; it samples as a plain-Rust [`Lstm`] copy ([`LstmGenerator::to_lstm`]).
//!
//! D: a CNN for sentence classification (Kim 2014) over token embeddings: for each filter width
//! w, filters over w consecutive embeddings, ReLU, max over time; the pooled features through one
//! highway layer (`t * relu(x Wh + bh) + (1 - t) * x`, `t = sigmoid(x Wt + bt)`), dropout, and a
//! linear layer to two logits (fake, real), whose weights bear D's L2 penalty.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu, sigmoid, tanh};
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::data::oracle::{Lstm, START};

/// D's filter widths and numbers: the authors' widths, their numbers of filters divided by 4
/// (100, 200, ... 160 in their code: 1,720 features; these 430), for a CPU.
pub const FILTERS: [(usize, usize); 12] = [
    (1, 25),
    (2, 50),
    (3, 50),
    (4, 50),
    (5, 50),
    (6, 25),
    (7, 25),
    (8, 25),
    (9, 25),
    (10, 25),
    (15, 40),
    (20, 40),
];
/// D's embedding size (the authors' 64, halved).
pub const D_EMBED: usize = 32;
/// The share of D's features kept by dropout while training (the authors' `dropout_keep_prob`).
pub const KEEP: f32 = 0.75;

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

fn normal(n: usize, std: f32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n)
        .map(|_| std * Distribution::<f32>::sample(&StandardNormal, rng))
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// Token ids `[B, T]` as an Int tensor.
pub fn token_tensor(tokens: &[u32], len: usize, device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(v, [tokens.len() / len.max(1), len]), device)
}

/// The generator: the oracle's LSTM, trainable.
#[derive(Module, Debug)]
pub struct LstmGenerator {
    /// `[V, E]`.
    pub embedding: Param<Tensor<2>>,
    /// `[E, 4H]`, gates input, forget, output, cell.
    pub w: Param<Tensor<2>>,
    /// `[H, 4H]`.
    pub u: Param<Tensor<2>>,
    /// `[4H]`.
    pub b: Param<Tensor<1>>,
    /// `[H, V]`.
    pub wo: Param<Tensor<2>>,
    /// `[V]`.
    pub bo: Param<Tensor<1>>,
    pub hidden: usize,
}

impl LstmGenerator {
    /// Every weight N(0, std^2) from `seed` (the authors' 0.1).
    pub fn new(
        vocab: usize,
        embed: usize,
        hidden: usize,
        std: f32,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self::from_lstm(&Lstm::random(vocab, embed, hidden, std, seed), device)
    }

    pub fn from_lstm(l: &Lstm, device: &Device) -> Self {
        let (v, e, h) = (l.vocab, l.embed, l.hidden);
        Self {
            embedding: param(l.embedding.clone(), [v, e], device),
            w: param(l.w.clone(), [e, 4 * h], device),
            u: param(l.u.clone(), [h, 4 * h], device),
            b: param(l.b.clone(), [4 * h], device),
            wo: param(l.wo.clone(), [h, v], device),
            bo: param(l.bo.clone(), [v], device),
            hidden: h,
        }
    }

    /// The same network as a plain-Rust LSTM, to sample from.
    pub fn to_lstm(&self) -> Lstm {
        let [vocab, embed] = self.embedding.dims();
        Lstm {
            vocab,
            embed,
            hidden: self.hidden,
            embedding: values(self.embedding.val()),
            w: values(self.w.val()),
            u: values(self.u.val()),
            b: values(self.b.val()),
            wo: values(self.wo.val()),
            bo: values(self.bo.val()),
        }
    }

    /// Teacher-forced: the log-probability `[B, T]` of each token of `tokens` `[B, T]` given the
    /// ones before it (the start token before the first).
    pub fn token_log_probs(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [b, t] = tokens.dims();
        let h = self.hidden;
        let device = tokens.device();
        let start = Tensor::<2, Int>::full([b, 1], START as i64, &device);
        let inputs = if t > 1 {
            Tensor::cat(vec![start, tokens.clone().narrow(1, 0, t - 1)], 1)
        } else {
            start
        };
        let x = self.embedding.val().select(0, inputs.reshape([b * t]));
        let xw = (x.matmul(self.w.val()) + self.b.val().unsqueeze::<2>()).reshape([b, t, 4 * h]);
        let mut hs = Tensor::<2>::zeros([b, h], &device);
        let mut cs = Tensor::<2>::zeros([b, h], &device);
        let mut outs = Vec::with_capacity(t);
        for s in 0..t {
            let g = xw.clone().narrow(1, s, 1).reshape([b, 4 * h]) + hs.matmul(self.u.val());
            let i = sigmoid(g.clone().narrow(1, 0, h));
            let f = sigmoid(g.clone().narrow(1, h, h));
            let o = sigmoid(g.clone().narrow(1, 2 * h, h));
            let c = tanh(g.narrow(1, 3 * h, h));
            cs = f * cs + i * c;
            hs = o * tanh(cs.clone());
            outs.push(hs.clone());
        }
        let all = Tensor::stack::<3>(outs, 1).reshape([b * t, h]);
        let logits = all.matmul(self.wo.val()) + self.bo.val().unsqueeze::<2>();
        log_softmax(logits, 1)
            .gather(1, tokens.reshape([b * t, 1]))
            .reshape([b, t])
    }
}

/// One filter width of D: weights `[w * E, F]` over w consecutive embeddings, bias `[F]`.
#[derive(Module, Debug)]
pub struct Filter {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    pub width: usize,
}

#[derive(Module, Debug)]
pub struct CnnDiscriminator {
    pub embedding: Param<Tensor<2>>,
    pub filters: Vec<Filter>,
    pub highway_w: Param<Tensor<2>>,
    pub highway_b: Param<Tensor<1>>,
    pub gate_w: Param<Tensor<2>>,
    pub gate_b: Param<Tensor<1>>,
    /// `[F, 2]`: logits (fake, real).
    pub out_w: Param<Tensor<2>>,
    pub out_b: Param<Tensor<1>>,
}

impl CnnDiscriminator {
    /// The authors' initialisation: embedding U(-1, 1); filters and the output layer N(0, 0.1)
    /// with biases 0.1; the highway layer Glorot-uniform (TensorFlow's default), biases 0. Widths
    /// longer than the sequences (`len`) are left out.
    pub fn new(vocab: usize, len: usize, seed: u64, device: &Device) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let e = D_EMBED;
        let embedding = (0..vocab * e)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut filters = Vec::new();
        for (w, n) in FILTERS.into_iter().filter(|(w, _)| *w <= len) {
            filters.push(Filter {
                weight: param(normal(w * e * n, 0.1, &mut rng), [w * e, n], device),
                bias: param(vec![0.1; n], [n], device),
                width: w,
            });
        }
        let f: usize = FILTERS
            .iter()
            .filter(|(w, _)| *w <= len)
            .map(|(_, n)| n)
            .sum();
        let limit = (6.0 / (2 * f) as f32).sqrt();
        let glorot = |rng: &mut rand::rngs::StdRng| -> Vec<f32> {
            (0..f * f)
                .map(|_| rng.random_range(-limit..limit))
                .collect()
        };
        Self {
            embedding: param(embedding, [vocab, e], device),
            filters,
            highway_w: param(glorot(&mut rng), [f, f], device),
            highway_b: param(vec![0.0; f], [f], device),
            gate_w: param(glorot(&mut rng), [f, f], device),
            gate_b: param(vec![0.0; f], [f], device),
            out_w: param(normal(f * 2, 0.1, &mut rng), [f, 2], device),
            out_b: param(vec![0.1; 2], [2], device),
        }
    }

    /// Logits `[B, 2]` (fake, real) of sequences `[B, T]`; `dropout` is the seed of the training
    /// pass's dropout mask (`None`: no dropout).
    pub fn forward(&self, tokens: Tensor<2, Int>, dropout: Option<u64>) -> Tensor<2> {
        let [b, t] = tokens.dims();
        let e = D_EMBED;
        let x = self
            .embedding
            .val()
            .select(0, tokens.reshape([b * t]))
            .reshape([b, t, e]);
        let mut pooled = Vec::with_capacity(self.filters.len());
        for filter in &self.filters {
            let (w, n) = (filter.width, t + 1 - filter.width);
            let windows: Vec<Tensor<3>> = (0..w).map(|k| x.clone().narrow(1, k, n)).collect();
            let windows = Tensor::cat(windows, 2).reshape([b * n, w * e]);
            let y = relu(windows.matmul(filter.weight.val()) + filter.bias.val().unsqueeze::<2>());
            let f = filter.bias.dims()[0];
            pooled.push(y.reshape([b, n, f]).max_dim(1).reshape([b, f]));
        }
        let x = Tensor::cat(pooled, 1);
        let g =
            relu(x.clone().matmul(self.highway_w.val()) + self.highway_b.val().unsqueeze::<2>());
        let gate =
            sigmoid(x.clone().matmul(self.gate_w.val()) + self.gate_b.val().unsqueeze::<2>());
        let mut h = gate.clone() * g + (gate.neg() + 1.0) * x;
        if let Some(seed) = dropout {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let dims = h.dims();
            let mask: Vec<f32> = (0..dims[0] * dims[1])
                .map(|_| {
                    if rng.random::<f32>() < KEEP {
                        1.0 / KEEP
                    } else {
                        0.0
                    }
                })
                .collect();
            h = h * Tensor::from_data(TensorData::new(mask, dims), &self.out_b.device());
        }
        h.matmul(self.out_w.val()) + self.out_b.val().unsqueeze::<2>()
    }

    /// The authors' L2 term: `(|W|^2 + |b|^2) / 2` of the output layer.
    pub fn l2(&self) -> Tensor<1> {
        (self.out_w.val().powi_scalar(2).sum() + self.out_b.val().powi_scalar(2).sum()) * 0.5
    }

    /// D's probability that each sequence `[B, T]` is real, without dropout.
    pub fn real_probability(&self, tokens: Tensor<2, Int>) -> Vec<f32> {
        let logits = self.forward(tokens, None);
        let p = burn::tensor::activation::softmax(logits, 1).narrow(1, 1, 1);
        values(p)
    }
}
