//! Exporting the generator for the runtime: ONNX with a dynamic batch axis.

pub mod onnx;

use std::path::{Path, PathBuf};

pub use onnx::{export_generator, OnnxMetadata};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("burn-onnx could not lower the generator: {0}")]
    Lower(String),
    #[error("the exported graph is malformed: {0}")]
    Graph(String),
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Run(String),
}

/// Export the newest checkpoint of a run to `out` (default `RUN/generator.onnx`); returns the path.
pub fn export_run(run: &Path, out: Option<&Path>) -> Result<PathBuf, ExportError> {
    use crate::train::{load_latest, RunDir};
    use burn::module::Module;
    let dir = RunDir(run.to_path_buf());
    let config = dir
        .read_config()
        .map_err(|e| ExportError::Run(e.to_string()))?;
    let device = burn::prelude::Device::flex();
    let state = load_latest(&dir, &config, &device.clone().autodiff())
        .map_err(|e| ExportError::Run(e.to_string()))?;
    let meta = OnnxMetadata::new(&config, state.step);
    let file = out.map(Path::to_path_buf).unwrap_or_else(|| dir.onnx());
    let bytes = export_generator(&state.generator.valid(), &meta)?;
    crate::checkpoint::write_atomic(&file, &bytes).map_err(|e| ExportError::Io {
        file: file.clone(),
        source: e,
    })?;
    Ok(file)
}
