//! Image-to-image data: domain A (the generator's input) and domain B (its target), as two
//! [`Dataset`]s of the same image shape. Paired sources align them by index, A[i] -> B[i]; the
//! sample names say which image each pair came from.
//!
//! Every source is split the same way into training and held-out test pairs ([`is_held_out`]), so
//! every model is scored on the same test images whatever it was trained with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{fetched, DataError, DataSource, Dataset, LoadOptions, SampleKind};

/// The emoji vendors whose art `scripts/fetch-data.sh` fetches: name and data folder.
const VENDORS: [(&str, &str); 2] = [("google", "emoji"), ("twitter", "emoji-twitter")];

/// Canny's hysteresis thresholds on 8-bit luma: strong edges above the high one, kept weak
/// edges above the low one. These keep an emoji's outlines and main inner strokes without the
/// shading's gradients (checked by eye on the 64 px art).
const CANNY_LOW: f32 = 40.0;
const CANNY_HIGH: f32 = 100.0;

/// Which side of the fixed train / test split to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Two domains of images. For paired data `a.len() == b.len()` and pair `i` is `(a[i], b[i])`.
#[derive(Debug, Clone)]
pub struct Domains {
    pub a: Dataset,
    pub b: Dataset,
    /// Name of each A sample (a file stem or an emoji code point).
    pub names: Vec<String>,
}

/// Whether the sample called `name` is in the held-out test split: about one in ten, chosen by a
/// hash of the name alone, so the split does not depend on which other samples exist.
pub fn is_held_out(name: &str) -> bool {
    crc32fast::hash(name.as_bytes()) % 10 == 0
}

/// The image-to-image sources, as written after `--data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairSource {
    /// `pairs:VENDOR_A,VENDOR_B`: the same emoji drawn by two vendors.
    Emoji { a: String, b: String },
    /// `edges:VENDOR` or `edges:DIR`: an emoji's (or a folder image's) edge map -> the image.
    Edges { vendor: String },
    /// `folder:A,B`: two folders, paired by file name.
    Folders { a: PathBuf, b: PathBuf },
}

impl PairSource {
    /// Parse the part after `pairs:`, `edges:` or `folder:` (`folder:` only with two folders).
    pub fn parse(kind: &str, rest: &str) -> Option<Self> {
        let two = || {
            rest.split_once(',')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        };
        match kind {
            "pairs" => two().map(|(a, b)| Self::Emoji {
                a: a.into(),
                b: b.into(),
            }),
            "edges" if !rest.is_empty() => Some(Self::Edges {
                vendor: rest.into(),
            }),
            "folder" => two().map(|(a, b)| Self::Folders {
                a: a.into(),
                b: b.into(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for PairSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Emoji { a, b } => write!(f, "pairs:{a},{b}"),
            Self::Edges { vendor } => write!(f, "edges:{vendor}"),
            Self::Folders { a, b } => write!(f, "folder:{},{}", a.display(), b.display()),
        }
    }
}

/// Load `split` of an image-to-image source at the size and channels of `opts` (default 64 px
/// RGB), transparent pixels composited on white as in training and in `pocketgan translate`.
pub fn load(source: &DataSource, opts: &LoadOptions, split: Split) -> Result<Domains, DataError> {
    let DataSource::Pairs(source) = source else {
        return Err(DataError::Shape(format!(
            "{source} holds single images, not image pairs: use pairs:google,twitter, \
             edges:google or folder:A,B for image-to-image models"
        )));
    };
    let size = opts.size.unwrap_or(64);
    let channels = opts.channels.unwrap_or(3);
    let kind = SampleKind::Image {
        channels,
        height: size,
        width: size,
    };
    let mut out = Domains {
        a: Dataset::empty(format!("{source} (A)"), kind),
        b: Dataset::empty(format!("{source} (B)"), kind),
        names: Vec::new(),
    };
    let wanted = |name: &str| is_held_out(name) == (split == Split::Test);
    let mut push = |name: String, a: &image::DynamicImage, b: &image::DynamicImage| {
        out.a.push_image(a, size, channels, 0, Some(WHITE));
        out.b.push_image(b, size, channels, 0, Some(WHITE));
        out.names.push(name);
    };
    match source {
        PairSource::Emoji { a, b } => {
            let (dir_a, dir_b) = (vendor_dir(opts, a)?, vendor_dir(opts, b)?);
            for (name, file) in emoji_files(&dir_a, &[a, b])? {
                if wanted(&name) {
                    push(
                        name,
                        &open(&dir_a.join("png").join(&file))?,
                        &open(&dir_b.join("png").join(&file))?,
                    );
                }
            }
        }
        PairSource::Edges { vendor } if Path::new(vendor).is_dir() => {
            for (name, file) in images(Path::new(vendor))? {
                if wanted(&name) {
                    let image = open(&file)?;
                    push(name, &edge_map(&image), &image);
                }
            }
        }
        PairSource::Edges { vendor } => {
            let dir = vendor_dir(opts, vendor)?;
            for (name, file) in emoji_files(&dir, &[vendor])? {
                if wanted(&name) {
                    let emoji = open(&dir.join("png").join(&file))?;
                    push(name, &edge_map(&emoji), &emoji);
                }
            }
        }
        PairSource::Folders { a, b } => {
            let in_b: BTreeMap<String, PathBuf> = images(b)?.into_iter().collect();
            for (name, file_a) in images(a)? {
                let Some(file_b) = in_b.get(&name) else {
                    continue;
                };
                if wanted(&name) {
                    push(name, &open(&file_a)?, &open(file_b)?);
                }
            }
        }
    }
    if out.names.is_empty() {
        return Err(DataError::Shape(format!(
            "{source}: no {} pairs (are the two sides' file names the same?)",
            match split {
                Split::Train => "training",
                Split::Test => "held-out test",
            }
        )));
    }
    Ok(out)
}

const WHITE: [u8; 3] = [255, 255, 255];

/// The folder a vendor's emoji were fetched into.
fn vendor_dir(opts: &LoadOptions, vendor: &str) -> Result<PathBuf, DataError> {
    let (_, dir) = VENDORS
        .iter()
        .find(|(v, _)| *v == vendor)
        .ok_or_else(|| {
            DataError::Shape(format!(
                "`{vendor}` is neither an emoji vendor (google, twitter) nor a folder of images"
            ))
        })?;
    fetched(opts, dir)
}

/// `(code point, file name)` of every emoji in `dir/emoji.json` that all `vendors` draw, sorted
/// by code point; skin-tone variations are left out (one image per emoji).
fn emoji_files(dir: &Path, vendors: &[&String]) -> Result<Vec<(String, String)>, DataError> {
    let entries = super::emoji::read_list(dir)?;
    let mut files: Vec<(String, String)> = entries
        .iter()
        .filter(|e| {
            vendors
                .iter()
                .all(|v| e[format!("has_img_{v}")].as_bool() == Some(true))
        })
        .filter_map(|e| Some((e["unified"].as_str()?.into(), e["image"].as_str()?.into())))
        .collect();
    files.sort();
    Ok(files)
}

/// `(file stem, path)` of every PNG/JPEG in `dir`, sorted.
fn images(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    Ok(super::folder::image_files(dir)?
        .into_iter()
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect())
}

fn open(file: &Path) -> Result<image::DynamicImage, DataError> {
    image::open(file).map_err(|e| DataError::corrupt(file, format!("unreadable image: {e}")))
}

/// The edge map of an image as the Pix2Pix paper's edges-to-shoes draws it: black lines on
/// white, from Canny's detector on the luma of the image composited on white.
pub fn edge_map(img: &image::DynamicImage) -> image::DynamicImage {
    let rgba = img.to_rgba8();
    let gray = image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = p[3] as f32 / 255.0;
        let luma = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        image::Luma([(luma * a + 255.0 * (1.0 - a)).round() as u8])
    });
    let mut edges = imageproc::edges::canny(&gray, CANNY_LOW, CANNY_HIGH);
    image::imageops::invert(&mut edges);
    image::DynamicImage::ImageLuma8(edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print() {
        for s in ["pairs:google,twitter", "edges:google", "folder:x/a,y/b"] {
            let src: DataSource = s.parse().unwrap();
            assert!(matches!(src, DataSource::Pairs(_)), "{s}");
            assert_eq!(src.to_string(), s);
        }
        for bad in ["pairs:google", "pairs:,twitter", "edges:"] {
            assert!(bad.parse::<DataSource>().is_err(), "{bad}");
        }
        // One folder is still the class-folder source.
        assert!(matches!(
            "folder:x".parse::<DataSource>().unwrap(),
            DataSource::Folder(_)
        ));
    }

    /// About a tenth is held out, and the split is a function of the name alone.
    #[test]
    fn held_out_split_is_a_tenth_by_name() {
        let names: Vec<String> = (0..5000).map(|i| format!("{i:05X}")).collect();
        let held = names.iter().filter(|n| is_held_out(n)).count();
        assert!((400..600).contains(&held), "{held} of 5000 held out");
        assert_eq!(is_held_out("1F600"), is_held_out("1F600"));
    }

    /// Folders pair by file stem; unmatched files are skipped; the split keeps train and test
    /// apart; the edge map of a filled disc is a black ring on white.
    #[test]
    fn folder_pairs_and_edges() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let disc = image::RgbaImage::from_fn(32, 32, |x, y| {
            let (dx, dy) = (x as f32 - 15.5, y as f32 - 15.5);
            if dx * dx + dy * dy < 100.0 {
                image::Rgba([200, 30, 30, 255])
            } else {
                image::Rgba([0, 0, 0, 0])
            }
        });
        let names: Vec<String> = (0..40).map(|i| format!("img{i}")).collect();
        for n in &names {
            disc.save(a.join(format!("{n}.png"))).unwrap();
            disc.save(b.join(format!("{n}.png"))).unwrap();
        }
        disc.save(a.join("only_in_a.png")).unwrap();
        let src: DataSource = format!("folder:{},{}", a.display(), b.display())
            .parse()
            .unwrap();
        let opts = LoadOptions {
            size: Some(16),
            ..Default::default()
        };
        let train = load(&src, &opts, Split::Train).unwrap();
        let test = load(&src, &opts, Split::Test).unwrap();
        assert_eq!(train.names.len() + test.names.len(), 40);
        assert!(test.names.iter().all(|n| is_held_out(n)));
        assert!(!train.names.iter().any(|n| is_held_out(n)));
        assert_eq!(train.a.len(), train.b.len());
        assert_eq!(train.a.kind.dims(), vec![3, 16, 16]);
        // Corners are white (composited), the disc's centre is red.
        assert_eq!(&train.a.sample(0)[..1], &[1.0]);

        let edges = edge_map(&image::DynamicImage::ImageRgba8(disc)).to_luma8();
        let (black, total) = (edges.pixels().filter(|p| p[0] == 0).count(), 32 * 32);
        assert!(edges.get_pixel(0, 0)[0] == 255 && edges.get_pixel(16, 16)[0] == 255);
        assert!(
            (40..200).contains(&black),
            "{black} of {total} edge pixels: expected a ring"
        );
        // A single-image source is refused with a hint.
        let err = load(&DataSource::Digits, &opts, Split::Train).unwrap_err();
        assert!(err.to_string().contains("pairs:google,twitter"), "{err}");
    }
}
