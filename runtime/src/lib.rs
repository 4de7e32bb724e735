//! pocketgan runtime: int8 generators on our own kernels.
//!
//! Two sides, one folder each. `src/device/` (format, ops, plan, interpreter, kernels, latent) is
//! `no_std` and allocation-free: a model is a validated view over the bytes of a `.pgq` file, and
//! inference runs in an arena the caller provides. `src/host/` (feature `std`) adds the ONNX
//! importer, the quantizer, the engines and what the CLI (`src/main.rs`) is built from.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

// The device side (`src/device/`): `no_std`, allocation-free, what a microcontroller runs.
#[path = "device/format.rs"]
pub mod format;
#[path = "device/interp.rs"]
pub mod interp;
#[path = "device/kernels/mod.rs"]
pub mod kernels;
#[path = "device/latent.rs"]
pub mod latent;
#[path = "device/ops/mod.rs"]
pub mod ops;
#[path = "device/plan.rs"]
pub mod plan;

// The host side (`src/host/`, feature `std`): the importer, the quantizer, the engines and the
// CLI's building blocks. The encoder (`write`) and the format upgrade are also built for the
// device side's tests.
#[cfg(feature = "std")]
#[path = "host/bench.rs"]
pub mod bench;
#[cfg(feature = "std")]
#[path = "host/engine/mod.rs"]
pub mod engine;
#[cfg(feature = "std")]
#[path = "host/import/mod.rs"]
pub mod import;
#[cfg(feature = "std")]
#[path = "host/limits.rs"]
pub mod limits;
#[cfg(feature = "std")]
#[path = "host/npy.rs"]
pub mod npy;
#[cfg(feature = "std")]
#[path = "host/peak.rs"]
pub mod peak;
#[cfg(feature = "std")]
#[path = "host/picture.rs"]
pub mod picture;
#[cfg(feature = "std")]
#[path = "host/quantize/mod.rs"]
pub mod quantize;
#[cfg(feature = "std")]
#[path = "host/sample.rs"]
pub mod sample;
#[cfg(feature = "std")]
#[path = "host/text.rs"]
pub mod text;
#[cfg(feature = "std")]
#[path = "host/tokens.rs"]
pub mod tokens;
#[cfg(feature = "std")]
#[path = "host/translate.rs"]
pub mod translate;
#[cfg(any(feature = "std", test))]
#[path = "host/upgrade.rs"]
pub mod upgrade;
#[cfg(any(feature = "std", test))]
#[path = "host/write.rs"]
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
