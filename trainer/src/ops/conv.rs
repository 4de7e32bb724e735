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
    backend_extension, AutodiffBackend, Backend, DType, Dispatch, DispatchDevice, DispatchTensor,
    Flex, TensorMetadata,
};
use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::{Bytes, Shape};

use super::kernels::{self, Geometry};
use super::slice;

/// The convolutions' forward passes and the parts of their backward passes. Both gradients of the
/// weight, and a transposed convolution's input gradient, multiply a column matrix (im2col) that a
/// backward pass computes once, or that a convolution's forward pass keeps when its weight is
/// trained. Only the inner backend's methods are ever called by the backward passes; the autodiff
/// backend's run them untracked.
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
    /// The column matrix `[K, n, oh, ow]` (`K = c_in*kh*kw`) of a convolution's input `x`.
    fn gemm_conv2d_columns(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
    /// The column matrix of a transposed convolution's output gradient `grad`: the transposed
    /// convolution of `x` is the input gradient of a convolution of its output, whose forward pass
    /// gives `x`'s gradient and whose weight gradient gives `weight`'s.
    fn gemm_conv_transpose2d_columns(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self>;
    /// The convolution `y [n, c_out, oh, ow]` from its columns `[K, n, oh, ow]`, a weight of
    /// `c_out` rows of `K` and a bias `[c_out]`.
    fn gemm_conv2d_from_columns(
        cols: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// The weight gradient `[c_out, K]` from the columns `[K, n, oh, ow]` and `dy [n, c_out, oh, ow]`.
    fn gemm_conv2d_weight_from_columns(
        cols: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// The weight gradient `[c_out, K]` of a convolution from its input, when its forward pass
    /// kept no column matrix.
    fn gemm_conv2d_weight(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, grad, options)
    }
    fn gemm_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, grad, options)
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
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    geometry(&x.shape(), &weight.shape(), o)
}

/// The geometry of an ungrouped convolution of an input and weight of these shapes.
fn geometry(x: &Shape, weight: &Shape, o: &ConvOptions<2>) -> Option<Geometry> {
    if o.groups != 1 || x.num_dims() != 4 || weight.num_dims() != 4 {
        return None;
    }
    let [n, c_in, h, w] = [x[0], x[1], x[2], x[3]];
    let [c_out, _, kh, kw] = [weight[0], weight[1], weight[2], weight[3]];
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

/// The column matrix `[K, n, oh, ow]` of `x` for the convolution `g`. The backward passes take
/// the column path only for f32 ungrouped convolutions (see [`Gradient::gemm`]), whose geometry
/// exists once their forward pass has run: the empty matrix for `None` then never occurs, and would
/// fail the kernels' size checks rather than give wrong gradients.
fn columns(g: Option<Geometry>, x: &FlexTensor) -> FlexTensor {
    let Some(g) = g else {
        return tensor(Vec::new(), vec![0, 0, 0, 0]);
    };
    let cols = kernels::columns(&g, slice(&f32s(x)));
    tensor(cols, vec![g.k(), g.n, g.oh, g.ow])
}

/// The GEMM sizes of `cols [K, n, oh, ow]` times a weight of `c_out` rows.
fn gemm_dims(cols: &FlexTensor, c_out: usize) -> kernels::GemmDims {
    let [k, n, oh, ow] = dims4(cols);
    kernels::GemmDims {
        c_out,
        k,
        n,
        l: oh * ow,
    }
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

    fn gemm_conv2d_weight(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = conv_geometry(&x, &weight, &options) else {
            return Flex::conv2d_weight_backward(x, weight, grad, options);
        };
        let dw = kernels::conv_weight_grad(&g, slice(&f32s(&x)), slice(&f32s(&grad)));
        tensor(dw, vec![g.c_out, g.k()])
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

    fn gemm_conv2d_columns(
        x: FlexTensor,
        weight: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        columns(conv_geometry(&x, &weight, &options), &x)
    }

    fn gemm_conv_transpose2d_columns(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        columns(transpose_geometry(&x, &weight, &options), &grad)
    }

    fn gemm_conv2d_from_columns(
        cols: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
    ) -> FlexTensor {
        let g = gemm_dims(&cols, weight.layout().shape()[0]);
        let (cols, weight, bias) = (f32s(&cols), f32s(&weight), f32s(&bias));
        let y = kernels::forward_from_columns(g, slice(&cols), slice(&weight), Some(slice(&bias)));
        let [_, _, oh, ow] = dims4(&cols);
        tensor(y, vec![g.n, g.c_out, oh, ow])
    }

    fn gemm_conv2d_weight_from_columns(cols: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let g = gemm_dims(&cols, dims4(&dy)[1]);
        let dw = kernels::weight_grad_from_columns(g, slice(&f32s(&cols)), slice(&f32s(&dy)));
        tensor(dw, vec![g.c_out, g.k])
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

/// x, weight, the forward pass's column matrix if it kept it, options.
type ConvState<B, O> = (NodeId, NodeId, Option<FloatTensor<B>>, O);

/// A backward pass's inputs: the layer's input, weight, output gradient and options.
struct Args<B: Backend, O> {
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    g: FloatTensor<B>,
    o: O,
}

/// What the two layer kinds differ in.
trait Gradient<B: GemmConvBackend> {
    type Options: Clone + Send + std::fmt::Debug + 'static;
    /// Whether the column path applies: f32 and ungrouped (what the kernels run); otherwise
    /// Burn's own gradients.
    fn gemm(x: &FloatTensor<B>, o: &Self::Options) -> bool;
    /// The column matrix both gradients of the column path multiply.
    fn columns(a: &Args<B, Self::Options>) -> FloatTensor<B>;
    /// Input gradient; `columns` gives the column matrix, computed at most once.
    fn x(a: &Args<B, Self::Options>, columns: &mut dyn FnMut() -> FloatTensor<B>)
        -> FloatTensor<B>;
    /// Weight gradient `[c_out, K]` (or Burn's, in the weight's shape, off the column path);
    /// `columns` as for [`Gradient::x`], `kept` whether the forward pass kept them.
    fn weight(
        a: &Args<B, Self::Options>,
        kept: bool,
        columns: &mut dyn FnMut() -> FloatTensor<B>,
    ) -> FloatTensor<B>;
}

fn gemm_dtype<B: Backend>(x: &FloatTensor<B>) -> bool {
    x.dtype() == DType::F32
}

impl<B: GemmConvBackend> Gradient<B> for ConvBackward {
    type Options = ConvOptions<2>;
    fn gemm(x: &FloatTensor<B>, o: &Self::Options) -> bool {
        gemm_dtype::<B>(x) && o.groups == 1
    }
    fn columns(a: &Args<B, Self::Options>) -> FloatTensor<B> {
        B::gemm_conv2d_columns(a.x.clone(), a.w.clone(), a.o.clone())
    }
    fn x(a: &Args<B, Self::Options>, _: &mut dyn FnMut() -> FloatTensor<B>) -> FloatTensor<B> {
        B::gemm_conv2d_x_backward(a.x.clone(), a.w.clone(), a.g.clone(), a.o.clone())
    }
    /// From the kept columns, or (a layer that runs sample by sample keeps none) from `x`.
    fn weight(
        a: &Args<B, Self::Options>,
        kept: bool,
        columns: &mut dyn FnMut() -> FloatTensor<B>,
    ) -> FloatTensor<B> {
        if kept {
            B::gemm_conv2d_weight_from_columns(columns(), a.g.clone())
        } else {
            B::gemm_conv2d_weight(a.x.clone(), a.w.clone(), a.g.clone(), a.o.clone())
        }
    }
}

impl<B: GemmConvBackend> Gradient<B> for ConvTransposeBackward {
    type Options = ConvTransposeOptions<2>;
    fn gemm(x: &FloatTensor<B>, o: &Self::Options) -> bool {
        gemm_dtype::<B>(x) && o.groups == 1 && x.shape().num_elements() > 0
    }
    fn columns(a: &Args<B, Self::Options>) -> FloatTensor<B> {
        B::gemm_conv_transpose2d_columns(a.x.clone(), a.w.clone(), a.g.clone(), a.o.clone())
    }
    /// The forward pass, without bias, of the convolution this one transposes.
    fn x(
        a: &Args<B, Self::Options>,
        columns: &mut dyn FnMut() -> FloatTensor<B>,
    ) -> FloatTensor<B> {
        if !<Self as Gradient<B>>::gemm(&a.x, &a.o) {
            return B::conv_transpose2d_x_backward(a.w.clone(), a.g.clone(), a.o.clone());
        }
        let channels = Shape::from(vec![a.x.shape()[1]]);
        let zeros = B::float_zeros(channels, &a.x.device(), a.x.dtype().into());
        B::gemm_conv2d_from_columns(columns(), a.w.clone(), zeros)
    }
    fn weight(
        a: &Args<B, Self::Options>,
        _: bool,
        columns: &mut dyn FnMut() -> FloatTensor<B>,
    ) -> FloatTensor<B> {
        if !<Self as Gradient<B>>::gemm(&a.x, &a.o) {
            return B::conv_transpose2d_weight_backward(
                a.x.clone(),
                a.w.clone(),
                a.g.clone(),
                a.o.clone(),
            );
        }
        B::gemm_conv2d_weight_from_columns(columns(), a.x.clone())
    }
}

/// The gradients of x, weight and bias, registered for the tracked parents.
fn backward<B: GemmConvBackend, G: Gradient<B>>(
    ops: Ops<ConvState<B, G::Options>, 3>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let (x_state, w_state, kept, o) = ops.state;
    let a = Args::<B, G::Options> {
        g: grads.consume::<B>(&ops.node),
        x: checkpointer.retrieve_node_output(x_state),
        w: checkpointer.retrieve_node_output(w_state),
        o,
    };
    let parents = ops.parents;
    let was_kept = kept.is_some();
    let mut cols = kept;
    let mut columns = || cols.get_or_insert_with(|| G::columns(&a)).clone();
    if let Some(node) = &parents[0] {
        grads.register::<B>(node.id, G::x(&a, &mut columns));
    }
    if let Some(node) = &parents[1] {
        let dw = G::weight(&a, was_kept, &mut columns);
        grads.register::<B>(node.id, B::float_reshape(dw, a.w.shape()));
    }
    if let Some(node) = &parents[2] {
        grads.register::<B>(node.id, B::gemm_bias_backward(a.g));
    }
}

macro_rules! backward_impl {
    ($op:ty) => {
        impl<B: GemmConvBackend> Backward<B, 3> for $op {
            type State = ConvState<B, <$op as Gradient<B>>::Options>;
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

/// Records `forward(x, weight, bias)` on the tape with `op`'s backward pass; `keep(x, weight,
/// bias, options)` returns the output and, if worth keeping for the backward pass, the columns.
macro_rules! record {
    ($op:ident, $C:ty, $x:expr, $weight:expr, $bias:expr, $options:expr, $forward:path, $keep:expr) => {{
        let (x, weight, bias, options) = ($x, $weight, $bias, $options);
        match $op
            .prepare::<$C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_id, w_id) = (prep.checkpoint(&x), prep.checkpoint(&weight));
                let keep = weight.is_tracked();
                let (out, cols) = $keep(
                    keep,
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options.clone(),
                );
                prep.finish((x_id, w_id, cols, options), out)
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

/// A convolution's forward pass, keeping its column matrix when `keep` (its weight is trained, so
/// the backward pass would compute the same matrix again), unless the layer runs sample by sample
/// ([`Geometry::by_sample`]), which never builds the whole matrix.
fn conv2d_keeping<B: GemmConvBackend>(
    keep: bool,
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let by_sample = geometry(&x.shape(), &weight.shape(), &options).is_some_and(|g| g.by_sample());
    if !keep || by_sample || !<ConvBackward as Gradient<B>>::gemm(&x, &options) {
        return (B::gemm_conv2d(x, weight, bias, options), None);
    }
    let cols = B::gemm_conv2d_columns(x, weight.clone(), options);
    (
        B::gemm_conv2d_from_columns(cols.clone(), weight, bias),
        Some(cols),
    )
}

/// A transposed convolution's forward pass keeps nothing: its columns are of the output gradient.
fn conv_transpose2d_keeping<B: GemmConvBackend>(
    _: bool,
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    options: ConvTransposeOptions<2>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    (B::gemm_conv_transpose2d(x, weight, bias, options), None)
}

/// The column-path methods on the autodiff backend run on the inner backend, untracked: only
/// backward passes call them, and those are never differentiated again.
macro_rules! untracked {
    ($method:ident($($t:ident),*; $($arg:expr),*)) => {
        Self::from_inner(B::$method($(Self::inner($t),)* $($arg),*))
    };
}

impl<B: GemmConvBackend, C: CheckpointStrategy> GemmConvBackend for Autodiff<B, C> {
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        record!(
            ConvBackward,
            C,
            x,
            weight,
            bias,
            options,
            B::gemm_conv2d,
            conv2d_keeping::<B>
        )
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
            B::gemm_conv_transpose2d,
            conv_transpose2d_keeping::<B>
        )
    }

    fn gemm_conv2d_columns(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        untracked!(gemm_conv2d_columns(x, weight; options))
    }

    fn gemm_conv_transpose2d_columns(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        untracked!(gemm_conv_transpose2d_columns(x, weight, grad; options))
    }

    fn gemm_conv2d_from_columns(
        cols: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        untracked!(gemm_conv2d_from_columns(cols, weight, bias;))
    }

    fn gemm_conv2d_weight_from_columns(
        cols: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        untracked!(gemm_conv2d_weight_from_columns(cols, dy;))
    }

    fn gemm_conv2d_weight(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        untracked!(gemm_conv2d_weight(x, weight, grad; options))
    }
}

/// Whether the GEMM ops run on this tensor's device (flex, with or without autodiff).
fn on_flex(t: &Tensor<4>) -> bool {
    super::enabled() && matches!(t.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// `conv.forward(x)`, through the GEMM path on flex.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    convolve(conv, None, x, true)
}

/// The convolution's linear part, without its bias: what a tangent (a direction, not a point)
/// goes through, as in WGAN-GP's directional derivative of D.
pub fn conv2d_linear(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    convolve(conv, None, x, false)
}

/// [`conv2d`] (or [`conv2d_linear`] without `bias`) with the weight multiplied by `scale`: the
/// equalised learning rate's run-time scaling (Progressive GAN), on the small weight rather than
/// on the activations.
pub fn conv2d_scaled(conv: &Conv2d, scale: f32, x: Tensor<4>, bias: bool) -> Tensor<4> {
    convolve(conv, Some(scale), x, bias)
}

fn convolve(conv: &Conv2d, scale: Option<f32>, x: Tensor<4>, with_bias: bool) -> Tensor<4> {
    let channels = conv.weight.dims()[0];
    let bias = if with_bias { &conv.bias } else { &None };
    // `Same` padding depends on the input size; Burn works it out (its helper is crate-private).
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some([(0, 0), (0, 0)]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([(top, bottom), (left, right)]),
        PaddingConfig2d::Same => None,
    };
    let Some(padding) = padding else {
        // Burn's own layer, the scale on its input (the same product for the linear part).
        let x = match scale {
            Some(s) => x * s,
            None => x,
        };
        return match (&conv.bias, with_bias) {
            (Some(b), false) => conv.forward(x) - b.val().reshape([1, channels, 1, 1]),
            _ => conv.forward(x),
        };
    };
    let weight = match scale {
        Some(s) => conv.weight.val() * s,
        None => conv.weight.val(),
    };
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    if !on_flex(&x) {
        let bias = bias.as_ref().map(|b| b.val());
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    Tensor::from_dispatch(Dispatch::gemm_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias_or_zeros(bias, channels, &conv.weight.device()),
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
            // CycleGAN's at batch 1: 7x7 stem on a reflection-padded 32 px image, a 3x3 stride-2
            // down-sampling, a residual block's 3x3 on its padded 8x8 map.
            (1, 3, 38, 8, 7, 1, 0, 1),
            (1, 8, 32, 16, 3, 2, 1, 1),
            (1, 32, 10, 32, 3, 1, 0, 1),
            // Progressive GAN's 3x3 over 16 maps at 32 px, and StackGAN's 64 px image layer:
            // sample by sample, in bands (`kernels::Geometry::by_sample`), keeping no columns.
            (3, 16, 32, 16, 3, 1, 1, 1),
            (2, 16, 64, 3, 3, 1, 1, 1),
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
            // CycleGAN's first up-sampling at batch 1 (8 -> 16, output padding 1).
            (1, 32, 8, 16, 3, 2, 1, 1, 1),
            // A U-Net decoder's 32 -> 16 maps, 32 -> 64 px: its forward pass (the input gradient
            // of a convolution over 16 maps of 64 px) runs sample by sample.
            (2, 32, 32, 16, 4, 2, 1, 0, 1),
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

    /// `(dx, dweight)` of `sum(f(x) * r)`, each only where requested: with a frozen weight (a
    /// discriminator in the generator's step) the forward keeps no columns, and with one
    /// gradient wanted a transposed convolution computes its columns for that one alone.
    fn partial(
        x: &Tensor<4>,
        r: &Tensor<4>,
        want_x: bool,
        weight: &Param<Tensor<4>>,
        f: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
        let x = if want_x {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        let grads = (f(x.clone()) * r.clone()).sum().backward();
        (x.grad(&grads), weight.val().grad(&grads))
    }

    #[test]
    fn gradients_of_only_x_or_only_the_weight_match_burn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([3, 5], [4, 4])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let convt = ConvTranspose2dConfig::new([5, 3], [4, 4])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .init(&device);
        let x = random([4, 3, 10, 10], &mut rng);
        let xt = random([4, 5, 5, 5], &mut rng);
        let (r, rt) = (
            random([4, 5, 5, 5], &mut rng),
            random([4, 3, 10, 10], &mut rng),
        );
        // Frozen last: `no_grad` on a clone freezes the parameter it shares with the original.
        for (want_x, frozen) in [(false, false), (true, false), (true, true)] {
            let what = format!("want dx {want_x}, frozen weight {frozen}");
            let (conv, convt) = if frozen {
                (conv.clone().no_grad(), convt.clone().no_grad())
            } else {
                (conv.clone(), convt.clone())
            };
            let cases: [(
                &Tensor<4>,
                &Tensor<4>,
                &Param<Tensor<4>>,
                &dyn Fn(Tensor<4>) -> Tensor<4>,
                &dyn Fn(Tensor<4>) -> Tensor<4>,
            ); 2] = [
                (&x, &r, &conv.weight, &|x| conv2d(&conv, x), &|x| {
                    conv.forward(x)
                }),
                (
                    &xt,
                    &rt,
                    &convt.weight,
                    &|x| conv_transpose2d(&convt, x),
                    &|x| convt.forward(x),
                ),
            ];
            for (x, r, weight, ours, burn) in cases {
                let (dx, dw) = partial(x, r, want_x, weight, ours);
                let (want_dx, want_dw) = partial(x, r, want_x, weight, burn);
                assert_eq!(dx.is_some(), want_x, "{what}");
                assert_eq!(dw.is_some(), !frozen, "{what}");
                for (ours, reference) in [(dx, want_dx), (dw, want_dw)] {
                    if let (Some(ours), Some(reference)) = (ours, reference) {
                        let d = rel_diff(ours, reference);
                        assert!(d <= 1e-4, "{what}: differs by {d:e}");
                    }
                }
            }
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
