//! `pocketgan-train bench`: the median time of one training iteration of a family's reference
//! setup on each compiled-in backend, beside PyTorch's figure for the same networks, batch and
//! optimizer (`../shared/anchors/`, `scripts/anchors/`) on the same machine.

use std::path::Path;
use std::time::Instant;

use crate::config::SampleShape;
use crate::config::TrainConfig;
use crate::data::{BatchOrder, DataSource, Dataset, LoadOptions, SampleKind};
use crate::device::DeviceKind;
use crate::error::TrainError;
use crate::family::{self, FamilyKind, Iteration};
use crate::loss::GanLoss;
use crate::model::Architecture;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub backend: String,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Process CPU time (all threads) per timed iteration, where the OS reports it (Linux):
    /// unlike wall time it barely moves when other jobs share the cores.
    pub cpu_ms: Option<f64>,
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (Linux; `None` elsewhere).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // In clock ticks of USER_HZ, which Linux fixes at 100 per second for user space.
    Some((utime + stime) * 10.0)
}

/// A backend that [`all`] could not time, and why (not compiled in, or no such hardware).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unavailable {
    pub backend: String,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bench {
    pub rows: Vec<BenchRow>,
    pub unavailable: Vec<Unavailable>,
}

/// The backends in `kinds` (every compiled-in one if empty); on `cpu` (flex) also with Burn's own
/// operators instead of those of [`crate::ops`], the figure before that speed-up.
pub fn all(
    family: FamilyKind,
    kinds: &[DeviceKind],
    warmup: usize,
    iters: usize,
) -> Result<Bench, TrainError> {
    let kinds = if kinds.is_empty() {
        DeviceKind::compiled()
    } else {
        kinds.to_vec()
    };
    let mut bench = Bench {
        rows: Vec::new(),
        unavailable: Vec::new(),
    };
    for kind in kinds {
        if let Err(e) = kind.device() {
            bench.unavailable.push(Unavailable {
                backend: kind.name().into(),
                reason: e.to_string(),
            });
            continue;
        }
        bench
            .rows
            .push(training_iteration(family, kind, warmup, iters)?);
        if kind == DeviceKind::Cpu {
            crate::ops::set_enabled(false);
            let row = training_iteration(family, kind, warmup, iters);
            crate::ops::set_enabled(true);
            bench.rows.push(BenchRow {
                backend: "cpu, burn ops".into(),
                ..row?
            });
        }
    }
    Ok(bench)
}

/// A family's reference setup: its configuration, its inputs and (image-to-image) targets.
///
/// - `gan`: the reference DCGAN on the built-in digits, batch 64 (`torch_dcgan_step.py`).
/// - `pix2pix`, `cyclegan`: 64 px RGB, the family's default width and batch
///   (`scripts/anchors/torch_{pix2pix,cyclegan}_step.py`), on seeded stand-in images: an
///   iteration's cost does not depend on the pictures, and the benchmark then needs no fetched
///   data.
/// - `timegan`: the default networks (GRU hidden 24, 3 layers) on sines, batch 128, every timed
///   iteration one of the joint phase (`scripts/anchors/torch_timegan_step.py`).
/// - `seqgan`: the oracle benchmark (vocabulary 5,000), batch 64, every timed iteration an
///   adversarial round with the defaults (16 rollouts, 5 D steps;
///   `scripts/anchors/torch_seqgan_step.py`).
/// - `progan`: 64 px RGB stand-in images, the default width (16) and batch (16), every timed
///   iteration in the 64 px stage's fade-in ([`start_step`]; `scripts/anchors/torch_progan_step.py`).
pub fn reference_setup(
    family: FamilyKind,
) -> Result<(TrainConfig, Dataset, Option<Dataset>), TrainError> {
    match family {
        FamilyKind::Gan => {
            let config = TrainConfig::new(
                &DataSource::Digits,
                Architecture::Dcgan,
                GanLoss::Nonsaturating,
            );
            let ds = crate::data::load(&DataSource::Digits, &LoadOptions::default())?;
            Ok((config, ds, None))
        }
        FamilyKind::Pix2pix | FamilyKind::Cyclegan => {
            let data: DataSource = "pairs:google,twitter".parse()?;
            let mut config = TrainConfig::new(&data, Architecture::Dcgan, GanLoss::Nonsaturating);
            config.family = family;
            let shape = SampleShape {
                size: Some(64),
                channels: Some(3),
            };
            config.complete(&data, shape, |_| false);
            let sample = config.model.sample;
            let (inputs, targets) = (
                stand_in_images(sample, 64, 1),
                stand_in_images(sample, 64, 2),
            );
            Ok((config, inputs, Some(targets)))
        }
        FamilyKind::Timegan => {
            let data = DataSource::Series(crate::data::series::SeriesSource::Sines);
            let mut config = TrainConfig::new(&data, Architecture::Mlp, GanLoss::Nonsaturating);
            config.family = family;
            (
                config.timegan.embedding_steps,
                config.timegan.supervised_steps,
            ) = (0, 0);
            config.complete(&data, SampleShape::default(), |_| false);
            let ds = crate::data::load(&data, &LoadOptions::default())?;
            config.timegan.scale = crate::data::series::scale(&ds);
            Ok((config, ds, None))
        }
        FamilyKind::Seqgan => {
            let data: DataSource = "oracle".parse()?;
            let mut config = TrainConfig::new(&data, Architecture::Mlp, GanLoss::Nonsaturating);
            config.family = family;
            (
                config.seqgan.pretrain_g_steps,
                config.seqgan.pretrain_d_steps,
            ) = (0, 0);
            config.complete(&data, SampleShape::default(), |_| false);
            // Every timed iteration an adversarial round, none of them scoring NLL-oracle.
            config.seqgan.eval_every_rounds = u64::MAX;
            config.steps = u64::MAX;
            let ds = crate::data::load(&data, &LoadOptions::default())?;
            Ok((config, ds, None))
        }
        FamilyKind::Progan => {
            let config = emoji_64(family, GanLoss::WganGp);
            Ok((
                config.clone(),
                stand_in_images(config.model.sample, 64, 1),
                None,
            ))
        }
        FamilyKind::Stackgan => {
            let mut config = emoji_64(family, GanLoss::Nonsaturating);
            // Stand-in captions of 8 words each from a vocabulary the size of emoji's.
            let mut ds = stand_in_images(config.model.sample, 64, 1);
            ds.captions = (0..ds.len())
                .map(|i| {
                    (0..8)
                        .map(|k| format!("w{}", (i * 131 + k * 977) % STAND_IN_WORDS))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            // The words themselves: the captions above name only 512 of them.
            config.vocabulary = std::iter::once(String::new())
                .chain((0..STAND_IN_WORDS).map(|k| format!("w{k}")))
                .collect();
            Ok((config, ds, None))
        }
    }
}

/// `family`'s defaults on 64 px RGB emoji (the data itself is stood in for).
fn emoji_64(family: FamilyKind, loss: GanLoss) -> TrainConfig {
    let data = DataSource::Emoji;
    let mut config = TrainConfig::new(&data, Architecture::Dcgan, loss);
    config.family = family;
    let shape = SampleShape {
        size: Some(64),
        channels: Some(3),
    };
    config.complete(&data, shape, |_| false);
    config
}

/// The stand-in vocabulary's size in StackGAN's benchmark (emoji's captions have about 3,000).
const STAND_IN_WORDS: usize = 3000;

/// The first iteration `bench` times: ProGAN's halfway through fading in its last stage (alpha
/// about 0.5: both RGB paths of G and D, and the full-size penalty, run); 0 for the others.
pub fn start_step(config: &TrainConfig) -> u64 {
    match config.family {
        FamilyKind::Progan => family::progan::Schedule::new(config).last_fade_midpoint(),
        // StackGAN's Stage-II, the costlier stage.
        FamilyKind::Stackgan => config.stackgan.stage1_steps,
        _ => 0,
    }
}

/// `n` images of `kind` with seeded uniform values in [-1, 1].
fn stand_in_images(kind: SampleKind, n: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ds = Dataset::empty("stand-in images".into(), kind);
    let [_, c, h, w] = kind.batch_dims(n);
    ds.samples = (0..n * c * h * w)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    ds.labels = vec![0; n];
    ds
}

/// Time `iters` iterations after `warmup` on `device` with `family`'s [`reference_setup`].
pub fn training_iteration(
    family: FamilyKind,
    kind: DeviceKind,
    warmup: usize,
    iters: usize,
) -> Result<BenchRow, TrainError> {
    if iters == 0 {
        return Err(TrainError::Config(
            "bench needs at least one timed iteration".into(),
        ));
    }
    let (config, ds, target) = reference_setup(family)?;
    let mut order = BatchOrder::new(ds.len(), config.batch, 0)?;
    let device = kind.device()?.autodiff();
    let mut family = family::init(&config, &device)?;
    let start = start_step(&config);
    let mut times = Vec::with_capacity(iters);
    let mut cpu_start = None;
    for i in 0..warmup + iters {
        if i == warmup {
            cpu_start = process_cpu_ms();
        }
        let t = Instant::now();
        let m = family.step(&mut Iteration {
            config: &config,
            data: &ds,
            target: target.as_ref(),
            order: &mut order,
            device: &device,
            step: start + i as u64,
        });
        std::hint::black_box(m);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let cpu_ms = cpu_start
        .zip(process_cpu_ms())
        .map(|(a, b)| (b - a) / iters.max(1) as f64);
    times.sort_by(f64::total_cmp);
    Ok(BenchRow {
        backend: kind.name().into(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        cpu_ms,
    })
}

/// The PyTorch script that times `family`'s reference iteration, relative to the repository root.
pub fn torch_script(family: FamilyKind) -> &'static str {
    match family {
        FamilyKind::Gan => "../shared/anchors/torch_dcgan_step.py",
        FamilyKind::Pix2pix => "scripts/anchors/torch_pix2pix_step.py",
        FamilyKind::Cyclegan => "scripts/anchors/torch_cyclegan_step.py",
        FamilyKind::Seqgan => "scripts/anchors/torch_seqgan_step.py",
        FamilyKind::Timegan => "scripts/anchors/torch_timegan_step.py",
        FamilyKind::Progan => "scripts/anchors/torch_progan_step.py",
        FamilyKind::Stackgan => "scripts/anchors/torch_stackgan_step.py",
    }
}

/// PyTorch's median ms for `family`'s reference iteration on `threads` threads, measured now by
/// running [`torch_script`] under `python3` from `root`; why not, when it cannot run (no torch).
pub fn torch_reference(family: FamilyKind, threads: usize, root: &Path) -> Result<f64, String> {
    let script = root.join(torch_script(family));
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(threads.to_string())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("median_ms=")?.parse().ok())
        .ok_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            format!(
                "{} printed no median_ms ({})",
                script.display(),
                err.lines().last().unwrap_or("no output")
            )
        })
}
