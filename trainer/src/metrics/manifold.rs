//! Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of
//! balls around its points reaching their k-th nearest neighbour. Precision is the share of
//! generated points inside the real manifold (quality), recall the share of real points inside
//! the generated manifold (diversity: a collapsed generator covers little of it).

use rayon::prelude::*;

/// Neighbours defining a ball's radius (the paper's k = 3).
pub const K: usize = 3;

fn squared<const D: usize>(a: &[f32; D], b: &[f32; D]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared distance from each point to its k-th nearest other point.
fn radii<const D: usize>(points: &[[f32; D]]) -> Vec<f32> {
    points
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut nearest = [f32::INFINITY; K];
            for (j, q) in points.iter().enumerate() {
                if i == j {
                    continue;
                }
                let d = squared(p, q);
                if d < nearest[K - 1] {
                    nearest[K - 1] = d;
                    nearest.sort_by(f32::total_cmp);
                }
            }
            nearest[K - 1]
        })
        .collect()
}

/// Share of `queries` inside the manifold of `points`.
fn inside<const D: usize>(points: &[[f32; D]], queries: &[[f32; D]]) -> f64 {
    let r = radii(points);
    let hits = queries
        .par_iter()
        .filter(|q| points.iter().zip(&r).any(|(p, &r)| squared(p, q) <= r))
        .count();
    hits as f64 / queries.len().max(1) as f64
}

/// `(precision, recall)` of generated features against real ones.
pub fn precision_recall<const D: usize>(real: &[[f32; D]], fake: &[[f32; D]]) -> (f64, f64) {
    (inside(real, fake), inside(fake, real))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, offset: f32) -> Vec<[f32; 2]> {
        (0..n * n)
            .map(|i| [(i % n) as f32 + offset, (i / n) as f32])
            .collect()
    }

    #[test]
    fn identical_sets_score_one_and_a_collapsed_set_has_no_recall() {
        let real = grid(20, 0.0);
        assert_eq!(precision_recall(&real, &real), (1.0, 1.0));
        // Every fake sample at one real point: all precise, recalling almost nothing.
        let collapsed = vec![[5.0, 5.0]; 400];
        let (p, r) = precision_recall(&real, &collapsed);
        assert_eq!(p, 1.0);
        assert!(r < 0.05, "recall {r}");
        // Far away: no precision, no recall.
        let (p, r) = precision_recall(&real, &grid(20, 100.0));
        assert_eq!((p, r), (0.0, 0.0));
    }
}
