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

/// Load `split` of an image-to-image source as aligned pairs (an image of A and the image of B of
/// the same name) at the size and channels of `opts` (default 64 px RGB), transparent pixels
/// composited on white as in training and in `pocketgan translate`.
pub fn load(source: &DataSource, opts: &LoadOptions, split: Split) -> Result<Domains, DataError> {
    let (source, listing) = list(source, opts)?;
    let mut out = Domains::new(source, opts);
    let in_b: BTreeMap<&str, &Image> = listing.b.iter().map(|(n, i)| (n.as_str(), i)).collect();
    for (name, a) in &listing.a {
        let Some(b) = in_b.get(name.as_str()) else {
            continue;
        };
        if is_held_out(name) == (split == Split::Test) {
            out.push_a(name, &a.read()?, opts);
            out.push_b(&b.read()?, opts);
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

/// The training split of an image-to-image source as two unpaired domains (CycleGAN): every
/// image of A and every image of B that is not held out, each side on its own, so the sides may
/// differ in length and `a[i]`, `b[i]` are unrelated. The held-out test pairs are [`load`]'s, so
/// a model trained without pairs is scored against true pairs it never saw on either side.
pub fn load_unpaired(source: &DataSource, opts: &LoadOptions) -> Result<Domains, DataError> {
    let (source, listing) = list(source, opts)?;
    let mut out = Domains::new(source, opts);
    for (name, a) in listing.a.iter().filter(|(n, _)| !is_held_out(n)) {
        out.push_a(name, &a.read()?, opts);
    }
    for (_, b) in listing.b.iter().filter(|(n, _)| !is_held_out(n)) {
        out.push_b(&b.read()?, opts);
    }
    if out.a.len() == 0 || out.b.len() == 0 {
        return Err(DataError::Shape(format!(
            "{source}: a side has no training images (A: {}, B: {})",
            out.a.len(),
            out.b.len()
        )));
    }
    Ok(out)
}

impl Domains {
    fn new(source: &PairSource, opts: &LoadOptions) -> Self {
        let kind = SampleKind::Image {
            channels: opts.channels.unwrap_or(3),
            height: opts.size.unwrap_or(64),
            width: opts.size.unwrap_or(64),
        };
        Self {
            a: Dataset::empty(format!("{source} (A)"), kind),
            b: Dataset::empty(format!("{source} (B)"), kind),
            names: Vec::new(),
        }
    }

    fn push_a(&mut self, name: &str, img: &image::DynamicImage, opts: &LoadOptions) {
        let (size, channels) = (opts.size.unwrap_or(64), opts.channels.unwrap_or(3));
        self.a.push_image(img, size, channels, 0, Some(WHITE));
        self.names.push(name.into());
    }

    fn push_b(&mut self, img: &image::DynamicImage, opts: &LoadOptions) {
        let (size, channels) = (opts.size.unwrap_or(64), opts.channels.unwrap_or(3));
        self.b.push_image(img, size, channels, 0, Some(WHITE));
    }
}

/// An image of one side, read on demand: a file, or the edge map of one.
enum Image {
    File(PathBuf),
    Edges(PathBuf),
}

impl Image {
    /// The edge map of this image.
    fn edges(&self) -> Image {
        match self {
            Image::File(f) | Image::Edges(f) => Image::Edges(f.clone()),
        }
    }

    fn read(&self) -> Result<image::DynamicImage, DataError> {
        Ok(match self {
            Image::File(f) => open(f)?,
            Image::Edges(f) => edge_map(&open(f)?),
        })
    }
}

/// Every image each side of a source has, by name, sorted by name.
struct Listing {
    a: Vec<(String, Image)>,
    b: Vec<(String, Image)>,
}

fn list<'a>(
    source: &'a DataSource,
    opts: &LoadOptions,
) -> Result<(&'a PairSource, Listing), DataError> {
    let DataSource::Pairs(source) = source else {
        return Err(DataError::Shape(format!(
            "{source} holds single images, not image pairs: use pairs:google,twitter, \
             edges:google or folder:A,B for image-to-image models"
        )));
    };
    let files = |dir: &Path, list: Vec<(String, String)>, edges: bool| {
        list.into_iter()
            .map(|(name, file)| {
                let path = dir.join("png").join(file);
                (
                    name,
                    if edges {
                        Image::Edges(path)
                    } else {
                        Image::File(path)
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let folder = |dir: &Path| -> Result<Vec<(String, Image)>, DataError> {
        Ok(images(dir)?
            .into_iter()
            .map(|(name, path)| (name, Image::File(path)))
            .collect())
    };
    let listing = match source {
        PairSource::Emoji { a, b } => {
            let (dir_a, dir_b) = (vendor_dir(opts, a)?, vendor_dir(opts, b)?);
            Listing {
                a: files(&dir_a, emoji_files(&dir_a, &[a])?, false),
                b: files(&dir_b, emoji_files(&dir_b, &[b])?, false),
            }
        }
        PairSource::Edges { vendor } if Path::new(vendor).is_dir() => {
            let list = folder(Path::new(vendor))?;
            Listing {
                a: list
                    .iter()
                    .map(|(name, image)| (name.clone(), image.edges()))
                    .collect(),
                b: list,
            }
        }
        PairSource::Edges { vendor } => {
            let dir = vendor_dir(opts, vendor)?;
            let list = emoji_files(&dir, &[vendor])?;
            Listing {
                a: files(&dir, list.clone(), true),
                b: files(&dir, list, false),
            }
        }
        PairSource::Folders { a, b } => Listing {
            a: folder(a)?,
            b: folder(b)?,
        },
    };
    Ok((source, listing))
}

const WHITE: [u8; 3] = [255, 255, 255];

/// The folder a vendor's emoji were fetched into.
fn vendor_dir(opts: &LoadOptions, vendor: &str) -> Result<PathBuf, DataError> {
    let (_, dir) = VENDORS.iter().find(|(v, _)| *v == vendor).ok_or_else(|| {
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

    /// Unpaired training data is each side's own images (names need not match, the sides differ
    /// in length), with every held-out name left out of both; the paired test split is unchanged.
    #[test]
    fn unpaired_sides_are_independent_and_keep_the_test_split_out() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let shade = |v: u8| image::RgbImage::from_pixel(8, 8, image::Rgb([v, v, v]));
        for i in 0..40 {
            shade(10).save(a.join(format!("img{i}.png"))).unwrap();
            // B has the same names plus some of its own, in another colour.
            shade(200).save(b.join(format!("img{i}.png"))).unwrap();
        }
        for i in 0..15 {
            shade(200).save(b.join(format!("only_b{i}.png"))).unwrap();
        }
        let src: DataSource = format!("folder:{},{}", a.display(), b.display())
            .parse()
            .unwrap();
        let opts = LoadOptions {
            size: Some(8),
            ..Default::default()
        };
        let unpaired = load_unpaired(&src, &opts).unwrap();
        let test = load(&src, &opts, Split::Test).unwrap();
        let paired = load(&src, &opts, Split::Train).unwrap();
        let held_out = |prefix: &str, n: usize| {
            (0..n)
                .filter(|i| is_held_out(&format!("{prefix}{i}")))
                .count()
        };
        assert_eq!(unpaired.a.len(), 40 - held_out("img", 40));
        assert_eq!(
            unpaired.b.len(),
            40 - held_out("img", 40) + 15 - held_out("only_b", 15)
        );
        assert_eq!(paired.a.len(), unpaired.a.len());
        assert!(!unpaired.names.iter().any(|n| is_held_out(n)));
        assert!(!test.names.is_empty() && test.names.iter().all(|n| is_held_out(n)));
        // Each side holds its own domain's images.
        assert!(unpaired.a.samples.iter().all(|&v| v < 0.0));
        assert!(unpaired.b.samples.iter().all(|&v| v > 0.0));
        // Single-image data is refused with the same hint as for pairs.
        let err = load_unpaired(&DataSource::Digits, &opts).unwrap_err();
        assert!(err.to_string().contains("pairs:google,twitter"), "{err}");
    }
}
