//! The judge of image metrics: a small LeNet-style classifier per dataset, trained once and kept
//! under `runs/classifiers/`. Its 64-unit penultimate layer is the feature space of the classifier
//! FID and of precision/recall (the usual Inception network cannot be downloaded here).
//!
//! Where the dataset has an official split that `scripts/fetch-data.sh` has fetched (MNIST for
//! `digits` and `mnist`, Fashion-MNIST), the judge learns the 60,000 official training images and is
//! scored on the 10,000 test images, as published work judges MNIST generators, and the FID compares
//! against that test set: images no generator here trains on. Otherwise it falls back to the
//! dataset's own seeded 4:1 split ([`JudgeData::for_dataset`]).

use std::path::{Path, PathBuf};

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::TensorData;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::checkpoint::{write_atomic, Checkpoint};
use crate::data::{self, DataError, DataSource, Dataset, LoadOptions, SampleKind};

/// Width of the feature layer.
pub const FEATURES: usize = 64;

#[derive(Module, Debug)]
pub struct LeNet {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    features: Linear,
    /// Before the class layer, while training only: fashion-mnist's judge overfits without it.
    dropout: Dropout,
    classify: Linear,
}

/// Passes over the judge's training images: the official 60,000 (fashion-mnist's judge needs ten
/// to pass 91%), or the dataset's own split (a few thousand images, seconds at the start of a run).
pub const EPOCHS_OFFICIAL: usize = 10;
pub const EPOCHS_OWN_SPLIT: usize = 3;

/// `[channels, side, classes]`: what a classifier was built for.
pub type Shape = [usize; 3];

impl LeNet {
    /// conv5 (32) -> pool -> conv5 (64) -> pool -> 64 -> classes, for `side` of 28 or more.
    pub fn new([channels, side, classes]: Shape, device: &Device) -> LeNet {
        let after = ((side - 4) / 2 - 4) / 2;
        LeNet {
            conv1: Conv2dConfig::new([channels, 32], [5, 5]).init(device),
            conv2: Conv2dConfig::new([32, 64], [5, 5]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            features: LinearConfig::new(64 * after * after, FEATURES).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            classify: LinearConfig::new(FEATURES, classes).init(device),
        }
    }

    /// Penultimate-layer features `[N, FEATURES]` of images `[N, C, H, W]` in `[-1, 1]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        relu(self.features.forward(x.flatten(1, 3)))
    }

    /// Class logits `[N, classes]` (with dropout when training).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify
            .forward(self.dropout.forward(self.features(x)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("the classifier judges images of side 28 or more, not {0:?}")]
    Unsupported(SampleKind),
    #[error("dataset {0} has no labels of more than one class")]
    Unlabelled(String),
    #[error("{file}: {reason}")]
    Stored { file: PathBuf, reason: String },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The images a judge learns from and is scored on.
pub struct JudgeData {
    /// Names the judge's kept file: `mnist-official`, or the dataset's own name.
    pub name: String,
    pub train: Dataset,
    pub test: Dataset,
    /// The official training and test sets (`true`), or the dataset's own seeded 4:1 split.
    pub official: bool,
}

/// Real images scored as the floor when the judge has an official split (a sample of its training
/// set, as many as the test set it is compared with).
const FLOOR_IMAGES: usize = 10_000;

impl JudgeData {
    /// The strongest judge data for `ds`: the official split when it is fetched into `data_dir`
    /// (`scripts/fetch-data.sh`), else `ds`'s own split by `seed`. A fetched split that cannot be
    /// read is an error, not a silent fallback to the weaker judge.
    pub fn for_dataset(
        ds: &Dataset,
        data_dir: &Path,
        seed: u64,
    ) -> Result<JudgeData, ClassifierError> {
        let [channels, side, _] = shape_for(ds)?;
        let opts = LoadOptions {
            size: Some(side),
            channels: Some(channels),
            seed,
            data_dir: data_dir.into(),
            tokens: Default::default(),
        };
        if let Ok(source) = ds.name.parse::<DataSource>() {
            if let Some((train, test)) = data::official_split(&source, &opts)? {
                let name = train.name.trim_end_matches("-train").to_string();
                return Ok(JudgeData {
                    name: format!("{name}-official"),
                    train,
                    test,
                    official: true,
                });
            }
        }
        Ok(JudgeData::own_split(ds, seed))
    }

    /// `ds`'s own seeded 4:1 split.
    pub fn own_split(ds: &Dataset, seed: u64) -> JudgeData {
        let (train, test) = data::split(ds.len(), seed);
        JudgeData {
            name: ds.name.clone(),
            train: ds.subset(&train),
            test: ds.subset(&test),
            official: false,
        }
    }

    /// What the FID of generated images is measured against: the official test set, or (own
    /// split) the training part, as earlier versions did.
    pub fn reference(&self) -> &Dataset {
        if self.official {
            &self.test
        } else {
            &self.train
        }
    }

    /// Real images that no FID reference holds, scored like generated ones: the floor a perfect
    /// generator would reach. Official split: a seeded sample of the training set; own split: the
    /// held-out part.
    pub fn floor(&self, seed: u64) -> Dataset {
        if !self.official {
            return self.test.clone();
        }
        let mut idx: Vec<usize> = (0..self.train.len()).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0xf100));
        idx.truncate(FLOOR_IMAGES);
        self.train.subset(&idx)
    }

    /// One line on what the judge learned and where it was scored.
    pub fn describe(&self) -> String {
        let how = if self.official {
            "the official training images, scored on the official test images"
        } else {
            "4/5 of the dataset, scored on the other 1/5 (run scripts/fetch-data.sh for the official split)"
        };
        format!(
            "{} ({} + {} images): {how}",
            self.name,
            self.train.len(),
            self.test.len()
        )
    }
}

/// A trained classifier and its accuracy on its test images.
pub struct Judge {
    pub net: LeNet,
    pub shape: Shape,
    pub test_accuracy: f32,
    pub device: Device,
}

/// The `[channels, side, classes]` a dataset needs.
pub fn shape_for(ds: &Dataset) -> Result<Shape, ClassifierError> {
    match ds.kind {
        SampleKind::Image {
            channels,
            height,
            width,
        } if height == width && height >= 28 => {
            let classes = ds.labels.iter().copied().max().unwrap_or(0) as usize + 1;
            if classes < 2 {
                return Err(ClassifierError::Unlabelled(ds.name.clone()));
            }
            Ok([channels, height, classes])
        }
        kind => Err(ClassifierError::Unsupported(kind)),
    }
}

impl Judge {
    /// Trains on `data.train` for `epochs` (Adam, batch 64, the rate halved every third epoch),
    /// then measures accuracy on `data.test`.
    pub fn train(data: &JudgeData, epochs: usize, seed: u64) -> Result<Judge, ClassifierError> {
        let shape = shape_for(&data.train)?;
        let (ds, test) = (&data.train, &data.test);
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let mut net = crate::family::seeded(seed, &ad, || {
            LeNet::new(shape, &ad).map(&mut crate::model::Materialize)
        });
        let mut opt = AdamConfig::new().init();
        let loss = CrossEntropyLossConfig::new().init(&ad);
        let mut train: Vec<usize> = (0..ds.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for epoch in 0..epochs {
            train.shuffle(&mut rng);
            let lr = 1e-3 / f64::from(1u32 << (epoch / 3).min(16));
            for idx in train.chunks(64) {
                let x = ds.batch(idx, &ad);
                let y = ds.label_batch(idx, &ad);
                let l = loss.forward(net.forward(x), y);
                let grads = GradientsParams::from_grads(l.backward(), &net);
                net = opt.step(lr, net, grads);
            }
        }
        let mut judge = Judge {
            net: net.valid(),
            shape,
            test_accuracy: 0.0,
            device,
        };
        let predicted = judge.classify(&test.samples);
        let correct = predicted
            .iter()
            .zip(&test.labels)
            .filter(|(p, &l)| **p == l as usize)
            .count();
        judge.test_accuracy = correct as f32 / test.len().max(1) as f32;
        Ok(judge)
    }

    /// Where the judge trained on `data` is kept in the folder `classifiers`: one file per
    /// judge data and shape, so that judging models of different shapes keeps each judge instead
    /// of retraining and overwriting one file by turns.
    pub fn kept_file(
        classifiers: &Path,
        data: &JudgeData,
    ) -> Result<std::path::PathBuf, ClassifierError> {
        let [channels, side, _] = shape_for(&data.train)?;
        let name = data.name.replace(['/', ':'], "_");
        Ok(classifiers.join(format!("{name}_{channels}x{side}x{side}.ckpt")))
    }

    /// The judge of `data` kept in `classifiers`, or a new one trained (and kept there) if there
    /// is none. A kept classifier for another shape is replaced.
    pub fn load_or_train(
        classifiers: &Path,
        data: &JudgeData,
        seed: u64,
    ) -> Result<Judge, ClassifierError> {
        let file = Judge::kept_file(classifiers, data)?;
        let shape = shape_for(&data.train)?;
        if file.exists() {
            if let Ok(judge) = Judge::load(&file, shape) {
                return Ok(judge);
            }
        }
        let epochs = if data.official {
            EPOCHS_OFFICIAL
        } else {
            EPOCHS_OWN_SPLIT
        };
        let judge = Judge::train(data, epochs, seed)?;
        judge.save(&file)?;
        Ok(judge)
    }

    fn save(&self, file: &Path) -> Result<(), ClassifierError> {
        let stored = |reason: String| ClassifierError::Stored {
            file: file.into(),
            reason,
        };
        let record = self
            .net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| stored(e.to_string()))?;
        let meta = serde_json::json!({"shape": self.shape, "test_accuracy": self.test_accuracy});
        let ckpt = Checkpoint {
            step: 0,
            sections: vec![
                ("meta".into(), meta.to_string().into_bytes()),
                ("lenet".into(), record.to_vec()),
            ],
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ClassifierError::Io {
                file: dir.into(),
                source,
            })?;
        }
        write_atomic(file, &ckpt.to_bytes()).map_err(|source| ClassifierError::Io {
            file: file.into(),
            source,
        })
    }

    fn load(file: &Path, shape: Shape) -> Result<Judge, ClassifierError> {
        let stored = |reason: String| ClassifierError::Stored {
            file: file.into(),
            reason,
        };
        let ckpt = Checkpoint::read(file).map_err(|e| stored(e.to_string()))?;
        let meta: serde_json::Value = serde_json::from_slice(
            ckpt.section("meta", file)
                .map_err(|e| stored(e.to_string()))?,
        )
        .map_err(|e| stored(e.to_string()))?;
        if meta["shape"] != serde_json::json!(shape) {
            return Err(stored(format!("made for shape {}", meta["shape"])));
        }
        let device = Device::flex();
        let bytes = burn::tensor::Bytes::from_bytes_vec(
            ckpt.section("lenet", file)
                .map_err(|e| stored(e.to_string()))?
                .to_vec(),
        );
        let record =
            burn::store::ModuleRecord::from_bytes(bytes).map_err(|e| stored(e.to_string()))?;
        let net = LeNet::new(shape, &device)
            .try_load_record(record)
            .map_err(|e| stored(e.to_string()))?;
        Ok(Judge {
            net,
            shape,
            test_accuracy: meta["test_accuracy"].as_f64().unwrap_or(0.0) as f32,
            device,
        })
    }

    /// Features and predicted classes of `samples` (`[N, C, H, W]` flattened, in `[-1, 1]`),
    /// in batches of 500.
    pub fn judge(&self, samples: &[f32]) -> (Vec<[f32; FEATURES]>, Vec<usize>) {
        let [c, side, _] = self.shape;
        let per = c * side * side;
        let mut features = Vec::with_capacity(samples.len() / per);
        let mut classes = Vec::with_capacity(samples.len() / per);
        for chunk in samples.chunks(500 * per) {
            let n = chunk.len() / per;
            let x = Tensor::from_data(
                TensorData::new(chunk[..n * per].to_vec(), [n, c, side, side]),
                &self.device,
            );
            let f = self.net.features(x);
            let logits = self.net.classify.forward(f.clone());
            let f: Vec<f32> = f.into_data().try_to_vec_as().unwrap_or_default();
            let p: Vec<i64> = logits
                .argmax(1)
                .into_data()
                .try_to_vec_as()
                .unwrap_or_default();
            features.extend(f.chunks_exact(FEATURES).map(|r| {
                let mut a = [0.0; FEATURES];
                a.copy_from_slice(r);
                a
            }));
            classes.extend(p.into_iter().map(|v| v as usize));
        }
        (features, classes)
    }

    /// Predicted classes only.
    pub fn classify(&self, samples: &[f32]) -> Vec<usize> {
        self.judge(samples).1
    }
}

/// The samples `idx` of `ds`, concatenated.
pub fn images(ds: &Dataset, idx: &[usize]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| ds.sample(i).iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ds`'s samples `idx` as an IDX image file and its label file.
    fn idx_files(ds: &Dataset, idx: &[usize]) -> (Vec<u8>, Vec<u8>) {
        let mut images = [0x803u32, idx.len() as u32, 28, 28]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>();
        let mut labels = [0x801u32, idx.len() as u32]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>();
        for &i in idx {
            images.extend(
                ds.sample(i)
                    .iter()
                    .map(|v| ((v + 1.0) * 127.5).round() as u8),
            );
            labels.push(ds.labels[i]);
        }
        (images, labels)
    }

    /// With the official files in the data folder the judge learns the training file and is
    /// scored on the test file, which the FID also compares against; without them it falls back
    /// to the dataset's own split; a damaged file is an error, not a quiet fallback.
    #[test]
    fn the_judge_uses_the_official_split_when_it_is_fetched() {
        let digits = data::load(&DataSource::Digits, &LoadOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let own = JudgeData::for_dataset(&digits, dir.path(), 0).unwrap();
        assert!(!own.official);
        assert_eq!((own.train.len(), own.test.len()), (4000, 1000));
        assert_eq!(own.reference().len(), 4000);
        assert_eq!(own.floor(0).len(), 1000);

        let mnist = dir.path().join("mnist");
        std::fs::create_dir(&mnist).unwrap();
        for (prefix, idx) in [
            ("train", (0..digits.len()).step_by(5).collect::<Vec<_>>()),
            ("t10k", (1..digits.len()).step_by(50).collect()),
        ] {
            let (images, labels) = idx_files(&digits, &idx);
            std::fs::write(mnist.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
            std::fs::write(mnist.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
        }
        let official = JudgeData::for_dataset(&digits, dir.path(), 0).unwrap();
        assert!(official.official);
        assert_eq!(official.name, "mnist-official");
        assert_eq!((official.train.len(), official.test.len()), (1000, 100));
        assert_eq!(official.reference().len(), 100);
        assert_eq!(official.floor(0).len(), 1000);
        assert_eq!(official.test.labels[0], digits.labels[1]);
        assert_eq!(official.test.sample(0), digits.sample(1));

        let t10k = mnist.join("t10k-images-idx3-ubyte");
        let bytes = std::fs::read(&t10k).unwrap();
        std::fs::write(&t10k, &bytes[..bytes.len() / 2]).unwrap();
        let err = JudgeData::for_dataset(&digits, dir.path(), 0)
            .err()
            .expect("a truncated official file is an error");
        assert!(err.to_string().contains("t10k-images"), "{err}");
    }
}
