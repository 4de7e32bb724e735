//! Real PyTorch exports through the int8 graph runtime: the `x.view` DCGAN, pytorch/examples'
//! 64 px DCGAN, a U-Net (skip connections) and CycleGAN-style ResNet generators (reflect pad,
//! instance norm, residual adds), all written by `scripts/torch-fixtures.py` with
//! `torch.onnx.export`, quantize, run byte-identically on every kernel family and stay >= 30 dB
//! PSNR from tract's float run of the original file, through the same `run` API on both.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::engine::latent_generator;
use pocketgan_runtime::engine::{Engine, Int8Engine, TractEngine};
use pocketgan_runtime::format::Model;
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::{latents, psnr_db, quantize, QuantizeOptions};
use std::path::PathBuf;

use common::torch_fixture as fixture;

fn options() -> QuantizeOptions {
    QuantizeOptions {
        calib: 64,
        eval: 16,
        ..Default::default()
    }
}

/// Quantizes, then compares every kernel family with tract on fresh latents; returns the
/// lowest PSNR seen.
fn check_quantized(file: &str, pgq: &[u8]) -> f64 {
    let onnx = fixture(file);
    let model = Model::parse(pgq).unwrap();
    let g = latent_generator(&onnx).unwrap();
    let mut tract = TractEngine::new(&onnx, g.latent, g.image);
    let mut lowest = f64::INFINITY;
    for n in [1, 3] {
        let z = latents(99, n, g.latent);
        let float = tract.generate(&z, n).unwrap();
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let mut e = Int8Engine::new(model, isa);
            outputs.push(e.generate_quantized(&z, n).unwrap().to_vec());
            let psnr = psnr_db(&float, &e.generate(&z, n).unwrap());
            assert!(
                psnr >= 30.0,
                "{file} batch {n} {}: PSNR {psnr:.1} dB",
                isa.name()
            );
            lowest = lowest.min(psnr);
        }
        assert!(
            outputs.iter().all(|o| *o == outputs[0]),
            "{file}: kernel families differ"
        );
    }
    lowest
}

/// PyTorch-GAN's cGAN multiplies its class embedding with the latent (`torch.mul(emb(c), z)`;
/// a real torch.onnx.export kept with the bad inputs, where it once crashed the quantizer and
/// was then refused): the embedding is an int8 `Embed` of its own, before the `Mul`. Every
/// class within 30 dB of tract, the same bytes on every kernel family.
#[test]
fn a_class_embedding_multiplied_with_the_latent_quantizes() {
    let path = common::repo_root().join("runtime/tests/fixtures/bad/class_mul_op13.onnx");
    let onnx = std::fs::read(path).unwrap();
    let (pgq, report) = quantize(&onnx, &options()).unwrap();
    assert!(report.psnr_db >= 30.0, "{:.1} dB", report.psnr_db);
    let model = Model::parse(&pgq).unwrap();
    let g = latent_generator(&onnx).unwrap();
    assert!(g.classes > 1 && model.classes() == g.classes);
    let mut tract = TractEngine::new(&onnx, g.latent, g.image);
    let n = 3;
    let z = latents(5, n, g.latent);
    let mut per_class = Vec::new();
    for class in 0..g.classes as u32 {
        let labels = vec![class; n];
        let float = tract.generate_with(&z, &labels, n).unwrap();
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let images = Int8Engine::new(model, isa)
                .generate_with(&z, &labels, n)
                .unwrap();
            let psnr = psnr_db(&float, &images);
            assert!(psnr >= 30.0, "class {class} {}: {psnr:.1} dB", isa.name());
            outputs.push(images);
        }
        assert!(outputs.iter().all(|o| *o == outputs[0]), "class {class}");
        per_class.push(outputs.swap_remove(0));
    }
    assert!(
        per_class.windows(2).any(|w| w[0] != w[1]),
        "the class changes nothing"
    );
}

#[test]
fn real_pytorch_dcgan_exports_quantize_within_30_db() {
    for file in [
        "dcgan64_real_op17_dyn.onnx",
        "dcgan64_narrow_op13.onnx",
        "dcgan64_narrow_op16_dyn.onnx",
        "dcgan64_narrow_op18_dynamo_dyn.onnx",
        "dcgan_view_narrow_op13_dyn.onnx",
        "dcgan_view_narrow_op17.onnx",
        "dcgan_view_narrow_op18_dynamo_dyn.onnx",
        // Progressive GAN's generator: pixel norm, equalised convolutions (their scale folded
        // into the weights), nearest upsampling.
        "progan_op13_dyn.onnx",
        "progan_op17.onnx",
        "progan_op18_dynamo_dyn.onnx",
    ] {
        let (pgq, report) =
            quantize(&fixture(file), &options()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let lowest = check_quantized(file, &pgq);
        eprintln!(
            "{file}: quantizer's PSNR {:.1} dB, lowest over kernel families and batches {lowest:.1} dB",
            report.psnr_db
        );
        assert!(report.psnr_db >= 30.0, "{file}: {:.1} dB", report.psnr_db);
    }
}

/// The issue's `x.view(-1, 128, 7, 7)` DCGAN at full width (its Linear writes 6,272 features).
#[test]
fn view_dcgan_at_full_width_quantizes_within_30_db() {
    let file = "dcgan_view_op17_dyn.onnx";
    let onnx = fixture(file);
    let g = latent_generator(&onnx).unwrap();
    assert_eq!((g.latent, g.image), (64, (1, 28, 28)));
    let (pgq, report) = quantize(&onnx, &options()).unwrap();
    let lowest = check_quantized(file, &pgq);
    eprintln!("{file}: {:.1} dB, lowest {lowest:.1} dB", report.psnr_db);
    assert!(report.psnr_db >= 30.0);
}

/// Smooth pseudo-random RGB pictures in `[-1, 1]`, `[n, 3, side, side]`: blocks of 4x4 pixels
/// from a seeded generator, box-blurred, through tanh (calibration and evaluation images for the
/// image-to-image fixtures, which have no training set).
fn pictures(seed: u64, n: usize, side: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let cells = side / 4;
    let mut out = Vec::with_capacity(n * 3 * side * side);
    for _ in 0..n * 3 {
        let coarse: Vec<f32> = (0..cells * cells).map(|_| 1.5 * next()).collect();
        let at =
            |y: usize, x: usize| coarse[(y / 4).min(cells - 1) * cells + (x / 4).min(cells - 1)];
        for y in 0..side {
            for x in 0..side {
                let mut sum = 0.0;
                let mut count = 0.0;
                for dy in 0..5 {
                    for dx in 0..5 {
                        let (yy, xx) = ((y + dy).saturating_sub(2), (x + dx).saturating_sub(2));
                        if yy < side && xx < side {
                            sum += at(yy, xx);
                            count += 1.0;
                        }
                    }
                }
                out.push((sum / count).tanh());
            }
        }
    }
    out
}

/// Image-to-image graphs (skip connections, residuals, instance norm, reflect padding):
/// quantized with calibration pictures, then the int8 engine on every kernel family against
/// tract on other pictures, both through `Runner::run`.
#[test]
fn unet_and_resnet_generators_quantize_within_30_db() {
    use pocketgan_runtime::engine::runner::{Int8Runner, Runner, TractRunner, Values};
    // The bar is the 30 dB, except for the ResNet with CycleGAN's parameter-free
    // instance norm (affine=False) and untrained weights: 26 dB before (2026-12-04), 28 dB since
    // a ReLU fuses into the normalisation and the convolution before it writes each channel
    // around its own centre. Its error grows by 1-2 dB per normalised layer (16 of them): each
    // adds its own rounding, and the normalisation scales it back up. Held at 27 dB so that a
    // regression still fails.
    for (file, bar) in [
        ("unet_op17.onnx", 30.0),
        ("unet_op13_dyn.onnx", 30.0),
        ("unet_op18_dynamo_dyn.onnx", 30.0),
        // Closed by a 1x1 convolution of the output joined with the input (tract splits it into
        // one EinSum per part; the importer joins them back).
        ("unet_pointwise_op13_dyn.onnx", 30.0),
        ("unet_pointwise_op17.onnx", 30.0),
        ("resnet_affine_op17.onnx", 30.0),
        ("resnet_affine_op18_dynamo_dyn.onnx", 30.0),
        ("resnet_op17.onnx", 27.0),
        ("resnet_op13_dyn.onnx", 27.0),
    ] {
        let onnx = fixture(file);
        let options = QuantizeOptions {
            calib: 64,
            eval: 8,
            samples: pictures(1, 64, 32),
            ..Default::default()
        };
        let (pgq, report) = quantize(&onnx, &options).unwrap_or_else(|e| panic!("{file}: {e}"));
        let model = Model::parse(&pgq).unwrap();
        let n = 4;
        let x = Values::F32(pictures(2, n, 32));
        let mut tract = TractRunner::new(&onnx).unwrap();
        let Values::F32(float) = tract.run(std::slice::from_ref(&x), n).unwrap().remove(0) else {
            unreachable!()
        };
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let mut int8 = Int8Runner::new(model, isa);
            let Values::F32(y) = int8.run(std::slice::from_ref(&x), n).unwrap().remove(0) else {
                unreachable!()
            };
            let psnr = psnr_db(&float, &y);
            eprintln!(
                "{file} {}: {psnr:.1} dB (quantizer's report {:.1} dB)",
                isa.name(),
                report.psnr_db
            );
            assert!(psnr >= bar, "{file} {}: PSNR {psnr:.1} dB", isa.name());
            outputs.push(y);
        }
        assert!(
            outputs.iter().all(|o| *o == outputs[0]),
            "{file}: kernel families differ"
        );
    }
}

#[test]
fn pocketgan_quantize_takes_pytorch_examples_dcgan() {
    let dir = std::env::temp_dir().join(format!("pocketgan-torch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pgq: PathBuf = dir.join("dcgan64.pgq");
    let onnx = common::repo_root().join("runtime/tests/fixtures/torch/dcgan64_real_op17_dyn.onnx");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .args(["quantize", onnx.to_str().unwrap(), "--calib", "16", "--out"])
        .arg(&pgq)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("output PSNR vs float"), "{stdout}");
    let bytes = std::fs::read(&pgq).unwrap();
    let model = Model::parse(&bytes).unwrap();
    assert_eq!(model.latent, 100);
    std::fs::remove_dir_all(dir).ok();
}
