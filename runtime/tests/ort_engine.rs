//! The onnxruntime engine against tract, and its handling of a missing library.
//!
//! Needs onnxruntime: `ORT_DYLIB_PATH=/path/to/libonnxruntime.so`, or `pip install onnxruntime`.
#![cfg(feature = "ort")]

mod common;

use pocketgan_runtime::engine::latent_generator;
use pocketgan_runtime::engine::ort::{resolve_library, OrtEngine, DYLIB_ENV};
use pocketgan_runtime::engine::{Engine, EngineError, TractEngine};
use pocketgan_runtime::npy;
use pocketgan_runtime::quantize::latents;
use std::path::PathBuf;
use std::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The largest absolute difference of two float outputs.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn fixture() -> PathBuf {
    common::repo_root().join("tests/fixtures/generator_tiny.onnx")
}

#[test]
fn ort_matches_tract() -> Result {
    ort_matches_tract_on(fixture())?;
    // pytorch/examples' DCGAN as torch.onnx.export writes it: a latent of rank 4,
    // `[N, 100, 1, 1]` (the engine used to feed `[N, 100]` and onnxruntime refused it).
    let torch = common::repo_root().join("runtime/tests/fixtures/torch/dcgan64_real_op17_dyn.onnx");
    ort_matches_tract_on(torch)
}

fn ort_matches_tract_on(path: PathBuf) -> Result {
    let bytes = std::fs::read(path)?;
    let graph = latent_generator(&bytes)?;
    let (latent, image) = (graph.latent, graph.image);
    let mut ort = OrtEngine::new(&bytes, latent, image, 1)?;
    let mut tract = TractEngine::new(&bytes, latent, image);
    assert_eq!(ort.name(), "onnxruntime f32");
    assert_eq!((ort.latent(), ort.image_shape()), (latent, image));
    let (c, h, w) = image;
    // Batch 3 twice: the session must be reusable across runs and batch sizes.
    for (seed, n) in [(1, 1), (2, 3), (3, 3)] {
        let z = latents(seed, n, latent);
        let a = ort.generate(&z, n)?;
        let b = tract.generate(&z, n)?;
        assert_eq!(a.len(), n * c * h * w);
        assert_eq!(a.len(), b.len());
        let diff = max_diff(&a, &b);
        assert!(diff < 1e-4, "batch {n}: max |ort - tract| = {diff}");
        assert!(a.iter().all(|v| v.is_finite()));
    }
    // Wrong latent count is an error, not a panic.
    assert!(matches!(
        ort.generate(&[0.0; 3], 1),
        Err(EngineError::Latents { .. })
    ));
    Ok(())
}

#[test]
fn missing_library_is_a_clear_error() {
    let err = resolve_library(Some("/nonexistent/libonnxruntime.so")).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, EngineError::Ort(_)));
    assert!(
        message.contains(DYLIB_ENV) && message.contains("/nonexistent/libonnxruntime.so"),
        "{message}"
    );
    assert!(message.contains("pip install onnxruntime"), "{message}");
}

#[test]
fn library_found_in_a_directory() -> Result {
    let dir = std::env::temp_dir().join(format!("pocketgan-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for name in [
        "libonnxruntime_providers_shared.so",
        "libonnxruntime.so.1.32.0",
        "onnxruntime_pybind11_state.so",
    ] {
        std::fs::write(dir.join(name), b"")?;
    }
    let found = resolve_library(dir.to_str());
    let empty = std::env::temp_dir().join(format!("pocketgan-ort-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty)?;
    let none = resolve_library(empty.to_str());
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&empty)?;
    assert_eq!(found?, dir.join("libonnxruntime.so.1.32.0"));
    assert!(none.unwrap_err().to_string().contains(DYLIB_ENV));
    Ok(())
}

/// End to end, in a child process (the library is loaded once per process): a missing or broken
/// library makes `OrtEngine::new` fail with a message naming `ORT_DYLIB_PATH`, without a panic.
#[test]
fn cli_reports_bad_library() -> Result {
    let out_png = std::env::temp_dir().join(format!("pocketgan-ort-{}.png", std::process::id()));
    let fixture = fixture();
    // A path that does not exist, and a file that is not a shared library.
    for library in [
        PathBuf::from("/nonexistent/libonnxruntime.so"),
        fixture.clone(),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pocketgan"))
            .arg("generate")
            .arg(&fixture)
            .args(["--engine", "ort", "--n", "1", "--out"])
            .arg(&out_png)
            .env(DYLIB_ENV, &library)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{} worked with {}",
            env!("CARGO_BIN_EXE_pocketgan"),
            library.display()
        );
        assert!(stderr.contains(DYLIB_ENV), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out_png.exists());
    }
    Ok(())
}

/// A conditional generator (z and class inputs) through onnxruntime and tract, class by class.
#[test]
fn ort_matches_tract_with_classes() -> Result {
    let dir = std::env::temp_dir().join(format!("pocketgan-ort-cgan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = common::repo_root().join("tests/scripts/torch_style_generators.py");
    let status = Command::new("python3").arg(script).arg(&dir).status()?;
    assert!(status.success(), "needs python3 with onnx and numpy");
    let onnx = dir.join("cgan.onnx");
    let bytes = std::fs::read(&onnx)?;
    let graph = latent_generator(&bytes)?;
    let (latent, image) = (graph.latent, graph.image);
    let mut ort = OrtEngine::new(&bytes, latent, image, 1)?;
    let mut tract = TractEngine::new(&bytes, latent, image);
    assert_eq!((ort.classes(), tract.classes()), (10, 10));
    let n = 3;
    let z = latents(4, n, latent);
    let mut previous: Option<Vec<f32>> = None;
    for classes in [[0, 0, 0], [9, 9, 9], [2, 5, 7]] {
        let a = ort.generate_with(&z, &classes, n)?;
        let b = tract.generate_with(&z, &classes, n)?;
        let diff = max_diff(&a, &b);
        assert!(
            diff < 1e-4,
            "classes {classes:?}: max |ort - tract| = {diff}"
        );
        assert_ne!(previous.as_ref(), Some(&a), "the classes change nothing");
        previous = Some(a);
    }
    assert!(matches!(
        ort.generate_with(&z, &[0, 10, 0], n),
        Err(EngineError::Run(_))
    ));
    assert!(matches!(ort.generate(&z, n), Err(EngineError::Run(_))));

    // `pocketgan generate --class` on the ort engine, against tract with that class.
    let z_file = dir.join("z.npy");
    std::fs::write(&z_file, npy::encode(&[n, latent], &z))?;
    let out = dir.join("ort.npy");
    let run = Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .arg("generate")
        .arg(&onnx)
        .args(["--engine", "ort", "--class", "6", "--latents"])
        .arg(&z_file)
        .arg("--save-npy")
        .arg(&out)
        .arg("--out")
        .arg(dir.join("ort.png"))
        .output()?;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cli = npy::parse(&std::fs::read(&out)?)?;
    let expected = tract.generate_with(&z, &[6; 3], n)?;
    let diff = max_diff(&cli.data, &expected);
    assert_eq!(cli.data.len(), expected.len());
    assert!(diff < 1e-4, "CLI ort --class 6: max |ort - tract| = {diff}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `OrtRunner` runs any graph: the real PyTorch U-Net (skip connections) and CycleGAN ResNets
/// (reflect padding, instance norm, residual adds), against tract, at two batch sizes; and
/// `pocketgan translate --engine ort` writes what tract's translation writes.
#[test]
fn ort_runner_matches_tract_on_image_to_image_models() -> Result {
    use pocketgan_runtime::engine::ort::OrtRunner;
    use pocketgan_runtime::engine::runner::{Runner, TractRunner, Values};
    let torch = common::repo_root().join("runtime/tests/fixtures/torch");
    for file in [
        "unet_op17_dyn.onnx",
        "resnet_op13_dyn.onnx",
        "resnet_affine_op18_dynamo_dyn.onnx",
    ] {
        let bytes = std::fs::read(torch.join(file))?;
        let mut ort = OrtRunner::new(&bytes, 1)?;
        let mut tract = TractRunner::new(&bytes)?;
        assert_eq!(ort.inputs(), tract.inputs());
        for (seed, n) in [(1, 1), (2, 2)] {
            let x = vec![Values::F32(
                latents(seed, n * 3 * 32 * 32, 1)
                    .iter()
                    .map(|v| v.tanh())
                    .collect(),
            )];
            let (Values::F32(a), Values::F32(b)) =
                (ort.run(&x, n)?.remove(0), tract.run(&x, n)?.remove(0))
            else {
                panic!("{file}: not float outputs");
            };
            assert_eq!(a.len(), n * 3 * 32 * 32, "{file}");
            assert_eq!(a.len(), b.len());
            let diff = max_diff(&a, &b);
            assert!(diff < 1e-4, "{file} batch {n}: max |ort - tract| = {diff}");
        }
        assert_eq!(ort.outputs()[0].shape, [3, 32, 32], "{file}");
        // A wrong input size is an error, not a panic.
        assert!(matches!(
            ort.run(&[Values::F32(vec![0.0; 5])], 1),
            Err(EngineError::Inputs(_))
        ));
    }
    // An export with a fixed batch (2) takes only that batch, and says so.
    let mut fixed = OrtRunner::new(&std::fs::read(torch.join("unet_op17.onnx"))?, 1)?;
    let err = fixed
        .run(&[Values::F32(vec![0.0; 3 * 32 * 32])], 1)
        .unwrap_err();
    assert!(err.to_string().contains("exactly 2"), "{err}");
    assert!(matches!(
        fixed.run(&[Values::F32(vec![0.0; 2 * 3 * 32 * 32])], 2)?[0],
        Values::F32(_)
    ));
    // The CLI, against tract's translation.
    let dir = std::env::temp_dir().join(format!("pocketgan-ort-translate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let picture = common::repo_root().join("runtime/tests/fixtures/translate/picture.ppm");
    let unet = torch.join("unet_op17_dyn.onnx");
    let mut written = Vec::new();
    for engine in ["ort", "tract"] {
        let out = dir.join(format!("{engine}.png"));
        let run = Command::new(env!("CARGO_BIN_EXE_pocketgan"))
            .arg("translate")
            .arg(&unet)
            .arg(&picture)
            .arg("--out")
            .arg(&out)
            .args(["--engine", engine])
            .output()?;
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        written.push(image::open(&out)?.to_rgb8().into_raw());
    }
    // Float engines may round a pixel level differently, by one at the most.
    assert!(written[0]
        .iter()
        .zip(&written[1])
        .all(|(a, b)| a.abs_diff(*b) <= 1));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A negative BatchNorm variance (which onnxruntime runs silently, NaN out) is refused by both
/// of its engines, as by the importer.
#[test]
fn ort_refuses_a_negative_batchnorm_variance() -> Result {
    let bytes =
        std::fs::read(common::repo_root().join("runtime/tests/fixtures/bad/bn_negative_var.onnx"))?;
    let e = OrtEngine::new(&bytes, 16, (1, 28, 28), 1)
        .err()
        .ok_or("accepted")?;
    assert!(e.to_string().contains("variance"), "{e}");
    let e = pocketgan_runtime::engine::ort::OrtRunner::new(&bytes, 1)
        .err()
        .ok_or("accepted")?;
    assert!(e.to_string().contains("variance"), "{e}");
    Ok(())
}
