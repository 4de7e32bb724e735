//! The training loop: it drives any [`Family`] through its iterations and keeps the run folder
//! (config, metrics, samples, checkpoints, loss curve, ONNX) up to date. What an iteration does,
//! phase by phase, is the family's (see [`crate::family`]).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::prelude::Device;

use crate::config::TrainConfig;
use crate::data::{self, BatchOrder, Dataset, LoadOptions, SampleKind};
use crate::error::{io_err, TrainError};
use crate::family::{self, samples, Family, Iteration};
use crate::history::{self, StepMetrics};
use crate::metrics::watch::{self, Watch};
use crate::model::Conditioning;
use crate::run::{self, RunDir};

/// How a call to [`train`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        steps: u64,
    },
    /// Stopped on request (Ctrl-C, or `stop_at`) after writing a checkpoint.
    Interrupted {
        at_step: u64,
    },
}

/// Knobs that do not change the results.
#[derive(Default)]
pub struct RunOptions<'a> {
    pub resume: bool,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Checked before every iteration; when set, checkpoint and stop (the Ctrl-C path).
    pub stop: Option<&'a AtomicBool>,
    /// Stop as if interrupted once this many iterations are done.
    pub stop_at: Option<u64>,
    /// Judge samples while training (labelled image data): `quality.csv` and warnings of mode
    /// collapse, collapsing diversity and a discriminator that wins outright.
    pub watch: bool,
}

/// Train (or resume) the run in `out`. Writes config, checkpoints, samples, metrics, the loss
/// curve and the family's ONNX export.
pub fn train(config: &TrainConfig, out: &Path, opts: &RunOptions) -> Result<Outcome, TrainError> {
    let run = RunDir(out.to_path_buf());
    let (config, ds, target) = prepare(config, &run, opts.resume)?;
    let device = config.device.device()?.autodiff();
    let mut order = BatchOrder::new(ds.len(), config.batch, config.seed)?;
    if let Some(b) = &target {
        // Domain B is drawn by its own order (unpaired data may have fewer images than A).
        BatchOrder::new(b.len(), config.batch, config.seed)?;
    }
    run.create()?;
    let (mut family, mut step) = start(&run, &config, &device, opts.resume)?;
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(run.metrics())
        .map_err(io_err(&run.metrics()))?;
    let bar = progress_bar(opts.quiet, config.steps, step);
    // Quality signals for labelled image data (judge kept beside the run, in ../classifiers).
    let classifiers = out.parent().unwrap_or(Path::new(".")).join("classifiers");
    let mut watch = opts
        .watch
        .then(|| Watch::new(&ds, &classifiers, &run.quality(), 0))
        .flatten();
    let started = Instant::now();
    let mut last_checkpoint = step;
    while step < config.steps {
        if opts.stop.is_some_and(|s| s.load(Ordering::SeqCst)) || opts.stop_at == Some(step) {
            if last_checkpoint != step {
                run.save_checkpoint(family.as_ref(), step, config.keep_checkpoints)?;
            }
            bar.abandon_with_message(format!("interrupted: checkpoint at step {step} written"));
            return Ok(Outcome::Interrupted { at_step: step });
        }
        let t0 = Instant::now();
        // One iteration: every phase of the family's networks, each with its own objective.
        let mut m = family.step(&mut Iteration {
            config: &config,
            data: &ds,
            target: target.as_ref(),
            order: &mut order,
            device: &device,
            step,
        });
        step += 1;
        m.seconds = t0.elapsed().as_secs_f64();
        if let Err(e) = check_finite(&m, &run) {
            bar.abandon();
            return Err(e);
        }
        // One write per row, so that a kill leaves whole rows (or one torn last row).
        metrics
            .write_all(format!("{}\n", m.csv()).as_bytes())
            .map_err(io_err(&run.metrics()))?;
        bar.set_position(step);
        bar.set_message(format!(
            "loss_d {:.3} loss_g {:.3} D(x) {:.3} D(G(z)) {:.3}",
            m.loss_d, m.loss_g, m.d_real, m.d_fake
        ));
        if step % config.sample_every == 0 || step == config.steps {
            run.save_samples(family.as_ref(), &config, step, &device)?;
            if let Some(w) = watch.as_mut() {
                check_quality(w, family.as_ref(), &config, &m, &device, &bar);
            }
        }
        if let Some(name) = family.milestone(step) {
            run.save_picture(family.as_ref(), &config, step, &device, &name)?;
        }
        if step % config.checkpoint_every == 0 || step == config.steps {
            run.save_checkpoint(family.as_ref(), step, config.keep_checkpoints)?;
            last_checkpoint = step;
        }
    }
    bar.finish_with_message(format!("done in {:.1}s", started.elapsed().as_secs_f64()));
    drop(metrics);
    // The export reads the newest checkpoint: make sure it is this step's (e.g. `--steps 0`).
    if run.latest_step() != Some(step) {
        run.save_checkpoint(family.as_ref(), step, config.keep_checkpoints)?;
    }
    history::loss_curve(&run.metrics(), &run.quality(), &run.loss_curve())?;
    run::export_run(out, None)?;
    Ok(Outcome::Finished { steps: step })
}

/// The run's configuration (a resumed run keeps its saved one; only the number of steps is the
/// caller's) completed by its data, and the data it trains on: the samples, or for an
/// image-to-image family the training pairs' inputs and targets.
fn prepare(
    config: &TrainConfig,
    run: &RunDir,
    resume: bool,
) -> Result<(TrainConfig, Dataset, Option<Dataset>), TrainError> {
    let mut config = if resume {
        if !run.config().exists() {
            return Err(TrainError::BadRun {
                file: run.config(),
                reason: "nothing to resume: the folder holds no run (no config.json)".into(),
            });
        }
        let mut saved = run.read_config()?;
        saved.steps = config.steps;
        saved
    } else {
        // A folder with a configuration but no checkpoint (stopped before its first, or
        // diverged) holds nothing to lose: it starts again. One with a checkpoint is kept.
        if run.config().exists() && run.latest_step().is_some() {
            return Err(TrainError::RunExists(run.0.clone()));
        }
        config.clone()
    };
    config.validate()?;
    family::check_size(&config)?;
    if config.family.translates() {
        let (source, opts) = (config.source()?, family::pix2pix::load_options(&config));
        // CycleGAN never sees a pair: each side is every training image of its domain.
        let domains = if config.family == family::FamilyKind::Cyclegan {
            data::pairs::load_unpaired(&source, &opts)?
        } else {
            data::pairs::load(&source, &opts, data::pairs::Split::Train)?
        };
        return Ok((config, domains.a, Some(domains.b)));
    }
    let (size, channels) = match config.model.sample {
        SampleKind::Image {
            channels, height, ..
        } => (Some(height), Some(channels)),
        SampleKind::Points { .. } | SampleKind::Series { .. } => (None, None),
    };
    let options = LoadOptions {
        size,
        channels,
        seed: config.seed,
        tokens: config.seqgan.tokens,
        ..Default::default()
    };
    let source = config.source()?;
    if let data::DataSource::Text(file) = &source {
        // The vocabulary is stored in the run; a resumed run's file must still give it.
        let corpus = data::text::Corpus::load(file, config.seqgan.tokens)?;
        if resume {
            corpus.check_vocabulary(&config.vocabulary)?;
        }
        config.vocabulary = corpus.vocabulary;
    }
    let ds = data::load(&source, &options)?;
    if config.family == family::FamilyKind::Stackgan {
        // The vocabulary is stored in the run; a resumed run's captions must still give it.
        let vocabulary = family::stackgan::vocabulary(&ds)?;
        if resume && vocabulary != config.vocabulary {
            return Err(TrainError::Config(format!(
                "{}'s captions no longer give the vocabulary this run trained with",
                config.data
            )));
        }
        config.vocabulary = vocabulary;
    }
    if let (data::DataSource::Series(_), SampleKind::Series { .. }) = (&source, ds.kind) {
        // A CSV's features are known once read; the scaling is the data's, and a resumed run's
        // file must still give the saved one.
        let scale = data::series::scale(&ds);
        if resume && (config.model.sample != ds.kind || config.timegan.scale != scale) {
            return Err(TrainError::Config(format!(
                "{} no longer holds the series this run trained on (its features or range changed)",
                config.data
            )));
        }
        config.model.sample = ds.kind;
        config.timegan.scale = scale;
    }
    if ds.kind != config.model.sample {
        return Err(TrainError::Config(format!(
            "the data's samples are {:?} but the model makes {:?}",
            ds.kind, config.model.sample
        )));
    }
    config.class_names = ds.class_names.clone();
    let cond = config.model.conditioning;
    let ds = if cond == Conditioning::Sgan {
        ds.subset(&family::sgan::split(&ds).0)
    } else {
        ds
    };
    if cond.uses_labels() {
        config.model.classes = ds.class_names.len();
        if config.model.classes < 2 {
            return Err(TrainError::Config(format!(
                "--cond {} needs labelled data with at least 2 classes; {} has {}",
                format!("{cond:?}").to_lowercase(),
                ds.name,
                config.model.classes
            )));
        }
        if let Some(&bad) = ds
            .labels
            .iter()
            .find(|&&l| l as usize >= config.model.classes)
        {
            return Err(TrainError::Config(format!(
                "{}: label {bad} but only {} class names",
                ds.name, config.model.classes
            )));
        }
    }
    Ok((config, ds, None))
}

/// The family to train and the iterations it has done: restored from the newest checkpoint (the
/// metrics of later steps are dropped, to be replayed), or new (config, empty metrics and the
/// step-0 samples written).
fn start(
    run: &RunDir,
    config: &TrainConfig,
    device: &Device,
    resume: bool,
) -> Result<(Box<dyn Family>, u64), TrainError> {
    if resume && run.latest_step().is_none() {
        eprintln!(
            "note: {} has no checkpoint yet (stopped before its first): starting it from step 0",
            run.0.display()
        );
    } else if resume {
        let restored = run.load_latest(config, device)?;
        for (file, why) in &restored.skipped {
            // Kept under another name, out of the way of the checkpoints to come.
            let mut kept = file.clone().into_os_string();
            kept.push(".corrupt");
            std::fs::rename(file, &kept).map_err(io_err(file))?;
            eprintln!(
                "warning: {why}; kept as {} and resuming from the checkpoint of step {}",
                std::path::Path::new(&kept).display(),
                restored.step
            );
        }
        let kept: Vec<StepMetrics> = if run.metrics().exists() {
            history::read(&run.metrics())?
        } else {
            Vec::new()
        }
        .into_iter()
        .filter(|m| m.step <= restored.step)
        .collect();
        // A metrics file cut short cannot be refilled: say which steps have no row.
        let last = kept.last().map_or(0, |m| m.step);
        if last < restored.step {
            eprintln!(
                "warning: {} has rows up to step {last} but the checkpoint is of step {}: steps \
                 {}..={} will have no metrics row",
                run.metrics().display(),
                restored.step,
                last + 1,
                restored.step
            );
        }
        history::write(&run.metrics(), restored.family.terms(), &kept)?;
        return Ok((restored.family, restored.step));
    }
    let family = family::init(config, device)?;
    run.write_config(config)?;
    history::write(&run.metrics(), family.terms(), &[])?;
    run.save_samples(family.as_ref(), config, 0, device)?;
    Ok((family, 0))
}

/// A NaN or infinite loss stops the run; the last good checkpoint stays.
fn check_finite(m: &StepMetrics, run: &RunDir) -> Result<(), TrainError> {
    for (what, value) in [("loss_d", m.loss_d), ("loss_g", m.loss_g)] {
        if !value.is_finite() {
            let kept = match run.latest_step() {
                Some(at) => format!(
                    "The checkpoint of step {at} is kept in {} (--resume goes on from it)",
                    run.checkpoints().display()
                ),
                None => format!(
                    "No checkpoint was written yet, so {} starts again when trained",
                    run.0.display()
                ),
            };
            return Err(TrainError::NonFinite {
                what,
                value,
                step: m.step,
                kept,
            });
        }
    }
    Ok(())
}

/// Judge a batch of samples: a `quality.csv` row, and warnings above the progress bar.
fn check_quality(
    watch: &mut Watch,
    family: &dyn Family,
    config: &TrainConfig,
    m: &StepMetrics,
    device: &Device,
    bar: &indicatif::ProgressBar,
) {
    let Some(generator) = family.latent_generator() else {
        return;
    };
    let samples = samples::generate(
        generator,
        config,
        watch::SAMPLES,
        config.seed ^ 0x77a7c4,
        device,
    );
    let d_fake = config.loss.opinion_is_probability().then_some(m.d_fake);
    let (s, warnings) = watch.check(m.step, &samples, d_fake);
    for warning in warnings {
        bar.println(format!("warning: {warning}"));
    }
    bar.println(format!(
        "step {}: {}/{} classes covered, KL(p||U) {:.3}, diversity {:.2}",
        s.step, s.classes_covered, s.classes, s.kl_uniform, s.diversity
    ));
}

fn progress_bar(quiet: bool, steps: u64, at: u64) -> indicatif::ProgressBar {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(steps)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(at);
    bar.reset_eta();
    bar
}
