//! Helpers shared by the end-to-end tests in `tests/`.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use pocketgan_trainer::config::TrainConfig;
use pocketgan_trainer::data::{BatchOrder, Dataset};
use pocketgan_trainer::family::{self, samples, Family, Iteration};
use pocketgan_trainer::run::{Restored, RunDir};
use pocketgan_trainer::train::{self, RunOptions};

/// The repository's root, from the package directory cargo gives the running test. The path baked
/// in at compile time (`env!`) is only the fallback: a build cache shared by two checkouts can
/// reuse a test binary compiled in the other one, whose directory may be gone.
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package.join("..")
}

/// The short toy run: small enough for CI, long enough to cover the ring.
pub const RING8_STEPS: u64 = 6000;
pub const RING8_BATCH: usize = 256;
pub const RING8_LR: f64 = 1e-3;

/// Train `config` into `run` without a progress bar and return the newest checkpoint's family.
pub fn train_quietly(config: &TrainConfig, run: &Path) -> Restored {
    let opts = RunOptions {
        watch: false,
        quiet: true,
        ..Default::default()
    };
    train::train(config, run, &opts).unwrap();
    let dir = RunDir(run.to_path_buf());
    let saved = dir.read_config().unwrap();
    dir.load_latest(&saved, &Device::flex().autodiff()).unwrap()
}

/// Options of a quiet run (no progress bar, no quality watch), stopped after `stop_at`
/// iterations if given.
pub fn quiet(stop_at: Option<u64>) -> RunOptions<'static> {
    RunOptions {
        watch: false,
        quiet: true,
        stop_at,
        ..Default::default()
    }
}

/// A run's `metrics.csv` rows with their time zeroed: what a resumed run must reproduce.
pub fn rows_without_time(run: &Path) -> Vec<pocketgan_trainer::history::StepMetrics> {
    pocketgan_trainer::history::read(&run.join("metrics.csv"))
        .unwrap()
        .into_iter()
        .map(|r| pocketgan_trainer::history::StepMetrics { seconds: 0.0, ..r })
        .collect()
}

/// For each of `stops`: `config` trained into `dir/split<stop>`, interrupted after `stop`
/// iterations and resumed to `steps`, must write the metrics `rows` of the uninterrupted run (time
/// aside) and the same `generator.onnx` bytes as `full`.
pub fn assert_resumes_exactly(
    config: &TrainConfig,
    dir: &Path,
    stops: &[u64],
    steps: u64,
    full: &Path,
) {
    let rows = rows_without_time(full);
    for &stop in stops {
        let split = dir.join(format!("split{stop}"));
        assert_eq!(
            train::train(config, &split, &quiet(Some(stop))).unwrap(),
            train::Outcome::Interrupted { at_step: stop }
        );
        let resume = RunOptions {
            resume: true,
            ..quiet(None)
        };
        assert_eq!(
            train::train(config, &split, &resume).unwrap(),
            train::Outcome::Finished { steps }
        );
        assert_eq!(rows_without_time(&split), rows, "resumed at {stop}");
        let onnx = |run: &Path| std::fs::read(run.join("generator.onnx")).unwrap();
        assert!(
            onnx(&split) == onnx(full),
            "export after resuming at {stop}"
        );
    }
}

/// `config`'s family after `steps` iterations on `ds` in memory; every loss stays finite.
pub fn trained_in_memory(config: &TrainConfig, ds: &Dataset, steps: u64) -> Box<dyn Family> {
    let mut order = BatchOrder::new(ds.len(), config.batch, config.seed).unwrap();
    let device = Device::flex().autodiff();
    let mut family = family::init(config, &device).unwrap();
    for step in 0..steps {
        let m = family.step(&mut Iteration {
            config,
            data: ds,
            target: None,
            order: &mut order,
            device: &device,
            step,
        });
        assert!(m.loss_d.is_finite() && m.loss_g.is_finite(), "{m:?}");
    }
    family
}

/// The generator's output for `z` (and classes, for a conditional generator) in inference mode,
/// flattened.
pub fn burn_generate(family: &dyn Family, z: Tensor<2>, classes: Option<&[i64]>) -> Vec<f32> {
    let generator = family.latent_generator().expect("a latent generator");
    samples::generate_from(generator, z, classes)
}

/// `family`'s one ONNX file, written to `file`.
pub fn export_to(family: &dyn Family, config: &TrainConfig, steps: u64, file: &Path) {
    let files = family.export(&config.onnx_metadata(steps)).unwrap();
    assert_eq!(files.len(), 1);
    std::fs::write(file, &files[0].bytes).unwrap();
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Run an ONNX generator in tract on latents `z` `[n, latent]` (and, for a conditional generator,
/// its `class` input), at a fixed batch size so tract plans for it.
pub fn run_tract(
    file: &Path,
    z: &[f32],
    n: usize,
    latent: usize,
    classes: Option<&[i64]>,
) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let mut model = tract_onnx::onnx()
        .model_for_path(file)
        .unwrap()
        .with_input_fact(0, f32::fact([n, latent]).into())
        .unwrap();
    let mut inputs: TVec<TValue> = tvec!(Tensor::from(
        tract_ndarray::Array2::from_shape_vec((n, latent), z.to_vec()).unwrap()
    )
    .into());
    if let Some(c) = classes {
        model = model.with_input_fact(1, i64::fact([n]).into()).unwrap();
        inputs.push(Tensor::from(tract_ndarray::Array1::from_vec(c.to_vec())).into());
    }
    let model = model.into_optimized().unwrap().into_runnable().unwrap();
    let out = model.run(inputs).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// Run Python `script` (which reads the ONNX file in `sys.argv[1]`, e.g. to call `onnx.checker`)
/// and fail the test with its output unless it succeeds.
pub fn python_accepts(script: &str, file: &Path) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Python check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
pub mod nopanic;

/// Every firmware board binary, `(board, ELF)`, built (or found up to date) by
/// `scripts/firmware.sh build`.
pub fn firmware_boards() -> Vec<(String, PathBuf)> {
    let root = repo_root();
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/firmware.sh"))
        .arg("build")
        .current_dir(&root)
        .output()
        .expect("run scripts/firmware.sh build");
    assert!(
        out.status.success(),
        "firmware build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let boards: Vec<(String, PathBuf)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(board, elf)| (board.to_owned(), root.join(elf)))
        .collect();
    assert_eq!(boards.len(), 5, "five boards expected: {boards:?}");
    boards
}
