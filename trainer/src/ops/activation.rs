//! Leaky ReLU as one pass forward and one pass backward on flex.
//!
//! Burn composes `leaky_relu` from a comparison, a multiplication and `mask_where`, and its
//! backward from more of the same; on flex those generic element loops took about a tenth of the
//! DCGAN training iteration. [`leaky_relu`] takes Burn's module, so the model is unchanged.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, DType, Dispatch, DispatchDevice, Flex};
use burn::nn::LeakyRelu;
use burn::prelude::*;
use burn::tensor::Bytes;

use super::{enabled, slice};

#[backend_extension(Flex, Autodiff)]
pub trait LeakyReluBackend: Backend {
    /// `slope * x` where `x < 0`, else `x` (f32 only).
    fn fast_leaky_relu(x: FloatTensor<Self>, slope: f64) -> FloatTensor<Self>;
    /// `slope * grad` where `x < 0`, else `grad` (f32 only).
    fn fast_leaky_relu_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self>;
}

/// Elements per parallel task: large enough that scheduling costs nothing next to the loop.
const CHUNK: usize = 1 << 15;

/// `out[i] = if gate[i] < 0 { slope * v[i] } else { v[i] }` (Burn's choice at 0), as a new
/// contiguous tensor.
fn gated(gate: &FlexTensor, v: &FlexTensor, slope: f32) -> FlexTensor {
    let (gate, v) = (gate.to_contiguous(), v.to_contiguous());
    let (g, s) = (slice(&gate), slice(&v));
    assert_eq!(g.len(), s.len());
    // The factor (1 or slope) is chosen with an integer mask, not a branch: activation signs are
    // random, so a branch mispredicts half the time, and this form vectorises.
    let (one, diff) = (1.0f32.to_bits(), 1.0f32.to_bits() ^ slope.to_bits());
    let out = super::par_new(s.len(), CHUNK, |i, o| {
        let (g, s) = (&g[i * CHUNK..][..o.len()], &s[i * CHUNK..][..o.len()]);
        for ((o, g), s) in o.iter_mut().zip(g).zip(s) {
            let negative = ((*g < 0.0) as u32).wrapping_neg();
            *o = s * f32::from_bits(one ^ (negative & diff));
        }
    });
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(v.layout().shape().clone()),
        DType::F32,
    )
}

impl LeakyReluBackend for Flex {
    fn fast_leaky_relu(x: FlexTensor, slope: f64) -> FlexTensor {
        gated(&x, &x, slope as f32)
    }

    fn fast_leaky_relu_backward(x: FlexTensor, grad: FlexTensor, slope: f64) -> FlexTensor {
        gated(&x, &grad, slope as f32)
    }
}

#[derive(Debug)]
struct LeakyReluGrad;

impl<B: LeakyReluBackend> Backward<B, 1> for LeakyReluGrad {
    type State = (NodeId, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, cp: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, slope) = ops.state;
        if let Some(node) = &ops.parents[0] {
            let x: FloatTensor<B> = cp.retrieve_node_output(x_state);
            grads.register::<B>(node.id, B::fast_leaky_relu_backward(x, grad, slope));
        }
    }
}

impl<B: LeakyReluBackend, C: CheckpointStrategy> LeakyReluBackend for Autodiff<B, C> {
    fn fast_leaky_relu(x: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        match LeakyReluGrad
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), slope);
                prep.finish(state, B::fast_leaky_relu(x.into_primitive(), slope))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_leaky_relu(x.into_primitive(), slope)),
        }
    }

    fn fast_leaky_relu_backward(
        _x: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _slope: f64,
    ) -> FloatTensor<Self> {
        unreachable!("called on the inner backend only, by the backward pass")
    }
}

/// A tangent `t` through a leaky ReLU at the pre-activation `z`: `slope * t` where `z < 0` (as
/// [`leaky_relu`] decides), else `t`. The pattern is a constant, so this is the activation's
/// derivative applied to `t`: linear in `t`, with `t`'s gradient flowing back.
pub fn leaky_relu_tangent<const D: usize>(
    act: &LeakyRelu,
    z: Tensor<D>,
    t: Tensor<D>,
) -> Tensor<D> {
    let negative = z.detach().lower_elem(0.0);
    let scaled = t.clone() * act.negative_slope;
    t.mask_where(negative, scaled)
}

/// `act.forward(x)`, in one pass on flex (f32).
pub fn leaky_relu<const D: usize>(act: &LeakyRelu, x: Tensor<D>) -> Tensor<D> {
    let on_flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    if !(enabled() && on_flex && x.dtype() == DType::F32) {
        return act.forward(x);
    }
    Tensor::from_dispatch(Dispatch::fast_leaky_relu(
        x.into_dispatch(),
        act.negative_slope,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LeakyReluConfig;
    use burn::tensor::Distribution;

    #[test]
    fn forward_and_gradient_match_burn() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let act = LeakyReluConfig::new().with_negative_slope(0.2).init();
        let x = Tensor::<4>::random([3, 4, 5, 6], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<4>::random([3, 4, 5, 6], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            let x = x.clone().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * r.clone()).sum().backward();
            (
                y.inner().into_data(),
                x.grad(&grads).expect("grad").into_data(),
            )
        };
        let (y, dx) = run(&|x| leaky_relu(&act, x));
        let (y_ref, dx_ref) = run(&|x| act.forward(x));
        // Same arithmetic (one multiply per element): exactly equal.
        assert_eq!(y, y_ref);
        assert_eq!(dx, dx_ref);
        let negative: Vec<f32> = y.clone().try_into_vec().unwrap();
        assert!(negative.iter().any(|v| *v < 0.0), "test covers the slope");
    }
}
