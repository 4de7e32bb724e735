//! `pocketgan`: quantize generators to int8, generate images, inspect and benchmark models.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pocketgan_runtime::engine::runner::{Int8Runner, Runner, TractRunner};
use pocketgan_runtime::engine::{Engine, Int8Engine, TractEngine};
use pocketgan_runtime::format::{Model, Shape, TensorInfo, TensorKind};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::{latents, quantize, Calibration, QuantizeOptions};
use pocketgan_runtime::text::{self, TextSpec};
use pocketgan_runtime::{bench, npy, picture, translate};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "pocketgan",
    version,
    about = "Quantize GAN generators to int8 and run them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum EngineKind {
    Int8,
    Tract,
    Ort,
}

#[derive(Subcommand)]
enum Command {
    /// Calibrate and quantize an ONNX generator to an int8 .pgq file.
    Quantize {
        model: PathBuf,
        /// Calibration latents.
        #[arg(long, default_value_t = 256, value_parser = calib_count)]
        calib: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Clip activation ranges to this percentile instead of min/max (for example 99.99).
        #[arg(long, value_parser = percentile)]
        percentile: Option<f32>,
        /// Calibration pictures for a model with an image input (for example the training
        /// images): every PNG/JPEG in DIR, sorted by name, up to --calib of them.
        #[arg(long, value_name = "DIR")]
        calib_images: Option<PathBuf>,
        /// Calibration samples for a model with an image or sequence input, as float32
        /// `[N, ...]` .npy.
        #[arg(long, value_name = "FILE")]
        calib_npy: Option<PathBuf>,
        /// A token cell, calibrated on sequences it samples itself: tokens per sequence
        /// (default: the model's metadata; a cell exported from PyTorch has none).
        #[arg(long)]
        length: Option<usize>,
        /// Output file (default: MODEL with extension .pgq).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate a PNG grid of samples.
    Generate {
        /// A .pgq (int8 engine) or .onnx file (tract, ort; int8 quantizes it in memory).
        model: PathBuf,
        #[arg(long, value_enum, default_value_t = EngineKind::Int8)]
        engine: EngineKind,
        /// Samples (default 64; for a conditional model without --class, a row of up to 10
        /// per class).
        #[arg(long)]
        n: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Class to draw (conditional models only; without it, a conditional model's grid has
        /// one row per class and a latent walk draws class 0).
        #[arg(long)]
        class: Option<usize>,
        /// The prompt of a text-conditioned generator (StackGAN), for every sample: its words
        /// are read with the model's vocabulary (unknown words are skipped and listed).
        #[arg(long)]
        text: Option<String>,
        #[arg(long, default_value = "grid.png")]
        out: PathBuf,
        /// Write a latent walk of this many frames between two samples as an animated GIF
        /// (`--out walk.gif`) or numbered PNG frames (`--out frames/walk.png`).
        #[arg(long)]
        interpolate: Option<usize>,
        /// Read latents [N, latent] (float32 .npy) instead of drawing them.
        #[arg(long)]
        latents: Option<PathBuf>,
        /// Also write the raw float output [N, C, H, W] as .npy.
        #[arg(long)]
        save_npy: Option<PathBuf>,
        /// Kernel family for the int8 engine (default: the fastest this CPU has).
        #[arg(long)]
        isa: Option<String>,
        /// Threads for the int8 engine, which splits the samples between them, or one sample's
        /// large layers by output rows (the same bytes as one thread), and for onnxruntime.
        #[arg(long, default_value_t = 1, value_parser = thread_count)]
        threads: usize,
    },
    /// Describe a model: inputs, outputs, nodes, parameters, multiply-adds, arena plan and size.
    Inspect { model: PathBuf },
    /// Draw samples of a generator whose one input is noise (TimeGAN's series, a latent
    /// vector's output) and write them as .npy (float32 `[N, ...]`) or .csv; or token
    /// sequences of a one-step cell (SeqGAN's exported generator), written as .txt (one
    /// decoded line each), .csv or .npy (ids).
    Sample {
        /// A .pgq (int8 engine) or .onnx file (tract).
        model: PathBuf,
        #[arg(long, default_value_t = 16)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The noise's distribution, `uniform` (in [0, 1)) or `normal` (default: the model's,
        /// from its metadata, else normal).
        #[arg(long)]
        noise: Option<String>,
        #[arg(long, default_value = "samples.npy")]
        out: PathBuf,
        /// Kernel family for the int8 engine (default: the fastest this CPU has).
        #[arg(long)]
        isa: Option<String>,
        /// A token cell: tokens per sequence (default: the model's metadata; a cell exported
        /// from PyTorch has none), starting from token 0.
        #[arg(long)]
        length: Option<usize>,
    },
    /// Run any model on named inputs and write every output (`NAME.npy`, and `NAME_K.png` per
    /// sample for gray or RGB images) into a folder.
    Run {
        /// A .pgq (int8 engine) or .onnx file (tract).
        model: PathBuf,
        /// `NAME=FILE.png|FILE.npy` (an image, or float32 `[N, ...]`), or `NAME=3,1,4` for
        /// class indices; one per model input (see `inspect`).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Kernel family for the int8 engine (default: the fastest this CPU has).
        #[arg(long)]
        isa: Option<String>,
    },
    /// Translate pictures with an image-to-image model (Pix2Pix, CycleGAN): one picture, or
    /// every PNG/JPEG in a folder. Pictures are fitted to the model's input (alpha on white,
    /// resized, RGB to luma for a gray model, gray to RGB for a colour one).
    Translate {
        /// A .pgq (int8 engine) or .onnx file (tract, ort; int8 quantizes it in memory,
        /// calibrated on the input pictures).
        model: PathBuf,
        /// A picture, or a folder of PNG/JPEG pictures.
        input: PathBuf,
        /// The output picture, or for a folder the output folder (same file names).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = EngineKind::Int8)]
        engine: EngineKind,
        /// Kernel family for the int8 engine (default: the fastest this CPU has).
        #[arg(long)]
        isa: Option<String>,
    },
    /// Rewrite a version-1 .pgq file (a chain of layers) in the current graph format, weights
    /// unchanged.
    Upgrade {
        model: PathBuf,
        /// Output file (default: MODEL, replaced).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Batch-1 latency and batch throughput per engine (64 latents, or 16 pictures for an
    /// image-to-image model), with ratios against tract f32 and onnxruntime.
    Bench {
        /// The ONNX generator or image-to-image model (quantized in memory unless --pgq is
        /// given; an image model on seeded pictures).
        model: PathBuf,
        #[arg(long)]
        pgq: Option<PathBuf>,
        #[arg(long, value_delimiter = ',', default_value = "int8,tract")]
        engines: Vec<EngineKind>,
        /// Threads: our int8 engine splits a batch's samples over them (batch 1: its large
        /// layers' output rows), onnxruntime runs each operator on them; tract is single-threaded.
        #[arg(long, default_value_t = 1, value_parser = thread_count)]
        threads: usize,
        /// Timed repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 30, value_parser = repetitions)]
        reps: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Reads a model, latent or picture file within the documented file limit; devices, FIFOs and
/// folders are refused before they are opened.
fn read(path: &Path) -> Result<Vec<u8>> {
    Ok(pocketgan_runtime::limits::read_file(path)?)
}

/// A count of at least `min` and at most `max`, parsed for clap, with the limit named.
fn count_in(s: &str, min: usize, max: usize, what: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{what} is a whole number, not {s:?}"))?;
    if n < min {
        return Err(format!("{what} must be at least {min}"));
    }
    if n > max {
        return Err(format!(
            "{what} is {n}, over the limit of {max} (see README, Limits)"
        ));
    }
    Ok(n)
}

fn calib_count(s: &str) -> Result<usize, String> {
    count_in(s, 1, pocketgan_runtime::limits::MAX_CALIB, "--calib")
}

fn thread_count(s: &str) -> Result<usize, String> {
    count_in(s, 1, pocketgan_runtime::limits::MAX_THREADS, "--threads")
}

fn repetitions(s: &str) -> Result<usize, String> {
    count_in(s, 1, 1_000_000, "--reps")
}

/// A percentile in (0, 100]: 100 is the min/max range itself.
fn percentile(s: &str) -> Result<f32, String> {
    let p: f32 = s
        .parse()
        .map_err(|_| format!("the percentile is a number such as 99.99, not {s:?}"))?;
    if !(p > 0.0 && p <= 100.0) {
        return Err(format!(
            "the percentile is a share of the values in (0, 100], such as 99.99 (100 keeps the \
             full min/max range), not {s}"
        ));
    }
    Ok(p)
}

fn is_pgq(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pgq")
}

fn parse_isa(name: Option<&str>) -> Result<Isa> {
    match name {
        None => Ok(Isa::detect()),
        Some(n) => {
            let isa = Isa::from_name(n).with_context(|| format!("unknown kernel family {n}"))?;
            if !isa.is_available() {
                bail!(
                    "this CPU cannot run the {n} kernels (available: {})",
                    Isa::available()
                        .map(|i| i.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(isa)
        }
    }
}

fn onnx_shape(onnx: &[u8]) -> Result<(usize, (usize, usize, usize))> {
    let g = pocketgan_runtime::engine::latent_generator(onnx)?;
    Ok((g.latent, g.image))
}

#[cfg(feature = "ort")]
fn ort_engine(
    onnx: &[u8],
    latent: usize,
    image: (usize, usize, usize),
    threads: usize,
) -> Result<Box<dyn Engine>> {
    Ok(Box::new(pocketgan_runtime::engine::ort::OrtEngine::new(
        onnx, latent, image, threads,
    )?))
}

#[cfg(feature = "ort")]
fn ort_runner(onnx: &[u8], threads: usize) -> Result<Box<dyn Runner>> {
    Ok(Box::new(pocketgan_runtime::engine::ort::OrtRunner::new(
        onnx, threads,
    )?))
}

#[cfg(not(feature = "ort"))]
fn ort_runner(_: &[u8], _: usize) -> Result<Box<dyn Runner>> {
    bail!("this build has no onnxruntime engine; rebuild with `--features ort`")
}

/// The runner of `model` (its `bytes`) on `engine`. An ONNX file on the int8 engine is
/// quantized in memory into `quantized` (as `generate` does), its image input calibrated on
/// `calibration(shape)`: samples `[N, c, h, w]`.
fn runner<'a>(
    model: &Path,
    bytes: &'a [u8],
    quantized: &'a mut Vec<u8>,
    engine: EngineKind,
    isa: Option<&str>,
    calibration: impl FnOnce((usize, usize, usize)) -> Result<Vec<f32>>,
) -> Result<Box<dyn Runner + 'a>> {
    let load = || format!("cannot load {}", model.display());
    Ok(match (engine, is_pgq(model)) {
        (EngineKind::Int8, true) => Box::new(Int8Runner::new(
            Model::parse(bytes).with_context(|| format!("invalid model {}", model.display()))?,
            parse_isa(isa)?,
        )),
        (EngineKind::Int8, false) => {
            let shape = translate::input_shape(&TractRunner::new(bytes).with_context(load)?)?;
            let samples = calibration(shape)?;
            let calib = (samples.len() / (shape.0 * shape.1 * shape.2)).clamp(1, 256);
            eprintln!(
                "quantizing {} in memory on {calib} pictures (use `pocketgan quantize --calib-images` to keep a .pgq)",
                model.display()
            );
            let options = QuantizeOptions {
                calib,
                samples,
                ..Default::default()
            };
            *quantized = quantize(bytes, &options)
                .with_context(|| format!("cannot quantize {}", model.display()))?
                .0;
            let quantized: &'a Vec<u8> = quantized;
            Box::new(Int8Runner::new(Model::parse(quantized)?, parse_isa(isa)?))
        }
        (_, true) => bail!(
            "{} is an int8 model; the tract and ort engines run the ONNX file",
            model.display()
        ),
        (EngineKind::Tract, false) => Box::new(TractRunner::new(bytes).with_context(load)?),
        (EngineKind::Ort, false) => ort_runner(bytes, 1).with_context(load)?,
    })
}

#[cfg(not(feature = "ort"))]
fn ort_engine(_: &[u8], _: usize, _: (usize, usize, usize), _: usize) -> Result<Box<dyn Engine>> {
    bail!("this build has no onnxruntime engine; rebuild with `--features ort`")
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Quantize {
            model,
            calib,
            seed,
            percentile,
            calib_images,
            calib_npy,
            length,
            out,
        } => {
            let onnx = read(&model)?;
            let calibration = percentile.map_or(Calibration::MinMax, Calibration::Percentile);
            let samples =
                calibration_samples(&onnx, calib, calib_images.as_deref(), calib_npy.as_deref())?;
            let options = QuantizeOptions {
                calib,
                seed,
                calibration,
                samples,
                length: length.map(token_length).transpose()?,
                ..Default::default()
            };
            let (bytes, report) = quantize(&onnx, &options)
                .with_context(|| format!("cannot quantize {}", model.display()))?;
            let out = out.unwrap_or_else(|| model.with_extension("pgq"));
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "{:<4} {:<16} {:<22} {:>9}",
                "op", "kind", "shape", "SQNR dB"
            );
            for (i, l) in report.layers.iter().enumerate() {
                println!(
                    "{i:<4} {:<16} {:<22} {:>9.1}",
                    l.op,
                    format!("{:?}", l.shape).replace("Image ", ""),
                    l.sqnr_db
                );
            }
            match report.token_kl {
                Some(kl) => println!(
                    "next-token KL(float || int8): {kl:.4} nats per step, over {} steps of sequences the float cell drew",
                    report.eval_samples
                ),
                None => println!(
                    "output PSNR vs float: {:.1} dB over {} samples",
                    report.psnr_db, report.eval_samples
                ),
            }
            println!("wrote {} ({} bytes)", out.display(), bytes.len());
        }
        Command::Generate {
            model,
            engine,
            n,
            seed,
            class,
            text,
            out,
            interpolate,
            latents: latents_file,
            save_npy,
            isa,
            threads,
        } => {
            let bytes = read(&model)?;
            let text_spec = TextSpec::of_model(&bytes)
                .with_context(|| format!("cannot read the text of {}", model.display()))?;
            let quantized;
            let mut gen: Box<dyn Engine> = match (engine, is_pgq(&model)) {
                (EngineKind::Int8, true) => Box::new(
                    Int8Engine::new(
                        Model::parse(&bytes)
                            .with_context(|| format!("invalid model {}", model.display()))?,
                        parse_isa(isa.as_deref())?,
                    )
                    .with_threads(threads),
                ),
                (EngineKind::Int8, false) => {
                    eprintln!(
                        "quantizing {} in memory (use `pocketgan quantize` to keep the .pgq)",
                        model.display()
                    );
                    quantized = quantize(&bytes, &QuantizeOptions::default())?.0;
                    Box::new(
                        Int8Engine::new(Model::parse(&quantized)?, parse_isa(isa.as_deref())?)
                            .with_threads(threads),
                    )
                }
                (_, true) => bail!(
                    "{} is an int8 model; the tract and ort engines run the ONNX file",
                    model.display()
                ),
                (EngineKind::Tract, false) => {
                    let (latent, image) = onnx_shape(&bytes)?;
                    Box::new(TractEngine::new(&bytes, latent, image))
                }
                (EngineKind::Ort, false) => {
                    let (latent, image) = onnx_shape(&bytes)?;
                    ort_engine(&bytes, latent, image, threads)?
                }
            };
            let latent = gen.latent();
            // A text model's prompt, as token ids for every sample; its classes are no grid's.
            let prompt = prompt_ids(&model, gen.as_ref(), text_spec.as_ref(), text.as_deref())?;
            let k = if prompt.is_some() { 0 } else { gen.classes() };
            if class.is_some() && prompt.is_some() {
                bail!(
                    "--class: {} is conditioned on text, give --text only",
                    model.display()
                );
            }
            match class {
                Some(_) if k == 0 => bail!(
                    "{} is unconditional: --class needs a conditional generator",
                    model.display()
                ),
                Some(c) if c >= k => bail!(
                    "class {c} is out of range: {} has {k} classes (0..={})",
                    model.display(),
                    k - 1
                ),
                _ => {}
            }
            let n = n.unwrap_or(if k > 0 && class.is_none() {
                k * k.min(10)
            } else {
                64
            });
            if n == 0 {
                bail!("--n must be at least 1");
            }
            // The documented limits, before a latent or a pixel is allocated.
            let (c, h, w) = gen.image_shape();
            let per_image = c * h * w;
            pocketgan_runtime::limits::check_batch("--n", n, per_image.max(latent))?;
            if let Some(frames) = interpolate {
                pocketgan_runtime::limits::check_batch(
                    "--interpolate frames",
                    frames,
                    per_image.max(latent),
                )?;
            }
            let (z, n) = match (&latents_file, interpolate) {
                (Some(f), _) => {
                    let a = npy::parse(&read(f)?)
                        .with_context(|| format!("cannot read latents {}", f.display()))?;
                    match a.shape.as_slice() {
                        [rows, cols] if *cols == latent && *rows > 0 => (a.data, *rows),
                        s => bail!(
                            "{} has shape {s:?}; the model needs [N, {latent}]",
                            f.display()
                        ),
                    }
                }
                (None, Some(steps)) => {
                    let steps = steps.max(2);
                    let ends = latents(seed, 2, latent);
                    let mut z = Vec::with_capacity(steps * latent);
                    let mut frame = vec![0.0; latent];
                    for i in 0..steps {
                        let t = i as f32 / (steps - 1) as f32;
                        let (a, b) = ends.split_at(latent);
                        pocketgan_runtime::latent::lerp(a, b, t, &mut frame);
                        z.extend_from_slice(&frame);
                    }
                    (z, steps)
                }
                (None, None) => (latents(seed, n, latent), n),
            };
            // A conditional grid: row r shows class r (a walk keeps one class).
            let cols = if k > 0 && class.is_none() && interpolate.is_none() {
                n.div_ceil(k)
            } else {
                (n as f64).sqrt().ceil() as usize
            };
            let labels: Vec<u32> = match (&prompt, k, class) {
                (Some(ids), _, _) => ids.repeat(n),
                (None, 0, _) => Vec::new(),
                (None, _, Some(c)) => vec![c as u32; n],
                (None, ..) if interpolate.is_some() => vec![0; n],
                (None, ..) => (0..n).map(|i| ((i / cols) % k) as u32).collect(),
            };
            let images = gen.generate_with(&z, &labels, n)?;
            let shape = gen.image_shape();
            if let Some(path) = &save_npy {
                std::fs::write(path, npy::encode(&[n, shape.0, shape.1, shape.2], &images))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if interpolate.is_some() {
                picture::write_walk(&images, shape, &out)
                    .with_context(|| format!("cannot write the walk to {}", out.display()))?;
            } else {
                picture::image_grid_columns(&images, shape, cols)
                    .save(&out)
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            println!("{}: {n} samples -> {}", gen.name(), out.display());
        }
        Command::Translate {
            model,
            input,
            out,
            engine,
            isa,
        } => {
            let bytes = read(&model)?;
            let mut quantized = Vec::new();
            let mut runner = runner(
                &model,
                &bytes,
                &mut quantized,
                engine,
                isa.as_deref(),
                |shape| {
                    let mut samples = Vec::new();
                    for (picture, _) in translate::plan_paths(&input, &out)?.iter().take(256) {
                        samples.extend(picture::load_image(picture, shape)?);
                    }
                    Ok(samples)
                },
            )?;
            let written = translate::translate_paths(runner.as_mut(), &input, &out)
                .with_context(|| format!("cannot translate with {}", model.display()))?;
            println!(
                "{}: {} picture(s) -> {}",
                runner.name(),
                written.len(),
                out.display()
            );
        }
        Command::Upgrade { model, out } => {
            let bytes = pocketgan_runtime::upgrade::upgrade_v1(&read(&model)?)
                .with_context(|| format!("cannot upgrade {}", model.display()))?;
            let out = out.unwrap_or(model);
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}: version 2, {} bytes", out.display(), bytes.len());
        }
        Command::Run {
            model,
            inputs,
            out,
            isa,
        } => run_model(&model, &inputs, &out, isa.as_deref())?,
        Command::Sample {
            model,
            n,
            seed,
            noise,
            out,
            isa,
            length,
        } => sample_model(
            &model,
            n,
            seed,
            noise.as_deref(),
            &out,
            isa.as_deref(),
            length,
        )?,
        Command::Inspect { model } => {
            let bytes = read(&model)?;
            if !is_pgq(&model) {
                bail!(
                    "inspect reads .pgq files; quantize {} first",
                    model.display()
                );
            }
            let m = Model::parse(&bytes)
                .with_context(|| format!("invalid model {}", model.display()))?;
            print!("{}", inspect(&m));
        }
        Command::Bench {
            model,
            pgq,
            engines,
            threads,
            reps,
            json,
        } => {
            let onnx = read(&model)?;
            let tract = TractRunner::new(&onnx)
                .with_context(|| format!("cannot load {}", model.display()))?;
            // A token cell (SeqGAN): whole sequences sampled on the float engines.
            if let Some(spec) = pocketgan_runtime::tokens::model_tokens(&onnx)? {
                let table =
                    bench_tokens(&onnx, tract, pgq.as_deref(), &spec, &engines, threads, reps)?;
                if json {
                    println!("{}", table.json());
                } else {
                    print!("{}", table.text());
                }
                return Ok(());
            }
            // A generator of series from a noise sequence (TimeGAN), or of pictures from
            // pictures: the graph runners. Else a latent generator's engines, below.
            let input = match (&tract.inputs()[..], translate::input_shape(&tract)) {
                ([input], _) if input.shape.len() == 2 && input.classes.is_none() => {
                    Some(BenchInput::Noise(input.shape.iter().product()))
                }
                (_, Ok(image)) => Some(BenchInput::Pictures(image)),
                _ => None,
            };
            if let Some(input) = input {
                let table =
                    bench_graph(&onnx, tract, pgq.as_deref(), input, &engines, threads, reps)?;
                if json {
                    println!("{}", table.json());
                } else {
                    print!("{}", table.text());
                }
                return Ok(());
            }
            let pgq = match pgq {
                Some(p) => read(&p)?,
                None => quantize(&onnx, &QuantizeOptions::default())?.0,
            };
            let m = Model::parse(&pgq)?;
            let (latent, image) = onnx_shape(&onnx)?;
            let mut list: Vec<Box<dyn Engine>> = Vec::new();
            // tract first: it is the reference of the ratios.
            let mut kinds = engines.clone();
            kinds.sort_by_key(|k| *k != EngineKind::Tract);
            if !kinds.contains(&EngineKind::Tract) {
                kinds.insert(0, EngineKind::Tract);
            }
            kinds.dedup();
            for kind in kinds {
                match kind {
                    EngineKind::Tract => {
                        list.push(Box::new(TractEngine::new(&onnx, latent, image)))
                    }
                    EngineKind::Int8 => {
                        for isa in Isa::available() {
                            list.push(Box::new(Int8Engine::new(m, isa).with_threads(threads)));
                        }
                    }
                    EngineKind::Ort => list.push(ort_engine(&onnx, latent, image, threads)?),
                }
            }
            let table = bench::run(&mut list, &m, reps)?;
            if json {
                println!("{}", table.json());
            } else {
                print!("{}", table.text());
            }
        }
    }
    Ok(())
}

/// What `pocketgan bench` feeds a graph model: pictures `[c, h, w]`, or noise of this many
/// values per sample (a recurrent generator's noise sequence), drawn as its metadata says.
enum BenchInput {
    Pictures((usize, usize, usize)),
    Noise(usize),
}

/// `pocketgan bench` of a token cell: sampling one sequence and a batch on tract, the int8
/// engine on every kernel family (the `.pgq` given, else the cell quantized in memory on its
/// own sequences) and onnxruntime.
fn bench_tokens(
    onnx: &[u8],
    tract: TractRunner,
    pgq: Option<&Path>,
    spec: &pocketgan_runtime::tokens::TokenSpec,
    engines: &[EngineKind],
    threads: usize,
    reps: usize,
) -> Result<bench::Table> {
    let cell = pocketgan_runtime::tokens::Cell::of(&tract)?;
    let hidden: usize = cell.states.iter().map(|&(_, s)| s).max().unwrap_or(0);
    // Per step: the gates' two products (the input as wide as the state, as SeqGAN's
    // embedding) and the logits.
    let macs = spec.length * (2 * 4 * hidden * hidden + hidden * cell.vocabulary);
    let pgq = match (pgq, engines.contains(&EngineKind::Int8)) {
        (_, false) => Vec::new(),
        (Some(p), true) => read(p)?,
        (None, true) => {
            let options = QuantizeOptions {
                length: Some(spec.length),
                ..Default::default()
            };
            quantize(onnx, &options)?.0
        }
    };
    let mut list: Vec<Box<dyn Runner>> = vec![Box::new(tract)];
    if !pgq.is_empty() {
        let m = Model::parse(&pgq)?;
        for isa in Isa::available() {
            list.push(Box::new(Int8Runner::new(m, isa).with_threads(threads)));
        }
    }
    if engines.contains(&EngineKind::Ort) {
        list.push(ort_runner(onnx, threads)?);
    }
    Ok(bench::run_tokens(
        &mut list,
        spec,
        macs,
        reps,
        bench::IMAGE_BATCH,
    )?)
}

/// `pocketgan bench` of a graph model (image-to-image, recurrent): tract, the int8 engine on
/// every kernel family and onnxruntime, at one sample and a batch.
fn bench_graph(
    onnx: &[u8],
    tract: TractRunner,
    pgq: Option<&Path>,
    input: BenchInput,
    engines: &[EngineKind],
    threads: usize,
    reps: usize,
) -> Result<bench::Table> {
    let pgq = match (pgq, &input) {
        (Some(p), _) => read(p)?,
        (None, BenchInput::Pictures(image)) => {
            let options = QuantizeOptions {
                calib: 64,
                samples: bench::pictures(0, 64, *image),
                ..Default::default()
            };
            quantize(onnx, &options)?.0
        }
        // The noise is drawn as the model's metadata says.
        (None, BenchInput::Noise(_)) => quantize(onnx, &QuantizeOptions::default())?.0,
    };
    let m = Model::parse(&pgq)?;
    let mut list: Vec<Box<dyn Runner>> = vec![Box::new(tract)];
    if engines.contains(&EngineKind::Int8) {
        for isa in Isa::available() {
            list.push(Box::new(Int8Runner::new(m, isa).with_threads(threads)));
        }
    }
    if engines.contains(&EngineKind::Ort) {
        list.push(ort_runner(onnx, threads)?);
    }
    Ok(match input {
        BenchInput::Pictures(image) => {
            bench::run_images(&mut list, &m, image, reps, bench::IMAGE_BATCH)?
        }
        BenchInput::Noise(size) => {
            let noise = pocketgan_runtime::sample::model_noise(onnx)
                .unwrap_or(pocketgan_runtime::latent::Noise::Normal);
            bench::run_noise(&mut list, &m, noise, size, reps, bench::IMAGE_BATCH)?
        }
    })
}

/// Calibration samples for a model's image or sequence input: pictures from a folder (loaded at
/// the input's shape) or a float32 `.npy`.
fn calibration_samples(
    onnx: &[u8],
    calib: usize,
    images: Option<&Path>,
    npy_file: Option<&Path>,
) -> Result<Vec<f32>> {
    if let Some(file) = npy_file {
        let a =
            npy::parse(&read(file)?).with_context(|| format!("cannot read {}", file.display()))?;
        return Ok(a.data);
    }
    let Some(dir) = images else {
        return Ok(Vec::new());
    };
    let graph = pocketgan_runtime::import::FloatGraph::from_onnx_bytes(onnx)?;
    let Some([c, h, w]) = graph
        .inputs
        .iter()
        .find(|i| i.kind == pocketgan_runtime::import::InputKind::Image)
        .and_then(|i| <[usize; 3]>::try_from(i.shape.as_slice()).ok())
    else {
        bail!("--calib-images: the model has no image input");
    };
    let files = picture::picture_files(dir)?;
    if files.is_empty() {
        bail!("--calib-images {}: no PNG or JPEG files", dir.display());
    }
    let mut out = Vec::new();
    for f in files.iter().take(calib.max(1)) {
        out.extend(picture::load_image(f, (c, h, w))?);
    }
    Ok(out)
}

/// A token cell's `--length`, checked.
fn token_length(length: usize) -> Result<usize> {
    let max = pocketgan_runtime::tokens::MAX_LENGTH;
    if !(1..=max).contains(&length) {
        bail!("--length {length}: expected 1 to {max}");
    }
    Ok(length)
}

/// `pocketgan run`: reads each named input, runs the model, writes each output.
fn sample_model(
    model: &Path,
    n: usize,
    seed: u64,
    noise: Option<&str>,
    out: &Path,
    isa: Option<&str>,
    length: Option<usize>,
) -> Result<()> {
    use pocketgan_runtime::latent::Noise;
    use pocketgan_runtime::sample;
    use pocketgan_runtime::tokens::TokenSpec;
    let bytes = read(model)?;
    let mut token_spec = pocketgan_runtime::tokens::model_tokens(&bytes)?;
    if let Some(length) = length.map(token_length).transpose()? {
        token_spec.get_or_insert(TokenSpec::ids(length)).length = length;
    }
    let noise = noise
        .map(|name| {
            Noise::from_name(name)
                .with_context(|| format!("--noise {name}: expected uniform or normal"))
        })
        .transpose()?;
    let engine = if is_pgq(model) {
        EngineKind::Int8
    } else {
        EngineKind::Tract
    };
    let mut unused = Vec::new();
    let mut runner = runner(model, &bytes, &mut unused, engine, isa, |_| Ok(Vec::new()))?;
    if let Some(spec) = token_spec {
        use pocketgan_runtime::tokens;
        let seqs = tokens::sample_tokens(runner.as_mut(), &spec, n, seed)?;
        tokens::write(out, &spec, &seqs)?;
        println!(
            "{}: {n} sequences of {} tokens (seed {seed}) -> {}",
            runner.name(),
            spec.length,
            out.display()
        );
        return Ok(());
    }
    if pocketgan_runtime::tokens::Cell::of(runner.as_ref()).is_ok() {
        bail!(
            "{} is a token cell whose metadata names no sequence length: give --length",
            model.display()
        );
    }
    // A noise generator's distribution: the flag's, else its metadata's (read only on this path).
    let noise = noise.unwrap_or_else(|| sample::model_noise(&bytes).unwrap_or(Noise::Normal));
    let (shape, values) = sample::sample(runner.as_mut(), noise, n, seed)?;
    sample::write(out, &shape, &values)?;
    println!(
        "{}: {n} samples of {shape:?} from {} noise (seed {seed}) -> {}",
        runner.name(),
        noise.name(),
        out.display()
    );
    Ok(())
}

fn run_model(model: &Path, inputs: &[String], out: &Path, isa: Option<&str>) -> Result<()> {
    use pocketgan_runtime::engine::runner::Values;
    let bytes = read(model)?;
    let engine = if is_pgq(model) {
        EngineKind::Int8
    } else {
        EngineKind::Tract
    };
    let mut unused = Vec::new();
    let mut runner = runner(model, &bytes, &mut unused, engine, isa, |_| Ok(Vec::new()))?;
    let given: std::collections::HashMap<&str, &str> = inputs
        .iter()
        .map(|s| {
            s.split_once('=')
                .with_context(|| format!("--input {s}: expected NAME=FILE"))
        })
        .collect::<Result<_>>()?;
    let specs = runner.inputs();
    let mut values = Vec::new();
    let mut n = None;
    for spec in &specs {
        let names = specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let src = given.get(spec.name.as_str()).with_context(|| {
            format!(
                "missing --input {}=FILE (the model's inputs: {names})",
                spec.name
            )
        })?;
        let (v, count) = if spec.classes.is_some() {
            let c: Vec<u32> = src
                .split(',')
                .map(|t| t.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("--input {}: expected class indices like 3,1,4", spec.name)
                })?;
            // A text's token ids: `T` per sample, sample after sample.
            let slots: usize = spec.shape.iter().product();
            if !c.len().is_multiple_of(slots) {
                bail!(
                    "--input {}: {} ids, not a whole number of samples of {slots}",
                    spec.name,
                    c.len()
                );
            }
            let count = c.len() / slots;
            (Values::Index(c), count)
        } else if src.ends_with(".npy") {
            let a =
                npy::parse(&read(Path::new(src))?).with_context(|| format!("cannot read {src}"))?;
            if a.shape.get(1..) != Some(&spec.shape[..]) {
                bail!(
                    "{src} has shape {:?}; input {} takes [N, {}]",
                    a.shape,
                    spec.name,
                    spec.shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let count = a.shape.first().copied().unwrap_or(0);
            (Values::F32(a.data), count)
        } else {
            let [c, h, w] = spec.shape[..] else {
                bail!(
                    "input {} is not an image ({:?}): give a .npy file",
                    spec.name,
                    spec.shape
                );
            };
            (
                Values::F32(picture::load_image(Path::new(src), (c, h, w))?),
                1,
            )
        };
        match n {
            Some(n) if n != count => {
                bail!("input {} has {count} samples, the others {n}", spec.name)
            }
            _ => n = Some(count),
        }
        values.push(v);
    }
    let n = n.unwrap_or(1);
    let outputs = runner.run(&values, n)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (spec, v) in runner.outputs().iter().zip(outputs) {
        let Values::F32(data) = v else { continue };
        let name: String = spec
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let shape: Vec<usize> = std::iter::once(n)
            .chain(spec.shape.iter().copied())
            .collect();
        let path = out.join(format!("{name}.npy"));
        std::fs::write(&path, npy::encode(&shape, &data))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if let [c @ (1 | 3), h, w] = spec.shape[..] {
            for (k, sample) in data.chunks_exact(c * h * w).enumerate() {
                let path = out.join(format!("{name}_{k}.png"));
                picture::image_grid_columns(sample, (c, h, w), 1)
                    .save(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        println!("{}: {} -> {}", runner.name(), spec.name, path.display());
    }
    Ok(())
}

/// The token ids of `generate --text` for a text-conditioned generator (its metadata's
/// vocabulary and slots, [`TextSpec`]): `None` for a model that reads no text. The words the
/// vocabulary lacks are listed on stderr; a prompt without a known word, a text model without
/// `--text` and `--text` for another model are errors.
fn prompt_ids(
    model: &Path,
    gen: &dyn Engine,
    spec: Option<&TextSpec>,
    prompt: Option<&str>,
) -> Result<Option<Vec<u32>>> {
    let name = model.display();
    let (classes, slots) = (gen.classes(), gen.slots());
    let reads_text = spec.is_some() || (classes > 0 && slots > 1);
    let prompt = match (prompt, reads_text) {
        (None, false) => return Ok(None),
        (Some(_), false) => bail!("--text: {name} is not a text-conditioned generator"),
        (None, true) => bail!(
            "{name} is a text-conditioned generator: give its prompt with --text, e.g. --text \"red apple\""
        ),
        (Some(p), true) => p,
    };
    let spec = spec.with_context(|| {
        format!(
            "{name} reads {slots} token ids per sample, but its metadata names no vocabulary ({})",
            text::VOCABULARY_KEY
        )
    })?;
    if spec.length != slots || spec.vocabulary.len() != classes {
        bail!(
            "{name}: its metadata names {} words and {} slots, but its text input takes {slots} ids in 0..{classes}",
            spec.vocabulary.len(),
            spec.length
        );
    }
    let (ids, skipped) = spec.encode(prompt)?;
    if !skipped.is_empty() {
        eprintln!(
            "skipped words not in the vocabulary: {}",
            skipped.join(", ")
        );
    }
    Ok(Some(ids))
}

/// A tensor's shape as a person reads it, `[c, h, w]` or `[n]`.
fn shape_text(shape: Shape) -> String {
    match shape {
        Shape::Flat(n) => format!("[{n}]"),
        Shape::Image { c, h, w } => format!("[{c}, {h}, {w}]"),
    }
}

/// A tensor as `inspect` lists it: index, kind and shape.
fn tensor_text(m: &Model, t: usize) -> String {
    match m.tensor(t) {
        Some(TensorInfo {
            kind: TensorKind::Index { classes },
            shape,
            ..
        }) => match shape.elements() {
            1 => format!("t{t} class in 0..{classes}"),
            slots => format!("t{t} {slots} token ids in 0..{classes}"),
        },
        Some(info) => format!("t{t} {}", shape_text(info.shape)),
        None => format!("t{t}"),
    }
}

/// The `inspect` report: inputs and outputs, every node with its tensors and arena span, the
/// plan's peak.
fn inspect(m: &Model) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let list = |ts: &mut dyn Iterator<Item = usize>| {
        ts.map(|t| tensor_text(m, t)).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(
        s,
        "pocketgan int8 model: {} -> {}, {} nodes, {} tensors, {} bytes",
        list(&mut m.inputs()),
        list(&mut m.outputs()),
        m.node_count(),
        m.tensor_count(),
        m.file_len
    );
    if m.is_conditional() && m.slots() > 1 {
        let _ = writeln!(
            s,
            "text: a vocabulary of {} words (id 0 reserved), {} token slots (generate --text \"...\")",
            m.classes() - 1,
            m.slots()
        );
    } else if m.is_conditional() {
        let _ = writeln!(
            s,
            "conditional: {} classes (generate --class 0..={})",
            m.classes(),
            m.classes() - 1
        );
    }
    if !m.metadata.is_empty() && m.metadata != "{}" {
        // Long values (a text model's vocabulary) are summarised: their length, not their text.
        let shown = serde_json::from_str::<std::collections::BTreeMap<String, String>>(m.metadata)
            .map(|md| {
                let short: std::collections::BTreeMap<String, String> = md
                    .into_iter()
                    .map(|(k, v)| match v.chars().count() {
                        n if n > 200 => (k, format!("<{n} characters>")),
                        _ => (k, v),
                    })
                    .collect();
                serde_json::to_string(&short).unwrap_or_default()
            })
            .unwrap_or_else(|_| m.metadata.to_string());
        let _ = writeln!(s, "metadata: {shown}");
    }
    let sequences = serde_json::from_str::<std::collections::HashMap<String, String>>(m.metadata)
        .ok()
        .and_then(|md| {
            md.get(pocketgan_runtime::engine::runner::SEQUENCES)
                .cloned()
        });
    if let Some(names) = sequences {
        let _ = writeln!(
            s,
            "sequences: {names} are [steps, features] in floats, stored as [features, steps, 1]"
        );
    }
    let _ = writeln!(
        s,
        "{:<3} {:<16} {:<12} {:<22} {:>10} {:>12}  {}",
        "#", "op", "inputs", "output", "params", "MACs/sample", "arena bytes (one sample)"
    );
    let (mut params, mut macs) = (0, 0);
    for (i, node) in m.nodes().enumerate() {
        let op = node.op;
        params += op.params();
        macs += op.macs();
        let inputs = node
            .inputs()
            .map(|t| format!("t{t}"))
            .collect::<Vec<_>>()
            .join(",");
        let out = node.output();
        let size = m.tensor(out).map_or(0, |i| i.bytes());
        let at = m.plan.offset(out);
        let _ = writeln!(
            s,
            "{i:<3} {:<16} {inputs:<12} {:<22} {:>10} {:>12}  {at}..{}",
            op.name(),
            tensor_text(m, out),
            op.params(),
            op.macs(),
            at + size
        );
    }
    let _ = writeln!(
        s,
        "total: {params} parameters, {macs} multiply-adds per sample"
    );
    let _ = writeln!(
        s,
        "arena: {} bytes for one sample = {} tensor bytes (the plan's peak) + {} GEMM tile bytes; {} bytes more per extra sample",
        m.arena_len(1),
        m.tensor_bytes(1),
        m.scratch_bytes(),
        m.tensor_bytes(1)
    );
    let _ = writeln!(
        s,
        "weights are read in place from the file (packed at quantization time)"
    );
    s
}
