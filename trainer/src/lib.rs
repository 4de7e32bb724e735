//! pocketgan trainer: train GANs with Burn on real and toy data, export the generator to ONNX.
//!
//! `data` loads datasets, `model` builds G and D, `loss` defines the games, `train` runs the loop
//! and writes a run folder, `checkpoint` stores state safely, `export` writes `generator.onnx`,
//! `metrics` says how good a generator is (`eval`),
//! `bench` times the reference training iteration.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod export;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod render;
pub mod train;
