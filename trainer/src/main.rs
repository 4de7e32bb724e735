//! `pocketgan-train`: the command line over the trainer library.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::device::{on_pool, set_threads, DeviceKind};
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::{Architecture, Conditioning};
use pocketgan_trainer::train::{self, Outcome, RunOptions, TrainConfig};

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
    Eval {
        generator: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Data an ONNX or .pgq generator was trained on (a run knows its own).
        #[arg(long, default_value = "digits")]
        data: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where the per-dataset classifiers are kept (trained on first use).
        #[arg(long, default_value = "runs/classifiers")]
        classifiers: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Time one reference DCGAN training iteration (batch 64) on each compiled-in backend.
    Bench {
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
        /// PyTorch's median for the same iteration on this machine, from
        /// `python3 ../shared/anchors/torch_dcgan_step.py THREADS`, to print the ratio.
        #[arg(long, default_value_t = 40.0)]
        torch_ms: f64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// digits (built in), mnist, fashion-mnist, emoji, idx:DIR, folder:DIR, toy:ring8, toy:grid25
    #[arg(long, default_value = "digits")]
    data: String,
    #[arg(long, value_enum, default_value = "dcgan")]
    model: Architecture,
    #[arg(long, value_enum, default_value = "nonsaturating")]
    loss: GanLoss,
    /// Use the labels: cgan (G and D take the class), acgan (G takes it, D predicts it),
    /// sgan (semi-supervised D with K class logits, trained on --labelled samples per class).
    #[arg(long, value_enum, default_value = "none")]
    cond: Conditioning,
    /// Size of G's class embedding (cgan, acgan).
    #[arg(long)]
    embed: Option<usize>,
    /// SGAN: labelled samples per class.
    #[arg(long)]
    labelled: Option<usize>,
    /// ACGAN: weight of the auxiliary classifier terms in D's and G's losses.
    #[arg(long)]
    aux_weight: Option<f32>,
    /// Training iterations (each: D step(s) then one G step).
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Run folder (default runs/default).
    #[arg(long, default_value = "runs/default")]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Image side for image data (28, 32 or 64 for dcgan).
    #[arg(long)]
    size: Option<usize>,
    /// Image channels (1 or 3).
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long)]
    latent: Option<usize>,
    /// DCGAN base width / MLP hidden units.
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Decay the learning rate linearly to zero over the run.
    #[arg(long)]
    lr_decay: bool,
    /// D steps per G step (default 5 for wgan, else 1).
    #[arg(long)]
    critic_steps: Option<usize>,
    #[arg(long)]
    checkpoint_every: Option<u64>,
    #[arg(long)]
    sample_every: Option<u64>,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    set_threads(a.threads);
    let source: DataSource = a.data.parse()?;
    let mut config = TrainConfig::new(&source, a.model, a.loss);
    if let pocketgan_trainer::data::SampleKind::Image {
        channels,
        height,
        width,
    } = &mut config.model.sample
    {
        if let Some(s) = a.size {
            (*height, *width) = (s, s);
        }
        if let Some(c) = a.channels {
            *channels = c;
        }
    }
    config.steps = match (a.steps, a.resume) {
        (Some(steps), _) => steps,
        // --resume without --steps finishes the run as it was configured.
        (None, true) => train::RunDir(a.out.clone()).read_config()?.steps,
        (None, false) => config.steps,
    };
    config.batch = a.batch;
    config.seed = a.seed;
    config.device = a.device;
    config.keep_checkpoints = a.keep;
    config.model.latent = a.latent.unwrap_or(config.model.latent);
    config.model.width = a.width.unwrap_or(config.model.width);
    config.model.conditioning = a.cond;
    config.model.embed = a.embed.unwrap_or(config.model.embed);
    config.labelled_per_class = a.labelled.unwrap_or(config.labelled_per_class);
    config.aux_weight = a.aux_weight.unwrap_or(config.aux_weight);
    config.lr = a.lr.unwrap_or(config.lr);
    config.lr_decay = a.lr_decay;
    config.critic_steps = a.critic_steps.unwrap_or(config.critic_steps);
    config.checkpoint_every = a.checkpoint_every.unwrap_or(config.checkpoint_every);
    config.sample_every = a.sample_every.unwrap_or(config.sample_every);

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
            println!("  generator:  {}", a.out.join("generator.onnx").display());
            if let Some(m) = source.mixture() {
                let run = train::RunDir(a.out.clone());
                let cfg = run.read_config()?;
                let device = cfg.device.device()?;
                let state = train::load_latest(&run, &cfg, &device.clone().autodiff())?;
                let c = m.coverage(&train::generate(
                    &state.generator,
                    &cfg,
                    2500,
                    cfg.seed,
                    &device,
                ));
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
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    pocketgan_trainer::ops::keep_freed_memory();
    match Cli::parse().command {
        Command::Train(a) => train_cmd(a),
        Command::Export { run, out } => {
            let file = pocketgan_trainer::export::export_run(&run, out.as_deref())?;
            println!("wrote {}", file.display());
            Ok(())
        }
        Command::Eval {
            generator,
            n,
            data,
            seed,
            classifiers,
            json,
        } => {
            use pocketgan_trainer::metrics::{evaluate, Generator, Report};
            let data: pocketgan_trainer::data::DataSource = data.parse()?;
            let report = evaluate(
                &Generator::from_path(&generator),
                n,
                seed,
                &data,
                &classifiers,
            )?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            match report {
                Report::Toy {
                    mixture,
                    samples,
                    modes_covered,
                    modes,
                    high_quality,
                } => println!(
                    "{mixture}: {modes_covered}/{modes} modes covered, {:.1}% high-quality samples ({samples} samples)",
                    100.0 * high_quality
                ),
                Report::Images {
                    data,
                    classifier_test_accuracy,
                    generated,
                    held_out_real,
                    class_accuracy,
                    semi_supervised,
                } => {
                    println!(
                        "{data}: classifier test accuracy {:.2}%",
                        100.0 * classifier_test_accuracy
                    );
                    println!(
                        "{:<16} {:>8} {:>10} {:>9} {:>10} {:>10} {:>8}",
                        "", "samples", "FID", "classes", "KL(p||U)", "precision", "recall"
                    );
                    for (name, m) in [("generated", &generated), ("held-out real", &held_out_real)] {
                        println!(
                            "{:<16} {:>8} {:>10.3} {:>6}/{:<2} {:>10.4} {:>10.3} {:>8.3}",
                            name,
                            m.samples,
                            m.fid,
                            m.classes_covered,
                            m.classes,
                            m.kl_uniform,
                            m.precision,
                            m.recall
                        );
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
                }
            }
            Ok(())
        }
        Command::Bench {
            warmup,
            iters,
            device,
            threads,
            torch_ms,
            json,
        } => {
            set_threads(threads);
            let threads = threads.unwrap_or_else(rayon::current_num_threads);
            let bench = on_pool(|| pocketgan_trainer::bench::all(&device, warmup, iters))?;
            if json {
                let v = serde_json::json!({
                    "threads": threads,
                    "torch_ms": torch_ms,
                    "rows": bench.rows,
                    "unavailable": bench.unavailable,
                });
                println!("{v}");
            } else {
                println!("reference DCGAN training iteration, batch 64, {threads} threads");
                println!(
                    "{:<16} {:>12} {:>10} {:>14} {:>12}",
                    "backend", "median ms", "min ms", "x PyTorch", "cpu ms/iter"
                );
                println!(
                    "{:<16} {:>12.2} {:>10} {:>14}",
                    "pytorch", torch_ms, "-", "1.00"
                );
                for r in bench.rows {
                    let cpu = r.cpu_ms.map_or("-".into(), |c| format!("{c:.1}"));
                    println!(
                        "{:<16} {:>12.2} {:>10.2} {:>14.2} {:>12}",
                        r.backend,
                        r.median_ms,
                        r.min_ms,
                        r.median_ms / torch_ms,
                        cpu
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
