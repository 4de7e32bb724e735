//! Quality metrics that can fail: a collapsed generator, real data against itself, and a generator
//! trained by our own tools (the firmware's committed int8 digits model, run on the int8 engine).

use pocketgan_tests::repo_root;
use pocketgan_trainer::data::{self, DataSource, LoadOptions};
use pocketgan_trainer::metrics::{evaluate, Generator, Reference, Report};
use std::path::Path;
use std::sync::OnceLock;

fn classifiers() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn reference() -> &'static (data::Dataset, Reference) {
    static REF: OnceLock<(data::Dataset, Reference)> = OnceLock::new();
    REF.get_or_init(|| {
        let ds = data::load(&DataSource::Digits, &LoadOptions::default()).unwrap();
        let r = Reference::new(&ds, classifiers(), 0).unwrap();
        (ds, r)
    })
}

#[test]
fn classifier_is_a_competent_judge_and_real_data_is_the_floor() {
    let (_, r) = reference();
    assert!(
        r.judge.test_accuracy > 0.9,
        "accuracy {}",
        r.judge.test_accuracy
    );
    let floor = &r.held_out;
    assert_eq!(floor.classes_covered, 10);
    assert!(floor.kl_uniform < 0.05, "{floor:?}");
    assert!(floor.precision > 0.6 && floor.recall > 0.6, "{floor:?}");
    // Held-out real images against the training images: near 0 next to a collapsed generator.
    let (ds, _) = reference();
    let one = ds.sample(0).repeat(1000);
    let collapsed = r.measure(&one);
    assert!(
        floor.fid * 20.0 < collapsed.fid,
        "real {} vs collapsed {}",
        floor.fid,
        collapsed.fid
    );
}

/// The judge ranks spoiled real images as a person would: each spoiling worse than the untouched
/// images and worse the stronger it is, and a missing class shows in the coverage.
#[test]
fn the_judge_ranks_spoiled_images_as_a_person_would() {
    use pocketgan_trainer::metrics::classifier::JudgeData;
    use pocketgan_trainer::metrics::sensitivity::{table, Spoil};
    let (ds, r) = reference();
    // The judge data `reference()` used: the built-in digits' own split (no data folder here).
    let data = JudgeData::own_split(ds, 0);
    let rows = table(r, &data.floor(0), 0).unwrap();
    let fid = |s: Spoil| rows.iter().find(|(x, _)| *x == s).unwrap().1.fid;
    let real = fid(Spoil::None);
    let ladders = [
        [
            real,
            fid(Spoil::Noise { sigma: 0.1 }),
            fid(Spoil::Noise { sigma: 0.3 }),
        ],
        [
            real,
            fid(Spoil::Blur { sigma: 0.7 }),
            fid(Spoil::Blur { sigma: 1.5 }),
        ],
    ];
    for ladder in ladders {
        assert!(ladder.windows(2).all(|w| w[0] < w[1]), "{rows:?}");
    }
    let without = &rows
        .iter()
        .find(|(s, _)| matches!(s, Spoil::WithoutClass { .. }))
        .unwrap()
        .1;
    assert_eq!(without.classes_covered, 9, "{without:?}");
    assert!(without.fid > real, "{rows:?}");
}

#[test]
fn a_collapsed_generator_covers_one_class() {
    let (ds, r) = reference();
    let one = ds.sample(3).repeat(1000);
    let m = r.measure(&one);
    assert_eq!(m.classes_covered, 1, "{m:?}");
    assert!((m.kl_uniform - 10f64.ln()).abs() < 1e-6, "{m:?}");
    assert!(m.recall < 0.05, "{m:?}");
}

#[test]
fn our_trained_int8_digits_model_beats_a_collapsed_one() {
    let (ds, r) = reference();
    let pgq = repo_root().join("firmware/models/digits.pgq");
    let report = evaluate(
        &Generator::Pgq(pgq),
        2000,
        1,
        &DataSource::Digits,
        classifiers(),
    )
    .unwrap();
    let Report::Images { generated, .. } = report else {
        panic!("digits are images")
    };
    let collapsed = r.measure(&ds.sample(0).repeat(1000));
    assert_eq!(generated.classes_covered, 10, "{generated:?}");
    assert!(
        generated.fid * 3.0 < collapsed.fid,
        "trained {} vs collapsed {}",
        generated.fid,
        collapsed.fid
    );
    assert!(generated.recall > collapsed.recall * 5.0, "{generated:?}");
}

#[test]
fn training_with_watch_records_quality_signals_and_keeps_its_judge() {
    use pocketgan_trainer::config::TrainConfig;
    use pocketgan_trainer::loss::GanLoss;
    use pocketgan_trainer::model::Architecture;
    use pocketgan_trainer::train::{self, RunOptions};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut config = TrainConfig::new(
        &DataSource::Digits,
        Architecture::Dcgan,
        GanLoss::Nonsaturating,
    );
    config.model.width = 8;
    config.steps = 20;
    config.sample_every = 10;
    config.checkpoint_every = 20;
    let opts = RunOptions {
        watch: true,
        quiet: true,
        ..Default::default()
    };
    train::train(&config, &out, &opts).unwrap();
    let csv = std::fs::read_to_string(out.join("quality.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(pocketgan_trainer::metrics::watch::HEADER)
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
        [10.0, 20.0],
        "{csv}"
    );
    for r in &rows {
        let (covered, classes, kl, diversity) = (r[1], r[2], r[3], r[4]);
        assert_eq!(classes, 10.0);
        assert!((1.0..=10.0).contains(&covered), "{csv}");
        assert!((0.0..=10f64.ln() + 1e-4).contains(&kl), "{csv}");
        assert!(diversity > 0.0, "{csv}");
    }
    // The judge is kept beside the run for the next run and for eval.
    assert!(tmp.path().join("classifiers/digits_1x28x28.ckpt").exists());
}
