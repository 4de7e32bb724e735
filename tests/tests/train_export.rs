//! End to end: train -> checkpoint -> resume -> export -> run the ONNX file in tract.

use burn::prelude::*;
use std::path::Path;

use pocketgan_tests::{export_to, trained_in_memory};
use pocketgan_trainer::checkpoint;
use pocketgan_trainer::config::TrainConfig;
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::error::TrainError;
use pocketgan_trainer::family;
use pocketgan_trainer::history::{self, StepMetrics};
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;
use pocketgan_trainer::train::{self, Outcome, RunOptions};

fn tiny_digits_config(steps: u64) -> TrainConfig {
    let mut c = TrainConfig::new(
        &DataSource::Digits,
        Architecture::Dcgan,
        GanLoss::Nonsaturating,
    );
    c.steps = steps;
    c.batch = 16;
    c.model.width = 16;
    c.model.latent = 16;
    c.checkpoint_every = 2;
    c.sample_every = 3;
    c.seed = 7;
    c
}

fn quiet() -> RunOptions<'static> {
    RunOptions {
        watch: false,
        quiet: true,
        ..Default::default()
    }
}

fn read_metrics(run: &Path) -> Vec<StepMetrics> {
    history::read(&run.join("metrics.csv")).unwrap()
}

/// Everything but the wall-clock column.
fn without_time(rows: &[StepMetrics]) -> Vec<StepMetrics> {
    rows.iter()
        .map(|r| StepMetrics { seconds: 0.0, ..*r })
        .collect()
}

#[test]
fn digits_run_writes_its_outputs_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let config = tiny_digits_config(6);
    assert_eq!(
        train::train(&config, &full, &quiet()).unwrap(),
        Outcome::Finished { steps: 6 }
    );
    for f in [
        "config.json",
        "metrics.csv",
        "loss_curve.png",
        "generator.onnx",
        "samples/step_000000.png",
        "samples/step_000006.png",
    ] {
        assert!(full.join(f).is_file(), "{f} missing");
    }
    let rows = read_metrics(&full);
    assert_eq!(
        rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert!(rows
        .iter()
        .all(|r| r.loss_d.is_finite() && r.grad_norm_d > 0.0 && r.grad_norm_g > 0.0));
    // keep_checkpoints = 3 of the ones at steps 2, 4, 6
    let kept: Vec<u64> = checkpoint::list(&full.join("checkpoints"))
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(kept, vec![2, 4, 6]);

    // Interrupted at step 3 (the Ctrl-C path writes a checkpoint), then resumed to 6.
    let split = dir.path().join("split");
    let stop = RunOptions {
        watch: false,
        stop_at: Some(3),
        ..quiet()
    };
    assert_eq!(
        train::train(&config, &split, &stop).unwrap(),
        Outcome::Interrupted { at_step: 3 }
    );
    assert_eq!(
        checkpoint::list(&split.join("checkpoints"))
            .last()
            .unwrap()
            .0,
        3
    );
    // Starting over in a used folder without --resume is refused.
    assert!(matches!(
        train::train(&config, &split, &quiet()),
        Err(TrainError::RunExists(_))
    ));
    let resume = RunOptions {
        watch: false,
        resume: true,
        ..quiet()
    };
    assert_eq!(
        train::train(&config, &split, &resume).unwrap(),
        Outcome::Finished { steps: 6 }
    );
    assert_eq!(without_time(&read_metrics(&split)), without_time(&rows));
    // The export is G's moving average (on by default), whose weights and BatchNorm statistics
    // the checkpoints carry: the resumed run exports the same bytes.
    let (_, ckpt) = checkpoint::list(&split.join("checkpoints")).pop().unwrap();
    let ckpt = checkpoint::Checkpoint::read(&ckpt).unwrap();
    assert!(ckpt
        .sections
        .iter()
        .any(|(name, _)| name == "generator_ema"));
    let onnx = |run: &Path| std::fs::read(run.join("generator.onnx")).unwrap();
    assert!(
        onnx(&split) == onnx(&full),
        "the resumed run exports another generator"
    );
}

#[test]
fn corrupt_checkpoints_and_missing_runs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = tiny_digits_config(2);
    train::train(
        &config,
        &run,
        &RunOptions {
            watch: false,
            stop_at: Some(1),
            ..quiet()
        },
    )
    .unwrap();
    let (_, ckpt) = checkpoint::list(&run.join("checkpoints")).pop().unwrap();
    let bytes = std::fs::read(&ckpt).unwrap();
    let resume = RunOptions {
        watch: false,
        resume: true,
        ..quiet()
    };

    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let e = train::train(&config, &run, &resume)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("truncated") && e.contains("step_000001.ckpt"),
        "{e}"
    );

    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 100] ^= 0xff;
    std::fs::write(&ckpt, &flipped).unwrap();
    let e = train::train(&config, &run, &resume)
        .unwrap_err()
        .to_string();
    assert!(e.contains("CRC32"), "{e}");

    let e = train::train(&config, &dir.path().join("nothing"), &resume)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
    let e = pocketgan_trainer::run::export_run(&dir.path().join("nothing"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = tiny_digits_config(4);
    config.lr = 1e30; // Adam's first step moves every weight by ~lr: the losses overflow.
    let e = train::train(&config, &run, &quiet()).unwrap_err();
    assert!(matches!(e, TrainError::NonFinite { .. }), "{e}");
    assert!(e.to_string().contains("diverged"), "{e}");
}

/// The exported file computes what the Burn module computes, at two batch sizes (dynamic N).
#[test]
fn exported_generators_match_burn_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (DataSource::Digits, Architecture::Dcgan, None),
        (DataSource::Digits, Architecture::Dcgan, Some((32, 3))),
        (DataSource::Digits, Architecture::Dcgan, Some((64, 1))),
        (DataSource::Digits, Architecture::Mlp, None),
        (DataSource::Ring8, Architecture::Mlp, None),
    ];
    for (i, (data, arch, shape)) in cases.into_iter().enumerate() {
        let mut config = TrainConfig::new(&data, arch, GanLoss::Nonsaturating);
        config.model.width = 8;
        if let (
            Some((side, ch)),
            pocketgan_trainer::data::SampleKind::Image {
                channels,
                height,
                width,
            },
        ) = (shape, &mut config.model.sample)
        {
            (*channels, *height, *width) = (ch, side, side);
        }
        // Train two steps so BatchNorm's running statistics are not the identity.
        let ds = pocketgan_trainer::data::load(
            &data,
            &pocketgan_trainer::data::LoadOptions {
                size: shape.map(|s| s.0),
                channels: shape.map(|s| s.1),
                ..Default::default()
            },
        )
        .unwrap();
        let state = trained_in_memory(&config, &ds, 2);
        let file = dir.path().join(format!("g{i}.onnx"));
        export_to(state.as_ref(), &config, 2, &file);
        for n in [1, 5] {
            let z = family::latents(3, n as u64, n, config.model.latent, &Device::flex());
            let want = pocketgan_tests::burn_generate(state.as_ref(), z.clone(), None);
            let got = pocketgan_tests::run_tract(
                &file,
                &z.into_data().try_into_vec::<f32>().unwrap(),
                n,
                config.model.latent,
                None,
            );
            let d = pocketgan_tests::max_abs_diff(&want, &got);
            assert!(d <= 1e-4, "case {i} batch {n}: max abs diff {d}");
        }
    }
}

#[test]
fn onnx_checker_accepts_the_export_and_metadata_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train::train(&tiny_digits_config(2), &run, &quiet()).unwrap();
    let onnx = run.join("generator.onnx");
    let script = r#"
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
meta = {p.key: p.value for p in m.metadata_props}
assert m.opset_import[0].version in (17, 18), m.opset_import
assert [i.name for i in m.graph.input] == ["z"] and [o.name for o in m.graph.output] == ["image"]
assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
assert meta["pocketgan.latent"] == "16" and meta["pocketgan.image_shape"] == "1,28,28", meta
assert meta["pocketgan.dataset"] == "digits" and meta["pocketgan.steps"] == "2", meta
assert meta["pocketgan.class_names"] == ",".join(str(k) for k in range(10)), meta
print("ok", len(m.graph.node), "nodes")
"#;
    pocketgan_tests::python_accepts(script, &onnx);
}
