//! Progressive GAN against PyTorch: G's images and D's scores at fading and stable stages, and
//! WGAN-GP's penalty gradient through the minibatch standard deviation, for every D parameter.
//!
//! `fixtures/progan.json` is written by `scripts/progan-reference.py` from the networks of
//! `scripts/anchors/progan_nets.py` (16 px RGB, width 2, latent 8), with seeded random values for
//! every parameter. The penalty's gradient there is `torch.autograd.grad(create_graph=True)`'s
//! double backward in float64; ours is first order (`loss::gradient_penalty_with` with D's dual
//! pass), so this is the test that it is the same gradient.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;
use pocketgan_trainer::model::progan::{self, Progress};

fn fixture() -> serde_json::Value {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let text =
        std::fs::read_to_string(package.join("tests/fixtures/progan.json")).expect("the fixture");
    serde_json::from_str(&text).expect("JSON")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn usize_of(v: &serde_json::Value) -> usize {
    v.as_u64().expect("a count") as usize
}

fn progress(v: &serde_json::Value) -> Progress {
    Progress {
        stage: usize_of(&v["stage"]),
        alpha: v["alpha"].as_f64().unwrap() as f32,
    }
}

fn by_name(params: &serde_json::Value) -> HashMap<String, &serde_json::Value> {
    params
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p))
        .collect()
}

fn assign<M: Module>(m: M, params: &serde_json::Value) -> M {
    let params = by_name(params);
    let mut assigned = 0;
    let m = common::assign_params(m, "", &params, &mut assigned);
    assert_eq!(
        assigned,
        params.len(),
        "the fixture's parameters are all ours"
    );
    m
}

fn networks(
    f: &serde_json::Value,
    device: &Device,
) -> (progan::ProganGenerator, progan::ProganDiscriminator) {
    let (g, d) = progan::init(
        usize_of(&f["channels"]),
        usize_of(&f["side"]),
        usize_of(&f["latent"]),
        usize_of(&f["width"]),
        device,
    )
    .expect("a supported side");
    (assign(g, &f["generator"]), assign(d, &f["discriminator"]))
}

fn tensor4(values: Vec<f32>, n: usize, c: usize, side: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [n, c, side, side]), device)
}

/// The largest difference relative to the largest reference value (f32 sums in another order).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().map(|v| v.abs()).fold(1.0, f32::max);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn generator_and_critic_match_pytorch_at_every_stage() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let (g, d) = networks(&f, &device);
    let (n, c, latent) = (
        usize_of(&f["n"]),
        usize_of(&f["channels"]),
        usize_of(&f["latent"]),
    );
    let z = Tensor::<2>::from_data(TensorData::new(floats(&f["z"]), [n, latent]), &device);
    for case in f["images"].as_array().unwrap() {
        let p = progress(case);
        let ours: Vec<f32> = g.forward_at(z.clone(), p).into_data().try_to_vec().unwrap();
        let diff = max_diff(&ours, &floats(&case["image"]));
        assert!(diff < 1e-5, "G at {p:?}: max relative difference {diff}");
    }
    for case in f["scores"].as_array().unwrap() {
        let p = progress(case);
        let x = tensor4(floats(&case["x"]), n, c, p.side(), &device);
        let ours: Vec<f32> = d.forward(x, p).into_data().try_to_vec().unwrap();
        let diff = max_diff(&ours, &floats(&case["score"]));
        assert!(diff < 1e-5, "D at {p:?}: max relative difference {diff}");
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Our first-order penalty gradient against PyTorch's double backward for every D parameter:
/// cosine >= 0.999 and relative error <= 1e-2 (the bounds; a parameter whose exact
/// gradient is zero, the score's bias, must be zero to 1e-4 of the largest).
#[test]
fn penalty_gradient_through_minibatch_stddev_matches_double_backward() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let (n, c) = (usize_of(&f["n"]), usize_of(&f["channels"]));
    for case in f["penalties"].as_array().unwrap() {
        let p = progress(case);
        let (_, d) = networks(
            &serde_json::json!({
                "channels": f["channels"], "side": f["side"], "latent": f["latent"],
                "width": f["width"], "generator": f["generator"], "discriminator": case["params"],
            }),
            &device,
        );
        let x_hat = tensor4(floats(&case["x_hat"]), n, c, p.side(), &device);
        let lambda = case["lambda"].as_f64().unwrap() as f32;
        let penalty = d.gradient_penalty(x_hat, p, lambda);
        let mean_norm = penalty.mean_norm.clone().into_scalar::<f32>() as f64;
        let want = case["mean_norm"].as_f64().unwrap();
        assert!(
            (mean_norm - want).abs() <= 1e-4 * want,
            "{p:?}: mean |g| {mean_norm} vs {want}"
        );
        let value = penalty.loss.clone().into_scalar::<f32>() as f64;
        let want = case["penalty"].as_f64().unwrap();
        assert!(
            (value - want).abs() <= 1e-3 * want,
            "{p:?}: penalty {value} vs {want}"
        );

        let got = common::grads_by_path(&d, "", &penalty.loss.backward());
        let params = by_name(&case["params"]);
        let grad = |p: &serde_json::Value| -> Vec<f64> {
            p["grad"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let largest = params.values().map(|p| norm(&grad(p))).fold(0.0, f64::max);
        let mut checked = 0;
        for (path, param) in &params {
            let want = grad(param);
            let ours = got
                .get(path)
                .unwrap_or_else(|| panic!("{p:?}: no gradient reached {path}"));
            let (n_want, n_ours) = (norm(&want), norm(ours));
            if n_want <= 1e-9 * largest {
                assert!(n_ours <= 1e-4 * largest, "{p:?} {path}: {n_ours} where 0");
                continue;
            }
            let (cosine, relative) = common::gradient_agreement(ours, &want);
            eprintln!(
                "{p:?} {path}: |grad| {n_want:.3e}, cosine {cosine:.6}, relative {relative:.2e}"
            );
            assert!(
                cosine >= 0.999 && relative <= 1e-2,
                "{p:?} {path}: cosine {cosine}, relative error {relative}"
            );
            checked += 1;
        }
        // Stage 1 reaches 9 tensors (from_rgb 1, block 0, the 4x4 head); stage 2 fading, 15.
        assert!(
            checked >= 9,
            "{p:?}: only {checked} parameters have a gradient"
        );
    }
}
