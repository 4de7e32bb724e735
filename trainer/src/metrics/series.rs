//! TimeGAN's scores (Yoon et al. 2019, the authors' `metrics/`), for any series generator:
//!
//! - **Discriminative score**: a post-hoc GRU classifier (hidden = features / 2, one layer, its
//!   last state to one logit) trained to tell real from synthetic series (2,000 Adam steps on
//!   batches of 128 of each, 80% of each set), then `|accuracy - 0.5|` on the other 20%. 0 means
//!   indistinguishable.
//! - **Predictive score** ("train on synthetic, test on real"): a post-hoc GRU (hidden = features /
//!   2) reads the first `features - 1` features of steps 1..T-1 and predicts the last feature of
//!   steps 2..T (sigmoid output, 5,000 Adam steps on batches of 128 synthetic series, absolute
//!   error); the score is its mean absolute error on the real series.
//!
//! Each score is the mean and standard deviation over repetitions with fresh networks, splits and
//! batches. Beside the generator, the same scores of two references frame them: real series with
//! their time steps shuffled (what a generator that gets each step's values but not their order
//! would score) and held-out real series (the floor of the discriminative score, the predictive
//! score of training on real data).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::TensorData;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;

use super::EvalError;
use crate::data::{self, LoadOptions, SampleKind};
use crate::family::timegan::{adam, TimeGan};
use crate::family::{Family, Net};
use crate::model::timegan::SeriesNet;
use crate::run::RunDir;

/// How the scores are computed: the authors' protocol unless changed (tests shorten it).
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    /// Series of each kind (real and synthetic), at most the data's.
    pub n: usize,
    pub repetitions: usize,
    pub discriminator_steps: usize,
    pub predictor_steps: usize,
    pub batch: usize,
    pub seed: u64,
}

impl Default for Protocol {
    fn default() -> Self {
        Self {
            n: 10_000,
            repetitions: 5,
            discriminator_steps: 2000,
            predictor_steps: 5000,
            batch: 128,
            seed: 0,
        }
    }
}

/// Mean and standard deviation over repetitions.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Self {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            std: var.sqrt(),
        }
    }
}

/// One row of the report: a set of series and its two scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreRow {
    pub name: String,
    pub discriminative: Spread,
    /// `None` for series of one feature (nothing to predict it from).
    pub predictive: Option<Spread>,
}

/// `eval` of a TimeGAN run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesReport {
    pub data: String,
    pub series: usize,
    pub length: usize,
    pub features: usize,
    pub repetitions: usize,
    pub rows: Vec<ScoreRow>,
}

/// Series in memory, row-major `[n, length, features]`.
#[derive(Debug, Clone)]
pub struct Series {
    pub values: Vec<f32>,
    pub length: usize,
    pub features: usize,
}

impl Series {
    pub fn len(&self) -> usize {
        self.values.len() / (self.length * self.features).max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn one(&self, i: usize) -> &[f32] {
        let w = self.length * self.features;
        &self.values[i * w..(i + 1) * w]
    }

    fn pick(&self, idx: &[usize]) -> Series {
        Series {
            values: idx.iter().flat_map(|&i| self.one(i)).copied().collect(),
            length: self.length,
            features: self.features,
        }
    }

    /// `[n, T, F]` of series `idx`.
    fn tensor(&self, idx: &[usize], device: &Device) -> Tensor<3> {
        let v: Vec<f32> = idx.iter().flat_map(|&i| self.one(i)).copied().collect();
        Tensor::from_data(
            TensorData::new(v, [idx.len(), self.length, self.features]),
            device,
        )
    }

    /// Every series with its time steps in an order of its own (drawn from `seed`).
    pub fn shuffled_in_time(&self, seed: u64) -> Series {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5_4FF1E);
        let mut values = Vec::with_capacity(self.values.len());
        let mut order: Vec<usize> = (0..self.length).collect();
        for i in 0..self.len() {
            order.shuffle(&mut rng);
            let s = self.one(i);
            for &t in &order {
                values.extend_from_slice(&s[t * self.features..(t + 1) * self.features]);
            }
        }
        Series {
            values,
            length: self.length,
            features: self.features,
        }
    }
}

fn hidden(features: usize) -> usize {
    (features / 2).max(1)
}

/// The discriminative score of `fake` against `real` for one repetition drawn from `seed`.
pub fn discriminative(
    real: &Series,
    fake: &Series,
    p: &Protocol,
    seed: u64,
    device: &Device,
) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xD15C);
    let split = |n: usize, rng: &mut rand::rngs::StdRng| {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(rng);
        let cut = n * 8 / 10;
        (idx[..cut].to_vec(), idx[cut..].to_vec())
    };
    let (real_train, real_test) = split(real.len(), &mut rng);
    let (fake_train, fake_test) = split(fake.len(), &mut rng);
    let f = real.features;
    let mut net = Net::new(
        SeriesNet::new(f, hidden(f), 1, 1, false, seed ^ 0xC1A55, device),
        adam(),
    );
    let last = |net: &SeriesNet, x: Tensor<3>| {
        let t = x.dims()[1];
        net.forward(x).narrow(1, t - 1, 1)
    };
    let batch = p.batch.min(real_train.len()).min(fake_train.len()).max(1);
    for _ in 0..p.discriminator_steps {
        let r: Vec<usize> = real_train
            .choose_multiple(&mut rng, batch)
            .copied()
            .collect();
        let g: Vec<usize> = fake_train
            .choose_multiple(&mut rng, batch)
            .copied()
            .collect();
        let loss = {
            let d = net.get();
            -log_sigmoid(last(d, real.tensor(&r, device))).mean()
                - log_sigmoid(-last(d, fake.tensor(&g, device))).mean()
        };
        net.descend(&loss, 1e-3, device);
    }
    let d = net.get().valid();
    let inference = device.clone().without_autodiff();
    let correct = |s: &Series, idx: &[usize], want_real: bool| -> usize {
        idx.chunks(1024)
            .map(|chunk| {
                let logits = last(&d, s.tensor(chunk, &inference))
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default();
                logits.iter().filter(|&&l| (l > 0.0) == want_real).count()
            })
            .sum()
    };
    let right = correct(real, &real_test, true) + correct(fake, &fake_test, false);
    let total = (real_test.len() + fake_test.len()).max(1);
    (right as f64 / total as f64 - 0.5).abs()
}

/// The predictive score: a predictor trained on `train` series, its mean absolute error on
/// `test`; `None` for one feature.
pub fn predictive(
    train: &Series,
    test: &Series,
    p: &Protocol,
    seed: u64,
    device: &Device,
) -> Option<f64> {
    let (t, f) = (train.length, train.features);
    if f < 2 || t < 2 {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x94ED);
    // Inputs: features 1..F-1 of steps 1..T-1; targets: feature F of steps 2..T.
    let io = |s: &Series, idx: &[usize], device: &Device| {
        let x = s.tensor(idx, device);
        let n = idx.len();
        (
            x.clone().narrow(1, 0, t - 1).narrow(2, 0, f - 1),
            x.narrow(1, 1, t - 1)
                .narrow(2, f - 1, 1)
                .reshape([n, t - 1, 1]),
        )
    };
    let mut net = Net::new(
        SeriesNet::new(f - 1, hidden(f), 1, 1, true, seed ^ 0x9ED1C7, device),
        adam(),
    );
    let all: Vec<usize> = (0..train.len()).collect();
    let batch = p.batch.min(train.len()).max(1);
    for _ in 0..p.predictor_steps {
        let idx: Vec<usize> = all.choose_multiple(&mut rng, batch).copied().collect();
        let (x, y) = io(train, &idx, device);
        let loss = (net.get().forward(x) - y).abs().mean();
        net.descend(&loss, 1e-3, device);
    }
    let net = net.get().valid();
    let inference = device.clone().without_autodiff();
    let idx: Vec<usize> = (0..test.len()).collect();
    let mut sum = 0.0f64;
    for chunk in idx.chunks(1024) {
        let (x, y) = io(test, chunk, &inference);
        let err: Vec<f32> = (net.forward(x) - y)
            .abs()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        sum += err.iter().map(|&e| e as f64).sum::<f64>();
    }
    Some(sum / (test.len() * (t - 1)).max(1) as f64)
}

/// Both scores of `fake` against `real`, over `p.repetitions`.
pub fn score(name: &str, real: &Series, fake: &Series, p: &Protocol, device: &Device) -> ScoreRow {
    let reps = p.repetitions.max(1);
    let seeds = (0..reps as u64).map(|r| p.seed.wrapping_mul(1000) + r);
    let disc: Vec<f64> = seeds
        .clone()
        .map(|s| discriminative(real, fake, p, s, device))
        .collect();
    let pred: Option<Vec<f64>> = seeds
        .map(|s| predictive(fake, real, p, s, device))
        .collect();
    ScoreRow {
        name: name.into(),
        discriminative: Spread::of(&disc),
        predictive: pred.map(|v| Spread::of(&v)),
    }
}

/// The scores of a TimeGAN run's newest checkpoint, beside shuffled-in-time and held-out real
/// series; `pictures`, if given, is the folder that receives `pca.png` and `tsne.png`, the
/// authors' pictures of real against generated series.
pub fn evaluate(
    run: &RunDir,
    p: &Protocol,
    pictures: Option<&Path>,
    versus: &[PathBuf],
) -> Result<SeriesReport, EvalError> {
    if p.n < MIN_SERIES {
        return Err(EvalError::Request(format!(
            "the scores need at least {MIN_SERIES} series of each kind (a fifth held out for \
             the discriminator's test), not --n {}",
            p.n
        )));
    }
    let config = run.read_config()?;
    let SampleKind::Series { length, features } = config.model.sample else {
        return Err(EvalError::Request(format!(
            "{} is not a TimeGAN run",
            run.0.display()
        )));
    };
    let device = config
        .device
        .device()
        .map_err(|e| EvalError::Model {
            file: run.0.clone(),
            reason: e.to_string(),
        })?
        .autodiff();
    let (family, _, _) = run.restore_latest(|ckpt, path| {
        let mut g = TimeGan::init(&config, &device)?;
        g.load(ckpt, path)?;
        Ok(g)
    })?;
    let ds = data::load(
        &config.source()?,
        &LoadOptions {
            seed: config.seed,
            ..Default::default()
        },
    )?;
    if ds.kind != config.model.sample {
        return Err(EvalError::Mismatch {
            made: vec![length, features],
            wanted: ds.kind.dims(),
            data: config.data.clone(),
        });
    }
    let all = Series {
        values: ds.samples,
        length,
        features,
    };
    // The real series in a seeded order: the first n are the reference, the next n (where the
    // data has them) the held-out real row's.
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(p.seed ^ 0x0DE7));
    if all.len() < MIN_SERIES {
        return Err(EvalError::Request(format!(
            "{} holds {} series; the scores need at least {MIN_SERIES}",
            config.data,
            all.len()
        )));
    }
    let n = p.n.min(all.len());
    let real = all.pick(&order[..n]);
    let fake = Series {
        values: family.generate(n, p.seed ^ 0x6E7, &device),
        length,
        features,
    };
    let mut rows = vec![score("timegan", &real, &fake, p, &device)];
    // The exported generator on the runtime's engines (or series from a file), scored the same.
    for file in versus {
        let (name, values) = exported_series(file, n, p.seed, (length, features))?;
        let other = Series {
            values,
            length,
            features,
        };
        rows.push(score(&name, &real, &other, p, &device));
    }
    rows.push(score(
        "shuffled in time",
        &real,
        &real.shuffled_in_time(p.seed),
        p,
        &device,
    ));
    // Two disjoint halves of the data: real against real.
    let half = all.len() / 2;
    if half >= 2 {
        let m = n.min(half);
        let a = all.pick(&order[..m]);
        let b = all.pick(&order[half..half + m]);
        rows.push(score("real (held out)", &a, &b, p, &device));
    }
    if let Some(dir) = pictures {
        let (pca, tsne) = (
            crate::render::real_and_synthetic(
                &pca(&real, &fake, PICTURE_SERIES),
                "PCA of real and TimeGAN series",
                ("first principal axis", "second principal axis"),
            ),
            crate::render::real_and_synthetic(
                &tsne(&real, &fake, PICTURE_SERIES, p.seed),
                "t-SNE of real and TimeGAN series",
                ("t-SNE 1", "t-SNE 2"),
            ),
        );
        for (img, name) in [(pca, "pca.png"), (tsne, "tsne.png")] {
            let file = dir.join(name);
            img.map_err(EvalError::Request)?
                .save(&file)
                .map_err(|e| EvalError::Request(format!("{}: {e}", file.display())))?;
        }
    }
    Ok(SeriesReport {
        data: config.data,
        series: n,
        length,
        features,
        repetitions: p.repetitions,
        rows,
    })
}

/// `n` series `[T, F]` from `file`: a generator (`.pgq` on the int8 engine, `.onnx` on tract)
/// sampled from `seed` with its own noise (`pocketgan sample`'s draws), or the first `n` of a
/// float32 `.npy` `[N, T, F]`. Returns a row name and the values.
fn exported_series(
    file: &Path,
    n: usize,
    seed: u64,
    (length, features): (usize, usize),
) -> Result<(String, Vec<f32>), EvalError> {
    use pocketgan_runtime::latent::Noise;
    let fail = |reason: String| EvalError::Model {
        file: file.to_path_buf(),
        reason,
    };
    let ext = file.extension().and_then(|e| e.to_str());
    let (name, shape, values) = if ext == Some("npy") {
        let bytes = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
        let a = pocketgan_runtime::npy::parse(&bytes).map_err(|e| fail(e.to_string()))?;
        let (shape, mut values) = (a.shape.get(1..).unwrap_or_default().to_vec(), a.data);
        values.truncate(n * length * features);
        let name = file.file_name().map(|f| f.to_string_lossy().into_owned());
        (name.unwrap_or_default(), shape, values)
    } else if !matches!(ext, Some("pgq" | "onnx")) {
        return Err(fail(
            "expected a .pgq or .onnx generator, or a .npy of series".into(),
        ));
    } else {
        let (name, (shape, values)) = super::with_exported(file, |runner, bytes| {
            // TimeGAN's noise is uniform; its exports say so in their metadata.
            let noise = pocketgan_runtime::sample::model_noise(bytes).unwrap_or(Noise::Uniform);
            pocketgan_runtime::sample::sample(runner, noise, n, seed).map_err(|e| e.to_string())
        })?;
        (name, shape, values)
    };
    if shape != [length, features] || values.len() < n * length * features {
        return Err(fail(format!(
            "holds {} series of {shape:?}; the run's are [{length}, {features}] and --n asks for {n}",
            values.len() / (length * features).max(1)
        )));
    }
    Ok((name, values))
}

/// The fewest series of each kind the scores are computed on: with fewer, the discriminator's
/// held-out fifth or its training batches would be empty.
const MIN_SERIES: usize = 10;

/// Series of each set the pictures show (the authors' 1,000).
const PICTURE_SERIES: usize = 1000;

/// The first `m` series of `s`, each averaged over its features: a vector of T values (what the
/// authors' pictures embed).
fn profiles(s: &Series, m: usize) -> Vec<Vec<f64>> {
    (0..s.len().min(m))
        .map(|i| {
            let x = s.one(i);
            (0..s.length)
                .map(|k| {
                    x[k * s.features..(k + 1) * s.features]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                        / s.features as f64
                })
                .collect()
        })
        .collect()
}

/// The authors' t-SNE picture: the profiles of the first `m` series of each set embedded together
/// in 2-D (perplexity 40, 300 iterations as theirs; the exact algorithm, from a seeded start).
/// Returns the real and the synthetic points.
pub fn tsne(real: &Series, fake: &Series, m: usize, seed: u64) -> (Vec<[f32; 2]>, Vec<[f32; 2]>) {
    let (r, g) = (profiles(real, m), profiles(fake, m));
    let all: Vec<Vec<f32>> = r
        .iter()
        .chain(&g)
        .map(|v| v.iter().map(|&x| x as f32).collect())
        .collect();
    let n = all.len();
    if n < 4 {
        return (Vec::new(), Vec::new());
    }
    let start: Vec<f32> = {
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x75_4E);
        (0..2 * n)
            .map(|_| 1e-4 * Distribution::<f32>::sample(&StandardNormal, &mut rng))
            .collect()
    };
    let samples: Vec<&[f32]> = all.iter().map(Vec::as_slice).collect();
    let y = bhtsne::tSNE::<f32, &[f32], 2>::new(&samples)
        .perplexity(40f32.min((n as f32 - 1.0) / 3.0))
        .epochs(300)
        .initial_embedding(start)
        .exact(|a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .embedding();
    let points: Vec<[f32; 2]> = y.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
    let (a, b) = points.split_at(r.len().min(points.len()));
    (a.to_vec(), b.to_vec())
}

/// The authors' PCA picture: the profiles of the first `m` series of each set projected on the
/// two principal axes of the real ones. Returns the real and the synthetic points.
pub fn pca(real: &Series, fake: &Series, m: usize) -> (Vec<[f32; 2]>, Vec<[f32; 2]>) {
    let t = real.length;
    let (r, g) = (profiles(real, m), profiles(fake, m));
    let mean: Vec<f64> = (0..t)
        .map(|k| r.iter().map(|v| v[k]).sum::<f64>() / r.len().max(1) as f64)
        .collect();
    let mut cov = vec![0f64; t * t];
    for v in &r {
        for a in 0..t {
            for b in 0..t {
                cov[a * t + b] += (v[a] - mean[a]) * (v[b] - mean[b]);
            }
        }
    }
    // The two leading eigenvectors by power iteration, the second deflated.
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let mut v: Vec<f64> = (0..t).map(|k| 1.0 + k as f64 * 0.01).collect();
        for _ in 0..200 {
            let mut w: Vec<f64> = (0..t)
                .map(|a| (0..t).map(|b| cov[a * t + b] * v[b]).sum())
                .collect();
            for u in &axes {
                let d: f64 = w.iter().zip(u).map(|(x, y)| x * y).sum();
                w.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = w.iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    let project = |set: &[Vec<f64>]| -> Vec<[f32; 2]> {
        set.iter()
            .map(|v| {
                let c: Vec<f64> = v.iter().zip(&mean).map(|(x, m)| x - m).collect();
                let at = |u: &Vec<f64>| c.iter().zip(u).map(|(x, y)| x * y).sum::<f64>() as f32;
                [at(&axes[0]), at(&axes[1])]
            })
            .collect()
    };
    (project(&r), project(&g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::series::{sines, LENGTH};

    fn sine_series(n: usize, seed: u64) -> Series {
        Series {
            values: sines(n, 5, seed),
            length: LENGTH,
            features: 5,
        }
    }

    /// A predictor trained on real sines predicts held-out ones better than one trained on the
    /// same sines shuffled in time. (The discriminative score's separation of real, shuffled and
    /// generated series is checked on a trained run in `tests/timegan.rs`, once: its post-hoc
    /// network needs the authors' 2,000 steps to learn anything.)
    #[test]
    fn the_predictive_score_prefers_series_in_time_order() {
        let device = Device::flex().autodiff();
        let p = Protocol {
            n: 1000,
            repetitions: 1,
            discriminator_steps: 0,
            predictor_steps: 300,
            batch: 128,
            seed: 1,
        };
        let (a, b) = (sine_series(1000, 1), sine_series(1000, 2));
        let on_real = predictive(&b, &a, &p, 1, &device).unwrap();
        let on_shuffled = predictive(&a.shuffled_in_time(4), &a, &p, 1, &device).unwrap();
        assert!(on_real < on_shuffled, "{on_real} vs {on_shuffled}");
    }

    /// Two clusters of series far apart stay apart in the t-SNE picture: every point's nearest
    /// neighbour is of its own set.
    #[test]
    fn tsne_keeps_distinct_sets_apart() {
        let a = sine_series(150, 1);
        let mut b = sine_series(150, 2);
        b.values.iter_mut().for_each(|v| *v += 3.0);
        let (r, g) = tsne(&a, &b, 150, 0);
        assert_eq!((r.len(), g.len()), (150, 150));
        let d = |p: &[f32; 2], q: &[f32; 2]| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
        for (own, other) in [(&r, &g), (&g, &r)] {
            for (i, p) in own.iter().enumerate() {
                let near_own = own
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, q)| d(p, q))
                    .fold(f32::INFINITY, f32::min);
                let near_other = other.iter().map(|q| d(p, q)).fold(f32::INFINITY, f32::min);
                assert!(
                    near_own < near_other,
                    "point {i}: {near_own} vs {near_other}"
                );
            }
        }
    }

    /// Too few series to hold a fifth out is a typed error, before any run is read.
    #[test]
    fn too_few_series_are_refused() {
        let p = Protocol {
            n: 3,
            ..Default::default()
        };
        let err = evaluate(&RunDir("/nonexistent".into()), &p, None, &[]).unwrap_err();
        assert!(err.to_string().contains("at least 10 series"), "{err}");
    }

    #[test]
    fn pca_of_a_set_against_itself_overlaps() {
        let a = sine_series(300, 1);
        let (r, g) = pca(&a, &a, 300);
        assert_eq!(r, g);
        // The first axis carries more spread than the second.
        let var = |k: usize| r.iter().map(|p| (p[k] as f64).powi(2)).sum::<f64>();
        assert!(var(0) >= var(1) && var(0) > 0.0);
    }
}
