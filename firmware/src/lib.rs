//! pocketgan firmware: filled by the firmware issue. It builds against the runtime's no_std core.
#![no_std]

pub use pocketgan_runtime::{ONNX_INPUT, ONNX_OUTPUT};
