//! pocketgan trainer: train GANs with Burn on real and toy data, export the generator to ONNX.
//!
//! The modules, each depending only on those listed before it (no import circles):
//!
//! - `ops` (Burn flex backend extensions), `render` (pictures), `checkpoint` (the file format),
//!   `device` (choosing a backend) and `data` (datasets, batch order, data splits): leaves.
//! - `model`: the networks, layer by layer (data, ops).
//! - `loss`: the adversarial games and the auxiliary class terms (model).
//! - `export`: a generator's layers as an ONNX graph (model); its metadata reads `config`.
//! - `config`: [`config::TrainConfig`], the run configuration and the command line's flags
//!   (data, device, loss, model).
//! - `error`: [`error::TrainError`] (checkpoint, data, device, export).
//! - `history`: `metrics.csv` and the loss curve (render, error).
//! - `family`: the [`family::Family`] trait and its implementations, each owning its networks,
//!   optimizers, iteration, sample picture and export (config, data, model, loss, export, history).
//! - `run`: the run folder: config.json, checkpoints, samples, exports (family, checkpoint).
//! - `metrics`: how good a generator is (`eval`) and the quality watch during training (run,
//!   family, data; its `classifier` and `watch` only data, model and checkpoint).
//! - `train`: the loop that drives a family and writes the run folder (run, family, history,
//!   metrics::watch).
//! - `bench`: times the reference training iteration (family).
//!
//! (`export` reads [`config::TrainConfig`] for the metadata, and `config` nothing of `export`.)

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod family;
pub mod history;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod render;
pub mod run;
pub mod train;
