//! Training data: the built-in digits, fetched real datasets, IDX and image folders, toy mixtures.
//!
//! Every dataset becomes a [`Dataset`]: samples as `f32` in `[-1, 1]` (images `[C, H, W]`, points `[2]`),
//! with labels and class names.

pub mod emoji;
pub mod folder;
pub mod idx;
pub mod oracle;
pub mod pairs;
pub mod series;
pub mod text;
pub mod toy;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::TensorData;
use rand::seq::SliceRandom;
use rand::SeedableRng;

pub use toy::{Mixture, MixtureCoverage};

const DIGITS_IMAGES: &[u8] = include_bytes!("../../../data/digits-images-idx3-ubyte.gz");
const DIGITS_LABELS: &[u8] = include_bytes!("../../../data/digits-labels-idx1-ubyte.gz");
const DIGIT_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("unknown dataset `{0}`: expected digits, mnist, fashion-mnist, emoji, idx:DIR, folder:DIR, toy:ring8, toy:grid25, toy:mix1d, oracle, oracle:V, oracle:DIR, text:FILE, sines, stocks, energy, csv:FILE, or image pairs: pairs:google,twitter, edges:google, folder:A,B")]
    UnknownSource(String),
    #[error("dataset `{name}` is not in {dir}: fetch it with `{command}`")]
    Missing {
        name: String,
        dir: PathBuf,
        command: String,
    },
    #[error("{file}: {reason}")]
    Corrupt { file: PathBuf, reason: String },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: no images found")]
    Empty { file: PathBuf },
    #[error("{0}")]
    Shape(String),
}

impl DataError {
    pub(crate) fn corrupt(file: &Path, reason: impl Into<String>) -> Self {
        DataError::Corrupt {
            file: file.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Where the samples come from, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The built-in 5,000 MNIST digits.
    Digits,
    Mnist,
    FashionMnist,
    Emoji,
    Idx(PathBuf),
    Folder(PathBuf),
    Ring8,
    Grid25,
    Mix1d,
    /// Image-to-image data (Pix2Pix, CycleGAN): `pairs:`, `edges:` or `folder:A,B`.
    Pairs(pairs::PairSource),
    /// SeqGAN's synthetic benchmark: token sequences written by an oracle LSTM ([`oracle`]).
    Oracle(oracle::OracleSource),
    /// Users' token sequences for SeqGAN, one per line ([`text`]).
    Text(PathBuf),
    /// Real-valued time series for TimeGAN ([`series`]).
    Series(series::SeriesSource),
}

impl std::str::FromStr for DataSource {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        Ok(match s {
            "digits" => Self::Digits,
            "mnist" => Self::Mnist,
            "fashion-mnist" => Self::FashionMnist,
            "emoji" => Self::Emoji,
            "toy:ring8" => Self::Ring8,
            "toy:grid25" => Self::Grid25,
            "toy:mix1d" => Self::Mix1d,
            "sines" => Self::Series(series::SeriesSource::Sines),
            "stocks" => Self::Series(series::SeriesSource::Stocks),
            "energy" => Self::Series(series::SeriesSource::Energy),
            "oracle" => Self::Oracle(oracle::OracleSource::Random {
                vocab: oracle::VOCAB,
            }),
            _ => {
                let unknown = || DataError::UnknownSource(s.into());
                let (kind, rest) = s.split_once(':').ok_or_else(unknown)?;
                match (kind, pairs::PairSource::parse(kind, rest)) {
                    (_, Some(pairs)) => Self::Pairs(pairs),
                    ("idx", _) if !rest.is_empty() => Self::Idx(rest.into()),
                    ("folder", _) if !rest.is_empty() => Self::Folder(rest.into()),
                    ("text", _) if !rest.is_empty() => Self::Text(rest.into()),
                    ("csv", _) if !rest.is_empty() => {
                        Self::Series(series::SeriesSource::Csv(rest.into()))
                    }
                    ("oracle", _) => {
                        Self::Oracle(oracle::OracleSource::parse(Some(rest)).ok_or_else(unknown)?)
                    }
                    _ => return Err(unknown()),
                }
            }
        })
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Digits => f.write_str("digits"),
            Self::Mnist => f.write_str("mnist"),
            Self::FashionMnist => f.write_str("fashion-mnist"),
            Self::Emoji => f.write_str("emoji"),
            Self::Idx(d) => write!(f, "idx:{}", d.display()),
            Self::Folder(d) => write!(f, "folder:{}", d.display()),
            Self::Ring8 => f.write_str("toy:ring8"),
            Self::Grid25 => f.write_str("toy:grid25"),
            Self::Mix1d => f.write_str("toy:mix1d"),
            Self::Pairs(p) => p.fmt(f),
            Self::Oracle(o) => o.fmt(f),
            Self::Text(file) => write!(f, "text:{}", file.display()),
            Self::Series(s) => s.fmt(f),
        }
    }
}

impl DataSource {
    pub fn is_toy(&self) -> bool {
        matches!(self, Self::Ring8 | Self::Grid25 | Self::Mix1d)
    }

    /// The toy mixture behind a `toy:` source.
    pub fn mixture(&self) -> Option<Mixture> {
        match self {
            Self::Ring8 => Some(Mixture::ring8()),
            Self::Grid25 => Some(Mixture::grid25()),
            Self::Mix1d => Some(Mixture::mix1d()),
            _ => None,
        }
    }

    /// The natural sample shape, used when the user does not ask for another resolution.
    pub fn native_kind(&self) -> SampleKind {
        match self {
            Self::Ring8 | Self::Grid25 => SampleKind::Points { dim: 2 },
            Self::Mix1d => SampleKind::Points { dim: 1 },
            // Token sequences travel as points of their length, each value a token id.
            Self::Oracle(_) | Self::Text(_) => SampleKind::Points {
                dim: oracle::LENGTH,
            },
            // A CSV's features are known once it is read (`series::load`).
            Self::Series(s) => SampleKind::Series {
                length: series::LENGTH,
                features: s.features().unwrap_or(0),
            },
            Self::Emoji => SampleKind::Image {
                channels: 3,
                height: 64,
                width: 64,
            },
            Self::Folder(_) | Self::Pairs(_) => SampleKind::Image {
                channels: 3,
                height: 64,
                width: 64,
            },
            _ => SampleKind::Image {
                channels: 1,
                height: 28,
                width: 28,
            },
        }
    }
}

/// The shape of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SampleKind {
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    Points {
        dim: usize,
    },
    /// A time series: `length` steps of `features` values.
    Series {
        length: usize,
        features: usize,
    },
}

impl SampleKind {
    pub fn numel(&self) -> usize {
        match *self {
            Self::Image {
                channels,
                height,
                width,
            } => channels * height * width,
            Self::Points { dim } => dim,
            Self::Series { length, features } => length * features,
        }
    }

    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Self::Image {
                channels,
                height,
                width,
            } => vec![channels, height, width],
            Self::Points { dim } => vec![dim],
            Self::Series { length, features } => vec![length, features],
        }
    }

    /// The 4-D shape of a batch of `n` samples; toy points travel as `[N, 1, 1, D]`, series as
    /// `[N, 1, T, F]`.
    pub fn batch_dims(&self, n: usize) -> [usize; 4] {
        match *self {
            Self::Image {
                channels,
                height,
                width,
            } => [n, channels, height, width],
            Self::Points { dim } => [n, 1, 1, dim],
            Self::Series { length, features } => [n, 1, length, features],
        }
    }
}

/// Samples in memory, `f32` in `[-1, 1]` (toy points are left in their own units).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub kind: SampleKind,
    pub samples: Vec<f32>,
    pub labels: Vec<u8>,
    pub class_names: Vec<String>,
    /// A caption per sample (emoji: its name and keywords), or none.
    pub captions: Vec<String>,
}

/// Options for [`load`]: the resolution and channels the model wants, the data folder, the seed.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Image side; `None` keeps the dataset's own.
    pub size: Option<usize>,
    /// 1 or 3; `None` keeps the dataset's own.
    pub channels: Option<usize>,
    /// Folder that `scripts/fetch-data.sh` fills (default `data`, or `$POCKETGAN_DATA`).
    pub data_dir: PathBuf,
    /// Seed for toy mixtures.
    pub seed: u64,
    /// How `text:` lines are cut into tokens.
    pub tokens: text::Tokens,
}

impl Default for LoadOptions {
    fn default() -> Self {
        let data_dir = std::env::var_os("POCKETGAN_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| "data".into());
        Self {
            size: None,
            channels: None,
            data_dir,
            seed: 0,
            tokens: text::Tokens::default(),
        }
    }
}

/// Number of points drawn for a toy mixture.
pub const TOY_SAMPLES: usize = 50_000;

pub fn load(source: &DataSource, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let digits = || {
        DIGIT_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let ds = match source {
        DataSource::Digits => from_idx_bytes(
            "digits",
            DIGITS_IMAGES,
            "digits-images-idx3-ubyte.gz".as_ref(),
            DIGITS_LABELS,
            "digits-labels-idx1-ubyte.gz".as_ref(),
            digits(),
        )?,
        DataSource::Mnist => {
            let dir = fetched(opts, "mnist")?;
            load_idx_dir(&dir, "mnist", digits())?
        }
        DataSource::FashionMnist => {
            let dir = fetched(opts, "fashion-mnist")?;
            load_idx_dir(
                &dir,
                "fashion-mnist",
                FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
            )?
        }
        DataSource::Emoji => {
            let dir = fetched(opts, "emoji")?;
            let SampleKind::Image {
                channels, height, ..
            } = source.native_kind()
            else {
                unreachable!()
            };
            return emoji::load(
                &dir,
                &opts.data_dir.join(emoji::KEYWORDS),
                opts.size.unwrap_or(height),
                opts.channels.unwrap_or(channels),
                [255, 255, 255],
            );
        }
        DataSource::Idx(dir) => load_idx_dir(dir, &source.to_string(), Vec::new())?,
        DataSource::Pairs(_) => {
            return Err(DataError::Shape(format!(
                "{source} holds image pairs: train it with --family pix2pix or cyclegan"
            )))
        }
        DataSource::Folder(dir) => {
            let SampleKind::Image {
                channels, height, ..
            } = source.native_kind()
            else {
                unreachable!()
            };
            return folder::load(
                dir,
                opts.size.unwrap_or(height),
                opts.channels.unwrap_or(channels),
            );
        }
        DataSource::Text(file) => {
            let corpus = text::Corpus::load(file, opts.tokens)?;
            let n = corpus.train.len() / oracle::LENGTH;
            return Ok(Dataset {
                name: source.to_string(),
                kind: source.native_kind(),
                samples: corpus.train.iter().map(|&t| t as f32).collect(),
                labels: vec![0; n],
                class_names: Vec::new(),
                captions: Vec::new(),
            });
        }
        DataSource::Series(src) => return series::load(src, &opts.data_dir, opts.seed),
        DataSource::Oracle(src) => {
            let seqs = oracle::training_sequences(&src.oracle()?);
            return Ok(Dataset {
                name: source.to_string(),
                kind: source.native_kind(),
                samples: seqs.iter().map(|&t| t as f32).collect(),
                labels: vec![0; oracle::SEQUENCES],
                class_names: Vec::new(),
                captions: Vec::new(),
            });
        }
        DataSource::Ring8 | DataSource::Grid25 | DataSource::Mix1d => {
            let m = source.mixture().expect("toy source");
            let (samples, labels) = m.sample(TOY_SAMPLES, opts.seed);
            let class_names = (0..m.centers.len()).map(|k| format!("mode{k}")).collect();
            return Ok(Dataset {
                name: m.name.into(),
                kind: SampleKind::Points { dim: m.dim() },
                samples,
                labels,
                class_names,
                captions: Vec::new(),
            });
        }
    };
    ds.conform(opts.size, opts.channels)
}

/// The official training and test sets behind `source`, kept apart (`train-*` and `t10k-*` IDX
/// files): MNIST for `digits` and `mnist`, Fashion-MNIST for `fashion-mnist`. `None` when the
/// source has no official split or it has not been fetched: judges then fall back to the data's
/// own seeded split. Images are conformed to `opts`' size and channels.
pub fn official_split(
    source: &DataSource,
    opts: &LoadOptions,
) -> Result<Option<(Dataset, Dataset)>, DataError> {
    let (folder, class_names): (&str, &[&str]) = match source {
        DataSource::Digits | DataSource::Mnist => ("mnist", &DIGIT_CLASSES),
        DataSource::FashionMnist => ("fashion-mnist", &FASHION_CLASSES),
        _ => return Ok(None),
    };
    let dir = opts.data_dir.join(folder);
    let part = |prefix: &str| -> Result<Option<Dataset>, DataError> {
        let find = |kind: &str| {
            [
                dir.join(format!("{prefix}-{kind}")),
                dir.join(format!("{prefix}-{kind}.gz")),
            ]
            .into_iter()
            .find(|p| p.is_file())
        };
        let (Some(images), Some(labels)) = (find("images-idx3-ubyte"), find("labels-idx1-ubyte"))
        else {
            return Ok(None);
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| DataError::Io {
                file: p.to_path_buf(),
                source: e,
            })
        };
        let names = class_names.iter().map(|s| s.to_string()).collect();
        let ds = from_idx_bytes(
            &format!("{folder}-{prefix}"),
            &read(&images)?,
            &images,
            &read(&labels)?,
            &labels,
            names,
        )?;
        Ok(Some(ds.conform(opts.size, opts.channels)?))
    };
    Ok(match (part("train")?, part("t10k")?) {
        (Some(train), Some(test)) => Some((train, test)),
        _ => None,
    })
}

/// The folder of a fetched dataset, or an error naming the command that fetches it.
fn fetched(opts: &LoadOptions, name: &str) -> Result<PathBuf, DataError> {
    let dir = opts.data_dir.join(name);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(DataError::Missing {
            name: name.into(),
            dir,
            command: format!("scripts/fetch-data.sh {name}"),
        })
    }
}

/// Every `*images-idx3-ubyte[.gz]` in `dir` with its `*labels-idx1-ubyte[.gz]` twin, train and test alike.
fn load_idx_dir(
    dir: &Path,
    name: &str,
    mut class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        file: dir.to_path_buf(),
        source: e,
    })?;
    let mut image_files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("images-idx3-ubyte"))
        })
        .collect();
    image_files.sort();
    if image_files.is_empty() {
        return Err(DataError::Empty {
            file: dir.to_path_buf(),
        });
    }
    let mut all: Option<Dataset> = None;
    for images in image_files {
        let fname = images
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let labels = dir.join(fname.replace("images-idx3", "labels-idx1"));
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| DataError::Io {
                file: p.to_path_buf(),
                source: e,
            })
        };
        let part = from_idx_bytes(
            name,
            &read(&images)?,
            &images,
            &read(&labels)?,
            &labels,
            Vec::new(),
        )?;
        match &mut all {
            None => all = Some(part),
            Some(ds) => {
                if ds.kind != part.kind {
                    return Err(DataError::corrupt(
                        &images,
                        "image size differs from the other IDX files in the folder",
                    ));
                }
                ds.samples.extend(part.samples);
                ds.labels.extend(part.labels);
            }
        }
    }
    let mut ds = all.expect("at least one file");
    if class_names.is_empty() {
        let max = ds.labels.iter().copied().max().unwrap_or(0) as usize;
        class_names = (0..=max).map(|k| k.to_string()).collect();
    }
    ds.class_names = class_names;
    Ok(ds)
}

fn from_idx_bytes(
    name: &str,
    images: &[u8],
    images_file: &Path,
    labels: &[u8],
    labels_file: &Path,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let imgs = idx::parse_images(images, images_file)?;
    let labels = idx::parse_labels(labels, labels_file)?;
    if labels.len() != imgs.count {
        return Err(DataError::corrupt(
            labels_file,
            format!(
                "{} labels for {} images in {}",
                labels.len(),
                imgs.count,
                images_file.display()
            ),
        ));
    }
    if let Some(&bad) = labels
        .iter()
        .find(|&&l| !class_names.is_empty() && l as usize >= class_names.len())
    {
        return Err(DataError::corrupt(
            labels_file,
            format!("label {bad} is out of range"),
        ));
    }
    Ok(Dataset {
        name: name.into(),
        kind: SampleKind::Image {
            channels: 1,
            height: imgs.rows,
            width: imgs.cols,
        },
        samples: imgs
            .pixels
            .iter()
            .map(|&p| p as f32 / 127.5 - 1.0)
            .collect(),
        labels,
        class_names,
        captions: Vec::new(),
    })
}

impl Dataset {
    pub(crate) fn empty(name: String, kind: SampleKind) -> Self {
        Self {
            name,
            kind,
            samples: Vec::new(),
            labels: Vec::new(),
            class_names: Vec::new(),
            captions: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The first `per_class` samples of each class in a seeded order: the only labels SGAN sees.
    pub fn labelled_subset(&self, per_class: usize, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x001A_BE15));
        let mut taken = [0usize; 256];
        order
            .into_iter()
            .filter(|&i| {
                let t = &mut taken[self.labels[i] as usize];
                *t += 1;
                *t <= per_class
            })
            .collect()
    }

    /// The samples `idx` (in that order) with their labels.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut out = Dataset::empty(self.name.clone(), self.kind);
        out.class_names = self.class_names.clone();
        for &i in idx {
            out.samples.extend_from_slice(self.sample(i));
            out.labels.push(self.labels[i]);
            if let Some(c) = self.captions.get(i) {
                out.captions.push(c.clone());
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Samples `idx` as one tensor ([`SampleKind::batch_dims`]).
    pub fn batch(&self, idx: &[usize], device: &Device) -> Tensor<4> {
        let mut v = Vec::with_capacity(idx.len() * self.kind.numel());
        for &i in idx {
            v.extend_from_slice(self.sample(i));
        }
        Tensor::from_data(TensorData::new(v, self.kind.batch_dims(idx.len())), device)
    }

    /// The labels of samples `idx`.
    pub fn label_batch(&self, idx: &[usize], device: &Device) -> Tensor<1, Int> {
        let v: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        Tensor::from_data(TensorData::new(v, [idx.len()]), device)
    }

    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.kind.numel();
        &self.samples[i * n..(i + 1) * n]
    }

    /// Append one decoded image, resized to `size` and converted to `channels`; transparent pixels
    /// are composited on `background`.
    pub(crate) fn push_image(
        &mut self,
        img: &image::DynamicImage,
        size: usize,
        channels: usize,
        label: u8,
        background: Option<[u8; 3]>,
    ) {
        let bg = background.unwrap_or([0, 0, 0]);
        let rgba = img.to_rgba8();
        let mut flat = image::RgbImage::new(rgba.width(), rgba.height());
        for (dst, src) in flat.pixels_mut().zip(rgba.pixels()) {
            let a = src[3] as f32 / 255.0;
            for c in 0..3 {
                dst[c] = (src[c] as f32 * a + bg[c] as f32 * (1.0 - a)).round() as u8;
            }
        }
        let resized = if flat.width() as usize == size && flat.height() as usize == size {
            flat
        } else {
            image::imageops::resize(
                &flat,
                size as u32,
                size as u32,
                image::imageops::FilterType::Triangle,
            )
        };
        let plane = size * size;
        let start = self.samples.len();
        self.samples.resize(start + channels * plane, 0.0);
        for (i, p) in resized.pixels().enumerate() {
            if channels == 1 {
                let luma = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                self.samples[start + i] = luma / 127.5 - 1.0;
            } else {
                for c in 0..3 {
                    self.samples[start + c * plane + i] = p[c] as f32 / 127.5 - 1.0;
                }
            }
        }
        self.labels.push(label);
    }

    /// Resize and convert images to the model's resolution and channel count.
    pub fn conform(
        self,
        size: Option<usize>,
        channels: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let SampleKind::Image {
            channels: c0,
            height: h0,
            width: w0,
        } = self.kind
        else {
            return Ok(self);
        };
        let (size_ok, ch_ok) = (
            size.is_none_or(|s| s == h0 && s == w0),
            channels.is_none_or(|c| c == c0),
        );
        if size_ok && ch_ok {
            return Ok(self);
        }
        let size = size.unwrap_or(h0);
        let channels = channels.unwrap_or(c0);
        if !matches!(channels, 1 | 3) || !matches!(c0, 1 | 3) {
            return Err(DataError::Shape(format!(
                "cannot convert {c0} channels to {channels}"
            )));
        }
        let mut out = Dataset::empty(
            self.name.clone(),
            SampleKind::Image {
                channels,
                height: size,
                width: size,
            },
        );
        out.class_names = self.class_names.clone();
        for i in 0..self.len() {
            let s = self.sample(i);
            let to_u8 = |v: f32| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
            let plane = h0 * w0;
            let rgb = image::RgbImage::from_fn(w0 as u32, h0 as u32, |x, y| {
                let j = y as usize * w0 + x as usize;
                let ch = |c: usize| to_u8(s[if c0 == 1 { j } else { c * plane + j }]);
                image::Rgb([ch(0), ch(1), ch(2)])
            });
            out.push_image(
                &image::DynamicImage::ImageRgb8(rgb),
                size,
                channels,
                self.labels[i],
                None,
            );
        }
        Ok(out)
    }
}

/// The training order: a fresh permutation per epoch, a pure function of (seed, step), so a resumed
/// run draws exactly the batches an uninterrupted one would.
pub struct BatchOrder {
    n: usize,
    batch: usize,
    seed: u64,
    cached: Option<(usize, Vec<usize>)>,
    /// SGAN's labelled subset and the `(per_class, seed)` it was drawn with.
    labelled: Option<((usize, u64), Vec<usize>)>,
}

impl BatchOrder {
    pub fn new(n: usize, batch: usize, seed: u64) -> Result<Self, DataError> {
        if batch == 0 || n < batch {
            return Err(DataError::Shape(format!(
                "batch size {batch} needs at least that many samples; the dataset has {n}"
            )));
        }
        Ok(Self {
            n,
            batch,
            seed,
            cached: None,
            labelled: None,
        })
    }

    /// [`Dataset::labelled_subset`] of `ds`, drawn once and kept (every SGAN step needs it).
    pub fn labelled(&mut self, ds: &Dataset, per_class: usize, seed: u64) -> &[usize] {
        let key = (per_class, seed);
        if self.labelled.as_ref().is_some_and(|(k, _)| *k != key) {
            self.labelled = None;
        }
        &self
            .labelled
            .get_or_insert_with(|| (key, ds.labelled_subset(per_class, seed)))
            .1
    }

    /// Indices of the samples in batch `step` (0-based).
    pub fn indices(&mut self, step: u64) -> &[usize] {
        let per_epoch = self.n / self.batch;
        let epoch = step as usize / per_epoch;
        let i = step as usize % per_epoch;
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut perm: Vec<usize> = (0..self.n).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            perm.shuffle(&mut rng);
            self.cached = Some((epoch, perm));
        }
        &self.cached.as_ref().expect("just filled").1[i * self.batch..(i + 1) * self.batch]
    }
}

/// The deterministic train / held-out split: every fifth sample (after a seeded shuffle) is
/// held out. Metrics compare generated samples with the training split and use the held-out
/// split as the real-data floor.
pub fn split(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_c1a5));
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, idx) in order.into_iter().enumerate() {
        if i % 5 == 4 {
            test.push(idx)
        } else {
            train.push(idx)
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_digits_are_real_mnist() {
        let ds = load(&DataSource::Digits, &LoadOptions::default()).unwrap();
        assert_eq!(ds.len(), 5000);
        assert_eq!(
            ds.kind,
            SampleKind::Image {
                channels: 1,
                height: 28,
                width: 28
            }
        );
        for k in 0..10u8 {
            assert_eq!(ds.labels.iter().filter(|&&l| l == k).count(), 500);
        }
        // MNIST's mean pixel is about 0.1307 of full scale.
        let mean =
            ds.samples.iter().map(|v| (v + 1.0) / 2.0).sum::<f32>() / ds.samples.len() as f32;
        assert!((mean - 0.1307).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn digits_resize_to_32_and_rgb() {
        let opts = LoadOptions {
            size: Some(32),
            channels: Some(3),
            ..Default::default()
        };
        let ds = load(&DataSource::Digits, &opts).unwrap();
        assert_eq!(
            ds.kind,
            SampleKind::Image {
                channels: 3,
                height: 32,
                width: 32
            }
        );
        assert_eq!(ds.samples.len(), 5000 * 3 * 32 * 32);
    }

    #[test]
    fn sources_parse_and_print() {
        for s in [
            "digits",
            "mnist",
            "fashion-mnist",
            "emoji",
            "idx:/a/b",
            "folder:x",
            "toy:ring8",
            "toy:grid25",
            "toy:mix1d",
            "oracle",
            "oracle:50",
            "oracle:some/dir",
            "text:lines.txt",
        ] {
            assert_eq!(s.parse::<DataSource>().unwrap().to_string(), s);
        }
        assert!("cifar".parse::<DataSource>().is_err());
        assert!("idx:".parse::<DataSource>().is_err());
    }

    #[test]
    fn missing_dataset_names_the_fetch_command() {
        let opts = LoadOptions {
            data_dir: "/nonexistent".into(),
            ..Default::default()
        };
        let e = load(&DataSource::FashionMnist, &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts/fetch-data.sh fashion-mnist"), "{e}");
    }

    #[test]
    fn corrupt_idx_folder_and_empty_folder_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            [0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 9],
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            [0u8, 0, 8, 1, 0, 0, 0, 2, 1, 2],
        )
        .unwrap();
        let src = DataSource::Idx(dir.path().into());
        let e = load(&src, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte"), "{e}");
        // Fix the images; now the label count is still right, so it loads.
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            [0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9],
        )
        .unwrap();
        assert_eq!(load(&src, &LoadOptions::default()).unwrap().len(), 2);
        // A label/image count mismatch names the labels file.
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            [0u8, 0, 8, 1, 0, 0, 0, 1, 1],
        )
        .unwrap();
        let e = load(&src, &LoadOptions::default()).unwrap_err().to_string();
        assert!(
            e.contains("train-labels-idx1-ubyte") && e.contains("1 labels for 2 images"),
            "{e}"
        );

        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("cats")).unwrap();
        let e = load(
            &DataSource::Folder(empty.path().into()),
            &LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no images"), "{e}");
        std::fs::write(empty.path().join("cats/bad.png"), b"not a png").unwrap();
        let e = load(
            &DataSource::Folder(empty.path().into()),
            &LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.png"), "{e}");
    }

    #[test]
    fn image_folder_loads_and_resizes() {
        let dir = tempfile::tempdir().unwrap();
        for (class, shade) in [("dark", 10u8), ("light", 240u8)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            image::RgbImage::from_pixel(40, 30, image::Rgb([shade; 3]))
                .save(dir.path().join(class).join("a.png"))
                .unwrap();
        }
        let opts = LoadOptions {
            size: Some(16),
            channels: Some(1),
            ..Default::default()
        };
        let ds = load(&DataSource::Folder(dir.path().into()), &opts).unwrap();
        assert_eq!(ds.class_names, ["dark", "light"]);
        assert_eq!(
            ds.kind,
            SampleKind::Image {
                channels: 1,
                height: 16,
                width: 16
            }
        );
        assert!(ds.sample(0)[0] < -0.8 && ds.sample(1)[0] > 0.8);
    }

    #[test]
    fn batch_order_is_a_function_of_step() {
        let mut a = BatchOrder::new(100, 8, 5).unwrap();
        let mut b = BatchOrder::new(100, 8, 5).unwrap();
        let first: Vec<usize> = a.indices(30).to_vec();
        b.indices(3);
        assert_eq!(b.indices(30), &first[..]);
        assert!(BatchOrder::new(3, 8, 0).is_err());
    }
}
