//! Helpers shared by the trainer's end-to-end tests.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Gradients;

/// A run's `metrics.csv`, header included, without its `seconds` column: every value two runs
/// of the same configuration must agree on (as text, so that NaN rows compare equal).
#[allow(dead_code)] // Not every test that shares this module reads metrics.
pub fn metrics_without_seconds(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let seconds = text
        .lines()
        .next()
        .and_then(|header| header.split(',').position(|c| c == "seconds"))
        .expect("a header with a seconds column");
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != seconds)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Every float parameter's gradient in `grads` (zeros where it has none), by its path as Burn's
/// records name it (`gru.layers.0.w_ih`), under `root` if not empty.
#[allow(dead_code)] // Not every test that shares this module compares gradients.
pub fn grads_by_path<M: Module>(m: &M, root: &str, grads: &Gradients) -> HashMap<String, Vec<f64>> {
    struct ReadGrads<'a> {
        path: Vec<String>,
        grads: &'a Gradients,
        out: HashMap<String, Vec<f64>>,
    }
    impl ModuleVisitor for ReadGrads<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.val().dims().iter().product();
            let g = param
                .val()
                .grad(self.grads)
                .map(|g| g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
                .unwrap_or_else(|| vec![0.0; n]);
            self.out
                .insert(self.path.join("."), g.into_iter().map(f64::from).collect());
        }
    }
    let mut r = ReadGrads {
        path: if root.is_empty() {
            vec![]
        } else {
            vec![root.to_string()]
        },
        grads,
        out: HashMap::new(),
    };
    m.visit(&mut r);
    r.out
}
