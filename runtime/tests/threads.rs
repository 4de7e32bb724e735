//! The int8 engines split a batch over threads without changing a byte: the latent generator
//! (`Int8Engine`, the firmware's cGAN: classes split with the latents) and any graph (`Int8Runner`, here the committed U-Net), on every kernel
//! family, for batch sizes that do and do not divide evenly, and more threads than samples.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::engine::runner::{Int8Runner, Runner, Values};
use pocketgan_runtime::engine::{EngineError, Int8Engine};
use pocketgan_runtime::format::Model;
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::latents;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join(path)).unwrap()
}

#[test]
fn a_latent_batch_split_over_threads_gives_the_same_bytes() {
    let bytes = read("firmware/models/digits.pgq");
    let model = Model::parse(&bytes).unwrap();
    for isa in Isa::available() {
        for n in [1, 2, 7, 16] {
            let z = latents(5, n, model.latent);
            // The firmware's model is a cGAN: each sample's class travels with its latent.
            let c: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 10).collect();
            let one = Int8Engine::new(model, isa)
                .generate_quantized_with(&z, &c, n)
                .unwrap()
                .to_vec();
            assert!(
                one.iter().any(|&v| v != one[0]),
                "a flat output proves nothing"
            );
            for threads in [2, 3, 32] {
                let mut e = Int8Engine::new(model, isa).with_threads(threads);
                let split = e.generate_quantized_with(&z, &c, n).unwrap();
                assert_eq!(split, &one[..], "{} n {n} threads {threads}", isa.name());
            }
        }
    }
}

#[test]
fn an_image_batch_split_over_threads_gives_the_same_bytes() {
    let bytes = read("runtime/tests/fixtures/translate/unet.pgq");
    let model = Model::parse(&bytes).unwrap();
    let mut one = Int8Runner::new(model, Isa::detect());
    let shape = one.inputs()[0].shape.clone();
    let per: usize = shape.iter().product();
    for n in [3, 5] {
        let x = Values::F32(latents(9, n, per).iter().map(|v| v.tanh()).collect());
        let reference = one.run(std::slice::from_ref(&x), n).unwrap();
        for threads in [2, 4] {
            let mut split = Int8Runner::new(model, Isa::detect()).with_threads(threads);
            let got = split.run(std::slice::from_ref(&x), n).unwrap();
            assert_eq!(got, reference, "n {n} threads {threads}");
        }
    }
}

#[test]
fn a_wrong_batch_is_still_an_error_with_threads() {
    let bytes = read("runtime/tests/fixtures/translate/unet.pgq");
    let model = Model::parse(&bytes).unwrap();
    let mut split = Int8Runner::new(model, Isa::detect()).with_threads(2);
    let err = split.run(&[Values::F32(vec![0.0; 10])], 4).unwrap_err();
    assert!(matches!(err, EngineError::Inputs(_)), "{err}");

    let bytes = read("firmware/models/digits.pgq");
    let model = Model::parse(&bytes).unwrap();
    let mut e = Int8Engine::new(model, Isa::detect()).with_threads(2);
    let z = latents(1, 4, model.latent);
    assert!(
        e.generate_quantized_with(&z, &[1, 2, 3], 4).is_err(),
        "3 classes for 4"
    );
    assert!(
        e.generate_quantized_with(&z, &[1, 2, 3, 10], 4).is_err(),
        "class 10 of 10"
    );
}
