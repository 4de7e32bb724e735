//! Fréchet distance between two Gaussians fitted to feature sets (the "FID" formula of Heusel et
//! al. 2017): `|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and covariance (divided by n - 1) of `rows`, in f64.
pub fn moments<const D: usize>(rows: &[[f32; D]]) -> (DVector<f64>, DMatrix<f64>) {
    let n = rows.len().max(2) as f64;
    let mut mean = DVector::zeros(D);
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64;
        }
    }
    mean /= rows.len().max(1) as f64;
    let mut cov = DMatrix::zeros(D, D);
    let mut centred = DVector::zeros(D);
    for r in rows {
        for ((c, &v), m) in centred.iter_mut().zip(r).zip(mean.iter()) {
            *c = v as f64 - m;
        }
        cov.syger(1.0, &centred, &centred, 1.0);
    }
    // syger fills the lower triangle only.
    cov.fill_upper_triangle_with_lower_triangle();
    (mean, cov / (n - 1.0))
}

/// The symmetric positive semi-definite square root (negative eigenvalues from rounding are
/// clamped to zero).
fn sqrt_psd(m: DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(m);
    let roots = eig.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// Fréchet distance between the Gaussians of two feature sets.
pub fn distance<const D: usize>(a: &[[f32; D]], b: &[[f32; D]]) -> f64 {
    let (m1, s1) = moments(a);
    let (m2, s2) = moments(b);
    // Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)), whose argument is symmetric PSD.
    let r1 = sqrt_psd(s1.clone());
    let inner = &r1 * &s2 * &r1;
    let inner = (&inner + inner.transpose()) * 0.5;
    let cross = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum::<f64>();
    ((m1 - m2).norm_squared() + s1.trace() + s2.trace() - 2.0 * cross).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    fn gaussian(n: usize, mean: f32, std: f32, seed: u64) -> Vec<[f32; 4]> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let d = Normal::new(mean, std).unwrap();
        (0..n)
            .map(|_| std::array::from_fn(|_| d.sample(&mut rng)))
            .collect()
    }

    #[test]
    fn distance_of_gaussians_matches_the_closed_form() {
        // Isotropic N(m1, s1^2 I) vs N(m2, s2^2 I) in 4-d: 4 (m1 - m2)^2 + 4 (s1 - s2)^2.
        let a = gaussian(40_000, 0.0, 1.0, 1);
        let b = gaussian(40_000, 0.5, 2.0, 2);
        let d = distance(&a, &b);
        assert!((d - (4.0 * 0.25 + 4.0 * 1.0)).abs() < 0.1, "{d}");
        let same = distance(&a, &gaussian(40_000, 0.0, 1.0, 3));
        assert!(same < 0.01, "{same}");
        assert!(distance(&a, &a) < 1e-9);
    }
}
