//! Google's Noto emoji at 64x64 (npm `emoji-datasource-google`), composited on a background colour.
//! Classes are the emoji categories of `emoji.json`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{DataError, Dataset, SampleKind};

/// Load `dir/emoji.json` and `dir/png/*.png` (as laid out by `scripts/fetch-data.sh emoji`).
pub fn load(
    dir: &Path,
    size: usize,
    channels: usize,
    background: [u8; 3],
) -> Result<Dataset, DataError> {
    let entries = read_list(dir)?;
    // image file -> category, for every emoji Google draws.
    let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &entries {
        let (Some(file), Some(cat)) = (e["image"].as_str(), e["category"].as_str()) else {
            continue;
        };
        if e["has_img_google"].as_bool() == Some(false) {
            continue;
        }
        by_category
            .entry(cat.to_string())
            .or_default()
            .push(file.to_string());
    }
    let mut ds = Dataset::empty(
        "emoji".into(),
        SampleKind::Image {
            channels,
            height: size,
            width: size,
        },
    );
    for (label, (category, files)) in by_category.iter().enumerate() {
        for name in files {
            let file = dir.join("png").join(name);
            if !file.exists() {
                continue;
            }
            let img = image::open(&file)
                .map_err(|e| DataError::corrupt(&file, format!("unreadable image: {e}")))?;
            ds.push_image(&img, size, channels, label as u8, Some(background));
        }
        ds.class_names.push(category.clone());
    }
    if ds.is_empty() {
        return Err(DataError::Empty {
            file: dir.join("png"),
        });
    }
    Ok(ds)
}

/// The entries of `dir/emoji.json`, the emoji-datasource list (one object per emoji).
pub(crate) fn read_list(dir: &Path) -> Result<Vec<serde_json::Value>, DataError> {
    let json_path = dir.join("emoji.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| DataError::Io {
        file: json_path.clone(),
        source: e,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| DataError::corrupt(&json_path, format!("not the emoji list: {e}")))
}
