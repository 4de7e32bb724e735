//! `pocketgan-train`: the command line over the trainer library.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use pocketgan_trainer::config::{SampleShape, TrainConfig};
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::device::{on_pool, set_threads, DeviceKind};
use pocketgan_trainer::family::{samples, FamilyKind};
use pocketgan_trainer::run::RunDir;
use pocketgan_trainer::train::{self, Outcome, RunOptions};

#[derive(Parser)]
#[command(
    name = "pocketgan-train",
    version,
    about = "Train GANs with Burn and export the generator to ONNX"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `eval` and `judge` share: the seed, where the judges are kept, and the output form.
#[derive(clap::Args)]
struct Judging {
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the per-dataset classifiers are kept (trained on first use).
    #[arg(long, default_value = "runs/classifiers")]
    classifiers: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Train a GAN; everything goes to the run folder (--out).
    Train(TrainArgs),
    /// Export the newest checkpoint of a run to ONNX.
    Export {
        run: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Quality metrics of a generator: a run folder (Burn), an ONNX file (tract) or a .pgq (int8).
    /// Toy data: modes covered and high-quality samples. Images: classifier FID, class coverage,
    /// KL to uniform classes, precision and recall, beside the same for held-out real images.
    ///
    /// An image-to-image run (pix2pix, cyclegan): L1, PSNR, SSIM and sharpness on its held-out
    /// test pairs, beside the identity baseline and the translators given with --versus; a
    /// CycleGAN run adds its A->B->A reconstruction scored against A.
    ///
    /// A SeqGAN run: NLL-oracle of G's samples (oracle benchmark) or BLEU-2..4 and novelty
    /// against the held-out lines (text), with --versus rows.
    Eval {
        generator: PathBuf,
        /// Image-to-image: more translators scored on the same test pairs in the same table: runs
        /// (e.g. the L1-only ablation), the exported .onnx (tract) or its .pgq (int8). TimeGAN:
        /// the exported generator on the runtime (.onnx on tract, .pgq on the int8 engine) or
        /// series in a float32 .npy [N, T, F], each a row of the table. SeqGAN: the exported
        /// cell (.onnx on tract, .pgq on the int8 engine), its samples scored as G's.
        #[arg(long)]
        versus: Vec<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// A run: judge its raw generator instead of the generator's moving average (--ema).
        #[arg(long)]
        raw: bool,
        /// Data an ONNX or .pgq generator was trained on (a run knows its own).
        #[arg(long, default_value = "digits")]
        data: String,
        /// TimeGAN: repetitions of each score, with fresh post-hoc networks (mean and spread).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// TimeGAN: training steps of the post-hoc discriminator (the authors' 2,000).
        #[arg(long, default_value_t = 2000)]
        disc_steps: usize,
        /// TimeGAN: training steps of the post-hoc predictor (the authors' 5,000).
        #[arg(long, default_value_t = 5000)]
        pred_steps: usize,
        /// TimeGAN: the folder for pca.png and tsne.png, the pictures of real against generated
        /// series (default: the run folder).
        #[arg(long)]
        pictures: Option<PathBuf>,
        #[command(flatten)]
        judging: Judging,
    },
    /// The judge of image metrics: train it (or load the kept one), print what it learned, its
    /// test accuracy and how it scores real images it has not seen, untouched and spoiled (noise,
    /// blur, one class removed): a sensitive judge ranks them as a person would.
    Judge {
        #[arg(long, default_value = "digits")]
        data: String,
        #[command(flatten)]
        judging: Judging,
    },
    /// Time one reference training iteration of a family on each compiled-in backend.
    Bench {
        /// Which family's reference iteration: gan (the reference DCGAN, batch 64), pix2pix
        /// (64 px, batch 4, width 32), cyclegan (64 px, batch 1, width 32, 6 residual blocks),
        /// timegan (sines, batch 128, GRU 24 x 3, an iteration of the joint phase) or seqgan (the
        /// oracle benchmark, batch 64, an adversarial round: 16 rollouts, 5 D steps).
        #[arg(long, value_enum, default_value_t = FamilyKind::Gan)]
        family: FamilyKind,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Backends to time, repeatable (default: every compiled-in one).
        #[arg(long, value_enum)]
        device: Vec<DeviceKind>,
        /// CPU threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// PyTorch's median for the same iteration on this machine. By default it is measured
        /// now, by running the family's anchor script (../shared/anchors/torch_dcgan_step.py,
        /// scripts/anchors/torch_{pix2pix,cyclegan,timegan,seqgan}_step.py) with python3 from the
        /// current folder.
        #[arg(long)]
        torch_ms: Option<f64>,
        #[arg(long)]
        json: bool,
    },
}

/// `train`'s flags: the run configuration (each default written once, in [`TrainConfig`]) and
/// the knobs of this invocation.
#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    config: TrainConfig,
    #[command(flatten)]
    shape: SampleShape,
    /// Run folder.
    #[arg(long, default_value = "runs/default")]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `given`: the flags the user set on the command line (not left to their defaults), as clap
/// argument ids and as typed.
fn train_cmd(a: TrainArgs, given: &[(String, String)]) -> anyhow::Result<()> {
    set_threads(a.threads);
    let given_id = |id: &str| given.iter().any(|(g, _)| g == id);
    let source: DataSource = a.config.data.parse()?;
    let mut config = a.config;
    config.complete(&source, a.shape, given_id);
    if a.resume && RunDir(a.out.clone()).config().exists() {
        let saved = RunDir(a.out.clone()).read_config()?;
        // A resumed run keeps its configuration: a flag that would change it is refused rather
        // than silently ignored.
        let conflicts = config.resume_conflicts(&saved, given);
        if !conflicts.is_empty() {
            anyhow::bail!(
                "--resume continues {} as it was configured (only --steps may change): {}",
                a.out.display(),
                conflicts.join("; ")
            );
        }
        // --resume without --steps finishes the run as it was configured.
        if !given_id("steps") {
            config.steps = saved.steps;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: give up at once
        }
        eprintln!("\nstopping: writing a checkpoint (Ctrl-C again to abort)");
    })
    .context("installing the Ctrl-C handler")?;
    let opts = RunOptions {
        watch: true,
        resume: a.resume,
        quiet: a.quiet,
        stop: Some(&stop),
        stop_at: None,
    };
    match on_pool(|| train::train(&config, &a.out, &opts))? {
        Outcome::Finished { steps } => {
            println!("trained {steps} steps; run folder: {}", a.out.display());
            println!("  samples:    {}", a.out.join("samples").display());
            println!("  metrics:    {}", a.out.join("metrics.csv").display());
            println!("  loss curve: {}", a.out.join("loss_curve.png").display());
            // The family names its exports (CycleGAN writes one generator per direction).
            let mut exports: Vec<_> = std::fs::read_dir(&a.out)
                .with_context(|| format!("reading {}", a.out.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .collect();
            exports.sort();
            for path in exports {
                println!("  generator:  {}", path.display());
            }
            if let Some(m) = source.mixture() {
                let run = RunDir(a.out.clone());
                let cfg = run.read_config()?;
                let device = cfg.device.device()?;
                let restored = run.load_latest(&cfg, &device.clone().autodiff())?;
                let generator = restored
                    .family
                    .latent_generator()
                    .context("this family has no latent generator")?;
                let c = m.coverage(&samples::generate(generator, &cfg, 2500, cfg.seed, &device));
                println!(
                    "  {}: {}/{} modes covered, {:.1}% high-quality samples",
                    m.name,
                    c.modes_covered,
                    c.modes,
                    100.0 * c.high_quality
                );
            }
        }
        Outcome::Interrupted { at_step } => {
            println!(
                "interrupted at step {at_step}; continue with --resume --out {}",
                a.out.display()
            );
            // The shell's code for a run stopped by SIGINT, so scripts can tell it from a
            // finished one.
            std::process::exit(130);
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    pocketgan_trainer::ops::keep_freed_memory();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Train(a) => {
            let command = Cli::command();
            let train = command
                .find_subcommand("train")
                .expect("train is a subcommand");
            let given: Vec<(String, String)> = matches
                .subcommand_matches("train")
                .map(|m| {
                    m.ids()
                        .filter(|id| {
                            m.value_source(id.as_str())
                                == Some(clap::parser::ValueSource::CommandLine)
                        })
                        .map(|id| {
                            let flag = train
                                .get_arguments()
                                .find(|arg| arg.get_id() == id)
                                .and_then(|arg| arg.get_long())
                                .map_or(id.to_string(), |long| format!("--{long}"));
                            (id.to_string(), flag)
                        })
                        .collect()
                })
                .unwrap_or_default();
            train_cmd(a, &given)
        }
        Command::Export { run, out } => {
            let exported = pocketgan_trainer::run::export_run(&run, out.as_deref())?;
            for (file, why) in &exported.skipped {
                eprintln!(
                    "warning: {why}; exported the checkpoint of step {} instead of {}",
                    exported.step,
                    file.display()
                );
            }
            for file in exported.files {
                println!("wrote {}", file.display());
            }
            Ok(())
        }
        Command::Judge {
            data,
            judging:
                Judging {
                    seed,
                    classifiers,
                    json,
                },
        } => {
            use pocketgan_trainer::metrics::{classifier::JudgeData, sensitivity, Reference};
            let source: pocketgan_trainer::data::DataSource = data.parse()?;
            let ds = pocketgan_trainer::data::load(&source, &Default::default())?;
            let data_dir = pocketgan_trainer::data::LoadOptions::default().data_dir;
            let judge_data = JudgeData::for_dataset(&ds, &data_dir, seed)?;
            let reference = Reference::with(&judge_data, &classifiers, seed)?;
            let floor = judge_data.floor(seed);
            let rows = sensitivity::table(&reference, &floor, seed).map_err(anyhow::Error::msg)?;
            let swd = sensitivity::swd_table(judge_data.reference(), &floor, seed)
                .map_err(anyhow::Error::msg)?;
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|(s, m)| serde_json::json!({"spoil": s, "metrics": m}))
                    .collect();
                let swd: Vec<_> = swd
                    .iter()
                    .map(|(s, d)| serde_json::json!({"spoil": s, "swd_x1e3": d}))
                    .collect();
                let out = serde_json::json!({
                    "judge": reference.judge_data,
                    "test_accuracy": reference.judge.test_accuracy,
                    "rows": rows,
                    "swd": swd,
                });
                println!("{out}");
                return Ok(());
            }
            println!("judge: {}", reference.judge_data);
            println!(
                "test accuracy {:.2}%",
                100.0 * reference.judge.test_accuracy
            );
            print_metrics_header();
            for (spoil, m) in &rows {
                print_metrics_row(&spoil.to_string(), m);
            }
            if let Some((_, first)) = swd.first() {
                let side = match ds.kind {
                    pocketgan_trainer::data::SampleKind::Image { height, .. } => height,
                    _ => 0,
                };
                let sizes = pocketgan_trainer::metrics::swd::level_sizes(
                    side,
                    pocketgan_trainer::metrics::swd::MIN_SIZE,
                );
                let rows: Vec<(String, &[f64])> = swd
                    .iter()
                    .map(|(s, d)| (s.to_string(), d.as_slice()))
                    .collect();
                print_swd(&sizes[..first.len().min(sizes.len())], &rows);
            }
            Ok(())
        }
        Command::Eval {
            generator,
            versus,
            n,
            raw,
            data,
            reps,
            disc_steps,
            pred_steps,
            pictures,
            judging:
                Judging {
                    seed,
                    classifiers,
                    json,
                },
        } => {
            use pocketgan_trainer::metrics::{evaluate, Generator, Report};
            if pocketgan_trainer::run::RunDir(generator.clone())
                .read_config()
                .is_ok_and(|c| c.family == pocketgan_trainer::family::FamilyKind::Timegan)
            {
                use pocketgan_trainer::metrics::series;
                let protocol = series::Protocol {
                    n,
                    repetitions: reps,
                    discriminator_steps: disc_steps,
                    predictor_steps: pred_steps,
                    seed,
                    ..Default::default()
                };
                let pictures = pictures.unwrap_or_else(|| generator.clone());
                let run = pocketgan_trainer::run::RunDir(generator.clone());
                let r = series::evaluate(&run, &protocol, Some(&pictures), &versus)?;
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                    return Ok(());
                }
                println!(
                    "{}: {} series of {} steps x {} features each, {} repetitions",
                    r.data, r.series, r.length, r.features, r.repetitions
                );
                let width = r.rows.iter().map(|row| row.name.len()).max().unwrap_or(0);
                println!(
                    "{:<width$} {:>22} {:>22}",
                    "", "discriminative", "predictive (MAE)"
                );
                for row in &r.rows {
                    let pred = row.predictive.map_or("-".to_string(), |p| {
                        format!("{:.4} +- {:.4}", p.mean, p.std)
                    });
                    println!(
                        "{:<width$} {:>22} {:>22}",
                        row.name,
                        format!(
                            "{:.4} +- {:.4}",
                            row.discriminative.mean, row.discriminative.std
                        ),
                        pred
                    );
                }
                println!(
                    "pictures: {}, {}",
                    pictures.join("pca.png").display(),
                    pictures.join("tsne.png").display()
                );
                return Ok(());
            }
            if pocketgan_trainer::run::RunDir(generator.clone())
                .read_config()
                .is_ok_and(|c| c.family.translates())
            {
                let others: Vec<&std::path::Path> = versus.iter().map(PathBuf::as_path).collect();
                let rows = pocketgan_trainer::metrics::translation::evaluate(&generator, &others)?;
                if json {
                    println!("{}", serde_json::to_string(&rows)?);
                    return Ok(());
                }
                println!(
                    "{:<40} {:>6} {:>8} {:>9} {:>7} {:>10}",
                    "held-out test pairs", "images", "L1", "PSNR dB", "SSIM", "sharpness"
                );
                for r in rows {
                    println!(
                        "{:<40} {:>6} {:>8.4} {:>9.2} {:>7.4} {:>10.3}",
                        r.name, r.images, r.l1, r.psnr, r.ssim, r.sharpness
                    );
                }
                return Ok(());
            }
            let run = pocketgan_trainer::run::RunDir(generator.clone());
            if let Ok(c) = run.read_config() {
                if c.family == pocketgan_trainer::family::FamilyKind::Stackgan {
                    let r = pocketgan_trainer::metrics::text_image::evaluate(
                        &run,
                        n,
                        seed,
                        &classifiers,
                    )?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                        return Ok(());
                    }
                    println!(
                        "{} emoji texts x {} noise vectors; judge: {}",
                        r.texts, r.per_text, r.judge
                    );
                    println!(
                        "{:<28} {:>7} {:>8} {:>9} {:>7} {:>11} {:>14}",
                        "", "samples", "FID", "precision", "recall", "text match", "shuffled texts"
                    );
                    for row in &r.rows {
                        println!(
                            "{:<28} {:>7} {:>8.2} {:>9.3} {:>7.3} {:>11.3} {:>14.3}",
                            row.name,
                            row.samples,
                            row.fid,
                            row.precision,
                            row.recall,
                            row.text_match,
                            row.shuffled_match
                        );
                    }
                    println!(
                        "{} categories (commonest {:.3} of the texts); the judge puts {:.3} of \
                         the real emoji in their category ({:.3} of its held-out fifth); \
                         held-out real FID {:.2}",
                        r.categories, r.majority, r.real_match, r.judge_held_out, r.held_out_fid
                    );
                    return Ok(());
                }
            }
            let run = pocketgan_trainer::run::RunDir(generator.clone());
            if run
                .read_config()
                .is_ok_and(|c| c.family == pocketgan_trainer::family::FamilyKind::Seqgan)
            {
                let r = pocketgan_trainer::metrics::sequences::evaluate(&run, n, seed, &versus)?;
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                    return Ok(());
                }
                match r.tokens {
                    None => println!("{}: vocabulary {}, NLL-oracle", r.data, r.vocabulary),
                    Some(tokens) => println!(
                        "{}: {} tokens, vocabulary {}, BLEU against {} held-out lines",
                        r.data,
                        format!("{tokens:?}").to_lowercase(),
                        r.vocabulary,
                        r.held_out_lines
                    ),
                }
                let width = r
                    .rows
                    .iter()
                    .map(|row| row.name.len())
                    .max()
                    .unwrap_or(0)
                    .max(16);
                if r.tokens.is_none() {
                    println!(
                        "{:<width$} {:>8} {:>11} {:>10}",
                        "", "samples", "NLL-oracle", "NLL-test"
                    );
                } else {
                    println!(
                        "{:<width$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                        "", "samples", "BLEU-2", "BLEU-3", "BLEU-4", "novel", "tokens"
                    );
                }
                for row in &r.rows {
                    match (row.nll_oracle, row.bleu, row.novel) {
                        (Some(nll), _, _) => println!(
                            "{:<width$} {:>8} {:>11.4} {:>10}",
                            row.name,
                            row.samples,
                            nll,
                            row.nll_test.map_or("-".into(), |v| format!("{v:.4}"))
                        ),
                        (_, Some(bleu), Some(novel)) => println!(
                            "{:<width$} {:>8} {:>8.4} {:>8.4} {:>8.4} {:>7.1}% {:>8.2}",
                            row.name,
                            row.samples,
                            bleu[0],
                            bleu[1],
                            bleu[2],
                            100.0 * novel,
                            row.mean_tokens
                        ),
                        _ => {}
                    }
                }
                println!("samples: {}", r.examples.join(" | "));
                return Ok(());
            }
            if !versus.is_empty() {
                anyhow::bail!(
                    "--versus compares image-to-image runs; {} is not one",
                    generator.display()
                );
            }
            let data: pocketgan_trainer::data::DataSource = data.parse()?;
            let generator = match Generator::from_path(&generator) {
                Generator::Run(dir) if raw => Generator::RawRun(dir),
                _ if raw => anyhow::bail!("--raw judges a run folder's raw generator"),
                g => g,
            };
            let report = evaluate(&generator, n, seed, &data, &classifiers)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            let (Report::Toy { fell_back_past, .. } | Report::Images { fell_back_past, .. }) =
                &report;
            for why in fell_back_past {
                eprintln!("warning: judged an older checkpoint; this one does not restore: {why}");
            }
            match report {
                Report::Toy {
                    fell_back_past: _,
                    mixture,
                    samples,
                    modes_covered,
                    modes,
                    high_quality,
                    optimal,
                    picture,
                } => {
                    println!(
                        "{mixture}: {modes_covered}/{modes} modes covered, {:.1}% high-quality samples ({samples} samples)",
                        100.0 * high_quality
                    );
                    if let Some(o) = optimal {
                        let or_none = |v: Option<f64>| {
                            v.map_or("n/a (this loss)".into(), |v| format!("{v:.4}"))
                        };
                        println!(
                            "optimal discriminator (G's raw samples, D of the last checkpoint):"
                        );
                        println!("  mean |D - D*|                        {}", or_none(o.gap));
                        println!("  JSD(p_data || p_g) from the densities  {:.4} nats (at most ln 2 = 0.6931)", o.jsd);
                        println!(
                            "  JSD implied by the minimax value       {}",
                            or_none(o.jsd_from_value)
                        );
                    }
                    if let Some(p) = picture {
                        println!("  picture: {}", p.display());
                    }
                }
                Report::Images {
                    fell_back_past: _,
                    data,
                    judge,
                    classifier_test_accuracy,
                    generated,
                    held_out_real,
                    class_accuracy,
                    semi_supervised,
                    swd,
                } => {
                    println!("{data}: judge {judge}");
                    println!(
                        "{data}: classifier test accuracy {:.2}%",
                        100.0 * classifier_test_accuracy
                    );
                    print_metrics_header();
                    for (name, m) in [("generated", &generated), ("held-out real", &held_out_real)]
                    {
                        print_metrics_row(name, m);
                    }
                    println!("class counts: {:?}", generated.class_counts);
                    if let Some(a) = class_accuracy {
                        println!(
                            "conditional: {:.1}% of samples judged the class they were asked for",
                            100.0 * a
                        );
                    }
                    if let Some(s) = semi_supervised {
                        println!(
                            "sgan classifier: {:.2}% on {} held-out images, {} labelled; the same \
                             network trained on the labelled images alone: {:.2}%",
                            100.0 * s.sgan_accuracy,
                            s.held_out,
                            s.labelled,
                            100.0 * s.supervised_only_accuracy
                        );
                    }
                    if let Some(d) = swd {
                        print_swd(
                            &d.sizes,
                            &[
                                ("generated".into(), &d.generated),
                                ("held-out real".into(), &d.held_out_real),
                            ],
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Bench {
            family,
            warmup,
            iters,
            device,
            threads,
            torch_ms,
            json,
        } => {
            set_threads(threads);
            let threads = threads.unwrap_or_else(rayon::current_num_threads);
            let bench = on_pool(|| pocketgan_trainer::bench::all(family, &device, warmup, iters))?;
            let torch = match torch_ms {
                Some(ms) => Ok(ms),
                None => pocketgan_trainer::bench::torch_reference(family, threads, Path::new(".")),
            };
            if json {
                let v = serde_json::json!({
                    "family": family,
                    "threads": threads,
                    "torch_ms": torch.as_ref().ok(),
                    "rows": bench.rows,
                    "unavailable": bench.unavailable,
                });
                println!("{v}");
            } else {
                let (config, _, _) = pocketgan_trainer::bench::reference_setup(family)?;
                let networks = match family {
                    FamilyKind::Gan | FamilyKind::Pix2pix | FamilyKind::Cyclegan => {
                        format!("{:?}, width {}", config.model.sample, config.model.width)
                    }
                    FamilyKind::Progan => format!(
                        "{:?}, width {}, the last stage fading in",
                        config.model.sample, config.model.width
                    ),
                    FamilyKind::Timegan => format!(
                        "{}, GRU {} x {}",
                        config.data, config.timegan.gru_hidden, config.timegan.gru_layers
                    ),
                    FamilyKind::Seqgan => format!(
                        "{}, an adversarial round: {} rollouts, {} D steps",
                        config.data, config.seqgan.rollouts, config.seqgan.round_d_steps
                    ),
                    FamilyKind::Stackgan => format!(
                        "{:?}, width {}, Stage-II on the frozen Stage-I, {} text slots",
                        config.model.sample, config.model.width, config.stackgan.slots
                    ),
                };
                println!(
                    "{} training iteration, {networks}, batch {}, {threads} threads",
                    match family {
                        FamilyKind::Gan => "reference DCGAN",
                        FamilyKind::Pix2pix => "pix2pix",
                        FamilyKind::Cyclegan => "cyclegan",
                        FamilyKind::Seqgan => "seqgan",
                        FamilyKind::Timegan => "timegan",
                        FamilyKind::Progan => "progan",
                        FamilyKind::Stackgan => "stackgan",
                    },
                    config.batch,
                );
                println!(
                    "{:<16} {:>12} {:>10} {:>14} {:>12}",
                    "backend", "median ms", "min ms", "x PyTorch", "cpu ms/iter"
                );
                match &torch {
                    Ok(ms) => println!("{:<16} {:>12.2} {:>10} {:>14}", "pytorch", ms, "-", "1.00"),
                    Err(why) => println!("{:<16} not measured: {why}", "pytorch"),
                }
                for r in bench.rows {
                    let cpu = r.cpu_ms.map_or("-".into(), |c| format!("{c:.1}"));
                    let ratio = torch
                        .as_ref()
                        .map_or("-".into(), |ms| format!("{:.2}", r.median_ms / ms));
                    println!(
                        "{:<16} {:>12.2} {:>10.2} {:>14} {:>12}",
                        r.backend, r.median_ms, r.min_ms, ratio, cpu
                    );
                }
                for u in bench.unavailable {
                    println!("{:<16} skipped: {}", u.backend, u.reason);
                }
            }
            Ok(())
        }
    }
}

/// The sliced Wasserstein distance per pyramid level, a row per image set (`judge`, `eval`).
fn print_swd(sizes: &[usize], rows: &[(String, &[f64])]) {
    println!(
        "sliced Wasserstein distance x 1e3 to the reference images, per pyramid level (Karras et al. 2018; no trained network; up to {} images a set):",
        pocketgan_trainer::metrics::swd::SWD_IMAGES
    );
    let head: String = sizes
        .iter()
        .map(|s| format!("{:>9}", format!("{s} px")))
        .collect();
    println!("{:<24}{head}", "images");
    for (name, d) in rows {
        let cells: String = d.iter().map(|v| format!("{v:>9.2}")).collect();
        println!("{name:<24}{cells}");
    }
}

fn print_metrics_header() {
    println!(
        "{:<18} {:>8} {:>10} {:>9} {:>10} {:>10} {:>8}",
        "", "samples", "FID", "classes", "KL(p||U)", "precision", "recall"
    );
}

fn print_metrics_row(name: &str, m: &pocketgan_trainer::metrics::ImageMetrics) {
    println!(
        "{:<18} {:>8} {:>10.3} {:>6}/{:<2} {:>10.4} {:>10.3} {:>8.3}",
        name, m.samples, m.fid, m.classes_covered, m.classes, m.kl_uniform, m.precision, m.recall
    );
}
