//! TimeGAN's five objectives and their gradients against PyTorch's.
//!
//! `fixtures/timegan_losses.json` is written by `scripts/timegan-reference.py`: the five networks
//! as `nn.GRU` + `nn.Linear` with seeded weights, one batch of series and noise, and for each
//! objective of the authors' timegan.py (embedding, supervised, generator, autoencoder,
//! discriminator) its value, its terms and its gradient for every parameter of the networks it
//! trains, computed in float64. Here the same weights go into our networks (our GRU and the
//! family's objective functions) and everything is compared.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::TensorData;
use pocketgan_trainer::family::timegan::{
    autoencoder_loss, discriminator_loss, embedding_loss, generator_loss, supervised,
};
use pocketgan_trainer::model::timegan::TimeGanShape;
use serde_json::Value;

fn fixture() -> Value {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(package.join("tests/fixtures/timegan_losses.json"))
        .expect("the fixture");
    serde_json::from_str(&text).expect("JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn value(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Each objective's value and terms within 1e-4 relative of PyTorch's, and its gradient for
/// every parameter tensor of the networks it trains with cosine >= 0.9999 and relative error
/// <= 1e-3 (a tensor PyTorch gives no gradient, the generator's under the supervised loss, must
/// get none here either).
#[test]
fn timegan_objectives_and_gradients_match_pytorch() {
    let f = fixture();
    let d = &f["dims"];
    let dim = |k: &str| d[k].as_u64().unwrap() as usize;
    let (b, t, feat) = (dim("batch"), dim("length"), dim("features"));
    let device = Device::flex().autodiff();
    let params: HashMap<String, &Value> = f["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p))
        .collect();
    let shape = TimeGanShape {
        features: feat,
        hidden: dim("hidden"),
        layers: dim("layers"),
    };
    let (ae, gens, disc) = shape.init(1, &device);
    let mut assigned = 0;
    let ae = common::assign_params(ae, "autoencoder", &params, &mut assigned);
    let gens = common::assign_params(gens, "generators", &params, &mut assigned);
    let disc = common::assign_params(disc, "discriminator", &params, &mut assigned);
    assert_eq!(
        assigned,
        params.len(),
        "every fixture tensor is one of ours"
    );

    let series =
        |k: &str| Tensor::<3>::from_data(TensorData::new(floats(&f[k]), [b, t, feat]), &device);
    let (x, z) = (series("x"), series("z"));
    for case in f["objectives"].as_array().unwrap() {
        let name = case["objective"].as_str().unwrap();
        let (loss, terms, grads) = match name {
            "embedding" => {
                let (loss, e_t0) = embedding_loss(&ae, x.clone());
                let g = loss.backward();
                (
                    loss,
                    vec![("e_t0", e_t0)],
                    common::grads_by_path(&ae, "autoencoder", &g),
                )
            }
            "supervised" => {
                let h = ae.embedder.forward(x.clone()).detach();
                let loss = supervised(&gens, h);
                let g = loss.backward();
                (loss, vec![], common::grads_by_path(&gens, "generators", &g))
            }
            "generator" => {
                let l = generator_loss(&ae, &gens, &disc, x.clone(), z.clone());
                let g = l.total.backward();
                let terms = vec![
                    ("adversarial", l.adversarial),
                    ("supervised", l.supervised),
                    ("moments", l.moments),
                ];
                (
                    l.total,
                    terms,
                    common::grads_by_path(&gens, "generators", &g),
                )
            }
            "autoencoder" => {
                let (loss, e_t0) = autoencoder_loss(&ae, &gens, x.clone());
                let g = loss.backward();
                (
                    loss,
                    vec![("e_t0", e_t0)],
                    common::grads_by_path(&ae, "autoencoder", &g),
                )
            }
            "discriminator" => {
                let (loss, _, _) = discriminator_loss(&ae, &gens, &disc, x.clone(), z.clone());
                let g = loss.backward();
                (
                    loss,
                    vec![],
                    common::grads_by_path(&disc, "discriminator", &g),
                )
            }
            other => panic!("unknown objective {other}"),
        };
        let close = |ours: f64, theirs: f64, what: &str| {
            assert!(
                (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1e-3),
                "{name} {what}: ours {ours}, PyTorch {theirs}"
            );
        };
        close(value(loss), case["value"].as_f64().unwrap(), "value");
        for (term, v) in terms {
            close(value(v), case["terms"][term].as_f64().unwrap(), term);
        }
        let wanted = case["grads"].as_array().unwrap();
        assert_eq!(wanted.len(), grads.len(), "{name}: parameter tensors");
        for w in wanted {
            let path = w["name"].as_str().unwrap();
            let theirs: Vec<f64> = floats(&w["grad"]).iter().map(|&v| v as f64).collect();
            let ours = grads
                .get(path)
                .unwrap_or_else(|| panic!("{name}: no gradient of ours for {path}"));
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let (nt, no) = (norm(&theirs), norm(ours));
            if nt == 0.0 {
                assert!(no == 0.0, "{name} {path}: PyTorch gives none, ours {no}");
                continue;
            }
            let (cos, rel) = common::gradient_agreement(ours, &theirs);
            assert!(
                cos >= 0.9999 && rel <= 1e-3,
                "{name} {path}: cosine {cos}, relative error {rel}"
            );
        }
    }
}
