//! Progressive GAN end to end, on the built-in digits at 16 px (stages 4, 8 and 16 px): the run
//! grows through every stage and keeps a grid per stage; interrupted mid-fade or at a phase
//! boundary (where Adam's state is reset) it resumes exactly; its export, mid-fade (two RGB
//! branches added) and stable, computes in tract what Burn computes; and the runtime imports and
//! quantizes both (pixel norm, nearest upsampling and the add as int8 ops).

use std::path::Path;

use burn::prelude::*;
use pocketgan_runtime::engine::runner::{Runner, TractRunner, Values};
use pocketgan_runtime::quantize::{quantize, QuantizeOptions};
use pocketgan_runtime::Model;
use pocketgan_tests::{assert_resumes_exactly, max_abs_diff, quiet, rows_without_time};
use pocketgan_trainer::config::{SampleShape, TrainConfig};
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::family::progan::{Schedule, TERMS};
use pocketgan_trainer::family::{latents, FamilyKind};

use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;
use pocketgan_trainer::run::{self, RunDir};
use pocketgan_trainer::train;

/// Digits at 16 px, width 4 (16, 8 and 4 maps), latent 8, batch 8; 32 images a phase: 4
/// iterations a phase, 20 in all.
fn tiny() -> TrainConfig {
    let data = DataSource::Digits;
    let mut c = TrainConfig::new(&data, Architecture::Dcgan, GanLoss::Nonsaturating);
    c.family = FamilyKind::Progan;
    let shape = SampleShape {
        size: Some(16),
        channels: Some(1),
    };
    c.complete(&data, shape, |_| false);
    (c.batch, c.model.width, c.model.latent, c.seed) = (8, 4, 8, 5);
    c.progan.phase_images = 32;
    c.steps = Schedule::new(&c).total_steps();
    (c.checkpoint_every, c.sample_every) = (5, 100);
    c
}

/// The int8 bar of these tiny generators (measured 28 dB mid-fade, 23 dB stable): pixel norm over
/// 4 maps at 16 px divides by small norms, which int8 resolves coarsely; the README's 64 px run
/// reports its own figure.
const INT8_DB: f64 = 20.0;

#[test]
fn progan_grows_and_resumes_exactly_mid_fade_and_at_a_phase_boundary() {
    let config = tiny();
    assert_eq!(config.loss, GanLoss::WganGp, "progan's default game");
    assert_eq!((config.beta1, config.beta2, config.lr), (0.0, 0.99, 1e-3));
    assert_eq!(config.steps, 20);
    config.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    train::train(&config, &full, &quiet(None)).unwrap();
    let rows = rows_without_time(&full);
    assert_eq!(rows.len(), 20);
    // The stage and alpha columns follow the schedule: stage 1 fades in over steps 5-8.
    let stage_alpha: Vec<(f32, f32)> = rows
        .iter()
        .map(|r| (r.terms.as_slice()[0], r.terms.as_slice()[1]))
        .collect();
    assert_eq!(
        &stage_alpha[3..9],
        &[
            (0., 1.),
            (1., 0.),
            (1., 0.25),
            (1., 0.5),
            (1., 0.75),
            (1., 1.)
        ]
    );
    assert!(rows.iter().all(|r| r.terms.as_slice().len() == TERMS.len()));
    for stage in ["stage_0_4px.png", "stage_1_8px.png", "stage_2_16px.png"] {
        assert!(full.join("samples").join(stage).is_file(), "{stage}");
    }
    // Step 6 is mid-fade; step 8 starts stage 1's stabilisation, where Adam is reset.
    assert_resumes_exactly(&config, dir.path(), &[6, 8], 20, &full);
}

/// The run's export against Burn's moving-average generator on the same latents, and its int8
/// form against the float model (`bar` dB); returns the `.pgq`'s op names.
fn export_checks(run: &Path, config: &TrainConfig, bar: f64) -> Vec<String> {
    let bytes = std::fs::read(run.join("generator.onnx")).unwrap();
    let restored = RunDir(run.to_path_buf())
        .load_latest(config, &Device::flex().autodiff())
        .unwrap();
    let n = 3;
    let device = Device::flex();
    let z = latents(9, 0, n, config.model.latent, &device);
    let zs = z.clone().into_data().try_to_vec::<f32>().unwrap();
    let want = restored
        .family
        .latent_generator()
        .unwrap()
        .forward(z, None)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let mut tract = TractRunner::new(&bytes).unwrap();
    let got: Vec<f32> = match tract.run(&[Values::F32(zs)], n).unwrap().remove(0) {
        Values::F32(v) => v,
        other => panic!("float output expected, got {other:?}"),
    };
    assert_eq!(got.len(), n * 16 * 16);
    let d = max_abs_diff(&want, &got);
    assert!(d <= 1e-4, "tract differs from Burn by {d}");
    let (pgq, report) = quantize(&bytes, &QuantizeOptions::default()).unwrap();
    eprintln!("{}: int8 PSNR {:.1} dB", run.display(), report.psnr_db);
    assert!(report.psnr_db >= bar, "int8 PSNR {} dB", report.psnr_db);
    let model = Model::parse(&pgq).unwrap();
    model.ops().map(|op| op.name().to_string()).collect()
}

#[test]
fn progan_exports_run_in_tract_and_quantize_mid_fade_and_stable() {
    let config = tiny();
    let dir = tempfile::tempdir().unwrap();
    let fading = dir.path().join("fading");
    // Interrupted at step 14: stage 2 (16 px) fading in at alpha 0.5.
    train::train(&config, &fading, &quiet(Some(14))).unwrap();
    run::export_run(&fading, None).unwrap();
    let ops = export_checks(&fading, &config, INT8_DB);
    let count = |name: &str| ops.iter().filter(|o| o.as_str() == name).count();
    // z's, the stem's, and two per conv of stages 0 to 2: 1 + 2 + 4 = 7.
    assert_eq!(count("PixelNorm"), 7, "{ops:?}");
    assert_eq!(count("Add"), 1, "the fading branches: {ops:?}");
    assert!(count("Upsample") >= 3, "{ops:?}");
    let stable = dir.path().join("stable");
    train::train(&config, &stable, &quiet(None)).unwrap();
    let ops = export_checks(&stable, &config, INT8_DB);
    assert_eq!(
        ops.iter().filter(|o| o.as_str() == "Add").count(),
        0,
        "{ops:?}"
    );
}

#[test]
fn progan_refuses_what_it_cannot_train() {
    let mut config = tiny();
    config.model.sample = pocketgan_trainer::data::SampleKind::Image {
        channels: 1,
        height: 28,
        width: 28,
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("doublings"), "{err}");
    let mut config = tiny();
    config.loss = GanLoss::Hinge;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("wgan-gp"), "{err}");
    let mut config = tiny();
    config.batch = 1;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("standard deviation"), "{err}");
}
