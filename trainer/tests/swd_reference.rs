//! Our sliced Wasserstein distance against the authors' algorithm run by numpy and scipy
//! (`scripts/swd-reference.py`, fixture `tests/fixtures/swd_reference.json`): the same images,
//! patch centres and directions give the same Laplacian pyramid and the same distance per level.

use nalgebra::DMatrix;
use pocketgan_trainer::metrics::swd::{descriptors, pyramid, sliced_wasserstein, Images};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn centres(v: &Value) -> Vec<(usize, usize, usize)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c: Vec<usize> = c
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            (c[0], c[1], c[2])
        })
        .collect()
}

#[test]
fn swd_matches_the_authors_algorithm() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/swd_reference.json"
    );
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (n, c, side, levels) = (
        f["n"].as_u64().unwrap() as usize,
        f["c"].as_u64().unwrap() as usize,
        f["side"].as_u64().unwrap() as usize,
        f["levels"].as_u64().unwrap() as usize,
    );
    let set = |key: &str| Images {
        data: floats(&f[key]),
        n,
        c,
        h: side,
        w: side,
    };
    let (real, fake) = (set("real"), set("fake"));
    let (pr, pf) = (pyramid(&real, levels), pyramid(&fake, levels));

    // scipy's mirror-boundary filtering, level by level (written with 3 decimals).
    for (l, expected) in f["real_pyramid"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .rev()
    {
        let expected = floats(expected);
        assert_eq!(pr[l].data.len(), expected.len(), "level {l}");
        let worst = pr[l]
            .data
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let at = (0..expected.len())
            .max_by(|&i, &j| {
                (pr[l].data[i] - expected[i])
                    .abs()
                    .total_cmp(&(pr[l].data[j] - expected[j]).abs())
            })
            .unwrap_or(0);
        assert!(
            worst < 2e-3,
            "level {l}: worst difference {worst} at {at}: ours {} theirs {}",
            pr[l].data[at],
            expected[at]
        );
    }

    for (l, level) in f["per_level"].as_array().unwrap().iter().enumerate() {
        let da = descriptors(&pr[l], &centres(&level["real_centres"]), 7);
        let db = descriptors(&pf[l], &centres(&level["fake_centres"]), 7);
        let ndirs = level["ndirs"].as_u64().unwrap() as usize;
        let repeats = level["directions"].as_array().unwrap();
        let ours: f64 = repeats
            .iter()
            .map(|d| {
                // numpy's (dim, ndirs) row-major.
                let dirs = DMatrix::from_row_slice(da.ncols(), ndirs, &floats(d));
                sliced_wasserstein(&da, &db, &dirs)
            })
            .sum::<f64>()
            / repeats.len() as f64
            * 1e3;
        let theirs = level["swd_x1e3"].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 1e-3 * theirs,
            "level {l}: ours {ours} against the authors' {theirs}"
        );
        eprintln!(
            "level {l} ({} px): ours {ours:.4}, the authors' {theirs:.4}",
            level["size"]
        );
    }
}
