//! Token cells from PyTorch's own exporter: SeqGAN's generator as one sampling step
//! (`nn.Embedding`, one `nn.LSTM` step from a batch-first state, `nn.Linear`; written by
//! `scripts/torch-fixtures.py`). Stepped by tract through PyTorch's sequences, every file gives
//! PyTorch's logits at every step; the sampler draws tokens by the cell's softmax, per sample,
//! whatever the batch; `pocketgan sample` writes them.
#![cfg(feature = "std")]

mod common;

use common::torch_fixture as fixture;
use pocketgan_runtime::engine::runner::{Int8Runner, Runner, TractRunner, Values};
use pocketgan_runtime::import::{FloatGraph, FloatOp, InputKind};
use pocketgan_runtime::kernels::Isa;
use pocketgan_runtime::npy;
use pocketgan_runtime::quantize::{quantize, QuantizeOptions};
use pocketgan_runtime::tokens::{sample_tokens, Cell, TokenSpec};
use pocketgan_runtime::Model;
use std::path::Path;

const FILES: [&str; 5] = [
    "seqgan_cell_op13.onnx",
    "seqgan_cell_op13_dyn.onnx",
    "seqgan_cell_op17.onnx",
    "seqgan_cell_op17_dyn.onnx",
    "seqgan_cell_op18_dynamo_dyn.onnx",
];
const VOCAB: usize = 50;
const HIDDEN: usize = 32;
const STEPS: usize = 6;

/// The logits of one step of `cell` from token `prev` and the state; the new state.
fn step(
    cell: &mut dyn Runner,
    prev: &[u32],
    h: Vec<f32>,
    c: Vec<f32>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let out = cell
        .run(
            &[Values::Index(prev.to_vec()), Values::F32(h), Values::F32(c)],
            prev.len(),
        )
        .unwrap();
    let mut f = out.into_iter().map(|v| match v {
        Values::F32(x) => x,
        Values::Index(_) => panic!("float outputs"),
    });
    (f.next().unwrap(), f.next().unwrap(), f.next().unwrap())
}

/// The largest difference between `logits` (rows of VOCAB, one per sequence of the batch of
/// two) and PyTorch's at `step` of sequence `s`.
fn worst_against_pytorch(logits: &[f32], want: &[f32], s: usize, step: usize) -> f32 {
    let at = (s * STEPS + step) * VOCAB;
    logits[s * VOCAB..(s + 1) * VOCAB]
        .iter()
        .zip(&want[at..at + VOCAB])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

#[test]
fn pytorch_token_cells_step_as_pytorch() {
    let tokens = npy::parse(&fixture("seqgan_cell.tokens.npy")).unwrap().data;
    let want = npy::parse(&fixture("seqgan_cell.logits.npy")).unwrap().data;
    for file in FILES {
        let mut cell = TractRunner::new(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let sig = Cell::of(&cell).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((sig.vocabulary, sig.states.len()), (VOCAB, 2), "{file}");
        let (mut h, mut c) = (vec![0.0; 2 * HIDDEN], vec![0.0; 2 * HIDDEN]);
        let mut prev = vec![0u32; 2];
        for t in 0..STEPS {
            let (logits, h1, c1) = step(&mut cell, &prev, h, c);
            for s in 0..2 {
                let worst = worst_against_pytorch(&logits, &want, s, t);
                assert!(worst <= 1e-4, "{file}, step {t}, sequence {s}: {worst}");
            }
            (h, c) = (h1, c1);
            prev = (0..2).map(|s| tokens[s * STEPS + t] as u32).collect();
        }
    }
}

#[test]
fn the_sampler_draws_from_the_cells_softmax_whatever_the_batch() {
    let mut cell = TractRunner::new(&fixture("seqgan_cell_op17_dyn.onnx")).unwrap();
    // Sample k does not depend on how many are drawn (the batches are 256).
    let few = sample_tokens(&mut cell, &TokenSpec::ids(4), 3, 9).unwrap();
    let many = sample_tokens(&mut cell, &TokenSpec::ids(4), 300, 9).unwrap();
    assert_eq!(few, many[..12]);
    assert_ne!(
        many[..600],
        sample_tokens(&mut cell, &TokenSpec::ids(4), 150, 10).unwrap()[..]
    );
    // The first token's frequencies over 20,000 samples against its softmax at the start.
    let n = 20_000;
    let first = sample_tokens(&mut cell, &TokenSpec::ids(1), n, 3).unwrap();
    let (logits, _, _) = step(&mut cell, &[0], vec![0.0; HIDDEN], vec![0.0; HIDDEN]);
    let max = logits.iter().fold(f32::MIN, |a, &b| a.max(b));
    let e: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let total: f64 = e.iter().sum();
    let mut worst: f64 = 0.0;
    for (k, ek) in e.iter().enumerate() {
        let p = ek / total;
        let freq = first.iter().filter(|&&t| t as usize == k).count() as f64 / n as f64;
        // Four standard errors of a frequency.
        let tolerance = 4.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-4;
        assert!(
            (freq - p).abs() <= tolerance,
            "token {k}: {freq} drawn, p = {p}"
        );
        worst = worst.max((freq - p).abs());
    }
    assert!(
        worst > 0.0,
        "frequencies that match exactly are not samples"
    );
}

#[test]
fn pocketgan_sample_writes_token_sequences() {
    let dir = std::env::temp_dir().join(format!("pocketgan-tokens-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("cell.onnx");
    std::fs::write(&model, fixture("seqgan_cell_op17_dyn.onnx")).unwrap();
    let m = model.to_str().unwrap();
    let sample = |out: &Path, length: Option<&str>| {
        let mut args = vec!["sample", m, "--n", "5", "--out", out.to_str().unwrap()];
        args.extend(length.map(|l| ["--length", l]).into_iter().flatten());
        std::process::Command::new(env!("CARGO_BIN_EXE_pocketgan"))
            .args(args)
            .output()
            .unwrap()
    };
    // A cell exported from PyTorch names no length: sample asks for one.
    let txt = dir.join("s.txt");
    let o = sample(&txt, None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--length"));
    let o = sample(&txt, Some("7"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&txt).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l.split(' ').count() == 7));
    let csv = dir.join("s.csv");
    assert!(sample(&csv, Some("7")).status.success());
    let csv = std::fs::read_to_string(&csv).unwrap();
    // The same draws: the csv's ids are the text's.
    for (row, line) in csv.lines().skip(1).zip(&lines) {
        assert_eq!(row.split_once(',').unwrap().1.replace(',', " "), *line);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// PyTorch's log-softmax of `logits` rows of VOCAB.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    let total: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits
        .iter()
        .map(|&l| l as f64 - max - total.ln())
        .collect()
}

#[test]
fn pytorch_token_cells_import_step_as_pytorch_and_quantize() {
    let tokens = npy::parse(&fixture("seqgan_cell.tokens.npy")).unwrap().data;
    let want = npy::parse(&fixture("seqgan_cell.logits.npy")).unwrap().data;
    for file in FILES {
        let bytes = fixture(file);
        // The float graph: a token, two states; the LSTM step as the ops that define it.
        let g = FloatGraph::from_onnx_bytes(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let kinds: Vec<&InputKind> = g.inputs.iter().map(|i| &i.kind).collect();
        assert_eq!(
            kinds,
            [
                &InputKind::Class { classes: VOCAB },
                &InputKind::State,
                &InputKind::State
            ],
            "{file}"
        );
        assert_eq!(g.outputs.len(), 3, "{file}");
        let count = |kind: &str| g.nodes.iter().filter(|n| n.op.kind() == kind).count();
        assert_eq!(
            (
                count("Slice"),
                count("Sigmoid"),
                count("Tanh"),
                count("Embed")
            ),
            (4, 3, 2, 1),
            "{file}"
        );
        assert!(g
            .nodes
            .iter()
            .all(|n| !matches!(n.op, FloatOp::Reshape { .. })));
        // Stepped through PyTorch's sequences, feeding back its own states.
        let (mut h, mut c) = (vec![0.0; 2 * HIDDEN], vec![0.0; 2 * HIDDEN]);
        let mut prev = vec![0f32; 2];
        for t in 0..STEPS {
            let names: Vec<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
            let mut out = g
                .run(&[(names[0], &prev), (names[1], &h), (names[2], &c)], 2)
                .unwrap();
            let logits = out.remove(&g.outputs[0]).unwrap();
            for s in 0..2 {
                let worst = worst_against_pytorch(&logits, &want, s, t);
                assert!(
                    worst <= 1e-4,
                    "{file}, float graph, step {t}, sequence {s}: {worst}"
                );
            }
            (h, c) = (
                out.remove(&g.outputs[1]).unwrap(),
                out.remove(&g.outputs[2]).unwrap(),
            );
            prev = (0..2).map(|s| tokens[s * STEPS + t]).collect();
        }
        // int8, calibrated on its own sequences, stepped through PyTorch's: each step's
        // next-token distribution against PyTorch's, by KL divergence in nats.
        let options = QuantizeOptions {
            length: Some(STEPS),
            ..QuantizeOptions::default()
        };
        let (pgq, _) = quantize(&bytes, &options).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut int8 = Int8Runner::new(Model::parse(&pgq).unwrap(), Isa::detect());
        assert_eq!(Cell::of(&int8).unwrap().vocabulary, VOCAB);
        let (mut h, mut c) = (vec![0.0; 2 * HIDDEN], vec![0.0; 2 * HIDDEN]);
        let mut prev = vec![0u32; 2];
        let mut kl = Vec::new();
        for t in 0..STEPS {
            let (logits, h1, c1) = step(&mut int8, &prev, h, c);
            for s in 0..2 {
                let at = (s * STEPS + t) * VOCAB;
                let (p, q) = (
                    log_softmax(&want[at..at + VOCAB]),
                    log_softmax(&logits[s * VOCAB..(s + 1) * VOCAB]),
                );
                kl.push(
                    p.iter()
                        .zip(&q)
                        .map(|(lp, lq)| lp.exp() * (lp - lq))
                        .sum::<f64>(),
                );
            }
            (h, c) = (h1, c1);
            prev = (0..2).map(|s| tokens[s * STEPS + t] as u32).collect();
        }
        let mean = kl.iter().sum::<f64>() / kl.len() as f64;
        let worst = kl.iter().fold(0f64, |a, &b| a.max(b));
        eprintln!(
            "{file}: int8 KL(PyTorch || int8) per step: mean {mean:.4}, worst {worst:.4} nats"
        );
        // Measured 0.0044 and 0.0092 (N(0, 1) weights, logits over a range of about 20).
        assert!(
            mean <= 0.01 && worst <= 0.03,
            "{file}: KL mean {mean}, worst {worst}"
        );
        // The sampler runs on the int8 cell as on any engine: per sample, whatever the batch.
        let few = sample_tokens(&mut int8, &TokenSpec::ids(4), 3, 9).unwrap();
        let many = sample_tokens(&mut int8, &TokenSpec::ids(4), 300, 9).unwrap();
        assert_eq!(few, many[..12], "{file}");
    }
}

/// A long sequence length (a cell's metadata may name up to 4,096 tokens) calibrates on fewer
/// sequences, never more rows than `--calib`'s own bound.
#[test]
fn a_long_sequence_length_calibrates_within_the_row_bound() {
    let options = QuantizeOptions {
        length: Some(4096),
        calib: 256,
        eval: 64,
        ..QuantizeOptions::default()
    };
    let (_, report) = quantize(&fixture("seqgan_cell_op17_dyn.onnx"), &options).unwrap();
    assert_eq!(
        report.eval_samples,
        pocketgan_runtime::limits::MAX_CALIB,
        "4 sequences of 4,096 steps"
    );
    assert!(report.token_kl.is_some_and(|kl| kl.is_finite()));
}
