//! Checkpoint files: named byte sections (Burn records of G, D and both optimizers) in one
//! container with a magic, a JSON table of contents and a CRC32 per section. Written to a temp
//! file and renamed, so a crash never leaves a half-written checkpoint under the final name.

use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PGCKPT\x00\x01";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a pocketgan checkpoint or corrupt: {reason}")]
    Corrupt { file: PathBuf, reason: String },
    #[error("{file}: section `{name}` is missing")]
    MissingSection { file: PathBuf, name: String },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Toc {
    step: u64,
    sections: Vec<SectionEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SectionEntry {
    name: String,
    len: u64,
    crc32: u32,
}

/// A checkpoint in memory: the number of completed steps and named sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub step: u64,
    pub sections: Vec<(String, Vec<u8>)>,
}

impl Checkpoint {
    pub fn section(&self, name: &str, file: &Path) -> Result<&[u8], CheckpointError> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| CheckpointError::MissingSection {
                file: file.into(),
                name: name.into(),
            })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let toc = Toc {
            step: self.step,
            sections: self
                .sections
                .iter()
                .map(|(name, b)| SectionEntry {
                    name: name.clone(),
                    len: b.len() as u64,
                    crc32: crc32fast::hash(b),
                })
                .collect(),
        };
        let toc = serde_json::to_vec(&toc).expect("plain struct serialises");
        let mut out = Vec::with_capacity(
            12 + toc.len() + self.sections.iter().map(|s| s.1.len()).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(toc.len() as u32).to_le_bytes());
        out.extend_from_slice(&toc);
        for (_, b) in &self.sections {
            out.extend_from_slice(b);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<Self, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt {
            file: file.into(),
            reason,
        };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        let toc_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let toc_end = 12usize
            .checked_add(toc_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("truncated table of contents".into()))?;
        let toc: Toc = serde_json::from_slice(&bytes[12..toc_end])
            .map_err(|e| corrupt(format!("bad table of contents: {e}")))?;
        let mut at = toc_end;
        let mut sections = Vec::with_capacity(toc.sections.len());
        for s in toc.sections {
            let end = usize::try_from(s.len)
                .ok()
                .and_then(|l| at.checked_add(l))
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| {
                    corrupt(format!(
                        "truncated: section `{}` runs past the end of the file",
                        s.name
                    ))
                })?;
            let body = &bytes[at..end];
            if crc32fast::hash(body) != s.crc32 {
                return Err(corrupt(format!(
                    "section `{}` fails its CRC32 check",
                    s.name
                )));
            }
            sections.push((s.name, body.to_vec()));
            at = end;
        }
        if at != bytes.len() {
            return Err(corrupt(format!("{} trailing bytes", bytes.len() - at)));
        }
        Ok(Self {
            step: toc.step,
            sections,
        })
    }

    pub fn read(file: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(file).map_err(|e| CheckpointError::Io {
            file: file.into(),
            source: e,
        })?;
        Self::from_bytes(&bytes, file)
    }

    /// Write atomically: `file.tmp`, fsync, rename.
    pub fn write(&self, file: &Path) -> Result<(), CheckpointError> {
        write_atomic(file, &self.to_bytes()).map_err(|e| CheckpointError::Io {
            file: file.into(),
            source: e,
        })
    }
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Checkpoints in a run's `checkpoints/` folder, oldest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let step = name
                .strip_prefix("step_")?
                .strip_suffix(".ckpt")?
                .parse()
                .ok()?;
            Some((step, p))
        })
        .collect();
    found.sort();
    found
}

pub fn file_name(step: u64) -> String {
    format!("step_{step:06}.ckpt")
}

/// Keep the newest `keep` checkpoints, delete the rest.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let all = list(dir);
    for (_, p) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        std::fs::remove_file(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            step: 42,
            sections: vec![("g".into(), vec![1, 2, 3]), ("d".into(), vec![9; 100])],
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(file_name(42));
        sample().write(&f).unwrap();
        assert_eq!(Checkpoint::read(&f).unwrap(), sample());
        assert_eq!(list(dir.path()), vec![(42, f)]);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let bytes = sample().to_bytes();
        let p = Path::new("c.ckpt");
        for len in 0..bytes.len() {
            assert!(
                Checkpoint::from_bytes(&bytes[..len], p).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            // A flip inside the JSON may still parse (e.g. a digit of `step`), but never panics.
            let _ = Checkpoint::from_bytes(&b, p);
        }
        let mut b = bytes.clone();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(Checkpoint::from_bytes(&b, p)
            .unwrap_err()
            .to_string()
            .contains("CRC32"));
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for s in [1, 2, 3, 4] {
            sample().write(&dir.path().join(file_name(s))).unwrap();
        }
        prune(dir.path(), 2).unwrap();
        assert_eq!(
            list(dir.path()).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![3, 4]
        );
    }
}
