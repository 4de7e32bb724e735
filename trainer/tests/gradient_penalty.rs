//! WGAN-GP's gradient penalty is real: its gradient reaches every parameter of D as PyTorch's
//! double backward says, and it moves D.
//!
//! `fixtures/gradient_penalty.json` is written by `scripts/gradient-penalty-reference.py`: the two
//! critics `--loss wgan-gp` trains (DCGAN's D without batch norm, the toy MLP critic) with seeded
//! weights and interpolates, and for every parameter the gradient of
//! `lambda * mean (|grad_x D(x^)| - 1)^2` from `torch.autograd.grad(create_graph=True)` in float64.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::{Gradients, TensorData};
use pocketgan_trainer::data::SampleKind;
use pocketgan_trainer::loss::{gradient_penalty, GanLoss};
use pocketgan_trainer::model::{Architecture, Conditioning, Discriminator, ModelConfig};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn fixture() -> serde_json::Value {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(package.join("tests/fixtures/gradient_penalty.json"))
        .expect("the fixture");
    serde_json::from_str(&text).expect("JSON")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// A critic as `--loss wgan-gp` builds it (no batch norm), with 1 input channel.
fn critic(architecture: Architecture, sample: SampleKind, width: usize) -> Discriminator {
    let config = ModelConfig {
        architecture,
        latent: 2,
        width,
        sample,
        conditioning: Conditioning::None,
        classes: 0,
        embed: 16,
        d_batch_norm: false,
        minibatch_stddev: false,
    };
    config.init(&Device::flex().autodiff()).1
}

/// Replaces every float parameter with `values(path, shape)`, `path` as Burn's records name it
/// (`body.Dcgan.from_image.weight`).
struct Assign<F> {
    path: Vec<String>,
    values: F,
}

impl<F: FnMut(&str, &[usize]) -> Vec<f32>> ModuleMapper for Assign<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.dims();
        let values = (self.values)(&self.path.join("."), &shape);
        let t = Tensor::<D>::from_data(TensorData::new(values, shape), &tensor.device());
        Param::from_mapped_value(id, t.require_grad(), mapper)
    }
}

fn assign(d: Discriminator, values: impl FnMut(&str, &[usize]) -> Vec<f32>) -> Discriminator {
    d.map(&mut Assign {
        path: Vec::new(),
        values,
    })
}

fn read_grads(d: &Discriminator, grads: &Gradients) -> HashMap<String, Vec<f64>> {
    common::grads_by_path(d, "", grads)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dims(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// Our penalty's gradient for every parameter tensor against PyTorch's double backward:
/// cosine >= 0.999 and relative error <= 1e-2 (a tensor whose exact gradient is zero, the score
/// bias, must be zero to 1e-4 of the largest gradient). The penalty's value and the mean
/// gradient norm agree too.
#[test]
fn penalty_gradient_matches_pytorch_double_backward() {
    let fixture = fixture();
    for case in fixture["critics"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape = dims(&case["x_hat_shape"]);
        let d = match name {
            "dcgan28" => critic(
                Architecture::Dcgan,
                SampleKind::Image {
                    channels: 1,
                    height: 28,
                    width: 28,
                },
                8,
            ),
            "mlp2" => critic(Architecture::Mlp, SampleKind::Points { dim: 2 }, 16),
            other => panic!("unknown critic {other}"),
        };
        let params: HashMap<String, &serde_json::Value> = case["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p))
            .collect();
        let mut assigned = 0;
        let d = assign(d, |path, shape| {
            let p = params
                .get(path)
                .unwrap_or_else(|| panic!("{name}: no fixture tensor for our parameter {path}"));
            assert_eq!(dims(&p["shape"]), shape, "{name} {path}");
            assigned += 1;
            floats(&p["values"])
        });
        assert_eq!(assigned, params.len(), "{name}: parameters not all ours");

        let device = Device::flex().autodiff();
        let x_hat = Tensor::<1>::from_floats(floats(&case["x_hat"]).as_slice(), &device)
            .reshape([shape[0], shape[1], shape[2], shape[3]]);
        let lambda = case["lambda"].as_f64().unwrap() as f32;
        let penalty =
            gradient_penalty(&d, x_hat, None, lambda).expect("a critic without batch norm");
        let mean_norm = penalty.mean_norm.clone().into_scalar::<f32>() as f64;
        let want_norm = case["mean_norm"].as_f64().unwrap();
        assert!(
            (mean_norm - want_norm).abs() <= 1e-4 * want_norm,
            "{name}: mean |g| {mean_norm} vs PyTorch's {want_norm}"
        );
        let value = penalty.loss.clone().into_scalar::<f32>() as f64;
        let want_value = case["penalty"].as_f64().unwrap();
        assert!(
            (value - want_value).abs() <= 1e-3 * want_value,
            "{name}: penalty {value} vs PyTorch's {want_value}"
        );

        let got = read_grads(&d, &penalty.loss.backward());
        let largest = params
            .values()
            .map(|p| {
                norm(
                    &floats(&p["grad"])
                        .iter()
                        .map(|&x| x as f64)
                        .collect::<Vec<_>>(),
                )
            })
            .fold(0.0, f64::max);
        for (path, p) in &params {
            let want: Vec<f64> = p["grad"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let ours = &got[path];
            let (n_want, n_ours) = (norm(&want), norm(ours));
            if n_want == 0.0 {
                assert!(n_ours <= 1e-4 * largest, "{name} {path}: {n_ours} where 0");
                continue;
            }
            let (cosine, relative) = common::gradient_agreement(ours, &want);
            eprintln!("{name} {path}: |grad| {n_want:.4e}, cosine {cosine:.6}, relative error {relative:.2e}");
            assert!(
                cosine >= 0.999 && relative <= 1e-2,
                "{name} {path}: cosine {cosine}, relative error {relative}"
            );
        }
    }
}

/// `n` points around `centre` (std 0.1), `[n, 1, 1, 2]`, from `seed`.
fn blob(seed: u64, n: usize, centre: [f32; 2]) -> Tensor<4> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..2 * n)
        .map(|i| {
            let e: f32 = StandardNormal.sample(&mut rng);
            centre[i % 2] + 0.1 * e
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [n, 1, 1, 2]), &Device::flex().autodiff())
}

/// A toy MLP critic with N(0, 0.2^2) weights from `seed` (its |grad_x D| starts far below 1).
fn toy_critic(seed: u64) -> Discriminator {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = critic(Architecture::Mlp, SampleKind::Points { dim: 2 }, 32);
    assign(d, |_, shape| {
        (0..shape.iter().product::<usize>())
            .map(|_| {
                let e: f32 = StandardNormal.sample(&mut rng);
                0.2 * e
            })
            .collect()
    })
}

/// WGAN's critic loss on real points around (1, 0) and fakes around (-1, 0) at `step`, plus
/// `lambda` times the penalty at interpolates; and the mean |grad_x D| there.
fn critic_loss(d: &Discriminator, step: u64, lambda: f32) -> (Tensor<1>, f32) {
    let (real, fake) = (
        blob(2 * step, 64, [1.0, 0.0]),
        blob(2 * step + 1, 64, [-1.0, 0.0]),
    );
    let alpha = blob(1_000_000 + step, 64, [0.5, 0.5]).clamp(0.0, 1.0);
    let x_hat = fake.clone() + alpha * (real.clone() - fake.clone());
    let wgan = GanLoss::Wgan.discriminator(d.forward(real), d.forward(fake));
    let penalty = gradient_penalty(d, x_hat, None, lambda).expect("a critic without batch norm");
    let norm = penalty.mean_norm.into_scalar::<f32>();
    (wgan + penalty.loss, norm)
}

fn flat_grads(d: &Discriminator, loss: Tensor<1>) -> Vec<f64> {
    let grads = read_grads(d, &loss.backward());
    let mut keys: Vec<&String> = grads.keys().collect();
    keys.sort();
    keys.into_iter().flat_map(|k| grads[k].clone()).collect()
}

/// The penalty moves D: D's gradient with the penalty differs from WGAN's alone, and training a
/// toy critic with it holds |grad_x D| at the interpolates near 1, where without it the
/// unbounded WGAN critic's slope keeps growing.
#[test]
fn penalty_changes_the_critic_update_and_drives_the_gradient_norm_to_one() {
    let d = toy_critic(7);
    let with = flat_grads(&d, critic_loss(&d, 0, 10.0).0);
    let without = flat_grads(&d, critic_loss(&d, 0, 0.0).0);
    let diff: Vec<f64> = with.iter().zip(&without).map(|(a, b)| a - b).collect();
    assert!(
        norm(&diff) > 0.1 * norm(&without),
        "the penalty barely changed D's gradient: {} vs {}",
        norm(&diff),
        norm(&without)
    );

    let train = |lambda: f32| -> (f32, f32) {
        let optimizer = AdamConfig::new().with_beta_1(0.5).with_beta_2(0.9).init();
        let mut net = pocketgan_trainer::family::Net::new(toy_critic(7), optimizer);
        let device = Device::flex().autodiff();
        let first = critic_loss(net.get(), 0, lambda).1;
        let mut last = first;
        for step in 0..300 {
            let (loss, norm) = critic_loss(net.get(), step, lambda);
            last = norm;
            net.descend(&loss, 2e-3, &device);
        }
        (first, last)
    };
    let (start, penalised) = train(10.0);
    let (_, free) = train(0.0);
    eprintln!("mean |grad_x D|: start {start}, after 300 steps with the penalty {penalised}, without {free}");
    assert!(
        (start - 1.0).abs() > 0.3,
        "the toy critic starts near 1: {start}"
    );
    // WGAN's term rewards slope: along the segment between the modes (length 2) the optimum of
    // -2 s + lambda (s - 1)^2 is s = 1 + 1 / lambda = 1.1.
    assert!(
        (penalised - 1.1).abs() < 0.05,
        "with the penalty: {penalised}"
    );
    assert!(free > 2.0, "without the penalty: {free}");
}

/// A few WGAN-GP steps of a tiny DCGAN on digits with conditioning `cond`.
fn tiny_wgan_gp(cond: Conditioning, steps: u64) -> pocketgan_trainer::config::TrainConfig {
    use pocketgan_trainer::config::TrainConfig;
    use pocketgan_trainer::data::DataSource;
    let mut c = TrainConfig::new(&DataSource::Digits, Architecture::Dcgan, GanLoss::WganGp);
    c.model.conditioning = cond;
    (c.steps, c.batch, c.seed) = (steps, 8, 3);
    (c.model.width, c.model.latent) = (8, 8);
    (c.checkpoint_every, c.sample_every) = (2, 100);
    c
}

fn metrics_without_time(run: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            l.rsplit_once(',')
                .map_or(l, |(head, _seconds)| head)
                .to_string()
        })
        .collect()
}

/// WGAN-GP trains with each conditioning it applies to (the penalty reads cGAN's label planes),
/// and a run stopped and resumed writes the metrics of an uninterrupted one, digit for digit:
/// the interpolation weights, like every random draw, are a function of (seed, step).
#[test]
fn wgan_gp_trains_and_resumes_exactly() {
    use pocketgan_trainer::train::{train, Outcome, RunOptions};
    let quiet = || RunOptions {
        quiet: true,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    for cond in [Conditioning::Cgan, Conditioning::Acgan] {
        let run = dir.path().join(format!("{cond:?}"));
        train(&tiny_wgan_gp(cond, 1), &run, &quiet()).unwrap();
        let rows = metrics_without_time(&run);
        assert_eq!(rows.len(), 2, "{cond:?}: {rows:?}");
    }
    let config = tiny_wgan_gp(Conditioning::None, 4);
    let full = dir.path().join("full");
    assert_eq!(
        train(&config, &full, &quiet()).unwrap(),
        Outcome::Finished { steps: 4 }
    );
    let split = dir.path().join("split");
    let stop = RunOptions {
        stop_at: Some(2),
        ..quiet()
    };
    assert_eq!(
        train(&config, &split, &stop).unwrap(),
        Outcome::Interrupted { at_step: 2 }
    );
    let resume = RunOptions {
        resume: true,
        ..quiet()
    };
    assert_eq!(
        train(&config, &split, &resume).unwrap(),
        Outcome::Finished { steps: 4 }
    );
    let rows = metrics_without_time(&full);
    assert_eq!(rows.len(), 5);
    assert_eq!(metrics_without_time(&split), rows);
}
