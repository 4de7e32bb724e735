//! Google's Noto emoji at 64x64 (npm `emoji-datasource-google`), composited on a background colour.
//! Classes are the emoji categories of `emoji.json`. Captions (StackGAN's texts) are each emoji's
//! name followed by its keywords from npm `emojilib` (`scripts/fetch-data.sh emoji-keywords`), as
//! words ([`pocketgan_runtime::text::words`]), each word once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{DataError, Dataset, SampleKind};

/// The folder (beside `emoji`) of emojilib's keywords.
pub const KEYWORDS: &str = "emoji-keywords";

/// Load `dir/emoji.json` and `dir/png/*.png` (as laid out by `scripts/fetch-data.sh emoji`), with
/// captions when `keywords_dir` holds emojilib's keywords (else none).
pub fn load(
    dir: &Path,
    keywords_dir: &Path,
    size: usize,
    channels: usize,
    background: [u8; 3],
) -> Result<Dataset, DataError> {
    let entries = read_list(dir)?;
    let keywords = read_keywords(keywords_dir)?;
    // (image file, caption) by category, for every emoji Google draws.
    let mut by_category: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in &entries {
        let (Some(file), Some(cat)) = (e["image"].as_str(), e["category"].as_str()) else {
            continue;
        };
        if e["has_img_google"].as_bool() == Some(false) {
            continue;
        }
        let caption = keywords.as_ref().map(|k| caption(e, k)).unwrap_or_default();
        by_category
            .entry(cat.to_string())
            .or_default()
            .push((file.to_string(), caption));
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
        for (name, caption) in files {
            let file = dir.join("png").join(name);
            if !file.exists() {
                continue;
            }
            let img = image::open(&file)
                .map_err(|e| DataError::corrupt(&file, format!("unreadable image: {e}")))?;
            ds.push_image(&img, size, channels, label as u8, Some(background));
            if keywords.is_some() {
                ds.captions.push(caption.clone());
            }
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

/// emojilib's `emoji-en-US.json` (emoji -> names and keywords), or `None` where it was not
/// fetched.
fn read_keywords(dir: &Path) -> Result<Option<HashMap<String, Vec<String>>>, DataError> {
    let path = dir.join("emoji-en-US.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::Io {
        file: path.clone(),
        source: e,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DataError::corrupt(&path, format!("not emojilib's keyword list: {e}")))
}

/// An emoji's caption: the words of its name, then of its emojilib keywords (looked up by the
/// emoji's characters, with or without the variation selector), each word once.
fn caption(entry: &serde_json::Value, keywords: &HashMap<String, Vec<String>>) -> String {
    let chars = |key: &str| -> Option<String> {
        entry[key]
            .as_str()?
            .split('-')
            .map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32))
            .collect()
    };
    let found = ["unified", "non_qualified"]
        .iter()
        .filter_map(|k| chars(k))
        .flat_map(|s| [s.clone(), s.replace('\u{fe0f}', "")])
        .find_map(|s| keywords.get(&s));
    let name = entry["name"].as_str().unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let text = std::iter::once(name)
        .chain(found.into_iter().flatten().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    pocketgan_runtime::text::words(&text)
        .into_iter()
        .filter(|w| seen.insert(w.clone()))
        .collect::<Vec<_>>()
        .join(" ")
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
