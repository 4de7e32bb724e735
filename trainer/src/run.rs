//! The run folder: its layout, `config.json`, checkpoints, sample pictures and ONNX exports.
//! (`metrics.csv` and `loss_curve.png` are [`crate::history`].)

use std::path::{Path, PathBuf};

use burn::prelude::Device;

use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::error::{io_err, TrainError};
use crate::family::{self, Family};

/// A run folder.
pub struct RunDir(pub PathBuf);

/// A family restored from a run's newest readable checkpoint, and the iterations it holds.
pub struct Restored {
    pub family: Box<dyn Family>,
    pub step: u64,
    /// Newer checkpoints that could not be restored, each with why, newest first: the run fell
    /// back past them (callers say so).
    pub skipped: Vec<(PathBuf, TrainError)>,
}

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    pub fn loss_curve(&self) -> PathBuf {
        self.0.join("loss_curve.png")
    }
    pub fn quality(&self) -> PathBuf {
        self.0.join("quality.csv")
    }
    /// The generator's ONNX file (families with one generator).
    pub fn onnx(&self) -> PathBuf {
        self.0.join("generator.onnx")
    }

    pub fn read_config(&self) -> Result<TrainConfig, TrainError> {
        let file = self.config();
        let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
        serde_json::from_str(&text).map_err(|e| TrainError::BadRun {
            file,
            reason: format!("bad config: {e}"),
        })
    }

    pub fn write_config(&self, config: &TrainConfig) -> Result<(), TrainError> {
        let file = self.config();
        let json = serde_json::to_string_pretty(config).map_err(|e| TrainError::BadRun {
            file: file.clone(),
            reason: format!("cannot write the config: {e}"),
        })?;
        checkpoint::write_atomic(&file, json.as_bytes()).map_err(io_err(&file))
    }

    /// Create the folder and its subfolders.
    pub fn create(&self) -> Result<(), TrainError> {
        for dir in [self.0.clone(), self.checkpoints(), self.samples()] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }

    /// Write `family`'s checkpoint after `step` iterations, keeping the newest `keep`.
    pub fn save_checkpoint(
        &self,
        family: &dyn Family,
        step: u64,
        keep: usize,
    ) -> Result<(), TrainError> {
        let dir = self.checkpoints();
        Checkpoint {
            step,
            sections: family.save()?,
        }
        .write(&dir.join(checkpoint::file_name(step)))?;
        checkpoint::prune(&dir, keep).map_err(io_err(&dir))
    }

    /// The newest checkpoint that restores into `config`'s family. A corrupt or truncated one
    /// (killed mid-write on a filesystem without atomic renames, a disk error) is passed over
    /// for the next older, and listed in [`Restored::skipped`]; if none restores, the newest's
    /// error.
    pub fn load_latest(
        &self,
        config: &TrainConfig,
        device: &Device,
    ) -> Result<Restored, TrainError> {
        let (family, step, skipped) =
            self.restore_latest(|ckpt, file| family::restore(config, device, ckpt, file))?;
        Ok(Restored {
            family,
            step,
            skipped,
        })
    }

    /// The newest checkpoint that `restore` accepts, with its step and the newer ones passed
    /// over (newest first, each with why); only a checkpoint's own faults fall back.
    pub fn restore_latest<T>(
        &self,
        restore: impl Fn(&Checkpoint, &Path) -> Result<T, TrainError>,
    ) -> Result<(T, u64, Vec<(PathBuf, TrainError)>), TrainError> {
        let all = checkpoint::list(&self.checkpoints());
        if all.is_empty() {
            return Err(TrainError::NothingToResume(self.0.clone()));
        }
        let mut skipped = Vec::new();
        for (_, file) in all.into_iter().rev() {
            let restored = Checkpoint::read(&file)
                .map_err(TrainError::from)
                .and_then(|ckpt| Ok((restore(&ckpt, &file)?, ckpt.step)));
            match restored {
                Ok((value, step)) => return Ok((value, step, skipped)),
                // Only the checkpoint's own faults fall back; missing data or a device does not.
                Err(e @ (TrainError::Checkpoint(_) | TrainError::Record { .. })) => {
                    skipped.push((file, e))
                }
                Err(e) => return Err(e),
            }
        }
        Err(skipped.swap_remove(0).1)
    }

    /// The newest checkpoint step, if any.
    pub fn latest_step(&self) -> Option<u64> {
        checkpoint::list(&self.checkpoints()).last().map(|c| c.0)
    }

    /// `samples/step_NNNNNN.png`.
    pub fn save_samples(
        &self,
        family: &dyn Family,
        config: &TrainConfig,
        step: u64,
        device: &Device,
    ) -> Result<(), TrainError> {
        let name = format!("step_{step:06}.png");
        self.save_picture(family, config, step, device, &name)
    }

    /// The family's picture after `step` iterations, as `samples/NAME`.
    pub fn save_picture(
        &self,
        family: &dyn Family,
        config: &TrainConfig,
        step: u64,
        device: &Device,
        name: &str,
    ) -> Result<(), TrainError> {
        let file = self.samples().join(name);
        family
            .sample_picture(config, step, device)?
            .save(&file)
            .map_err(|e| TrainError::BadRun {
                file,
                reason: e.to_string(),
            })
    }
}

/// What [`export_run`] wrote, and from which checkpoint.
#[derive(Debug)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    pub step: u64,
    /// Newer checkpoints passed over because they could not be restored ([`Restored::skipped`]).
    pub skipped: Vec<(PathBuf, TrainError)>,
}

/// Export the newest readable checkpoint of a run: its ONNX file(s) in the run folder, or a
/// family's one file to `out`.
pub fn export_run(run: &Path, out: Option<&Path>) -> Result<Exported, TrainError> {
    let dir = RunDir(run.to_path_buf());
    let config = dir.read_config()?;
    let device = Device::flex();
    let restored = dir.load_latest(&config, &device.autodiff())?;
    let files = restored
        .family
        .export(&config.onnx_metadata(restored.step))?;
    let single = files.len() == 1;
    let files = files
        .into_iter()
        .map(|f| {
            let path = match out {
                Some(out) if single => out.to_path_buf(),
                Some(out) => out.join(&f.name),
                None => dir.0.join(&f.name),
            };
            checkpoint::write_atomic(&path, &f.bytes).map_err(io_err(&path))?;
            Ok(path)
        })
        .collect::<Result<_, TrainError>>()?;
    Ok(Exported {
        files,
        step: restored.step,
        skipped: restored.skipped,
    })
}
