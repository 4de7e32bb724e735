//! Exporting a generator for the runtime: ONNX with a dynamic batch axis. (A run's export, from
//! its newest checkpoint, is `run::export_run`.)

pub mod onnx;

pub use onnx::{export_generator, OnnxMetadata};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("burn-onnx could not lower the generator: {0}")]
    Lower(String),
    #[error("the exported graph is malformed: {0}")]
    Graph(String),
}
