//! Image folders: one subfolder per class holding PNG/JPEG files.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, SampleKind};

/// Load `dir/<class>/*.{png,jpg,jpeg}` at `size`x`size` with `channels` (1 or 3) channels.
pub fn load(dir: &Path, size: usize, channels: usize) -> Result<Dataset, DataError> {
    let io = |e: std::io::Error| DataError::Io {
        file: dir.to_path_buf(),
        source: e,
    };
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut ds = Dataset::empty(
        format!("folder:{}", dir.display()),
        SampleKind::Image {
            channels,
            height: size,
            width: size,
        },
    );
    for (label, class_dir) in classes.iter().enumerate() {
        for file in image_files(class_dir)? {
            let img = image::open(&file)
                .map_err(|e| DataError::corrupt(&file, format!("unreadable image: {e}")))?;
            ds.push_image(&img, size, channels, label as u8, None);
        }
        ds.class_names.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    if ds.is_empty() {
        // The common mistake: the pictures directly in the folder.
        if !image_files(dir)?.is_empty() {
            return Err(DataError::corrupt(
                dir,
                "the pictures are directly in the folder, but folder: data expects one \
                 subfolder per class (dir/<class>/*.png); for unlabelled pictures, move them \
                 into one subfolder, e.g. dir/all/",
            ));
        }
        return Err(DataError::Empty {
            file: dir.to_path_buf(),
        });
    }
    if ds.class_names.len() > 256 {
        return Err(DataError::corrupt(dir, "more than 256 class folders"));
    }
    Ok(ds)
}

/// Every PNG/JPEG file in `dir` (by extension, any case), sorted by path.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::Io {
            file: dir.to_path_buf(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    Ok(files)
}
