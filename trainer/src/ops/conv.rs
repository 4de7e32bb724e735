//! 2-D convolution and transposed convolution as batched GEMMs ([`super::kernels`]) on Burn's
//! flex CPU backend, with a hand-written backward pass, through Burn's backend-extension mechanism.
//!
//! Burn's autodiff differentiates a convolution through `ModuleOps::conv2d_weight_backward` and
//! friends, whose default (which flex keeps) is a dilated convolution with batch and channels
//! swapped: many tiny GEMMs and transposes. Here each pass of each layer is one GEMM over the batch.
//! [`conv2d`] and [`conv_transpose2d`] take Burn's own modules, so parameters, checkpoints and
//! export are unchanged; on any other device, dtype or grouped convolution they call Burn's op.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ConvOptions, ConvTransposeOptions, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Backend, DType, Dispatch, DispatchDevice, DispatchTensor, Flex,
    TensorMetadata,
};
use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::{Bytes, Shape};

use super::kernels::{self, Geometry};
use super::slice;

/// The convolutions' forward passes and the gradients their backward passes call. The gradients'
/// default bodies are Burn's (what the autodiff backend uses, as it never differentiates them again);
/// flex overrides them all with the GEMM kernels.
#[backend_extension(Flex, Autodiff)]
pub trait GemmConvBackend: Backend {
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
    fn gemm_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self>;
    fn gemm_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, grad, options)
    }
    fn gemm_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, grad, options)
    }
    fn gemm_conv_transpose2d_x_backward(
        _x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d_x_backward(weight, grad, options)
    }
    fn gemm_conv_transpose2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d_weight_backward(x, weight, grad, options)
    }
    /// Bias gradient: `grad [n, c, h, w]` summed to `[c]`.
    fn gemm_bias_backward(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let c = grad.shape()[1];
        let g = Self::float_sum_dim(Self::float_sum_dim(grad, 3), 2);
        Self::float_reshape(Self::float_sum_dim(g, 0), Shape::from(vec![c]))
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// The geometry of a plain (ungrouped) f32 convolution, or `None` when Burn's op must run it.
fn conv_geometry(x: &FlexTensor, weight: &FlexTensor, o: &ConvOptions<2>) -> Option<Geometry> {
    if o.groups != 1 || x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let [n, c_in, h, w] = dims4(x);
    let [c_out, _, kh, kw] = dims4(weight);
    let out = |len: usize, k: usize, d: usize, s: usize, (pb, pe): (usize, usize)| {
        (len + pb + pe)
            .checked_sub(d * (k - 1) + 1)
            .map(|v| v / s + 1)
    };
    Some(Geometry {
        n,
        c_in,
        h,
        w,
        c_out,
        oh: out(h, kh, o.dilation[0], o.stride[0], o.padding[0])?,
        ow: out(w, kw, o.dilation[1], o.stride[1], o.padding[1])?,
        kernel: [kh, kw],
        stride: o.stride,
        pad: o.padding_begin(),
        dilation: o.dilation,
    })
}

/// A transposed convolution `x [n, c_in, h, w] -> y [n, c_out, oh, ow]` (weight
/// `[c_in, c_out, kh, kw]`) is the input gradient of the convolution `y -> x` whose weight is the
/// same tensor read as `[c_out' = c_in, c_in' = c_out, kh, kw]`: this returns that convolution.
fn transpose_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    o: &ConvTransposeOptions<2>,
) -> Option<Geometry> {
    if o.groups != 1 || x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let [n, c_in, h, w] = dims4(x);
    let [_, c_out, kh, kw] = dims4(weight);
    let out = |len: usize, k: usize, i: usize| {
        ((len - 1) * o.stride[i] + o.dilation[i] * (k - 1) + o.padding_out[i] + 1)
            .checked_sub(2 * o.padding[i])
    };
    if n * c_in * h * w == 0 {
        return None;
    }
    Some(Geometry {
        n,
        c_in: c_out,
        h: out(h, kh, 0)?,
        w: out(w, kw, 1)?,
        c_out: c_in,
        oh: h,
        ow: w,
        kernel: [kh, kw],
        stride: o.stride,
        pad: o.padding,
        dilation: o.dilation,
    })
}

fn f32s(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape)),
        DType::F32,
    )
}

impl GemmConvBackend for Flex {
    fn gemm_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = conv_geometry(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, Some(bias), options);
        };
        let (x, weight, bias) = (f32s(&x), f32s(&weight), f32s(&bias));
        let y = kernels::conv_forward(&g, slice(&x), slice(&weight), Some(slice(&bias)));
        tensor(y, vec![g.n, g.c_out, g.oh, g.ow])
    }

    fn gemm_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = conv_geometry(&x, &weight, &options) else {
            return Flex::conv2d_x_backward(x, weight, grad, options);
        };
        let dx = kernels::conv_input_grad(&g, slice(&f32s(&weight)), slice(&f32s(&grad)));
        tensor(dx, vec![g.n, g.c_in, g.h, g.w])
    }

    fn gemm_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = conv_geometry(&x, &weight, &options) else {
            return Flex::conv2d_weight_backward(x, weight, grad, options);
        };
        let dw = kernels::conv_weight_grad(&g, slice(&f32s(&x)), slice(&f32s(&grad)));
        tensor(dw, vec![g.c_out, g.c_in, g.kernel[0], g.kernel[1]])
    }

    fn gemm_conv_transpose2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        let Some(g) = transpose_geometry(&x, &weight, &options) else {
            return Flex::conv_transpose2d(x, weight, Some(bias), options);
        };
        let y = kernels::conv_input_grad(&g, slice(&f32s(&weight)), slice(&f32s(&x)));
        let y = kernels::add_channel_bias(y, g.h * g.w, slice(&f32s(&bias)));
        tensor(y, vec![g.n, g.c_in, g.h, g.w])
    }

    fn gemm_conv_transpose2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        let Some(g) = transpose_geometry(&x, &weight, &options) else {
            return Flex::conv_transpose2d_x_backward(weight, grad, options);
        };
        let dx = kernels::conv_forward(&g, slice(&f32s(&grad)), slice(&f32s(&weight)), None);
        tensor(dx, vec![g.n, g.c_out, g.oh, g.ow])
    }

    fn gemm_conv_transpose2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        let Some(g) = transpose_geometry(&x, &weight, &options) else {
            return Flex::conv_transpose2d_weight_backward(x, weight, grad, options);
        };
        let dw = kernels::conv_weight_grad(&g, slice(&f32s(&grad)), slice(&f32s(&x)));
        tensor(dw, vec![g.c_out, g.c_in, g.kernel[0], g.kernel[1]])
    }

    fn gemm_bias_backward(grad: FlexTensor) -> FlexTensor {
        let [n, c, h, w] = dims4(&grad);
        if grad.dtype() != DType::F32 {
            let g = Flex::float_sum_dim(Flex::float_sum_dim(grad, 3), 2);
            return Flex::float_reshape(Flex::float_sum_dim(g, 0), Shape::from(vec![c]));
        }
        let db = kernels::bias_grad(slice(&f32s(&grad)), n, c, h * w);
        tensor(db, vec![c])
    }
}

/// Autodiff: record the op with a backward pass that calls the backend's GEMM gradients.
#[derive(Debug)]
struct ConvBackward;
#[derive(Debug)]
struct ConvTransposeBackward;

type ConvState<O> = (NodeId, NodeId, O);

/// What both layer kinds share: their gradients from `(x, weight, grad, options)`.
trait Gradient<B: GemmConvBackend> {
    type Options: Clone + Send + std::fmt::Debug + 'static;
    fn x(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        g: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B>;
    fn weight(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        g: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B>;
}

macro_rules! gradient_impl {
    ($op:ty, $options:ty, $x:ident, $weight:ident) => {
        impl<B: GemmConvBackend> Gradient<B> for $op {
            type Options = $options;
            fn x(
                x: FloatTensor<B>,
                w: FloatTensor<B>,
                g: FloatTensor<B>,
                o: Self::Options,
            ) -> FloatTensor<B> {
                B::$x(x, w, g, o)
            }
            fn weight(
                x: FloatTensor<B>,
                w: FloatTensor<B>,
                g: FloatTensor<B>,
                o: Self::Options,
            ) -> FloatTensor<B> {
                B::$weight(x, w, g, o)
            }
        }
    };
}
gradient_impl!(
    ConvBackward,
    ConvOptions<2>,
    gemm_conv2d_x_backward,
    gemm_conv2d_weight_backward
);
gradient_impl!(
    ConvTransposeBackward,
    ConvTransposeOptions<2>,
    gemm_conv_transpose2d_x_backward,
    gemm_conv_transpose2d_weight_backward
);

/// The gradients of x, weight and bias, registered for the tracked parents.
fn backward<B: GemmConvBackend, G: Gradient<B>>(
    ops: Ops<ConvState<G::Options>, 3>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let grad = grads.consume::<B>(&ops.node);
    let (x_state, w_state, options) = ops.state;
    let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
    let weight: FloatTensor<B> = checkpointer.retrieve_node_output(w_state);
    let parents = ops.parents;
    if let Some(node) = &parents[0] {
        let dx = G::x(x.clone(), weight.clone(), grad.clone(), options.clone());
        grads.register::<B>(node.id, dx);
    }
    if let Some(node) = &parents[1] {
        let dw = G::weight(x, weight, grad.clone(), options);
        grads.register::<B>(node.id, dw);
    }
    if let Some(node) = &parents[2] {
        grads.register::<B>(node.id, B::gemm_bias_backward(grad));
    }
}

macro_rules! backward_impl {
    ($op:ty) => {
        impl<B: GemmConvBackend> Backward<B, 3> for $op {
            type State = ConvState<<$op as Gradient<B>>::Options>;
            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                backward::<B, $op>(ops, grads, checkpointer)
            }
        }
    };
}
backward_impl!(ConvBackward);
backward_impl!(ConvTransposeBackward);

/// Records `forward(x, weight, bias)` on the tape with `op`'s backward pass.
macro_rules! record {
    ($op:ident, $C:ty, $x:expr, $weight:expr, $bias:expr, $options:expr, $forward:path) => {{
        let (x, weight, bias, options) = ($x, $weight, $bias, $options);
        match $op
            .prepare::<$C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&weight),
                    options.clone(),
                );
                let out = $forward(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options,
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish($forward(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }};
}

impl<B: GemmConvBackend, C: CheckpointStrategy> GemmConvBackend for Autodiff<B, C> {
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        record!(ConvBackward, C, x, weight, bias, options, B::gemm_conv2d)
    }

    fn gemm_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        record!(
            ConvTransposeBackward,
            C,
            x,
            weight,
            bias,
            options,
            B::gemm_conv_transpose2d
        )
    }
}

/// Whether the GEMM ops run on this tensor's device (flex, with or without autodiff).
fn on_flex(t: &Tensor<4>) -> bool {
    super::enabled() && matches!(t.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// `conv.forward(x)`, through the GEMM path on flex.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !on_flex(&x) {
        return conv.forward(x);
    }
    // `Same` padding depends on the input size; Burn works it out (its helper is crate-private).
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    Tensor::from_dispatch(Dispatch::gemm_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias_or_zeros(&conv.bias, conv.weight.dims()[0], &conv.weight.device()),
        options,
    ))
}

/// The layer's bias, or a constant 0 for a layer without one (the extension takes no `Option`).
fn bias_or_zeros(
    bias: &Option<Param<Tensor<1>>>,
    channels: usize,
    device: &Device,
) -> DispatchTensor {
    match bias {
        Some(b) => b.val().into_dispatch(),
        None => Tensor::<1>::zeros([channels], device).into_dispatch(),
    }
}

/// `conv.forward(x)` for a transposed convolution, through the GEMM path on flex.
pub fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    if !on_flex(&x) {
        return conv.forward(x);
    }
    let options = ConvTransposeOptions::new(
        conv.stride,
        conv.padding,
        conv.padding_out,
        conv.dilation,
        conv.groups,
    );
    Tensor::from_dispatch(Dispatch::gemm_conv_transpose2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias_or_zeros(&conv.bias, conv.weight.dims()[1], &conv.weight.device()),
        options,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};

    fn random<const D: usize>(shape: [usize; D], rng: &mut rand::rngs::StdRng) -> Tensor<D> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_data(TensorData::new(v, shape), &Device::flex().autodiff())
    }

    fn max_abs(t: Tensor<4>) -> f32 {
        t.abs().max().into_scalar::<f32>()
    }

    /// Largest difference relative to the reference's largest magnitude.
    fn rel_diff<const D: usize>(ours: Tensor<D>, reference: Tensor<D>) -> f32 {
        assert_eq!(ours.dims(), reference.dims());
        let scale = max_abs(reference.clone().reshape([1, 1, 1, -1])).max(1e-6);
        max_abs((ours - reference).reshape([1, 1, 1, -1])) / scale
    }

    struct Grads {
        y: Tensor<4>,
        x: Tensor<4>,
        weight: Tensor<4>,
        bias: Tensor<1>,
    }

    /// Runs `f(x)`, back-propagates `sum(y * r)` and returns y and the three gradients.
    fn run(
        x: &Tensor<4>,
        r: &Tensor<4>,
        weight: &Param<Tensor<4>>,
        bias: &Option<Param<Tensor<1>>>,
        f: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> Grads {
        let x = x.clone().require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * r.clone()).sum().backward();
        let bias = bias.as_ref().expect("bias");
        Grads {
            y: y.inner(),
            x: x.grad(&grads).expect("x grad"),
            weight: weight.val().grad(&grads).expect("weight grad"),
            bias: bias.val().grad(&grads).expect("bias grad"),
        }
    }

    fn assert_close(ours: Grads, reference: Grads, what: &str) {
        for (name, d) in [
            ("y", rel_diff(ours.y, reference.y)),
            ("dx", rel_diff(ours.x, reference.x)),
            ("dweight", rel_diff(ours.weight, reference.weight)),
            ("dbias", rel_diff(ours.bias, reference.bias)),
        ] {
            assert!(d <= 1e-4, "{what}: {name} differs by {d:e} (relative)");
        }
    }

    #[test]
    fn conv2d_forward_and_gradients_match_burn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let device = Device::flex().autodiff();
        // (n, c_in, side, c_out, kernel, stride, padding, dilation): the DCGAN's k4 s2 p1 layers
        // at 28 -> 14 -> 7, then odd shapes.
        let cases = [
            (64, 1, 28, 64, 4, 2, 1, 1),
            (8, 64, 14, 128, 4, 2, 1, 1),
            (3, 3, 9, 5, 3, 1, 1, 1),
            (2, 4, 11, 3, 3, 2, 0, 2),
            (5, 2, 6, 7, 1, 1, 0, 1),
            (2, 3, 10, 4, 5, 3, 2, 1),
        ];
        for (n, c_in, side, c_out, k, s, p, d) in cases {
            let conv = Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_dilation([d, d])
                .init(&device);
            let mut conv = conv;
            conv.weight = Param::from_tensor(random([c_out, c_in, k, k], &mut rng));
            conv.bias = Some(Param::from_tensor(random::<1>([c_out], &mut rng)));
            let x = random([n, c_in, side, side], &mut rng);
            let out = conv.forward(x.clone()).dims();
            let r = random(out, &mut rng);
            let reference = run(&x, &r, &conv.weight, &conv.bias, |x| conv.forward(x));
            let ours = run(&x, &r, &conv.weight, &conv.bias, |x| conv2d(&conv, x));
            assert_close(
                ours,
                reference,
                &format!("conv {n}x{c_in}x{side} -> {c_out} k{k} s{s} p{p} d{d}"),
            );
        }
    }

    #[test]
    fn conv_transpose2d_forward_and_gradients_match_burn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let device = Device::flex().autodiff();
        // (n, c_in, side, c_out, kernel, stride, padding, output padding, dilation): the DCGAN's
        // 7 -> 14 -> 28 and 4 -> 8 layers, then odd shapes.
        let cases = [
            (8, 128, 7, 64, 4, 2, 1, 0, 1),
            (64, 64, 14, 1, 4, 2, 1, 0, 1),
            (4, 16, 4, 8, 4, 2, 1, 0, 1),
            (3, 3, 5, 2, 3, 2, 1, 1, 1),
            (2, 4, 6, 3, 3, 1, 0, 0, 2),
            (2, 2, 5, 3, 5, 3, 2, 2, 1),
        ];
        for (n, c_in, side, c_out, k, s, p, op, d) in cases {
            let mut conv = ConvTranspose2dConfig::new([c_in, c_out], [k, k])
                .with_stride([s, s])
                .with_padding([p, p])
                .with_padding_out([op, op])
                .with_dilation([d, d])
                .init(&device);
            conv.weight = Param::from_tensor(random([c_in, c_out, k, k], &mut rng));
            conv.bias = Some(Param::from_tensor(random::<1>([c_out], &mut rng)));
            let x = random([n, c_in, side, side], &mut rng);
            let out = conv.forward(x.clone()).dims();
            let r = random(out, &mut rng);
            let reference = run(&x, &r, &conv.weight, &conv.bias, |x| conv.forward(x));
            let ours = run(&x, &r, &conv.weight, &conv.bias, |x| {
                conv_transpose2d(&conv, x)
            });
            assert_close(
                ours,
                reference,
                &format!("convT {n}x{c_in}x{side} -> {c_out} k{k} s{s} p{p} op{op} d{d}"),
            );
        }
    }

    #[test]
    fn without_autodiff_and_without_bias_the_forward_matches_burn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let device = Device::flex();
        let mut conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_bias(false)
            .init(&device);
        conv.weight = Param::from_tensor(random([4, 3, 3, 3], &mut rng).inner());
        let x = random([2, 3, 8, 8], &mut rng).inner();
        assert!(rel_diff(conv2d(&conv, x.clone()), conv.forward(x)) <= 1e-5);
    }
}
