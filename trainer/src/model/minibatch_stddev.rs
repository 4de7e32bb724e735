//! Minibatch standard deviation (Karras et al. 2018): one more feature for D, the spread of a
//! group of samples, so that D can tell a batch of near-copies (a collapsed G) from a batch as
//! varied as the data, and G is pushed to vary its samples.
//!
//! Karras et al. append it as a constant feature map before their critic's last 3x3
//! convolution; DCGAN's D has no such layer, so it is appended here to the flattened features
//! that D's heads read (where Salimans et al.'s minibatch discrimination also sits).

use burn::prelude::*;

/// Samples per group: Karras et al.'s 4, or the largest of 2 and 1 that divides the batch.
pub const GROUP: usize = 4;

/// Features `[N, F]` -> `[N, 1]`: for each group of samples (sample `i` is in group
/// `i mod N/G`, the official code's strided grouping), the standard deviation of each feature
/// over the group, averaged over the features; every member of a group gets its group's value.
pub fn minibatch_stddev(features: Tensor<2>) -> Tensor<2> {
    let [n, _] = features.dims();
    let (group, x) = grouped(features);
    let centred = x.clone() - x.mean_dim(0);
    each_member(standard_deviation(centred).mean_dim(2), group, n)
}

/// The derivative of [`minibatch_stddev`] at `features` along `tangent` (same shape): with
/// `c = x - mean_g x` and `s = sqrt(mean_g c^2 + eps)`, `ds = mean_g(c dc) / s`, averaged over the
/// features like the value. Tracked through both `features` and `tangent` (WGAN-GP's penalty
/// differentiates it with respect to D's parameters).
pub fn minibatch_stddev_tangent(features: Tensor<2>, tangent: Tensor<2>) -> Tensor<2> {
    let [n, _] = features.dims();
    let (group, x) = grouped(features);
    let (_, t) = grouped(tangent);
    let centred = x.clone() - x.mean_dim(0);
    let moved = t.clone() - t.mean_dim(0);
    let std = standard_deviation(centred.clone());
    let d = (centred * moved).mean_dim(0) / std;
    each_member(d.mean_dim(2), group, n)
}

/// Features `[N, F]` as `[group, N / group, F]`: sample `i` in group `i mod N/group`.
fn grouped(features: Tensor<2>) -> (usize, Tensor<3>) {
    let [n, f] = features.dims();
    let group = [GROUP, 2, 1].into_iter().find(|g| n % g == 0).unwrap_or(1);
    (group, features.reshape([group, n / group, f]))
}

/// Each feature's standard deviation over its group, from the centred values. The epsilon keeps
/// the square root's gradient finite for a group of identical samples.
fn standard_deviation(centred: Tensor<3>) -> Tensor<3> {
    (centred.powi_scalar(2).mean_dim(0) + 1e-8).sqrt()
}

/// A group's value `[1, N / group, 1]` given to each of its members: `[N, 1]`.
fn each_member(per_group: Tensor<3>, group: usize, n: usize) -> Tensor<2> {
    per_group.repeat_dim(0, group).reshape([n, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn each_sample_gets_its_groups_spread() {
        let device = Device::flex();
        // 8 samples, 2 features: groups {0, 2, 4, 6} and {1, 3, 5, 7}. The first group's
        // features are 0, 2, 0, 2 (std 1) and 1, 1, 1, 1 (std 0): mean 0.5. The second group's
        // are all 3 (std 0) and -2, 2, -2, 2 (std 2): mean 1.
        let v = [
            0., 1., 3., -2., 2., 1., 3., 2., 0., 1., 3., -2., 2., 1., 3., 2.,
        ];
        let x = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [8, 2]), &device);
        let s = values(minibatch_stddev(x));
        let want = [0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0];
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-3, "{s:?}");
        }
        // A batch of copies has no spread; a batch of one is its own group.
        let copies = Tensor::<2>::ones([6, 3], &device);
        assert!(values(minibatch_stddev(copies)).iter().all(|s| *s < 1e-3));
        assert_eq!(
            values(minibatch_stddev(Tensor::ones([1, 3], &device))).len(),
            1
        );
    }

    /// The tangent is the derivative: a central difference along the tangent agrees.
    #[test]
    fn the_tangent_is_the_derivative() {
        use burn::tensor::Distribution;
        let device = Device::flex();
        let x = Tensor::<2>::random([8, 5], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<2>::random([8, 5], Distribution::Normal(0.0, 1.0), &device);
        let eps = 1e-3;
        let diff = (minibatch_stddev(x.clone() + t.clone() * eps)
            - minibatch_stddev(x.clone() - t.clone() * eps))
            / (2.0 * eps);
        let (a, b) = (values(minibatch_stddev_tangent(x, t)), values(diff));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-3, "{a:?} vs {b:?}");
        }
    }
}
