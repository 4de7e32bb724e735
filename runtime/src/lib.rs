//! pocketgan runtime. The core is `no_std`; the int8 model format, kernels and interpreter
//! arrive with the runtime issue. Today it only names the ONNX contract the trainer writes.
#![cfg_attr(not(feature = "std"), no_std)]

/// Name of the generator's ONNX input: latent vectors `[N, latent]`.
pub const ONNX_INPUT: &str = "z";
/// Name of the generator's ONNX output: images `[N, C, H, W]` in `[-1, 1]`.
pub const ONNX_OUTPUT: &str = "image";
