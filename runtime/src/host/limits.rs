//! The documented limits of every request, checked before anything is allocated, so that an
//! oversized request is an error naming the limit instead of an abort ("memory allocation of
//! 25 GB failed") or a machine swapping to death. The README's "Limits" section lists them.
//!
//! The `pocketgan` command checks its requests (`--n`, `--interpolate`, `--calib`, `--threads`,
//! the files it reads) against them before allocating; engines check their batch, the importer
//! every tensor per sample, tract's plans their bytes; `pocketgan-train` checks the batch, the
//! image side, a batch's bytes and the networks' parameters before building anything.

/// Most samples in one request: `generate --n`, `--interpolate` frames, `--latents` rows,
/// `eval --n`, an engine's batch.
pub const MAX_BATCH: usize = 65_536;
/// Most calibration samples (`quantize --calib`).
pub const MAX_CALIB: usize = 16_384;
/// Most threads of one request (`--threads`).
pub const MAX_THREADS: usize = 256;
/// Most values (elements) of one sample of any tensor of a model: its declared output and every
/// intermediate, at batch 1 (2^26: a 4096 x 4096 x 4 picture).
pub const MAX_SAMPLE_ELEMENTS: usize = 1 << 26;
/// Most bytes of one tensor of a whole batch (an output, an intermediate, the latents), 2 GiB.
pub const MAX_TENSOR_BYTES: usize = 2 << 30;
/// Largest model, latent or calibration file read (`.onnx`, `.pgq`, `.npy`), 1 GiB: every file
/// the `pocketgan` command reads goes through [`read_file`].
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest image side, in pixels, of a training run (`--size`).
pub const MAX_TRAIN_SIDE: usize = 1024;
/// Largest training batch (`--batch`).
pub const MAX_TRAIN_BATCH: usize = 4096;
/// Most parameters a training run's networks may have together, as counted from the
/// configuration before any is allocated (2^28; with gradients and Adam's two moments about
/// 4 GiB).
pub const MAX_TRAIN_PARAMETERS: u128 = 1 << 28;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{what} is {value}, over the limit of {limit} (see README, Limits)")]
    Over {
        what: String,
        value: u128,
        limit: u128,
    },
}

/// `Ok` if `value <= limit`, else [`LimitError::Over`] naming `what`.
pub fn check(what: &str, value: u128, limit: u128) -> Result<(), LimitError> {
    if value > limit {
        return Err(LimitError::Over {
            what: what.into(),
            value,
            limit,
        });
    }
    Ok(())
}

/// Checks `n` samples of `per_sample` f32 values: `n <= MAX_BATCH`, `per_sample <=
/// MAX_SAMPLE_ELEMENTS` and the batch's bytes `<= MAX_TENSOR_BYTES`.
pub fn check_batch(what: &str, n: usize, per_sample: usize) -> Result<(), LimitError> {
    check(what, n as u128, MAX_BATCH as u128)?;
    check(
        "one sample's values",
        per_sample as u128,
        MAX_SAMPLE_ELEMENTS as u128,
    )?;
    check(
        &format!("the bytes of {what} x {per_sample} values"),
        n as u128 * per_sample as u128 * 4,
        MAX_TENSOR_BYTES as u128,
    )
}

/// Why a file could not be read.
#[cfg(feature = "std")]
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a regular file (a device, FIFO or folder); give a file")]
    NotAFile { path: std::path::PathBuf },
    #[error("{path} is over the {limit}-byte file limit (see README, Limits)")]
    TooLarge {
        path: std::path::PathBuf,
        limit: u64,
    },
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]: devices (`/dev/zero`), FIFOs and folders
/// are refused before opening (opening a FIFO would wait for a writer), and the read stops one
/// byte past the limit, so a file growing while read cannot exhaust memory either.
#[cfg(feature = "std")]
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, ReadError> {
    read_file_capped(path, MAX_FILE_BYTES)
}

/// [`read_file`] with another cap.
#[cfg(feature = "std")]
pub fn read_file_capped(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let io = |source| ReadError::Io {
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile { path: path.into() });
    }
    let too_large = || ReadError::TooLarge {
        path: path.into(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(io)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn devices_and_folders_are_refused_and_files_capped() {
        let e = read_file(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let dir = tempfile_dir();
        assert!(matches!(
            read_file(&dir).unwrap_err(),
            ReadError::NotAFile { .. }
        ));
        let f = dir.join("f");
        std::fs::write(&f, [1u8; 10]).unwrap();
        assert_eq!(read_file_capped(&f, 10).unwrap().len(), 10);
        assert!(matches!(
            read_file_capped(&f, 9).unwrap_err(),
            ReadError::TooLarge { .. }
        ));
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pocketgan-limits-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn batches_are_checked_without_overflow() {
        assert!(check_batch("--n", 64, 3 * 64 * 64).is_ok());
        assert!(check_batch("--n", 100_000_000, 16).is_err());
        assert!(check_batch("--n", 1, usize::MAX).is_err());
        let e = check_batch("--n", 60_000, 3 * 256 * 256).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
    }
}
