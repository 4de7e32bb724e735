//! Helpers shared by the trainer's end-to-end tests.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{Gradients, TensorData};
use serde_json::Value;

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

/// Replaces every float parameter of `module` with the fixture tensor (`{"shape": [..],
/// "values": [..]}`) named by its record path, under `root` if not empty; counts them in
/// `assigned`. A parameter the fixture lacks, or of another shape, fails the test.
#[allow(dead_code)] // Not every test that shares this module loads fixture weights.
pub fn assign_params<M: Module>(
    module: M,
    root: &str,
    params: &HashMap<String, &Value>,
    assigned: &mut usize,
) -> M {
    struct Assign<'a> {
        path: Vec<String>,
        params: &'a HashMap<String, &'a Value>,
        assigned: &'a mut usize,
    }
    impl ModuleMapper for Assign<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let shape = tensor.dims();
            let path = self.path.join(".");
            let p = self
                .params
                .get(&path)
                .unwrap_or_else(|| panic!("no fixture tensor for our parameter {path}"));
            let want: Vec<usize> = p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(want, shape, "{path}");
            *self.assigned += 1;
            let values: Vec<f32> = p["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let t = Tensor::<D>::from_data(TensorData::new(values, shape), &tensor.device());
            let t = if t.is_autodiff() { t.require_grad() } else { t };
            Param::from_mapped_value(id, t, mapper)
        }
    }
    module.map(&mut Assign {
        path: if root.is_empty() {
            vec![]
        } else {
            vec![root.to_string()]
        },
        params,
        assigned,
    })
}

/// `(cosine, relative error)` of our gradient against a reference one (both non-zero).
#[allow(dead_code)] // Not every test that shares this module compares gradients.
pub fn gradient_agreement(ours: &[f64], theirs: &[f64]) -> (f64, f64) {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let dot: f64 = ours.iter().zip(theirs).map(|(a, b)| a * b).sum();
    let diff: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a - b).collect();
    let (n_ours, n_theirs) = (norm(ours), norm(theirs));
    (dot / (n_ours * n_theirs), norm(&diff) / n_theirs)
}
