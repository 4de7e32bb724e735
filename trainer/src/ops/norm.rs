//! Training-mode batch normalisation fused with the activation after it, as one parallel pass
//! forward and two backward, on flex.
//!
//! Burn 0.22 records `batch_norm_train` as one autodiff op, but its default body (which flex keeps)
//! builds the statistics and the gradient from about twenty generic tensor ops: channel-first
//! transposes of the whole activation, reductions, broadcasts, each a full pass and most of them
//! on one thread. Here the statistics are per-channel sums over data that stays in cache, and the
//! activation (ReLU, leaky ReLU) is applied in the same pass, so its backward costs nothing extra:
//! the pre-activation is recomputed from `x` and the statistics. [`batch_norm_act`] takes Burn's
//! modules, so models, checkpoints and export are unchanged; the running statistics are updated
//! exactly as `BatchNorm::forward` does.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, AutodiffBackend, Backend, DType, Dispatch, DispatchDevice, Flex,
};
use burn::nn::{BatchNorm, LeakyRelu};
use burn::prelude::*;
use burn::tensor::{Bytes, Shape};
use rayon::prelude::*;

use super::{enabled, slice};

/// The activation applied after the normalisation.
#[derive(Debug, Clone, Copy)]
pub enum Activation<'a> {
    Relu,
    LeakyRelu(&'a LeakyRelu),
    /// No activation: plain batch norm.
    Identity,
}

impl Activation<'_> {
    /// The activation as `z >= 0 ? z : slope * z`.
    fn slope(self) -> f64 {
        match self {
            Activation::Relu => 0.0,
            Activation::LeakyRelu(act) => act.negative_slope,
            Activation::Identity => 1.0,
        }
    }

    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::LeakyRelu(act) => super::activation::leaky_relu(act, x),
            Activation::Identity => x,
        }
    }
}

#[backend_extension(Flex, Autodiff)]
pub trait BatchNormActBackend: Backend {
    /// `act(gamma * (x - mean) / sqrt(var + epsilon) + beta)` per channel of `x [n, c, ...]`, with
    /// the batch's mean and biased variance, where `act(z) = z < 0 ? slope * z : z`; returns the
    /// output, the mean `[c]` and the variance `[c]` (f32 only).
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        slope: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of x, gamma and beta given the output's, from the forward's statistics.
    #[allow(clippy::too_many_arguments)]
    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        slope: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `[n, c, plane]` of a tensor of rank >= 2.
fn dims(t: &FlexTensor) -> (usize, usize, usize) {
    let s = t.layout().shape();
    (s[0], s[1], s[2..].iter().product())
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Lanes of the partial sums: wide enough that the compiler vectorises the loops (a single
/// accumulator would serialise on the add latency and could not be reordered).
const LANES: usize = 16;

/// For every channel of the `[n, c, plane]` tensors `a` and `b` (channels in parallel), the `K`
/// sums `Σ f(ch)(a[i], b[i])` over the channel's `n` planes. Partial sums stay in f32 lanes for the
/// whole channel (a few thousand values, as Burn's own f32 reductions), then add up in f64.
fn channel_sums<const K: usize, F>(
    (n, c, plane): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    f: impl Fn(usize) -> F + Sync,
) -> Vec<[f64; K]>
where
    F: Fn(f32, f32) -> [f32; K],
{
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let f = f(ch);
            let mut acc = [[0.0f32; LANES]; K];
            let mut tail = [0.0f32; K];
            for i in 0..n {
                let at = (i * c + ch) * plane;
                let (pa, pb) = (&a[at..][..plane], &b[at..][..plane]);
                let (ca, cb) = (pa.chunks_exact(LANES), pb.chunks_exact(LANES));
                for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
                    for (t, v) in tail.iter_mut().zip(f(x, y)) {
                        *t += v;
                    }
                }
                for (ca, cb) in ca.zip(cb) {
                    for l in 0..LANES {
                        let v = f(ca[l], cb[l]);
                        for k in 0..K {
                            acc[k][l] += v[k];
                        }
                    }
                }
            }
            std::array::from_fn(|k| acc[k].iter().map(|&v| v as f64).sum::<f64>() + tail[k] as f64)
        })
        .collect()
}

/// The factor the activation puts on its input's gradient: 1, or `slope` where `z < 0`.
#[inline(always)]
fn gate(z: f32, slope: f32) -> f32 {
    if z < 0.0 {
        slope
    } else {
        1.0
    }
}

/// One channel's normalisation: `x̂ = (x - mean) * inv_std`, and the affine pre-activation
/// `z = gamma * x̂ + beta = x * scale + shift`.
#[derive(Clone, Copy)]
struct Channel {
    mean: f32,
    inv_std: f32,
    scale: f32,
    shift: f32,
}

impl Channel {
    fn z(self, x: f32) -> f32 {
        x * self.scale + self.shift
    }

    fn x_hat(self, x: f32) -> f32 {
        (x - self.mean) * self.inv_std
    }
}

fn channels(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64) -> Vec<Channel> {
    (0..gamma.len())
        .map(|ch| {
            let inv_std = 1.0 / (var[ch] as f64 + eps).sqrt();
            let scale = gamma[ch] as f64 * inv_std;
            Channel {
                mean: mean[ch],
                inv_std: inv_std as f32,
                scale: scale as f32,
                shift: (beta[ch] as f64 - mean[ch] as f64 * scale) as f32,
            }
        })
        .collect()
}

impl BatchNormActBackend for Flex {
    fn fused_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        slope: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = x.layout().shape().clone();
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        let (n, c, plane) = dims(&x);
        let (xs, count) = (slice(&x), (n * plane) as f64);
        let dims = (n, c, plane);
        let mean: Vec<f32> = channel_sums(dims, xs, xs, |_| |v, _| [v])
            .into_iter()
            .map(|[s]| (s / count) as f32)
            .collect();
        // Two passes (mean, then squared deviations) rather than E[x²] - E[x]²: no cancellation.
        let var: Vec<f32> = channel_sums(dims, xs, xs, |ch| {
            let m = mean[ch];
            move |v, _| [(v - m) * (v - m)]
        })
        .into_iter()
        .map(|[s]| (s / count) as f32)
        .collect();
        let coef = channels(slice(&gamma), slice(&beta), &mean, &var, epsilon);
        let slope = slope as f32;
        let y = super::par_new(xs.len(), plane, |i, out| {
            let p = coef[i % c];
            let src = &xs[i * plane..][..out.len()];
            for (o, &v) in out.iter_mut().zip(src) {
                let z = p.z(v);
                *o = z * gate(z, slope);
            }
        });
        (
            tensor(y, shape),
            tensor(mean, Shape::new([c])),
            tensor(var, Shape::new([c])),
        )
    }

    fn fused_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
        slope: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = x.layout().shape().clone();
        let [x, gamma, beta, mean, variance, grad] =
            [x, gamma, beta, mean, variance, grad].map(|t| t.to_contiguous());
        let (n, c, plane) = dims(&x);
        let (xs, dy, g) = (slice(&x), slice(&grad), slice(&gamma));
        let coef = channels(g, slice(&beta), slice(&mean), slice(&variance), epsilon);
        let slope = slope as f32;
        // dz = dy * act'(z); the sums of dz and dz * x̂ are beta's and gamma's gradients.
        let sums = channel_sums((n, c, plane), xs, dy, |ch| {
            let p = coef[ch];
            move |x: f32, dy: f32| {
                let dz = dy * gate(p.z(x), slope);
                [dz, dz * p.x_hat(x)]
            }
        });
        // dx = gamma * inv_std * (dz - mean(dz) - x̂ * mean(dz * x̂)).
        let count = (n * plane) as f64;
        let dx = super::par_new(xs.len(), plane, |i, out| {
            let ch = i % c;
            let p = coef[ch];
            let k = g[ch] * p.inv_std;
            let [sum_dz, sum_dzx] = sums[ch];
            let (mean_dz, mean_dzx) = ((sum_dz / count) as f32, (sum_dzx / count) as f32);
            let (x, dy) = (&xs[i * plane..][..out.len()], &dy[i * plane..][..out.len()]);
            for ((o, &x), &dy) in out.iter_mut().zip(x).zip(dy) {
                let dz = dy * gate(p.z(x), slope);
                *o = k * (dz - mean_dz - p.x_hat(x) * mean_dzx);
            }
        });
        let dgamma = sums.iter().map(|[_, s]| *s as f32).collect();
        let dbeta = sums.iter().map(|[s, _]| *s as f32).collect();
        (
            tensor(dx, shape),
            tensor(dgamma, Shape::new([c])),
            tensor(dbeta, Shape::new([c])),
        )
    }
}

#[derive(Debug)]
struct BatchNormActGrad;

/// x, gamma and beta on the tape; the forward's statistics; epsilon and slope.
type BnState<B> = (
    NodeId,
    NodeId,
    NodeId,
    FloatTensor<B>,
    FloatTensor<B>,
    f64,
    f64,
);

impl<B: BatchNormActBackend> Backward<B, 3> for BatchNormActGrad {
    type State = BnState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, cp: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, mean, variance, epsilon, slope) = ops.state;
        let x: FloatTensor<B> = cp.retrieve_node_output(x);
        let gamma: FloatTensor<B> = cp.retrieve_node_output(gamma);
        let beta: FloatTensor<B> = cp.retrieve_node_output(beta);
        let (dx, dgamma, dbeta) = B::fused_batch_norm_train_backward(
            x, gamma, beta, mean, variance, grad, epsilon, slope,
        );
        for (parent, g) in ops.parents.iter().zip([dx, dgamma, dbeta]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: BatchNormActBackend, C: CheckpointStrategy> BatchNormActBackend for Autodiff<B, C> {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        slope: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = BatchNormActGrad
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (y, mean, var) = B::fused_batch_norm_train(
            x.clone().into_primitive(),
            gamma.clone().into_primitive(),
            beta.clone().into_primitive(),
            epsilon,
            slope,
        );
        let y = match prepared {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&gamma),
                    prep.checkpoint(&beta),
                    mean.clone(),
                    var.clone(),
                    epsilon,
                    slope,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn fused_batch_norm_train_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _mean: FloatTensor<Self>,
        _variance: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _epsilon: f64,
        _slope: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("called on the inner backend only, by the backward pass")
    }
}

/// `act(bn.forward(x))`. In training mode on flex (f32) it is one fused op, and the running
/// statistics are updated as Burn's `BatchNorm::forward` updates them; otherwise Burn's layers run.
pub fn batch_norm_act<const D: usize>(bn: &BatchNorm, x: Tensor<D>, act: Activation) -> Tensor<D> {
    let device = x.device();
    let training = device.is_autodiff() && bn.training.is_enabled();
    let on_flex = matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    if !(enabled()
        && training
        && on_flex
        && x.dtype() == DType::F32
        && x.shape().num_elements() > 0)
    {
        return act.apply(bn.forward(x));
    }
    let (y, mean, var) = Dispatch::fused_batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        act.slope(),
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        (running_mean.mul_scalar(1.0 - momentum) + mean.detach().mul_scalar(momentum)).detach(),
    );
    bn.running_var.update(
        (running_var.mul_scalar(1.0 - momentum) + var.detach().mul_scalar(momentum)).detach(),
    );
    Tensor::from_dispatch(y)
}

/// `act(InstanceNorm(x))` without affine parameters (PyTorch's `InstanceNorm2d` default, which
/// CycleGAN uses): each sample's channel normalised by its own mean and biased variance. Instance
/// norm of `[N, C, H, W]` is batch norm of `[1, N*C, H, W]` with gamma 1 and beta 0, so on flex
/// (f32) it runs the fused batch-norm pass above, activation included; elsewhere Burn's ops.
pub fn instance_norm_act(x: Tensor<4>, epsilon: f64, act: Activation) -> Tensor<4> {
    let device = x.device();
    let on_flex = matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    let [n, c, h, w] = x.dims();
    if !(enabled() && on_flex && x.dtype() == DType::F32 && n * c * h * w > 0) {
        let mean = x.clone().mean_dim(3).mean_dim(2);
        let centred = x - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(3).mean_dim(2);
        return act.apply(centred / (var + epsilon).sqrt());
    }
    // Constants: no gradient is asked of them (their backward is computed and dropped, a
    // per-channel sum, small beside the pass over the activations).
    let ones = Tensor::<1>::ones([n * c], &device);
    let zeros = Tensor::<1>::zeros([n * c], &device);
    let (y, _mean, _var) = Dispatch::fused_batch_norm_train(
        x.reshape([1, n * c, h, w]).into_dispatch(),
        ones.into_dispatch(),
        zeros.into_dispatch(),
        epsilon,
        act.slope(),
    );
    Tensor::<4>::from_dispatch(y).reshape([n, c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{BatchNormConfig, LeakyReluConfig};
    use burn::tensor::Distribution;

    /// Largest difference relative to the reference's largest magnitude.
    fn rel_diff<const D: usize>(ours: Tensor<D>, reference: Tensor<D>) -> f32 {
        let scale = reference.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (ours - reference).abs().max().into_scalar::<f32>() / scale
    }

    #[test]
    fn forward_gradients_and_running_statistics_match_burn() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let leaky = LeakyReluConfig::new().with_negative_slope(0.2).init();
        // (shape, activation): the DCGAN's layers, an odd plane, and a rank-2 input.
        let cases: [(Vec<usize>, Activation); 4] = [
            (vec![16, 8, 7, 7], Activation::Relu),
            (vec![5, 6, 3, 5], Activation::LeakyRelu(&leaky)),
            (vec![4, 3, 9, 1], Activation::Identity),
            (vec![9, 4, 1, 1], Activation::Relu),
        ];
        for (shape, act) in cases {
            let c = shape[1];
            // Non-trivial affine parameters and an offset input, so no term of the gradient vanishes.
            let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
            // A fresh layer per run: clones share their running statistics.
            let layer = || {
                let mut bn = BatchNormConfig::new(c).init(&device);
                bn.gamma = Param::from_tensor(gamma.clone());
                bn.beta = Param::from_tensor(beta.clone());
                bn
            };
            let dims: [usize; 4] = shape.clone().try_into().expect("rank 4");
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.3, 2.0), &device);
            let r = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let run = |f: &dyn Fn(&BatchNorm, Tensor<4>) -> Tensor<4>| {
                let bn = layer();
                let x = x.clone().require_grad();
                let y = f(&bn, x.clone());
                let grads = (y.clone() * r.clone()).sum().backward();
                let grad = |t: Tensor<1>| t.grad(&grads).expect("parameter gradient");
                (
                    y.inner(),
                    x.grad(&grads).expect("x gradient"),
                    grad(bn.gamma.val()),
                    grad(bn.beta.val()),
                    bn.running_mean.value(),
                    bn.running_var.value(),
                )
            };
            let ours = run(&|bn, x| batch_norm_act(bn, x, act));
            let reference = run(&|bn, x| act.apply(bn.forward(x)));
            let what = format!("{shape:?} {act:?}");
            assert!(rel_diff(ours.0, reference.0) < 1e-5, "{what}: output");
            assert!(rel_diff(ours.1, reference.1) < 1e-4, "{what}: dx");
            assert!(rel_diff(ours.2, reference.2) < 1e-4, "{what}: dgamma");
            assert!(rel_diff(ours.3, reference.3) < 1e-4, "{what}: dbeta");
            assert!(rel_diff(ours.4, reference.4) < 1e-5, "{what}: running mean");
            assert!(
                rel_diff(ours.5, reference.5) < 1e-5,
                "{what}: running variance"
            );
        }
    }

    #[test]
    fn outside_training_it_is_burns_inference_path() {
        let device = Device::flex();
        let bn = BatchNormConfig::new(3).init(&device);
        bn.running_mean
            .update(Tensor::from_floats([0.5, -1.0, 2.0], &device));
        let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let ours = batch_norm_act(&bn, x.clone(), Activation::Relu);
        let reference = burn::tensor::activation::relu(bn.forward(x));
        assert_eq!(ours.into_data(), reference.into_data());
    }

    /// Instance norm through the fused pass equals Burn's `InstanceNorm` (affine off) and its
    /// gradient, on autodiff flex and on plain flex; every output channel has mean 0, variance 1.
    #[test]
    fn instance_norm_matches_burn_and_normalises() {
        use burn::nn::InstanceNormConfig;
        let device = Device::flex().autodiff();
        device.seed(5);
        let leaky = LeakyReluConfig::new().with_negative_slope(0.2).init();
        for (dims, act) in [
            ([2, 3, 5, 7], Activation::Identity),
            ([1, 4, 8, 8], Activation::Relu),
            ([3, 2, 4, 4], Activation::LeakyRelu(&leaky)),
        ] {
            let norm = InstanceNormConfig::new(dims[1])
                .with_affine(false)
                .init(&device);
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.7, 3.0), &device);
            let r = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let run = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
                let x = x.clone().require_grad();
                let y = f(x.clone());
                let grads = (y.clone() * r.clone()).sum().backward();
                (y.inner(), x.grad(&grads).expect("x gradient"))
            };
            let ours = run(&|x| instance_norm_act(x, 1e-5, act));
            let reference = run(&|x| act.apply(norm.forward(x)));
            assert!(
                rel_diff(ours.0.clone(), reference.0) < 1e-5,
                "{dims:?}: output"
            );
            assert!(rel_diff(ours.1, reference.1) < 1e-4, "{dims:?}: dx");
            let plain = instance_norm_act(x.clone().inner(), 1e-5, act);
            assert!(rel_diff(plain, ours.0) < 1e-6, "{dims:?}: plain flex");
        }
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(4.0, 2.0), &device);
        let y = instance_norm_act(x, 1e-5, Activation::Identity).inner();
        let mean = y.clone().mean_dim(3).mean_dim(2);
        let var = (y - mean.clone()).powi_scalar(2).mean_dim(3).mean_dim(2);
        assert!(mean.abs().max().into_scalar::<f32>() < 1e-5);
        assert!((var - 1.0).abs().max().into_scalar::<f32>() < 1e-3);
    }
}
