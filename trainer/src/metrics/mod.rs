//! How good is a generator: the numbers of `pocketgan-train eval`.
//!
//! - Toy mixtures: modes covered and the share of high-quality samples (within 3 std of a mode), as
//!   the Unrolled GAN, VEEGAN and PacGAN papers report them.
//! - Images, in the feature space of a small classifier trained on the dataset ([`classifier`]):
//!   the Fréchet distance to the training images ("classifier FID", [`frechet`]), class coverage
//!   and KL(p(y) || uniform) of the predicted classes, and precision / recall ([`manifold`]). The
//!   same numbers for held-out real images are the floor a perfect generator would reach.
//!
//! A generator is a training run (Burn), an ONNX file (tract) or a `.pgq` (the int8 engine), so
//! the quality cost of quantization is one command each.

pub mod classifier;
pub mod frechet;
pub mod manifold;
pub mod optimal;
pub mod sensitivity;
pub mod sequences;
pub mod series;
pub mod sgan;
pub mod swd;
pub mod text_image;
pub mod translation;
pub mod watch;

use std::path::{Path, PathBuf};

use pocketgan_runtime::engine::{Engine, Int8Engine, TractEngine};

use crate::data::{self, DataSource, Dataset, LoadOptions, MixtureCoverage};
use crate::error::TrainError;
use crate::family::samples;
use crate::model::default_class;
use crate::run::RunDir;
use classifier::{Judge, JudgeData, FEATURES};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Classifier(#[from] classifier::ClassifierError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("{file}: {reason}")]
    Model { file: PathBuf, reason: String },
    #[error("{0}")]
    Request(String),
    #[error("the generator makes {made:?} samples but {data} has {wanted:?}")]
    Mismatch {
        made: Vec<usize>,
        wanted: Vec<usize>,
        data: String,
    },
}

/// Runs `f` on the generator in `file` (`.pgq` on the int8 engine, `.onnx` on tract) and its
/// bytes; returns the row name `file (engine)` and `f`'s result. `f`'s error becomes the file's.
pub(crate) fn with_exported<R>(
    file: &Path,
    f: impl FnOnce(&mut dyn pocketgan_runtime::engine::runner::Runner, &[u8]) -> Result<R, String>,
) -> Result<(String, R), EvalError> {
    use pocketgan_runtime::engine::runner::{Int8Runner, Runner, TractRunner};
    let fail = |reason: String| EvalError::Model {
        file: file.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
    let model;
    let mut runner: Box<dyn Runner> = match file.extension().and_then(|e| e.to_str()) {
        Some("pgq") => {
            model = pocketgan_runtime::Model::parse(&bytes).map_err(|e| fail(e.to_string()))?;
            Box::new(Int8Runner::new(model, pocketgan_runtime::Isa::detect()))
        }
        Some("onnx") => Box::new(TractRunner::new(&bytes).map_err(|e| fail(e.to_string()))?),
        _ => return Err(fail("expected a .pgq or .onnx generator".into())),
    };
    let base = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = f(runner.as_mut(), &bytes).map_err(fail)?;
    Ok((format!("{base} ({})", runner.name()), out))
}

/// Metrics of one set of image samples.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageMetrics {
    pub samples: usize,
    /// Fréchet distance to the training split in classifier feature space.
    pub fid: f64,
    /// Classes that receive at least a tenth of their uniform share of samples (1% of them for
    /// 10 classes): a class the generator draws, not one a few misclassified samples fall into.
    pub classes_covered: usize,
    pub classes: usize,
    /// KL(p(predicted class) || uniform), in nats: 0 for a perfectly balanced generator,
    /// ln(classes) for one that draws a single class.
    pub kl_uniform: f64,
    pub precision: f64,
    pub recall: f64,
    pub class_counts: Vec<usize>,
}

/// Everything a dataset's image metrics compare against.
pub struct Reference {
    pub judge: Judge,
    /// What the judge learned from and was scored on ([`JudgeData::describe`]).
    pub judge_data: String,
    /// Features of the FID's reference images ([`JudgeData::reference`]).
    reference_features: Vec<[f32; FEATURES]>,
    /// The floor: real images the reference does not hold, scored like generated ones.
    pub held_out: ImageMetrics,
}

/// Samples used for precision and recall (quadratic in this number).
pub const MANIFOLD_SAMPLES: usize = 2000;

impl Reference {
    /// The dataset's judge (kept in `classifiers/`, trained on first use) and the floor.
    pub fn new(ds: &Dataset, classifiers: &Path, seed: u64) -> Result<Reference, EvalError> {
        let data = JudgeData::for_dataset(ds, &LoadOptions::default().data_dir, seed)?;
        Ok(Reference::with(&data, classifiers, seed)?)
    }

    /// [`Self::new`] for judge data already loaded.
    pub fn with(
        data: &JudgeData,
        classifiers: &Path,
        seed: u64,
    ) -> Result<Reference, classifier::ClassifierError> {
        let judge = Judge::load_or_train(classifiers, data, seed)?;
        let (reference_features, _) = judge.judge(&data.reference().samples);
        let mut reference = Reference {
            judge,
            judge_data: data.describe(),
            reference_features,
            held_out: empty(),
        };
        reference.held_out = reference.measure(&data.floor(seed).samples);
        Ok(reference)
    }

    /// Metrics of `samples` (`[N, C, H, W]` flattened, in `[-1, 1]`).
    pub fn measure(&self, samples: &[f32]) -> ImageMetrics {
        self.measure_and_classify(samples).0
    }

    /// [`Self::measure`], and the class the judge gives each sample.
    pub fn measure_and_classify(&self, samples: &[f32]) -> (ImageMetrics, Vec<usize>) {
        let (features, classes) = self.judge.judge(samples);
        let k = self.judge.shape[2];
        let (counts, covered, kl) = class_stats(&classes, k);
        let m = MANIFOLD_SAMPLES;
        let (precision, recall) = manifold::precision_recall(
            &self.reference_features[..self.reference_features.len().min(m)],
            &features[..features.len().min(m)],
        );
        let metrics = ImageMetrics {
            samples: classes.len(),
            fid: frechet::distance(&self.reference_features, &features),
            classes_covered: covered,
            classes: k,
            kl_uniform: kl,
            precision,
            recall,
            class_counts: counts,
        };
        (metrics, classes)
    }
}

/// Per-class counts of predicted `classes` (of `k`), classes covered (see
/// [`ImageMetrics::classes_covered`]) and KL(p || uniform) in nats.
pub fn class_stats(classes: &[usize], k: usize) -> (Vec<usize>, usize, f64) {
    let mut counts = vec![0usize; k];
    for &c in classes {
        counts[c.min(k - 1)] += 1;
    }
    let n = classes.len().max(1) as f64;
    let kl = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            p * (p * k as f64).ln()
        })
        .sum();
    let covered = counts
        .iter()
        .filter(|&&c| c as f64 * 10.0 * k as f64 >= n)
        .count();
    (counts, covered, kl)
}

/// The share of samples whose judged class is the one asked for.
pub fn class_accuracy(asked: &[usize], judged: &[usize]) -> f64 {
    let hits = asked.iter().zip(judged).filter(|(a, j)| a == j).count();
    hits as f64 / asked.len().min(judged.len()).max(1) as f64
}

fn empty() -> ImageMetrics {
    ImageMetrics {
        samples: 0,
        fid: 0.0,
        classes_covered: 0,
        classes: 0,
        kl_uniform: 0.0,
        precision: 0.0,
        recall: 0.0,
        class_counts: Vec::new(),
    }
}

/// What `eval` reads.
#[derive(Debug, Clone)]
pub enum Generator {
    /// A training run folder: its newest checkpoint, in Burn (the generator's moving average
    /// when the run keeps one).
    Run(PathBuf),
    /// A training run's raw generator, without its moving average: the average's effect is the
    /// difference between this and [`Generator::Run`].
    RawRun(PathBuf),
    /// An ONNX generator, in tract.
    Onnx(PathBuf),
    /// An int8 model, on the runtime's own kernels.
    Pgq(PathBuf),
}

impl Generator {
    pub fn from_path(path: &Path) -> Generator {
        match path.extension().and_then(|e| e.to_str()) {
            Some("onnx") => Generator::Onnx(path.into()),
            Some("pgq") => Generator::Pgq(path.into()),
            _ => Generator::Run(path.into()),
        }
    }

    /// `n` samples from latents drawn from `seed`, and the data the generator was made for
    /// (a run knows its own; model files take `data`).
    pub fn samples(&self, n: usize, seed: u64, data: &DataSource) -> Result<Samples, EvalError> {
        let model_err = |file: &Path, reason: String| EvalError::Model {
            file: file.into(),
            reason,
        };
        match self {
            Generator::Run(dir) | Generator::RawRun(dir) => {
                let run = RunDir(dir.clone());
                let config = run.read_config()?;
                let device = config
                    .device
                    .device()
                    .map_err(|e| model_err(dir, e.to_string()))?;
                let restored = run.load_latest(&config, &device.clone().autodiff())?;
                let generator = match self {
                    Generator::RawRun(_) => restored.family.raw_generator(),
                    _ => restored.family.latent_generator(),
                };
                let generator = generator.ok_or_else(|| {
                    model_err(dir, "this family has no latent generator to sample".into())
                })?;
                let samples = samples::generate(generator, &config, n, seed, &device);
                let k = generator.classes();
                Ok(Samples {
                    fell_back_past: restored
                        .skipped
                        .iter()
                        .map(|(file, why)| format!("{}: {why}", file.display()))
                        .collect(),
                    values: samples,
                    dims: config.model.sample.dims(),
                    source: config.source()?,
                    // `generate` asks a conditional generator for every class in turn.
                    classes: (k > 0).then(|| (0..n).map(|i| default_class(i, k)).collect()),
                })
            }
            Generator::Onnx(file) | Generator::Pgq(file) => {
                let bytes = std::fs::read(file).map_err(|e| model_err(file, e.to_string()))?;
                let failed = |e: &dyn std::fmt::Display| model_err(file, e.to_string());
                let mut engine: Box<dyn Engine + '_> = if let Generator::Pgq(_) = self {
                    let model = pocketgan_runtime::Model::parse(&bytes).map_err(|e| failed(&e))?;
                    Box::new(Int8Engine::new(model, pocketgan_runtime::Isa::detect()))
                } else {
                    let g = pocketgan_runtime::engine::latent_generator(&bytes)
                        .map_err(|e| failed(&e))?;
                    Box::new(TractEngine::new(&bytes, g.latent, g.image))
                };
                let latent = engine.latent();
                let z = pocketgan_runtime::quantize::latents(seed, n, latent);
                // A conditional generator is asked for every class in turn.
                let k = engine.classes();
                let classes: Vec<u32> = if k > 0 {
                    (0..n).map(|i| default_class(i, k) as u32).collect()
                } else {
                    Vec::new()
                };
                // Batches of 500 keep tract's plans and memory small.
                let mut values = Vec::new();
                for (i, zc) in z.chunks(500 * latent).enumerate() {
                    let m = zc.len() / latent;
                    let cc = classes.get(i * 500..i * 500 + m).unwrap_or_default();
                    let out = engine
                        .generate_with(zc, cc, m)
                        .map_err(|e| model_err(file, format!("batch {i}: {e}")))?;
                    values.extend(out);
                }
                let (c, h, w) = engine.image_shape();
                Ok(Samples {
                    fell_back_past: Vec::new(),
                    values,
                    dims: vec![c, h, w],
                    source: data.clone(),
                    classes: (k > 0).then(|| classes.iter().map(|&c| c as usize).collect()),
                })
            }
        }
    }
}

/// Generated samples and what they are.
pub struct Samples {
    /// `[N, C, H, W]` (toy: `[N, 1, 1, 2]`) flattened.
    pub values: Vec<f32>,
    /// `[C, H, W]` of one sample.
    pub dims: Vec<usize>,
    pub source: DataSource,
    /// The class each sample was asked to be (conditional generators).
    pub classes: Option<Vec<usize>>,
    /// A run's newer checkpoints that could not be restored, each with why: the samples come
    /// from an older one.
    pub fell_back_past: Vec<String>,
}

/// The result of `eval`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Toy {
        /// A run's newer checkpoints that could not be restored ([`Samples::fell_back_past`]).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fell_back_past: Vec<String>,
        mixture: String,
        samples: usize,
        modes_covered: usize,
        modes: usize,
        high_quality: f64,
        /// A run on a 1-D mixture: its D against the optimal D* ([`optimal`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        optimal: Option<optimal::OptimalNumbers>,
        /// Where the optimal discriminator's picture was drawn.
        #[serde(skip_serializing_if = "Option::is_none")]
        picture: Option<PathBuf>,
    },
    Images {
        /// A run's newer checkpoints that could not be restored ([`Samples::fell_back_past`]).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fell_back_past: Vec<String>,
        data: String,
        /// What the judge learned from and was scored on.
        judge: String,
        classifier_test_accuracy: f32,
        generated: ImageMetrics,
        held_out_real: ImageMetrics,
        /// Conditional generators: the share of samples the judge puts in the class they were
        /// asked for.
        #[serde(skip_serializing_if = "Option::is_none")]
        class_accuracy: Option<f64>,
        /// SGAN runs: the discriminator as a classifier, against supervised training alone.
        #[serde(skip_serializing_if = "Option::is_none")]
        semi_supervised: Option<sgan::SganReport>,
        /// Images of [`SWD_MIN_SIDE`] px or more: Progressive GAN's sliced Wasserstein distance.
        #[serde(skip_serializing_if = "Option::is_none")]
        swd: Option<swd::SwdReport>,
    },
}

/// Smallest image side `eval` reports the sliced Wasserstein distance for: two pyramid levels
/// or more (the authors stop at 16 px). The 28 px digits get the classifier's metrics only,
/// which keeps their evaluation (and CI's) as fast as before.
pub const SWD_MIN_SIDE: usize = 32;

/// Evaluates `generator` on `n` samples; image metrics use the judges kept in `classifiers`.
pub fn evaluate(
    generator: &Generator,
    n: usize,
    seed: u64,
    data: &DataSource,
    classifiers: &Path,
) -> Result<Report, EvalError> {
    // Scores of fewer than two samples are not scores (a covariance needs two).
    if n < 2 {
        return Err(EvalError::Request(format!(
            "--n must be at least 2 samples, not {n}"
        )));
    }
    pocketgan_runtime::limits::check_batch("--n", n, 1)
        .map_err(|e| EvalError::Request(e.to_string()))?;
    let Samples {
        values: samples,
        dims,
        source,
        classes: asked,
        fell_back_past,
    } = generator.samples(n, seed, data)?;
    if let Some(mixture) = source.mixture() {
        let wanted = source.native_kind().dims();
        if dims != wanted {
            return Err(EvalError::Mismatch {
                made: dims,
                wanted,
                data: source.to_string(),
            });
        }
        let MixtureCoverage {
            modes_covered,
            modes,
            high_quality,
            ..
        } = mixture.coverage(&samples);
        let (mut optimal, mut picture) = (None, None);
        if let Generator::Run(dir) | Generator::RawRun(dir) = generator {
            if let Some((analysis, step)) = optimal::of_run(&RunDir(dir.clone()))? {
                let file = dir.join(optimal::PICTURE);
                crate::render::optimal_discriminator(
                    &analysis,
                    &optimal::caption(&analysis.numbers, step),
                )
                .and_then(|image| image.save(&file).map_err(|e| e.to_string()))
                .map_err(|reason| EvalError::Model {
                    file: file.clone(),
                    reason: format!("cannot draw the optimal discriminator: {reason}"),
                })?;
                (optimal, picture) = (Some(analysis.numbers), Some(file));
            }
        }
        return Ok(Report::Toy {
            optimal,
            picture,
            fell_back_past,
            mixture: mixture.name.to_string(),
            samples: samples.len() / mixture.dim().max(1),
            modes_covered,
            modes,
            high_quality: high_quality as f64,
        });
    }
    let ds = data::load(
        &source,
        &LoadOptions {
            size: dims.get(1).copied(),
            channels: dims.first().copied(),
            ..LoadOptions::default()
        },
    )?;
    if ds.kind.dims() != dims {
        return Err(EvalError::Mismatch {
            made: dims,
            wanted: ds.kind.dims(),
            data: ds.name.clone(),
        });
    }
    let semi_supervised = match generator {
        Generator::Run(dir) | Generator::RawRun(dir) => {
            let run = RunDir(dir.clone());
            sgan::evaluate_run(&run, &run.read_config()?, &ds)?
        }
        _ => None,
    };
    let judge_data = JudgeData::for_dataset(&ds, &LoadOptions::default().data_dir, 0)?;
    let reference = Reference::with(&judge_data, classifiers, 0)?;
    let (generated, judged) = reference.measure_and_classify(&samples);
    let swd = match ds.kind {
        data::SampleKind::Image {
            channels,
            height,
            width,
        } if height == width && height >= SWD_MIN_SIDE => {
            let floor = judge_data.floor(0);
            let shape = [channels, height, width];
            let d = swd::of_sets(
                &judge_data.reference().samples,
                &[&samples, &floor.samples],
                shape,
                seed,
            )
            .map_err(|e| EvalError::Request(format!("sliced Wasserstein distance: {e}")))?;
            let mut d = d.into_iter();
            Some(swd::SwdReport {
                sizes: swd::level_sizes(height, swd::MIN_SIZE),
                generated: d.next().unwrap_or_default(),
                held_out_real: d.next().unwrap_or_default(),
            })
        }
        _ => None,
    };
    Ok(Report::Images {
        fell_back_past,
        data: ds.name.clone(),
        judge: reference.judge_data.clone(),
        classifier_test_accuracy: reference.judge.test_accuracy,
        generated,
        held_out_real: reference.held_out.clone(),
        class_accuracy: asked.map(|asked| class_accuracy(&asked, &judged)),
        semi_supervised,
        swd,
    })
}
