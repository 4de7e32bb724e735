//! StackGAN end to end on real captioned emoji (tests/fixtures/captions: 40 Noto emoji with their
//! names and emojilib keywords, read through `--data emoji` as a fetched copy would be): the run
//! trains Stage-I then Stage-II and keeps Stage-I's last grid; interrupted in either stage or at
//! the boundary it resumes exactly; the text reaches the images; the one-graph export (token
//! input) computes in tract what Burn computes, and quantizes.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use pocketgan_runtime::engine::runner::{Runner, TractRunner, Values};
use pocketgan_runtime::quantize::{quantize, QuantizeOptions};
use pocketgan_tests::{assert_resumes_exactly, max_abs_diff, quiet, rows_without_time};
use pocketgan_trainer::config::{SampleShape, TrainConfig};
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::family::stackgan::{StackGan, TERMS};
use pocketgan_trainer::family::{latents, FamilyKind};
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::Architecture;
use pocketgan_trainer::run::{self, RunDir};
use pocketgan_trainer::train;

/// The fixture as the data folder: every test of this binary reads the same one.
fn data_dir() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/captions");
    ONCE.call_once(|| std::env::set_var("POCKETGAN_DATA", &dir));
    dir
}

/// 64 px emoji, width 4, latent 8, batch 4, 8 slots: 3 Stage-I and 3 Stage-II iterations.
fn tiny() -> TrainConfig {
    data_dir();
    let data = DataSource::Emoji;
    let mut c = TrainConfig::new(&data, Architecture::Dcgan, GanLoss::Nonsaturating);
    c.family = FamilyKind::Stackgan;
    let shape = SampleShape {
        size: Some(64),
        channels: Some(3),
    };
    c.complete(&data, shape, |_| false);
    (c.batch, c.model.width, c.model.latent, c.seed) = (4, 4, 8, 3);
    c.stackgan.slots = 8;
    c.stackgan.stage1_steps = 3;
    c.steps = 6;
    (c.checkpoint_every, c.sample_every) = (2, 100);
    c
}

fn restore(run: &Path, config: &TrainConfig) -> StackGan {
    use pocketgan_trainer::family::Family;
    let config = RunDir(run.to_path_buf())
        .read_config()
        .unwrap_or(config.clone());
    let (f, _, _) = RunDir(run.to_path_buf())
        .restore_latest(|ckpt, file| {
            let mut f = StackGan::init(&config, &Device::flex().autodiff())?;
            f.load(ckpt, file)?;
            Ok(f)
        })
        .unwrap();
    f
}

#[test]
fn stackgan_trains_both_stages_and_resumes_exactly() {
    let config = tiny();
    config.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    train::train(&config, &full, &quiet(None)).unwrap();
    let rows = rows_without_time(&full);
    let stages: Vec<f32> = rows.iter().map(|r| r.terms.as_slice()[0]).collect();
    assert_eq!(stages, [1., 1., 1., 2., 2., 2.]);
    assert!(rows.iter().all(|r| r.terms.as_slice().len() == TERMS.len()));
    assert!(rows
        .iter()
        .all(|r| r.loss_d.is_finite() && r.loss_g.is_finite()));
    assert!(full.join("samples/stage_1_32px.png").is_file());
    // The vocabulary is the captions' words, stored with the run.
    let saved = RunDir(full.clone()).read_config().unwrap();
    assert!(saved.vocabulary.len() > 100, "{}", saved.vocabulary.len());
    assert!(saved.vocabulary.iter().any(|w| w == "tree"));
    assert_resumes_exactly(&config, dir.path(), &[2, 3, 4], 6, &full);
}

#[test]
fn stackgan_exports_one_graph_with_a_text_input_that_tract_runs_and_the_runtime_quantizes() {
    let config = tiny();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    train::train(&config, &run_dir, &quiet(None)).unwrap();
    run::export_run(&run_dir, None).unwrap();
    let family = restore(&run_dir, &config);
    let prompts = ["palm tree", "hot dog", "flag"];
    let tokens: Vec<u32> = prompts
        .iter()
        .flat_map(|p| {
            family
                .prompt(p)
                .unwrap_or_else(|| panic!("{p}: no known word"))
        })
        .collect();
    // The text reaches the image: one noise vector, three prompts, three pictures.
    let n = prompts.len();
    let device = Device::flex();
    let z = latents(9, 0, 1, config.model.latent, &device);
    let z = Tensor::cat(vec![z; n], 0);
    let zs = z.clone().into_data().try_to_vec::<f32>().unwrap();
    let want = family.draw(tokens.clone(), z, 2);
    let per = 3 * 64 * 64;
    assert_eq!(want.len(), n * per);
    // (A barely trained tiny G draws values near 0, compared to their own scale; a text that did
    // not reach the image would leave the pictures exactly equal.)
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d01 = max_abs_diff(&want[..per], &want[per..2 * per]);
    assert!(
        scale > 0.0 && d01 > 0.01 * scale,
        "two prompts drew the same picture ({d01} at scale {scale})"
    );
    // Stage-I's picture differs from Stage-II's.
    let small = family.draw(
        tokens.clone(),
        latents(9, 0, n, config.model.latent, &device),
        1,
    );
    assert!(max_abs_diff(&small, &want) > 0.05 * scale);

    // The ONNX graph: z and text in, the 64 px image out; tract agrees with Burn.
    let bytes = std::fs::read(run_dir.join("generator.onnx")).unwrap();
    let mut tract = TractRunner::new(&bytes).unwrap();
    let inputs: Vec<_> = tract
        .inputs()
        .into_iter()
        .map(|t| (t.name, t.shape, t.classes))
        .collect();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert_eq!(inputs[1].0, "text");
    let got: Vec<f32> = match tract
        .run(&[Values::F32(zs), Values::Index(tokens)], n)
        .unwrap()
        .remove(0)
    {
        Values::F32(v) => v,
        other => panic!("float output expected, got {other:?}"),
    };
    let d = max_abs_diff(&want, &got);
    assert!(d <= 1e-4, "tract differs from Burn by {d}");

    // onnx.checker accepts the graph; its text input and metadata are as documented.
    let script = r#"
import sys, json, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
meta = {p.key: p.value for p in m.metadata_props}
assert [i.name for i in m.graph.input] == ["z", "text"], m.graph.input
t = m.graph.input[1].type.tensor_type
assert t.elem_type == onnx.TensorProto.INT64 and t.shape.dim[1].dim_value == 8, t
vocabulary = json.loads(meta["pocketgan.text_vocabulary"])
assert vocabulary[0] == "" and "tree" in vocabulary, vocabulary[:5]
assert meta["pocketgan.text_length"] == "8" and meta["pocketgan.family"] == "stackgan", meta
print("ok")
"#;
    pocketgan_tests::python_accepts(script, &run_dir.join("generator.onnx"));

    // int8: the runtime imports the token input and the whole graph.
    let (pgq, report) = quantize(&bytes, &QuantizeOptions::default()).unwrap();
    eprintln!("stackgan tiny: int8 PSNR {:.1} dB", report.psnr_db);
    assert!(report.psnr_db >= 20.0, "int8 PSNR {} dB", report.psnr_db);
    let model = pocketgan_runtime::Model::parse(&pgq).unwrap();
    let ops: Vec<String> = model.ops().map(|op| op.name().to_string()).collect();
    assert!(ops.iter().any(|o| o == "Embed"), "{ops:?}");
    assert_eq!(
        ops.iter().filter(|o| o.as_str() == "Add").count(),
        2,
        "{ops:?}"
    );
}

#[test]
fn stackgan_refuses_what_it_cannot_train() {
    let mut config = tiny();
    config.data = "digits".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("--data emoji"), "{err}");
    let mut config = tiny();
    config.model.sample = pocketgan_trainer::data::SampleKind::Image {
        channels: 3,
        height: 32,
        width: 32,
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("--size 64"), "{err}");
    let mut config = tiny();
    config.batch = 1;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("--batch 2"), "{err}");
    let mut config = tiny();
    config.stackgan.slots = 0;
    assert!(config.validate().is_err());
}
