//! The judge of image metrics: a small LeNet-style classifier per dataset, trained once on its
//! training split and kept under `runs/classifiers/`. Its 64-unit penultimate layer is the feature
//! space of the classifier FID and of precision/recall (the usual Inception network cannot be
//! downloaded here).

use std::path::{Path, PathBuf};

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::TensorData;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::checkpoint::{write_atomic, Checkpoint};
use crate::data::{Dataset, SampleKind};

/// Width of the feature layer.
pub const FEATURES: usize = 64;

#[derive(Module, Debug)]
pub struct LeNet {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    features: Linear,
    classify: Linear,
}

/// `[channels, side, classes]`: what a classifier was built for.
pub type Shape = [usize; 3];

impl LeNet {
    /// conv5 (16) -> pool -> conv5 (32) -> pool -> 64 -> classes, for `side` of 28 or more.
    pub fn new([channels, side, classes]: Shape, device: &Device) -> LeNet {
        let after = ((side - 4) / 2 - 4) / 2;
        LeNet {
            conv1: Conv2dConfig::new([channels, 16], [5, 5]).init(device),
            conv2: Conv2dConfig::new([16, 32], [5, 5]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            features: LinearConfig::new(32 * after * after, FEATURES).init(device),
            classify: LinearConfig::new(FEATURES, classes).init(device),
        }
    }

    /// Penultimate-layer features `[N, FEATURES]` of images `[N, C, H, W]` in `[-1, 1]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        relu(self.features.forward(x.flatten(1, 3)))
    }

    /// Class logits `[N, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify.forward(self.features(x))
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
}

/// A trained classifier and its accuracy on the held-out split.
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
    /// Trains on the training split for `epochs` (Adam, batch 64), then measures held-out
    /// accuracy.
    pub fn train(ds: &Dataset, epochs: usize, seed: u64) -> Result<Judge, ClassifierError> {
        let shape = shape_for(ds)?;
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let mut net = crate::family::seeded(seed, &ad, || {
            LeNet::new(shape, &ad).map(&mut crate::model::Materialize)
        });
        let mut opt = AdamConfig::new().init();
        let loss = CrossEntropyLossConfig::new().init(&ad);
        let (mut train, test) = crate::data::split(ds.len(), seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..epochs {
            train.shuffle(&mut rng);
            for idx in train.chunks(64) {
                let x = ds.batch(idx, &ad);
                let y = ds.label_batch(idx, &ad);
                let l = loss.forward(net.forward(x), y);
                let grads = GradientsParams::from_grads(l.backward(), &net);
                net = opt.step(1e-3, net, grads);
            }
        }
        let mut judge = Judge {
            net: net.valid(),
            shape,
            test_accuracy: 0.0,
            device,
        };
        let predicted = judge.classify(&images(ds, &test));
        let correct = predicted
            .iter()
            .zip(&test)
            .filter(|(p, &i)| **p as u8 == ds.labels[i])
            .count();
        judge.test_accuracy = correct as f32 / test.len().max(1) as f32;
        Ok(judge)
    }

    /// Where the judge of `ds` is kept in the folder `classifiers`: one file per dataset and
    /// shape, so that judging models of different shapes keeps each judge instead of retraining
    /// and overwriting one file by turns.
    pub fn kept_file(
        classifiers: &Path,
        ds: &Dataset,
    ) -> Result<std::path::PathBuf, ClassifierError> {
        let [channels, side, _] = shape_for(ds)?;
        let name = ds.name.replace(['/', ':'], "_");
        Ok(classifiers.join(format!("{name}_{channels}x{side}x{side}.ckpt")))
    }

    /// The classifier kept at `file`, or a new one trained (and kept there) if there is none.
    /// A kept classifier for another shape is replaced.
    pub fn load_or_train(file: &Path, ds: &Dataset, seed: u64) -> Result<Judge, ClassifierError> {
        let shape = shape_for(ds)?;
        if file.exists() {
            if let Ok(judge) = Judge::load(file, shape) {
                return Ok(judge);
            }
        }
        let judge = Judge::train(ds, 3, seed)?;
        judge.save(file)?;
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
