//! The ops of the int8 graph, one module per op.
//!
//! Each module holds everything about its op: the parsed view over its body and the body's
//! validation ([`OpKind::parse`]), the shape it computes from its input tensors
//! ([`OpKind::output`]), its int8 execution on the kernels ([`OpKind::run`]) and, with `std`,
//! its encoding, its ONNX import (`import`: the tract op read into the float op it implements),
//! that float op in plain f32 (`reference`) and its quantization from it (`quantize`). The
//! registry at the bottom of this file gives each op its tag in the `.pgq` format and generates
//! [`Op`], the enum the parser, planner and interpreter dispatch on (a `match`, not a trait
//! object: the firmware's no-panic proof follows every call statically).
//!
//! To add an op: write `ops/NAME.rs` with a struct implementing [`OpKind`], then add one line to
//! the `registry!` below with a new tag; with `std`, one line each in the importer's walker
//! (`import`), the float executor (`reference`) and the quantizer (`quantize`). See README's
//! "Architecture" section.

use crate::format::{FormatError, Reader, Shape, TensorInfo, TensorKind};
use crate::interp::RunError;
use crate::kernels::Isa;
use core::ops::Range;

pub mod gemm;
#[cfg(test)]
mod tests;

/// What an op needs of the arena's shared GEMM tiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    /// Padded reduction depth of the activation tile's rows.
    pub tile_depth: usize,
    /// Row length of the output tile (ops that scatter GEMM results rather than writing them in
    /// place).
    pub tile_out: usize,
}

/// Everything an op's execution may use besides its input and output tensors.
pub struct Cx<'s> {
    pub isa: Isa,
    pub batch: usize,
    /// `TILE_ROWS x max tile depth` bytes.
    pub tile: &'s mut [i8],
    /// `TILE_ROWS x max tile_out` bytes.
    pub tile_out: &'s mut [i8],
    /// The values of the node's class-index input, one per sample (empty if it has none).
    pub indices: &'s [u32],
}

/// One kind of op.
pub trait OpKind<'a>: Sized {
    /// Name shown by `inspect` and in errors.
    const NAME: &'static str;
    /// Reads and validates the op's body (everything that does not depend on its inputs).
    fn parse(body: &mut Reader<'a>, index: usize) -> Result<Self, FormatError>;
    /// Checks the node's input tensors (count, kinds, shapes, quantization) and returns the
    /// shape of one sample of its output.
    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError>;
    /// GEMM tiles the op uses.
    fn scratch(&self) -> Scratch {
        Scratch::default()
    }
    /// The output may take its first input's storage when nothing reads that input later: `run`
    /// then gets an empty slice as its first input, whose values are already in `y` (an
    /// elementwise op computes `y[i]` from `x0[i]` alone, so it may overwrite as it goes).
    const IN_PLACE: bool = false;
    /// Integer multiply-adds per sample, given the first input's shape.
    fn macs(&self) -> usize {
        0
    }
    /// Parameters the op stores (weights, biases, tables), as the float model counts them.
    fn params(&self) -> usize {
        0
    }
    /// Computes `y` (the batch's outputs, NHWC) from `x` (the batch's int8 inputs in node order;
    /// class-index inputs are in `cx.indices` instead).
    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError>;
    /// Output rows of one sample that [`OpKind::run_rows`] computes apart, so that a std engine
    /// can split one sample's layer over threads (an image's rows are contiguous in NHWC); 0
    /// where the op does not split: cheap ops, and paths that need the whole sample at once.
    fn rows(&self, _isa: Isa) -> usize {
        0
    }
    /// Computes output rows `rows` of one sample (`cx.batch` is 1) into `y`, which holds just
    /// those rows: the same bytes [`OpKind::run`] writes there.
    fn run_rows(
        &self,
        _cx: &mut Cx,
        _x: &[&[i8]],
        _y: &mut [i8],
        _rows: Range<usize>,
    ) -> Result<(), RunError> {
        Err(RunError::Internal("rows of an op that does not split"))
    }
}

/// `Ok` if `inputs` holds exactly `n` int8 tensors (the common case), else the op's error.
pub(crate) fn int8_inputs(
    inputs: &[TensorInfo],
    n: usize,
    index: usize,
) -> Result<(), FormatError> {
    if inputs.len() != n {
        return Err(FormatError::Op {
            index,
            reason: "wrong number of inputs",
        });
    }
    if inputs.iter().any(|t| t.kind != TensorKind::Int8) {
        return Err(FormatError::Op {
            index,
            reason: "inputs must be int8 tensors",
        });
    }
    Ok(())
}

/// `Ok` if `actual` has the layout of `expected`, else a shape error.
pub(crate) fn expect_shape(
    expected: Shape,
    actual: Shape,
    index: usize,
) -> Result<(), FormatError> {
    if expected.same_layout(actual) {
        Ok(())
    } else {
        Err(FormatError::Shape {
            index,
            expected,
            actual,
        })
    }
}

/// `Ok` if an op's recorded input zero point is its input tensor's.
pub(crate) fn expect_zero_point(
    recorded: i8,
    input: &TensorInfo,
    index: usize,
) -> Result<(), FormatError> {
    if recorded == input.quant.zero_point {
        Ok(())
    } else {
        Err(FormatError::Op {
            index,
            reason: "input zero point differs from the input tensor's",
        })
    }
}

// Slices of the arena, by checked accessors: inference must not be able to panic, and every
// size already follows from what the parser checked, so a failure here is a bug reported as
// `RunError::Internal`.

pub(crate) fn part<'s, T>(
    s: &'s [T],
    r: impl core::slice::SliceIndex<[T], Output = [T]>,
    what: &'static str,
) -> Result<&'s [T], RunError> {
    s.get(r).ok_or(RunError::Internal(what))
}

pub(crate) fn part_mut<'s, T>(
    s: &'s mut [T],
    r: impl core::slice::SliceIndex<[T], Output = [T]>,
    what: &'static str,
) -> Result<&'s mut [T], RunError> {
    s.get_mut(r).ok_or(RunError::Internal(what))
}

pub(crate) fn split_mut<'s, T>(
    s: &'s mut [T],
    at: usize,
    what: &'static str,
) -> Result<(&'s mut [T], &'s mut [T]), RunError> {
    s.split_at_mut_checked(at).ok_or(RunError::Internal(what))
}

pub(crate) fn copy(dst: &mut [i8], src: &[i8], what: &'static str) -> Result<(), RunError> {
    if dst.len() != src.len() {
        return Err(RunError::Internal(what));
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// `n`, or 1 for 0: a chunk size the compiler can see is non-zero (parsed sizes never are 0).
#[inline]
pub(crate) fn nz(n: usize) -> usize {
    n.max(1)
}

/// The registry: `Variant = tag => module::Type,` per op. Generates the modules, [`Op`] and
/// its dispatch.
macro_rules! registry {
    ($($(#[$attr:meta])* $variant:ident = $tag:literal => $module:ident :: $ty:ty,)*) => {
        $($(#[$attr])* pub mod $module;)*
        $($(#[$attr])* pub use $module::$variant;)*

        /// Each op's tag in the `.pgq` format.
        pub mod tag {
            $($(#[$attr])* #[allow(non_upper_case_globals)] pub const $variant: u8 = $tag;)*
        }

        /// One validated op.
        #[derive(Clone, Copy, Debug)]
        pub enum Op<'a> {
            $($(#[$attr])* $variant($ty),)*
        }

        impl<'a> Op<'a> {
            /// Parses the body of an op with `tag`. Not inlined, nor are the ops' parsers: on a
            /// microcontroller each would otherwise add its locals to its caller's frame.
            #[inline(never)]
            pub fn parse(tag: u8, body: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
                match tag {
                    $($(#[$attr])* $tag => Ok(Op::$variant(<$ty as OpKind>::parse(body, index)?)),)*
                    _ => Err(FormatError::UnknownOp { index, tag }),
                }
            }
            pub fn name(&self) -> &'static str {
                match self { $($(#[$attr])* Op::$variant(_) => <$ty as OpKind>::NAME,)* }
            }
            pub fn tag(&self) -> u8 {
                match self { $($(#[$attr])* Op::$variant(_) => $tag,)* }
            }
            pub fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
                match self { $($(#[$attr])* Op::$variant(op) => op.output(inputs, index),)* }
            }
            pub fn scratch(&self) -> Scratch {
                match self { $($(#[$attr])* Op::$variant(op) => op.scratch(),)* }
            }
            pub fn in_place(&self) -> bool {
                match self { $($(#[$attr])* Op::$variant(_) => <$ty as OpKind>::IN_PLACE,)* }
            }
            /// [`OpKind::IN_PLACE`] of the op with `tag` (false for an unknown tag), without
            /// parsing its body: the planner reads only the nodes' links.
            pub fn in_place_tag(tag: u8) -> bool {
                match tag {
                    $($(#[$attr])* $tag => <$ty as OpKind>::IN_PLACE,)*
                    _ => false,
                }
            }
            pub fn macs(&self) -> usize {
                match self { $($(#[$attr])* Op::$variant(op) => op.macs(),)* }
            }
            pub fn params(&self) -> usize {
                match self { $($(#[$attr])* Op::$variant(op) => op.params(),)* }
            }
            pub fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
                match self { $($(#[$attr])* Op::$variant(op) => op.run(cx, x, y),)* }
            }
            pub fn rows(&self, isa: Isa) -> usize {
                match self { $($(#[$attr])* Op::$variant(op) => op.rows(isa),)* }
            }
            pub fn run_rows(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8], rows: Range<usize>) -> Result<(), RunError> {
                match self { $($(#[$attr])* Op::$variant(op) => op.run_rows(cx, x, y, rows),)* }
            }
        }
    };
}

registry! {
    Linear = 1 => linear::Linear<'a>,
    Conv2d = 2 => conv::Conv2d<'a>,
    ConvTranspose2d = 3 => conv_transpose::ConvTranspose2d<'a>,
    Lut = 4 => lut::Lut<'a>,
    Reshape = 5 => reshape::Reshape,
    Flatten = 6 => flatten::Flatten,
    Upsample = 7 => upsample::Upsample,
    Embed = 8 => embed::Embed<'a>,
    // The graph ops of image-to-image generators, behind the feature `graph-ops` (on with `std`):
    // a microcontroller build that runs DCGAN chains leaves their code out of its flash.
    #[cfg(any(feature = "graph-ops", test))]
    Add = 9 => add::Add,
    #[cfg(any(feature = "graph-ops", test))]
    Mul = 10 => mul::Mul,
    #[cfg(any(feature = "graph-ops", test))]
    Concat = 11 => concat::Concat<'a>,
    #[cfg(any(feature = "graph-ops", test))]
    Pad = 12 => pad::Pad,
    #[cfg(any(feature = "graph-ops", test))]
    InstanceNorm = 13 => instance_norm::InstanceNorm<'a>,
    // Recurrent generators (TimeGAN).
    #[cfg(any(feature = "graph-ops", test))]
    Gru = 14 => gru::Gru<'a>,
    // A gate's share of a recurrent cell's products (SeqGAN's LSTM cell).
    #[cfg(any(feature = "graph-ops", test))]
    Slice = 15 => slice::Slice,
    // Progressive GAN's pixel normalisation, behind its own feature `pixel-norm` (on with `std`).
    #[cfg(any(feature = "pixel-norm", test))]
    PixelNorm = 16 => pixel_norm::PixelNorm,
}
