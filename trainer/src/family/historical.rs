//! Historical averaging (Salimans et al. 2016): each player's cost gains
//! `lambda |theta - mean(theta_0 .. theta_t)|^2`, the squared distance of its parameters from
//! their average over every past iteration, a pull toward the fictitious-play equilibrium that
//! damps the players' orbits around it (the tutorial's non-convergence section).
//!
//! The average is an [`Ema`] whose weight is `t / (t + 1)` at its `t`-th blend: the arithmetic
//! mean. It is kept in checkpoints, so a resumed run pulls toward the same point.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use super::ema::Ema;

/// The mean of a network's past weights.
pub struct HistoricalAverage<M> {
    mean: Ema<M>,
}

impl<M: Module> HistoricalAverage<M> {
    /// The mean of the one network seen so far: `network` at initialisation.
    pub fn new(network: &M) -> Self {
        Self {
            mean: Ema::new(network),
        }
    }

    /// `lambda |theta - mean|^2` over `network`'s trainable parameters, tracked so that its
    /// gradient, `2 lambda (theta - mean)`, reaches them; the mean is a constant. `None` for a
    /// network with nothing to train.
    pub fn penalty(&self, network: &M, lambda: f32) -> Option<Tensor<1>> {
        let mut live = Floats::default();
        network.visit(&mut live);
        let mut mean = Floats::default();
        self.mean.get().visit(&mut mean);
        let mut total: Option<Tensor<1>> = None;
        for ((theta, trainable), (past, _)) in live.0.into_iter().zip(mean.0) {
            // BatchNorm's running statistics are floats too, but no gradient moves them.
            if !trainable || theta.dims() != past.dims() {
                continue;
            }
            let term = (theta - past.detach()).powi_scalar(2).sum();
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        total.map(|t| t * lambda)
    }

    /// Take in `network`'s weights after iteration `step` (0-based): the mean then covers the
    /// initial weights and those after each of the `step + 1` updates.
    pub fn update(&mut self, network: &M, step: u64) {
        let seen = (step + 1) as f64;
        self.mean
            .update(network, (seen / (seen + 1.0)) as f32, |_| ());
    }

    pub fn get(&self) -> &M {
        self.mean.get()
    }

    /// The mean's record, serialised.
    pub fn record(&self) -> Result<Vec<u8>, String> {
        self.mean.record()
    }

    /// Restore the mean from [`Self::record`]'s bytes.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.mean.load(bytes)
    }
}

/// Every float of a network, flattened and tracked, with whether it is trained.
#[derive(Default)]
struct Floats(Vec<(Tensor<1>, bool)>);

impl ModuleVisitor for Floats {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let trainable = value.is_require_grad();
        self.0.push((value.flatten(0, D - 1), trainable));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn weights(l: &Linear) -> Vec<f32> {
        l.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// The mean is the arithmetic mean of every weight seen, and the penalty's gradient pulls
    /// each weight toward it: `2 lambda (theta - mean)`.
    #[test]
    fn the_mean_is_arithmetic_and_the_penalty_pulls_toward_it() {
        let device = Device::flex().autodiff();
        let nets: Vec<Linear> = (0..3)
            .map(|_| LinearConfig::new(3, 2).init(&device))
            .collect();
        let mut history = HistoricalAverage::new(&nets[0]);
        history.update(&nets[1], 0);
        history.update(&nets[2], 1);
        let (a, b, c) = (weights(&nets[0]), weights(&nets[1]), weights(&nets[2]));
        let mean = weights(history.get());
        for i in 0..a.len() {
            assert!((mean[i] - (a[i] + b[i] + c[i]) / 3.0).abs() < 1e-6);
        }

        let live = LinearConfig::new(3, 2).init(&device);
        let lambda = 0.5;
        let penalty = history.penalty(&live, lambda).unwrap();
        let grads = penalty.backward();
        let grad: Vec<f32> = live
            .weight
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for ((g, w), m) in grad.iter().zip(weights(&live)).zip(&mean) {
            assert!((g - 2.0 * lambda * (w - m)).abs() < 1e-5, "{g} {w} {m}");
        }
        // A network at its mean pays nothing.
        let at_mean = HistoricalAverage::new(&nets[0])
            .penalty(&nets[0], lambda)
            .unwrap();
        assert!(at_mean.into_scalar::<f32>().abs() < 1e-9);
        // Round trip through a checkpoint's bytes.
        let mut other = HistoricalAverage::new(&live);
        other.load(&history.record().unwrap()).unwrap();
        assert_eq!(weights(other.get()), mean);
    }
}
