//! StackGAN's evaluation: image quality of each stage, and whether the images match their texts.
//!
//! Every emoji's caption (as in training: its first `slots` words) is drawn with `per_text`
//! noise vectors, by Stage-I (upsampled to 64 px) and by Stage-II, in inference mode (`c = mu`,
//! as exported). The emoji judge (a classifier over `emoji.json`'s categories, trained on its own
//! split of the data, never on generated images, and not used in training) gives:
//! - **FID, precision and recall** of each stage against the judge's reference images;
//! - **text match**: the share of images the judge puts in the category of the emoji whose text
//!   drew them; beside it the same images scored against a random other emoji's category (a
//!   permutation of the texts: what an image that ignores its text scores), and the judge's own
//!   accuracy on the real images (the best a generator can expect from this judge).

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{class_accuracy, class_stats, EvalError, Reference};
use crate::data::{self, DataSource, LoadOptions};
use crate::error::TrainError;
use crate::family::latents;
use crate::family::stackgan::StackGan;
use crate::run::RunDir;

/// Texts drawn per forward pass.
const CHUNK: usize = 128;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub samples: usize,
    pub fid: f64,
    pub precision: f64,
    pub recall: f64,
    /// Share of samples judged in their text's category.
    pub text_match: f64,
    /// The same with the texts permuted.
    pub shuffled_match: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub texts: usize,
    pub per_text: usize,
    pub categories: usize,
    /// The judge's category accuracy on all the real images (4/5 of them its training set).
    pub real_match: f64,
    /// The judge's accuracy on its own held-out fifth.
    pub judge_held_out: f64,
    /// The share of the commonest category among the texts.
    pub majority: f64,
    pub held_out_fid: f64,
    pub judge: String,
    pub rows: Vec<Row>,
}

/// Evaluate the newest checkpoint of StackGAN run `run` on about `n` samples: every caption
/// drawn `n / captions` times (at least once).
pub fn evaluate(
    run: &RunDir,
    n: usize,
    seed: u64,
    classifiers: &Path,
) -> Result<Report, EvalError> {
    let config = run.read_config()?;
    let device = config.device.device().map_err(|e| EvalError::Model {
        file: run.0.clone(),
        reason: e.to_string(),
    })?;
    let (family, _, _) = run.restore_latest(|ckpt, file| {
        use crate::family::Family;
        let mut f = StackGan::init(&config, &device.clone().autodiff())?;
        f.load(ckpt, file)?;
        Ok(f)
    })?;
    let source: DataSource = config.data.parse().map_err(TrainError::from)?;
    let opts = LoadOptions {
        size: Some(crate::model::stackgan::STAGE2_SIDE),
        channels: Some(3),
        seed: config.seed,
        ..Default::default()
    };
    let ds = data::load(&source, &opts).map_err(TrainError::from)?;
    let reference = Reference::new(&ds, classifiers, seed)?;
    let texts: Vec<Vec<u32>> = ds
        .captions
        .iter()
        .filter_map(|c| family.prompt(c))
        .collect();
    if texts.len() != ds.len() {
        return Err(TrainError::Config(format!(
            "{} of {} captions have no word in the run's vocabulary: the data changed",
            ds.len() - texts.len(),
            ds.len()
        ))
        .into());
    }
    // Sample j draws text j / per_text.
    let per_text = (n / ds.len()).max(1);
    let n = ds.len() * per_text;
    let labels: Vec<usize> = ds.labels.iter().map(|&l| l as usize).collect();
    let category: Vec<usize> = (0..n).map(|j| labels[j / per_text]).collect();
    let mut permuted: Vec<usize> = (0..ds.len()).collect();
    permuted.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5E_ED));
    let permuted_category: Vec<usize> = (0..n).map(|j| labels[permuted[j / per_text]]).collect();
    let cpu = device.clone();
    let mut rows = Vec::new();
    for (stage, name) in [(1u8, "Stage-I (32 px, upsampled)"), (2, "Stage-II (64 px)")] {
        let mut images = Vec::with_capacity(n * 3 * 64 * 64);
        for (k, start) in (0..n).step_by(CHUNK).enumerate() {
            let m = CHUNK.min(n - start);
            let tokens: Vec<u32> = (start..start + m)
                .flat_map(|j| texts[j / per_text].iter().copied())
                .collect();
            let z = latents(seed, k as u64, m, config.model.latent, &cpu);
            images.extend(family.draw(tokens, z, stage));
        }
        let (metrics, judged) = reference.measure_and_classify(&images);
        rows.push(Row {
            name: name.into(),
            samples: n,
            fid: metrics.fid,
            precision: metrics.precision,
            recall: metrics.recall,
            text_match: class_accuracy(&category, &judged),
            shuffled_match: class_accuracy(&permuted_category, &judged),
        });
    }
    let real_match = class_accuracy(&labels, &reference.judge.classify(&ds.samples));
    let categories = ds.class_names.len();
    let (counts, _, _) = class_stats(&labels, categories.max(1));
    Ok(Report {
        texts: ds.len(),
        per_text,
        categories,
        real_match,
        judge_held_out: reference.judge.test_accuracy as f64,
        majority: counts.iter().copied().max().unwrap_or(0) as f64 / ds.len().max(1) as f64,
        held_out_fid: reference.held_out.fid,
        judge: reference.judge_data.clone(),
        rows,
    })
}
