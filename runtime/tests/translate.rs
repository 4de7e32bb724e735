//! `pocketgan translate` and `translate::translate` on the real PyTorch U-Net and ResNet exports:
//! pictures of other sizes and with alpha are fitted to the model, int8 follows tract, a
//! folder keeps its names, and what cannot be translated is a typed error, not a panic.
#![cfg(feature = "std")]

mod common;

use image::{DynamicImage, GenericImageView, Rgba, RgbaImage};
use pocketgan_runtime::engine::runner::{Int8Runner, Runner, TractRunner, Values};
use pocketgan_runtime::format::Model;
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::picture::picture_input;
use pocketgan_runtime::translate::{translate, translate_paths, TranslateError};
use std::path::PathBuf;
use std::process::Command;

fn torch(file: &str) -> PathBuf {
    common::repo_root()
        .join("runtime/tests/fixtures/torch")
        .join(file)
}

fn temp(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("pocketgan-translate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 50x40 picture with a half-transparent left half: not the model's 32x32, and with alpha.
fn picture() -> DynamicImage {
    DynamicImage::ImageRgba8(RgbaImage::from_fn(50, 40, |x, y| {
        Rgba([
            (x * 5) as u8,
            (y * 6) as u8,
            200 - (x + y) as u8,
            if x < 25 { 128 } else { 255 },
        ])
    }))
}

fn levels(p: &DynamicImage) -> Vec<f32> {
    p.to_rgb8()
        .pixels()
        .flat_map(|px| px.0)
        .map(|v| v as f32)
        .collect()
}

/// PSNR of two 8-bit pictures.
fn psnr(a: &DynamicImage, b: &DynamicImage) -> f64 {
    let (a, b) = (levels(a), levels(b));
    let mse = a
        .iter()
        .zip(&b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

#[test]
fn int8_translation_follows_tract_on_unet_and_resnet() {
    for (file, bar) in [("unet_op17.onnx", 35.0), ("resnet_affine_op17.onnx", 30.0)] {
        let onnx = std::fs::read(torch(file)).unwrap();
        // Calibrated on the pictures themselves, fitted as translate fits them (as the CLI
        // does for an ONNX file on the int8 engine).
        let pictures = [picture(), picture().grayscale()];
        let mut samples = Vec::new();
        for p in &pictures {
            samples.extend(picture_input(p, (3, 32, 32)).unwrap());
        }
        let options = pocketgan_runtime::quantize::QuantizeOptions {
            calib: 2,
            eval: 2,
            samples,
            ..Default::default()
        };
        let (pgq, _) = pocketgan_runtime::quantize::quantize(&onnx, &options).unwrap();
        let model = Model::parse(&pgq).unwrap();
        let float = translate(&mut TractRunner::new(&onnx).unwrap(), &pictures).unwrap();
        assert_eq!(float.len(), 2);
        assert_eq!(float[0].dimensions(), (32, 32));
        // The gray picture is replicated to RGB, so it translates differently from the colour one.
        assert_ne!(levels(&float[0]), levels(&float[1]));
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            let int8 = translate(&mut Int8Runner::new(model, isa), &pictures).unwrap();
            for (f, q) in float.iter().zip(&int8) {
                let p = psnr(f, q);
                assert!(p >= bar, "{file} {}: {p:.1} dB", isa.name());
            }
            outputs.push(int8.iter().map(levels).collect::<Vec<_>>());
        }
        assert!(
            outputs.iter().all(|o| *o == outputs[0]),
            "{file}: kernel families differ"
        );
    }
}

#[test]
fn what_cannot_be_translated_is_a_typed_error() {
    let mut unet = TractRunner::new(&std::fs::read(torch("unet_op17.onnx")).unwrap()).unwrap();
    let dir = temp("errors");
    let corrupt = dir.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = translate_paths(&mut unet, &corrupt, &dir.join("out.png")).unwrap_err();
    assert!(matches!(err, TranslateError::Picture(_)), "{err}");
    assert!(err.to_string().contains("corrupt.png"), "{err}");
    assert!(!dir.join("out.png").exists());

    // A latent generator is named as one, with the command that runs it.
    let mut dcgan =
        TractRunner::new(&std::fs::read(torch("dcgan64_narrow_op13.onnx")).unwrap()).unwrap();
    let err = translate(&mut dcgan, &[picture()]).unwrap_err();
    assert!(matches!(err, TranslateError::NotImageToImage(_)), "{err}");
    assert!(err.to_string().contains("pocketgan generate"), "{err}");
    let firmware = std::fs::read(common::repo_root().join("firmware/models/digits.pgq")).unwrap();
    let mut cgan = Int8Runner::new(Model::parse(&firmware).unwrap(), Isa::Scalar);
    let err = translate(&mut cgan, &[picture()]).unwrap_err();
    assert!(err.to_string().contains("pocketgan generate"), "{err}");

    // An empty folder.
    let empty = temp("empty");
    let err = translate_paths(&mut unet, &empty, &dir).unwrap_err();
    assert!(matches!(err, TranslateError::NoPictures(_)), "{err}");
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(empty).ok();
}

/// `pocketgan translate` on a folder: every picture, same names, the model's size, and the
/// same values as the library through tract; a corrupt model or picture fails without a panic.
#[test]
fn cli_translates_a_folder() {
    let dir = temp("cli");
    let (input, out) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input).unwrap();
    picture().save(input.join("a.png")).unwrap();
    picture().to_rgb8().save(input.join("b.jpg")).unwrap();
    std::fs::write(input.join("notes.txt"), "not a picture").unwrap();
    let run = |model: &PathBuf, input: &PathBuf, out: &PathBuf, engine: &str| {
        Command::new(env!("CARGO_BIN_EXE_pocketgan"))
            .arg("translate")
            .arg(model)
            .arg(input)
            .arg("--out")
            .arg(out)
            .args(["--engine", engine])
            .output()
            .unwrap()
    };
    let unet = torch("unet_op17.onnx");
    let o = run(&unet, &input, &out, "tract");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.png", "b.jpg"]);
    let written = image::open(out.join("a.png")).unwrap();
    let mut tract = TractRunner::new(&std::fs::read(&unet).unwrap()).unwrap();
    let expected = translate(&mut tract, &[image::open(input.join("a.png")).unwrap()]).unwrap();
    assert_eq!(levels(&written), levels(&expected[0]));

    // int8 on the ONNX file quantizes in memory, on the pictures given.
    let o = run(&unet, &input.join("a.png"), &dir.join("int8.png"), "int8");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(psnr(&image::open(dir.join("int8.png")).unwrap(), &written) > 30.0);

    for (model, picture) in [
        (input.join("notes.txt"), input.join("a.png")), // not a model
        (unet.clone(), input.join("notes.txt")),        // not a picture
    ] {
        let o = run(&model, &picture, &dir.join("bad.png"), "tract");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(!dir.join("bad.png").exists());
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The runners agree on what an image-to-image model is.
#[test]
fn runners_describe_image_models() {
    let onnx = std::fs::read(torch("resnet_op17.onnx")).unwrap();
    let tract = TractRunner::new(&onnx).unwrap();
    assert_eq!(
        pocketgan_runtime::translate::input_shape(&tract).unwrap(),
        (3, 32, 32)
    );
    let x = Values::F32(vec![0.0; 3 * 32 * 32]);
    let mut tract = tract;
    let y = tract.run(&[x], 1).unwrap();
    assert!(matches!(&y[0], Values::F32(v) if v.len() == 3 * 32 * 32));
}
