//! Progressive GAN's LeakyReLU + pixel norm as one pass forward and one pass backward on flex.
//!
//! `y = a / sqrt(mean_c a^2 + eps)` with `a = leaky_relu(x)`, each position's channel vector
//! scaled to unit mean square. Burn composes it from five element loops forward (square, mean,
//! add, root, divide) and about twice as many backward, over every activation of G; fused, each
//! direction is one loop. Its gradient, with `r = (mean_c a^2 + eps)^(-1/2)`:
//! `da_k = r dy_k - a_k r^3 mean_c(a_c dy_c)`, then through LeakyReLU's slope.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, DType, Dispatch, DispatchDevice, Flex};
use burn::prelude::*;
use burn::tensor::Bytes;

use super::{enabled, par_new, slice};

#[backend_extension(Flex, Autodiff)]
pub trait PixelNormBackend: Backend {
    /// `pixel_norm(leaky_relu(x, slope), eps)` over axis 1 of `[N, C, H, W]` (f32 only).
    fn fast_pixel_norm_act(x: FloatTensor<Self>, slope: f64, eps: f64) -> FloatTensor<Self>;
    /// Its gradient with respect to `x`, given the output's gradient.
    fn fast_pixel_norm_act_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f64,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// `[N, C, H * W]` of a 4-D tensor.
fn dims(t: &FlexTensor) -> [usize; 3] {
    let s = t.layout().shape();
    [s[0], s[1], s[2] * s[3]]
}

fn tensor_like(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(like.layout().shape().clone()),
        DType::F32,
    )
}

/// LeakyReLU's value and slope at `x` (Burn's choice at 0: the identity).
fn act(x: f32, slope: f32) -> (f32, f32) {
    if x < 0.0 {
        (x * slope, slope)
    } else {
        (x, 1.0)
    }
}

/// Each position's `r = (mean_c a^2 + eps)^(-1/2)` for one sample `x` `[C, P]`.
fn inverse_rms(x: &[f32], c: usize, p: usize, slope: f32, eps: f32) -> Vec<f32> {
    let mut sum = vec![0.0f32; p];
    for ch in 0..c {
        for (s, &v) in sum.iter_mut().zip(&x[ch * p..(ch + 1) * p]) {
            let a = act(v, slope).0;
            *s += a * a;
        }
    }
    sum.iter()
        .map(|s| 1.0 / (s / c as f32 + eps).sqrt())
        .collect()
}

impl PixelNormBackend for Flex {
    fn fast_pixel_norm_act(x: FlexTensor, slope: f64, eps: f64) -> FlexTensor {
        let x = x.to_contiguous();
        let [n, c, p] = dims(&x);
        let (s, slope, eps) = (slice(&x), slope as f32, eps as f32);
        let out = par_new(n * c * p, (c * p).max(1), |i, o| {
            let x = &s[i * c * p..][..o.len()];
            let r = inverse_rms(x, c, p, slope, eps);
            for ch in 0..c {
                let (o, x) = (&mut o[ch * p..(ch + 1) * p], &x[ch * p..(ch + 1) * p]);
                for ((o, &x), &r) in o.iter_mut().zip(x).zip(&r) {
                    *o = act(x, slope).0 * r;
                }
            }
        });
        tensor_like(out, &x)
    }

    fn fast_pixel_norm_act_backward(
        x: FlexTensor,
        grad: FlexTensor,
        slope: f64,
        eps: f64,
    ) -> FlexTensor {
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let [n, c, p] = dims(&x);
        let (s, g, slope, eps) = (slice(&x), slice(&grad), slope as f32, eps as f32);
        let out = par_new(n * c * p, (c * p).max(1), |i, o| {
            let (x, g) = (&s[i * c * p..][..o.len()], &g[i * c * p..][..o.len()]);
            let r = inverse_rms(x, c, p, slope, eps);
            // mean_c(a_c dy_c) per position.
            let mut dot = vec![0.0f32; p];
            for ch in 0..c {
                let (x, g) = (&x[ch * p..(ch + 1) * p], &g[ch * p..(ch + 1) * p]);
                for ((d, &x), &g) in dot.iter_mut().zip(x).zip(g) {
                    *d += act(x, slope).0 * g;
                }
            }
            for ch in 0..c {
                let range = ch * p..(ch + 1) * p;
                let (o, x, g) = (&mut o[range.clone()], &x[range.clone()], &g[range]);
                for ((((o, &x), &g), &r), &d) in o.iter_mut().zip(x).zip(g).zip(&r).zip(&dot) {
                    let (a, da_dx) = act(x, slope);
                    *o = (r * g - a * r * r * r * d / c as f32) * da_dx;
                }
            }
        });
        tensor_like(out, &x)
    }
}

#[derive(Debug)]
struct PixelNormActGrad;

impl<B: PixelNormBackend> Backward<B, 1> for PixelNormActGrad {
    type State = (NodeId, f64, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, cp: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, slope, eps) = ops.state;
        if let Some(node) = &ops.parents[0] {
            let x: FloatTensor<B> = cp.retrieve_node_output(x_state);
            let dx = B::fast_pixel_norm_act_backward(x, grad, slope, eps);
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: PixelNormBackend, C: CheckpointStrategy> PixelNormBackend for Autodiff<B, C> {
    fn fast_pixel_norm_act(x: FloatTensor<Self>, slope: f64, eps: f64) -> FloatTensor<Self> {
        match PixelNormActGrad
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), slope, eps);
                let y = B::fast_pixel_norm_act(x.into_primitive(), slope, eps);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fast_pixel_norm_act(x.into_primitive(), slope, eps))
            }
        }
    }

    fn fast_pixel_norm_act_backward(
        _x: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _slope: f64,
        _eps: f64,
    ) -> FloatTensor<Self> {
        unreachable!("called on the inner backend only, by the backward pass")
    }
}

/// `pixel_norm(leaky_relu(x))` over the channels of `[N, C, H, W]`, in one pass on flex (f32);
/// elsewhere composed from Burn's ops, with the same definition.
pub fn pixel_norm_act(x: Tensor<4>, slope: f64, eps: f64) -> Tensor<4> {
    let on_flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    if !(enabled() && on_flex && x.dtype() == DType::F32) {
        let a = burn::tensor::activation::leaky_relu(x, slope);
        let mean_square = a.clone().powi_scalar(2).mean_dim(1);
        return a / (mean_square + eps).sqrt();
    }
    Tensor::from_dispatch(Dispatch::fast_pixel_norm_act(x.into_dispatch(), slope, eps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The fused op and its gradient equal Burn's composition (ops off), on flex with autodiff.
    #[test]
    fn matches_the_composed_definition_forward_and_backward() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([3, 5, 4, 6], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([3, 5, 4, 6], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let y = if fused {
                pixel_norm_act(x.clone(), 0.2, 1e-8)
            } else {
                let a = burn::tensor::activation::leaky_relu(x.clone(), 0.2);
                a.clone() / (a.powi_scalar(2).mean_dim(1) + 1e-8).sqrt()
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
            (v(y.detach()), dx.into_data().try_to_vec::<f32>().unwrap())
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-4);
        assert!(close(&y, &y_ref), "forward");
        assert!(close(&dx, &dx_ref), "backward");
    }
}
