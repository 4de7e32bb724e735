//! pocketgan runtime: int8 generators on our own kernels.
//!
//! The core (`format`, `kernels`, `interp`) is `no_std` and allocation-free: a model is a
//! validated view over the bytes of a `.pgq` file, and inference runs in an arena the caller
//! provides. Feature `std` adds the ONNX importer, the quantizer, the engines and the CLI.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

#[cfg(feature = "std")]
pub mod bench;
#[cfg(feature = "std")]
pub mod engine;
pub mod format;
#[cfg(feature = "std")]
pub mod import;
pub mod interp;
pub mod kernels;
pub mod latent;
#[cfg(feature = "std")]
pub mod limits;
#[cfg(feature = "std")]
pub mod npy;
pub mod ops;
#[cfg(feature = "std")]
pub mod peak;
#[cfg(feature = "std")]
pub mod picture;
pub mod plan;
#[cfg(feature = "std")]
pub mod quantize;
#[cfg(feature = "std")]
pub mod sample;
#[cfg(feature = "std")]
pub mod tokens;
#[cfg(feature = "std")]
pub mod translate;
#[cfg(any(feature = "std", test))]
pub mod upgrade;
#[cfg(any(feature = "std", test))]
pub mod write;

pub use format::{FormatError, Model, Node, Quant, Shape, TensorInfo, TensorKind};
pub use interp::{
    run, run_conditional, run_conditional_observed, run_graph, run_observed, Input, RunError,
};
pub use kernels::Isa;
pub use ops::Op;

/// Name of the generator's ONNX input: latent vectors `[N, latent]`.
pub const ONNX_INPUT: &str = "z";
/// Name of a conditional generator's class input: int64 `[N]`, each in `0..classes`.
pub const ONNX_CLASS_INPUT: &str = "class";
/// Name of the generator's ONNX output: images `[N, C, H, W]` in `[-1, 1]`.
pub const ONNX_OUTPUT: &str = "image";
