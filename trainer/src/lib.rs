//! pocketgan trainer: train GANs with Burn on real and toy data, export the generator to ONNX.
//!
//! The modules, each importing only modules listed before it (the graph is acyclic; intra-doc
//! links aside):
//!
//! - `ops` (Burn flex backend extensions), `checkpoint` (the file format), `device` (choosing a
//!   backend), `data` (datasets, batch order, batches, the train/held-out split): leaves.
//! - `render`: pictures (data).
//! - `model`: the networks, layer by layer (data, ops).
//! - `loss`: the adversarial games and the auxiliary class terms (model).
//! - `export`: a generator's layers as an ONNX graph; `GraphWriter` writes any acyclic graph
//!   (model).
//! - `error`: [`error::TrainError`] (checkpoint, data, device, export).
//! - `config`: [`config::TrainConfig`], the run configuration and the `train` command line, and
//!   the exported model's metadata (data, device, model, loss, export, error).
//! - `history`: `metrics.csv` and the loss curve (checkpoint, render, error).
//! - `family`: the [`family::Family`] trait, its registry and its implementations, each owning its
//!   networks, optimizers, iteration, checkpoint sections, sample picture and export (config,
//!   data, model, loss, export, history, checkpoint, render, error).
//! - `run`: the run folder: config.json, checkpoints, samples, exports (family, config,
//!   checkpoint, error).
//! - `metrics`: how good a generator is (`eval`), and the quality watch during training (run,
//!   family, config, data, model, checkpoint, error).
//! - `train`: the loop that drives a family and writes the run folder (run, family, history,
//!   metrics, config, data, model, error).
//! - `bench`: times the reference training iteration (family, config, data, device, model, loss,
//!   ops, error).

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
