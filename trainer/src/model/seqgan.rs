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

/// The exported cell's inputs and outputs: `token` (int64 `[N]`) and the state `h`, `c`
/// (`[N, H]` each) in; the next token's `logits` (`[N, V]`) and the new state out.
pub const ONNX_INPUTS: [&str; 3] = ["token", "h", "c"];
pub const ONNX_OUTPUTS: [&str; 3] = ["logits", "h_next", "c_next"];

impl LstmGenerator {
    /// G as a one-step ONNX cell (the "tokens and state in, logits and state out"), so
    /// that any engine can drive sampling: `Gather` of the token's embedding, ONNX `LSTM` over
    /// one step from the given state (gates reordered from ours, input-forget-output-cell, to
    /// ONNX's input-output-forget-cell, and transposed), `Gemm` to the logits. The state is
    /// batch-first, so every input and output has the batch on its first axis; `metadata`
    /// becomes the model's `metadata_props`.
    pub fn onnx(
        &self,
        metadata: &[(String, String)],
    ) -> Result<Vec<u8>, crate::export::ExportError> {
        use crate::export::onnx::{attr_int, int64s, tensor, GraphWriter, FLOAT, INT64};
        use crate::model::layers::Weights;
        let l = self.to_lstm();
        let (v, e, h) = (l.vocab, l.embed, l.hidden);
        // ONNX block k is our gate ORDER[k] (ours: i, f, o, c; ONNX: i, o, f, c).
        const ORDER: [usize; 4] = [0, 2, 1, 3];
        // ONNX's [1, 4H, k] of our [k, 4H]: row (block, j) is our column ORDER[block] H + j.
        let gates = |m: &[f32], k: usize| Weights {
            dims: vec![1, 4 * h, k],
            values: ORDER
                .iter()
                .flat_map(|&g| (0..h).map(move |j| g * h + j))
                .flat_map(|col| (0..k).map(move |r| m[r * 4 * h + col]))
                .collect(),
        };
        let mut bias: Vec<f32> = ORDER
            .iter()
            .flat_map(|&g| l.b[g * h..(g + 1) * h].iter().copied())
            .collect();
        bias.extend(std::iter::repeat_n(0.0, 4 * h));
        let w = |dims: Vec<usize>, values: Vec<f32>| Weights { dims, values };
        let mut g = GraphWriter::default();
        let [token, h0, c0] = ONNX_INPUTS;
        let [logits, h1, c1] = ONNX_OUTPUTS;
        g.input(token, INT64, &[None]);
        g.input(h0, FLOAT, &[None, Some(h)]);
        g.input(c0, FLOAT, &[None, Some(h)]);
        let table = g.initializer(tensor("embedding", &w(vec![v, e], l.embedding.clone())));
        let x = g.node("Gather", &[&table, token], vec![], vec![], None);
        let axis0 = g.initializer(int64s("axis0", &[0]));
        // ONNX's LSTM reads X [T = 1, N, E] and the state [directions = 1, N, H].
        let x = g.node("Unsqueeze", &[&x, &axis0], vec![], vec![], None);
        let h_in = g.node("Unsqueeze", &[h0, &axis0], vec![], vec![], None);
        let c_in = g.node("Unsqueeze", &[c0, &axis0], vec![], vec![], None);
        let params = [
            g.initializer(tensor("lstm.W", &gates(&l.w, e))),
            g.initializer(tensor("lstm.R", &gates(&l.u, h))),
            g.initializer(tensor("lstm.B", &w(vec![1, 8 * h], bias))),
        ];
        let [_, y_h, y_c] = g.node_outputs(
            "lstm",
            "LSTM",
            &[&x, &params[0], &params[1], &params[2], "", &h_in, &c_in],
            vec![attr_int("hidden_size", h as i64)],
            ["", "lstm_Y_h", "lstm_Y_c"],
        );
        g.node("Squeeze", &[&y_h, &axis0], vec![], vec![], Some(h1));
        g.node("Squeeze", &[&y_c, &axis0], vec![], vec![], Some(c1));
        let head = vec![
            tensor("weight", &w(vec![h, v], l.wo.clone())),
            tensor("bias", &w(vec![v], l.bo.clone())),
        ];
        g.node("Gemm", &[h1], head, vec![], Some(logits));
        g.output(logits, FLOAT, &[None, Some(v)]);
        g.output(h1, FLOAT, &[None, Some(h)]);
        g.output(c1, FLOAT, &[None, Some(h)]);
        use onnx_ir::Message;
        g.finish("pocketgan_seqgan", metadata)
            .write_to_bytes()
            .map_err(|e| crate::export::ExportError::Graph(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use pocketgan_runtime::engine::runner::{Runner, TractRunner, Values};

    /// The exported cell, stepped by tract through teacher-forced sequences, gives Burn's
    /// log-probability of every token within 1e-4; its state comes back batch-first.
    #[test]
    fn the_onnx_cell_steps_in_tract_as_burn_runs() {
        let device = Device::flex();
        let (vocab, len, n) = (50, 7, 3);
        // N(0, 1) weights, as the oracle's: gates far from zero, logits spread.
        let g = LstmGenerator::new(vocab, 32, 32, 1.0, 11, &device);
        let tokens: Vec<u32> = (0..n * len).map(|k| (k * 17 % vocab) as u32).collect();
        let burn = values(g.token_log_probs(token_tensor(&tokens, len, &device)));
        let onnx = g.onnx(&[]).unwrap();
        let mut cell = TractRunner::new(&onnx).unwrap();
        let names: Vec<String> = cell.inputs().iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ONNX_INPUTS);
        let (mut h, mut c) = (vec![0.0; n * 32], vec![0.0; n * 32]);
        let mut input = vec![START; n];
        for t in 0..len {
            let out = cell
                .run(
                    &[Values::Index(input.clone()), Values::F32(h), Values::F32(c)],
                    n,
                )
                .unwrap();
            let [Values::F32(logits), Values::F32(h1), Values::F32(c1)] = &out[..] else {
                panic!("three float outputs")
            };
            for s in 0..n {
                let row = &logits[s * vocab..(s + 1) * vocab];
                let max = row.iter().fold(f32::MIN, |a, &b| a.max(b));
                let lse = max + row.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
                let tok = tokens[s * len + t];
                let got = row[tok as usize] - lse;
                let want = burn[s * len + t];
                assert!(
                    (got - want).abs() <= 1e-4,
                    "step {t}, sequence {s}: {got} vs {want}"
                );
            }
            (h, c) = (h1.clone(), c1.clone());
            input = (0..n).map(|s| tokens[s * len + t]).collect();
        }
        assert!(
            c.iter().any(|v| v.abs() > 1.0),
            "the cell state should leave [-1, 1]"
        );
    }
}
