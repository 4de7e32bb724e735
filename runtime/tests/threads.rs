//! The int8 engines split a batch over threads without changing a byte: the latent generator
//! (`Int8Engine`, the firmware's cGAN: classes split with the latents) and any graph (`Int8Runner`, here the committed U-Net), on every kernel
//! family, for batch sizes that do and do not divide evenly, and more threads than samples.
#![cfg(feature = "std")]

mod common;

use pocketgan_runtime::engine::runner::{Int8Runner, Runner, Values};
use pocketgan_runtime::engine::threads::RowSplit;
use pocketgan_runtime::engine::{EngineError, Int8Engine};
use pocketgan_runtime::format::{Model, TensorKind};
use pocketgan_runtime::interp::{run_graph, run_graph_with, Input};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::quantize::{latents, quantize, QuantizeOptions};

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

/// One sample through `model` whole, and with its layers split by rows over `threads`
/// (every splittable layer, however small), on kernel family `isa`; and how many layers split.
fn one_sample_whole_and_split(
    model: &Model,
    isa: Isa,
    inputs: &[Input],
    threads: usize,
) -> (Vec<i8>, Vec<i8>, usize) {
    let out_len: usize = model
        .outputs()
        .map(|t| model.tensor(t).unwrap().bytes())
        .sum();
    let mut arena = vec![0u8; model.arena_len(1)];
    let mut whole = vec![0i8; out_len];
    run_graph(
        model,
        isa,
        1,
        inputs,
        &mut arena,
        &mut [&mut whole],
        |_, _, _, _| {},
    )
    .unwrap();
    let mut split = vec![0i8; out_len];
    arena.fill(0);
    let mut rows = RowSplit::new(threads).with_min_macs(0);
    run_graph_with(
        model,
        isa,
        1,
        inputs,
        &mut arena,
        &mut [&mut split],
        &mut rows,
        |_, _, _, _| {},
    )
    .unwrap();
    (whole, split, rows.splits())
}

#[test]
fn one_sample_split_by_rows_gives_the_same_bytes() {
    // The committed U-Net (strided convolutions, transposed convolutions, skips) and the
    // firmware's cGAN, on every kernel family, in 2, 3 and more bands than some layers have rows.
    for (path, seed) in [
        ("runtime/tests/fixtures/translate/unet.pgq", 3),
        ("firmware/models/digits.pgq", 4),
    ] {
        let bytes = read(path);
        let model = Model::parse(&bytes).unwrap();
        let mut values: Vec<Vec<i8>> = Vec::new();
        let mut has_class = false;
        for t in model.inputs() {
            let info = model.tensor(t).unwrap();
            match info.kind {
                TensorKind::Int8 => values.push(
                    latents(seed, 1, info.bytes())
                        .iter()
                        .map(|&v| info.quant.quantize(v.tanh()))
                        .collect(),
                ),
                TensorKind::Index { .. } => has_class = true,
            }
        }
        let class = [7u32];
        let mut inputs: Vec<Input> = values.iter().map(|v| Input::Int8(v)).collect();
        if has_class {
            // The class input's place among the model's inputs.
            let at = model
                .inputs()
                .position(|t| model.tensor(t).unwrap().kind != TensorKind::Int8)
                .unwrap();
            inputs.insert(at, Input::Index(&class));
        }
        // Every layer with rows splits here (col2im's image layers on AVX-512 VNNI and AMX
        // among them, each band computing the input rows that reach it): every model must
        // split some.
        let mut splits = 0;
        for isa in Isa::available() {
            for threads in [2, 3, 9] {
                let (whole, split, n) = one_sample_whole_and_split(&model, isa, &inputs, threads);
                splits += n;
                assert!(
                    whole.iter().any(|&v| v != whole[0]),
                    "a flat output proves nothing"
                );
                assert_eq!(split, whole, "{path} {} threads {threads}", isa.name());
            }
        }
        assert!(splits > 0, "{path}: no layer was split");
    }
}

#[test]
fn pytorch_examples_dcgan_at_batch_1_on_threads_gives_the_same_bytes() {
    // pytorch/examples' 64 px DCGAN, exported by torch.onnx.export: its three 33 M
    // multiply-add layers are split by rows at the engine's own threshold.
    let onnx = read("runtime/tests/fixtures/torch/dcgan64_real_op17_dyn.onnx");
    let options = QuantizeOptions {
        calib: 16,
        eval: 4,
        ..Default::default()
    };
    let (pgq, _) = quantize(&onnx, &options).unwrap();
    let model = Model::parse(&pgq).unwrap();
    let z = latents(11, 1, model.latent);
    let mut first: Option<Vec<i8>> = None;
    for isa in Isa::available() {
        let one = Int8Engine::new(model, isa)
            .generate_quantized(&z, 1)
            .unwrap()
            .to_vec();
        for threads in [2, 4] {
            let mut e = Int8Engine::new(model, isa).with_threads(threads);
            assert_eq!(
                e.generate_quantized(&z, 1).unwrap(),
                &one[..],
                "{} threads {threads}",
                isa.name()
            );
        }
        let first = first.get_or_insert_with(|| one.clone());
        assert_eq!(&one, first, "{}: kernel families differ", isa.name());
    }
}
