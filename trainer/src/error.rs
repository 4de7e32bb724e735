//! The error of training, resuming, exporting and evaluating a run: shared by the modules that
//! work on a run, so that it sits below them all.

use std::path::{Path, PathBuf};

use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::device::DeviceUnavailable;
use crate::export::ExportError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Device(#[from] DeviceUnavailable),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    BadRun { file: PathBuf, reason: String },
    #[error("{file}: cannot restore weights: {reason}")]
    Record { file: PathBuf, reason: String },
    #[error("{what} became {value} at step {step}: training diverged. {kept}; try a lower learning rate or another loss")]
    NonFinite {
        what: &'static str,
        value: f32,
        step: u64,
        /// What the run folder still holds, and how to go on from it.
        kept: String,
    },
    #[error("no checkpoint in {0}: train the run first")]
    NothingToResume(PathBuf),
    #[error("{0} already holds a run: pass --resume to continue it, or choose another --out")]
    RunExists(PathBuf),
    #[error("ONNX export failed: {0}")]
    Export(#[from] ExportError),
}

/// Maps an I/O error on `file` to [`TrainError::Io`].
pub fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io {
        file: file.to_path_buf(),
        source: e,
    }
}
