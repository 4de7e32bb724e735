//! A stack of GRU layers, PyTorch's `nn.GRU` (`batch_first`) in its weights' layout and
//! arithmetic, so that a PyTorch script and an ONNX `GRU` (`linear_before_reset = 1`) hold the
//! same numbers:
//!
//! ```text
//! r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
//! z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
//! n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
//! h' = (1 - z) n + z h
//! ```
//!
//! Burn's own `Gru` computes the same, but with six products and a full-sequence `slice_assign`
//! per step; a GRU of TimeGAN's size (hidden 24) is all per-op overhead, so this one projects the
//! whole input sequence once (one product for every step's three gates), makes one product of
//! the state per step, and stacks the states at the end: a third of the ops.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};

use super::layers::Weights;
use crate::export::onnx::{attr_int, attr_tensor, int64s, tensor, GraphWriter};

/// One GRU layer. Gates in PyTorch's order: reset, update, new.
#[derive(Module, Debug)]
pub struct GruLayer {
    /// `[input, 3H]` (PyTorch's `weight_ih_l*`, transposed).
    pub w_ih: Param<Tensor<2>>,
    /// `[H, 3H]`.
    pub w_hh: Param<Tensor<2>>,
    /// `[3H]`.
    pub b_ih: Param<Tensor<1>>,
    pub b_hh: Param<Tensor<1>>,
    pub hidden: usize,
}

/// Values uniform in `[-k, k]`, PyTorch's initialisation of a GRU (and of a Linear, k =
/// 1/sqrt(fan_in)), as a parameter.
pub fn uniform_param<const D: usize>(
    shape: [usize; D],
    k: f32,
    rng: &mut impl Rng,
    device: &Device,
) -> Param<Tensor<D>> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-k..=k)).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), device))
}

impl GruLayer {
    pub fn new(input: usize, hidden: usize, rng: &mut impl Rng, device: &Device) -> Self {
        let k = 1.0 / (hidden as f32).sqrt();
        Self {
            w_ih: uniform_param([input, 3 * hidden], k, rng, device),
            w_hh: uniform_param([hidden, 3 * hidden], k, rng, device),
            b_ih: uniform_param([3 * hidden], k, rng, device),
            b_hh: uniform_param([3 * hidden], k, rng, device),
            hidden,
        }
    }

    /// States `[B, T, H]` for inputs `[B, T, I]`, from a zero state.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, i] = x.dims();
        let h3 = 3 * self.hidden;
        let hd = self.hidden;
        // Every step's input projection at once, time-major so that each step's rows are
        // contiguous.
        let xp = (x
            .swap_dims(0, 1)
            .reshape([t * b, i])
            .matmul(self.w_ih.val())
            + self.b_ih.val().unsqueeze())
        .reshape([t, b, h3]);
        let w_hh = self.w_hh.val();
        let b_hh: Tensor<2> = self.b_hh.val().unsqueeze();
        let mut h: Tensor<2> = Tensor::zeros([b, hd], &xp.device());
        let mut states = Vec::with_capacity(t);
        for step in 0..t {
            let xs: Tensor<2> = xp.clone().narrow(0, step, 1).reshape([b, h3]);
            let hs = h.clone().matmul(w_hh.clone()) + b_hh.clone();
            let rz = sigmoid(xs.clone().narrow(1, 0, 2 * hd) + hs.clone().narrow(1, 0, 2 * hd));
            let r = rz.clone().narrow(1, 0, hd);
            let z = rz.narrow(1, hd, hd);
            let n = tanh(xs.narrow(1, 2 * hd, hd) + r * hs.narrow(1, 2 * hd, hd));
            // h' = (1 - z) n + z h = n + z (h - n)
            h = n.clone() + z * (h - n);
            states.push(h.clone());
        }
        Tensor::stack(states, 1)
    }
}

impl GruLayer {
    /// This layer as an ONNX `GRU` (`linear_before_reset = 1`, PyTorch's arithmetic) reading the
    /// time-major value `x` `[T, N, I]`; returns its states `[T, N, H]`. ONNX orders the gates
    /// update, reset, new (PyTorch: reset, update, new) and stores `W` as `[1, 3H, I]`.
    pub fn write_onnx(&self, g: &mut GraphWriter, x: &str) -> String {
        let h = self.hidden;
        // Gate blocks in ONNX's order, each block's rows a column block of ours, transposed.
        let zrh = |w: Tensor<2>| {
            let blocks = [1, 0, 2].map(|k| w.clone().narrow(1, k * h, h).transpose());
            let w = Tensor::cat(blocks.to_vec(), 0);
            let [rows, cols] = w.dims();
            Weights {
                dims: vec![1, rows, cols],
                ..Weights::of(w)
            }
        };
        let bias = |b: Tensor<1>| {
            Tensor::cat([1, 0, 2].map(|k| b.clone().narrow(0, k * h, h)).to_vec(), 0)
        };
        let b = Tensor::cat(vec![bias(self.b_ih.val()), bias(self.b_hh.val())], 0);
        let b = Weights {
            dims: vec![1, 6 * h],
            ..Weights::of(b)
        };
        // The initial state, zeros `[1, N, H]` for the batch `N` of `x` `[T, N, I]`, written
        // out as PyTorch writes it: an engine that types the graph with a symbolic batch (tract)
        // cannot make the implicit one.
        let shape = g.node("Shape", &[x], vec![], vec![], None);
        let batch = {
            let starts = g.initializer(int64s(&format!("{shape}_starts"), &[1]));
            let ends = g.initializer(int64s(&format!("{shape}_ends"), &[2]));
            g.node("Slice", &[&shape, &starts, &ends], vec![], vec![], None)
        };
        let one = g.initializer(int64s(&format!("{batch}_one"), &[1]));
        let width = g.initializer(int64s(&format!("{batch}_hidden"), &[h as i64]));
        let dims = g.node(
            "Concat",
            &[&one, &batch, &width],
            vec![],
            vec![attr_int("axis", 0)],
            None,
        );
        // Float zeros, said explicitly: tract's default is not ONNX's float32.
        let zero = Weights {
            dims: vec![1],
            values: vec![0.0],
        };
        let fill = vec![attr_tensor("value", tensor("value", &zero))];
        let h0 = g.node("ConstantOfShape", &[&dims], vec![], fill, None);
        let node = format!("gru_{h0}");
        let param = |name: &str, w: &Weights| {
            let mut t = tensor(name, w);
            t.name = format!("{node}.{name}");
            t
        };
        let (w, r, b) = (
            g.initializer(param("W", &zrh(self.w_ih.val()))),
            g.initializer(param("R", &zrh(self.w_hh.val()))),
            g.initializer(param("B", &b)),
        );
        let y = g.named_node(
            &node,
            "GRU",
            &[x, &w, &r, &b, "", &h0],
            vec![],
            vec![
                attr_int("hidden_size", h as i64),
                attr_int("linear_before_reset", 1),
            ],
            None,
        );
        // Y is [T, directions = 1, N, H].
        let axes = g.initializer(crate::export::onnx::int64s(&format!("{y}_axes"), &[1]));
        g.node("Squeeze", &[&y, &axes], vec![], vec![], None)
    }
}

/// `layers` GRU layers, each reading the states of the one before.
#[derive(Module, Debug)]
pub struct Gru {
    pub layers: Vec<GruLayer>,
}

impl Gru {
    pub fn new(input: usize, hidden: usize, layers: usize, seed: u64, device: &Device) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Self {
            layers: (0..layers)
                .map(|l| {
                    GruLayer::new(
                        if l == 0 { input } else { hidden },
                        hidden,
                        &mut rng,
                        device,
                    )
                })
                .collect(),
        }
    }

    /// The last layer's states `[B, T, H]` for inputs `[B, T, I]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.layers.iter().fold(x, |x, layer| layer.forward(x))
    }

    /// The stack as ONNX, time-major `[T, N, I]` in, `[T, N, H]` out.
    pub fn write_onnx(&self, g: &mut GraphWriter, x: &str) -> String {
        self.layers
            .iter()
            .fold(x.to_string(), |x, layer| layer.write_onnx(g, &x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stacked, fused layer against the equations written out step by step in plain Rust.
    #[test]
    fn gru_matches_the_equations() {
        let device = Device::flex();
        let (b, t, i, h) = (2, 5, 3, 4);
        let gru = Gru::new(i, h, 1, 7, &device);
        let l = &gru.layers[0];
        let vals = |p: Tensor<2>| p.into_data().try_to_vec::<f32>().unwrap();
        let (wi, wh) = (vals(l.w_ih.val()), vals(l.w_hh.val()));
        let (bi, bh) = (
            l.b_ih.val().into_data().try_to_vec::<f32>().unwrap(),
            l.b_hh.val().into_data().try_to_vec::<f32>().unwrap(),
        );
        let x: Vec<f32> = (0..b * t * i)
            .map(|k| ((k * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let got = gru
            .forward(Tensor::from_data(
                TensorData::new(x.clone(), [b, t, i]),
                &device,
            ))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for s in 0..b {
            let mut state = vec![0f32; h];
            for step in 0..t {
                let xv = &x[(s * t + step) * i..][..i];
                let gate = |g: usize, j: usize| {
                    let col = g * h + j;
                    let xi: f32 =
                        (0..i).map(|k| xv[k] * wi[k * 3 * h + col]).sum::<f32>() + bi[col];
                    let hh: f32 =
                        (0..h).map(|k| state[k] * wh[k * 3 * h + col]).sum::<f32>() + bh[col];
                    (xi, hh)
                };
                let next: Vec<f32> = (0..h)
                    .map(|j| {
                        let (ri, rh) = gate(0, j);
                        let (zi, zh) = gate(1, j);
                        let (ni, nh) = gate(2, j);
                        let (r, z) = (sig(ri + rh), sig(zi + zh));
                        let n = (ni + r * nh).tanh();
                        (1.0 - z) * n + z * state[j]
                    })
                    .collect();
                state = next;
                for j in 0..h {
                    let g = got[(s * t + step) * h + j];
                    assert!(
                        (g - state[j]).abs() < 1e-5,
                        "b{s} t{step} h{j}: {g} vs {}",
                        state[j]
                    );
                }
            }
        }
    }
}
