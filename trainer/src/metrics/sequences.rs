//! Scores of a SeqGAN run. On the oracle benchmark, NLL-oracle (the paper's measure). On users'
//! text (`--data text:FILE`), as the text-GAN literature reports them (Yu et al. 2017 on Chinese poems and Obama's speeches; Texygen, Zhu et al. 2018):
//! BLEU-2 to BLEU-4 of each generated sequence against the held-out lines as references,
//! averaged over the samples, and the share of samples that are not a training line (novelty).
//! The same scores of training lines beside them are the ceiling a generator copying the data
//! would reach.
//!
//! BLEU here is NLTK's `sentence_bleu` with `SmoothingFunction().method1`, as Texygen calls it:
//! n-gram precisions clipped by the most times any one reference holds each n-gram, a zero count
//! replaced by 0.1, their geometric mean with equal weights, times the brevity penalty against the
//! reference length closest to the sample's. A sample with fewer than n tokens scores 0.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use pocketgan_runtime::tokens::TokenSpec;

use super::EvalError;
use crate::data::text::{Corpus, Tokens};
use crate::data::DataSource;
use crate::family::seqgan::SeqGan;
use crate::run::RunDir;

/// The largest n of BLEU-n.
const MAX_N: usize = 4;
/// NLTK's method1: the count standing in for a zero n-gram match.
const EPSILON: f64 = 0.1;

/// References: each n-gram's largest count in any one of them, and their lengths.
pub struct References {
    max_counts: HashMap<Vec<u32>, u32>,
    lengths: Vec<usize>,
}

impl References {
    pub fn new(references: &[Vec<u32>]) -> Self {
        let mut max_counts: HashMap<Vec<u32>, u32> = HashMap::new();
        for r in references {
            for (gram, count) in ngram_counts(r) {
                let c = max_counts.entry(gram).or_default();
                *c = (*c).max(count);
            }
        }
        let mut lengths: Vec<usize> = references.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Self {
            max_counts,
            lengths,
        }
    }

    /// BLEU-`n` of `hypothesis` against every reference.
    pub fn bleu(&self, hypothesis: &[u32], n: usize) -> f64 {
        let len = hypothesis.len();
        if len < n || n == 0 {
            return 0.0;
        }
        let counts = ngram_counts(hypothesis);
        let mut log_sum = 0.0;
        for k in 1..=n {
            let (mut matched, mut total) = (0u32, 0u32);
            for (gram, count) in counts.iter().filter(|(g, _)| g.len() == k) {
                total += count;
                matched += (*count).min(self.max_counts.get(gram).copied().unwrap_or(0));
            }
            let p = if matched == 0 {
                EPSILON / total as f64
            } else {
                matched as f64 / total as f64
            };
            log_sum += p.ln() / n as f64;
        }
        // The closest reference length, the shorter on a tie.
        let closest = self
            .lengths
            .iter()
            .copied()
            .min_by_key(|&r| (r.abs_diff(len), r))
            .unwrap_or(len);
        let brevity = if len > closest {
            1.0
        } else {
            (1.0 - closest as f64 / len as f64).exp()
        };
        brevity * log_sum.exp()
    }
}

/// Every n-gram of `tokens` for n up to [`MAX_N`], with its count.
fn ngram_counts(tokens: &[u32]) -> HashMap<Vec<u32>, u32> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_N.min(tokens.len()) {
        for gram in tokens.windows(n) {
            *counts.entry(gram.to_vec()).or_default() += 1;
        }
    }
    counts
}

/// One row of a SeqGAN run's report: a generator (or the data) and its scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SequenceScores {
    pub name: String,
    pub samples: usize,
    /// The oracle's mean per-token negative log-likelihood of the samples (the oracle
    /// benchmark): low when G writes what the oracle would.
    pub nll_oracle: Option<f64>,
    /// G's mean per-token negative log-likelihood of the oracle's own samples (Texygen's
    /// NLL-test): low when G covers what the oracle writes. A generator that lowers NLL-oracle by
    /// narrowing onto the oracle's likeliest sequences raises it. Burn's row only.
    pub nll_test: Option<f64>,
    /// BLEU-2, BLEU-3 and BLEU-4 against the held-out lines (text).
    pub bleu: Option<[f64; 3]>,
    /// The share of samples that are no training line (text).
    pub novel: Option<f64>,
    /// The mean length in tokens (text: up to the end token).
    pub mean_tokens: f64,
}

/// The report of a SeqGAN run: G's row, the rows of exported generators given with
/// `--versus`, a reference row (text: training lines, the copying generator's ceiling; oracle:
/// the oracle's own samples, the floor), and a few of G's samples.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SequenceReport {
    pub data: String,
    /// `None` on the oracle benchmark.
    pub tokens: Option<Tokens>,
    pub vocabulary: usize,
    /// Text: the held-out lines BLEU is computed against; 0 on the oracle benchmark.
    pub held_out_lines: usize,
    pub rows: Vec<SequenceScores>,
    pub examples: Vec<String>,
}

/// Scores `sequences` (already cut at their end) against `refs`, novelty against `train`.
fn score(
    name: &str,
    sequences: &[Vec<u32>],
    refs: &References,
    train: &HashSet<Vec<u32>>,
) -> SequenceScores {
    let n = sequences.len().max(1) as f64;
    let bleu = [2, 3, 4].map(|k| sequences.iter().map(|s| refs.bleu(s, k)).sum::<f64>() / n);
    SequenceScores {
        name: name.into(),
        samples: sequences.len(),
        nll_oracle: None,
        nll_test: None,
        bleu: Some(bleu),
        novel: Some(sequences.iter().filter(|s| !train.contains(*s)).count() as f64 / n),
        mean_tokens: sequences.iter().map(Vec::len).sum::<usize>() as f64 / n,
    }
}

/// Rows of `len` ids, each cut at its first end token.
fn lines(rows: &[u32], len: usize) -> Vec<Vec<u32>> {
    rows.chunks_exact(len)
        .map(|r| r.iter().copied().take_while(|&t| t != 0).collect())
        .collect()
}

/// The report of the SeqGAN run in `run` (its newest checkpoint) on `n` of G's samples drawn
/// from `seed`, beside `n` samples of each exported generator in `versus` (`.onnx` on tract,
/// `.pgq` on the int8 engine, drawn by `pocketgan sample`'s sampler from the same seed).
pub fn evaluate(
    run: &RunDir,
    n: usize,
    seed: u64,
    versus: &[PathBuf],
) -> Result<SequenceReport, EvalError> {
    let config = run.read_config()?;
    let source = config.source()?;
    let device = config.device.device().map_err(|e| EvalError::Model {
        file: run.0.clone(),
        reason: e.to_string(),
    })?;
    let (family, _, _) = run.restore_latest(|ckpt, path| {
        let mut g = SeqGan::init(&config, &device.clone().autodiff())?;
        crate::family::Family::load(&mut g, ckpt, path)?;
        Ok(g)
    })?;
    let len = crate::data::oracle::LENGTH;
    let mut generated = vec![("generator (Burn)".to_string(), family.sample(n, seed))];
    for file in versus {
        generated.push(exported_tokens(file, n, seed, &family.tokens)?);
    }
    let spec = &family.tokens;
    // A few lines of text; the oracle's sequences of ids are long, so fewer.
    let shown = if family.oracle.is_some() { 3 } else { 24 };
    let examples = |s: &[u32]| {
        s.chunks_exact(len)
            .take(shown)
            .map(|s| spec.decode(s))
            .collect()
    };
    if let Some(oracle) = &family.oracle {
        let nll = |name: &str, seqs: &[u32]| SequenceScores {
            name: name.into(),
            samples: seqs.len() / len,
            nll_oracle: Some(oracle.nll(seqs, len)),
            nll_test: None,
            bleu: None,
            novel: None,
            mean_tokens: len as f64,
        };
        let mut rows: Vec<SequenceScores> = generated.iter().map(|(k, s)| nll(k, s)).collect();
        let real = oracle.sample(n, len, seed);
        rows[0].nll_test = Some(family.generator.get().to_lstm().nll(&real, len));
        rows.push(SequenceScores {
            nll_test: Some(oracle.nll(&real, len)),
            ..nll("oracle's own samples", &real)
        });
        return Ok(SequenceReport {
            data: config.data.clone(),
            tokens: None,
            vocabulary: oracle.vocab,
            held_out_lines: 0,
            rows,
            examples: examples(&generated[0].1),
        });
    }
    let DataSource::Text(file) = source else {
        return Err(EvalError::Request(format!(
            "{}: not token sequences",
            config.data
        )));
    };
    let corpus = Corpus::load(&file, config.seqgan.tokens)?;
    corpus.check_vocabulary(&config.vocabulary)?;
    let held_out = lines(&corpus.held_out, len);
    let train = lines(&corpus.train, len);
    let refs = References::new(&held_out);
    let train_set: HashSet<Vec<u32>> = train.iter().cloned().collect();
    // As many training lines as samples (strided), the copying generator's ceiling.
    let stride = (train.len() / n.max(1)).max(1);
    let copies: Vec<Vec<u32>> = train.iter().step_by(stride).take(n).cloned().collect();
    let mut rows: Vec<SequenceScores> = generated
        .iter()
        .map(|(name, s)| score(name, &lines(s, len), &refs, &train_set))
        .collect();
    rows.push(score("training lines", &copies, &refs, &train_set));
    Ok(SequenceReport {
        data: config.data.clone(),
        tokens: Some(config.seqgan.tokens),
        vocabulary: config.vocabulary.len(),
        held_out_lines: held_out.len(),
        rows,
        examples: examples(&generated[0].1),
    })
}

/// `n` sequences sampled from the exported generator `file` from `seed`, and its row name. Its
/// metadata must describe the run's sequences (`spec`).
fn exported_tokens(
    file: &Path,
    n: usize,
    seed: u64,
    spec: &TokenSpec,
) -> Result<(String, Vec<u32>), EvalError> {
    super::with_exported(file, |runner, bytes| {
        let theirs = pocketgan_runtime::tokens::model_tokens(bytes)
            .map_err(|e| e.to_string())?
            .ok_or("not a token generator (no sequence length in its metadata)")?;
        if theirs != *spec {
            return Err(
                "its tokens are not this run's (length, start, end or vocabulary differ)".into(),
            );
        }
        pocketgan_runtime::tokens::sample_tokens(runner, spec, n, seed).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures NLTK 3.10's `sentence_bleu(refs, hyp, weights, smoothing_function=
    /// SmoothingFunction().method1)` gives for the same token lists.
    #[test]
    /// (Checked against NLTK 3.10.4: 0.4906137501331369, 0.3096787331587729,
    /// 0.06628186505570068 and 1.0 for the four cases below.)
    fn bleu_is_nltks_sentence_bleu_with_method1() {
        let refs = References::new(&[vec![1, 2, 3, 4, 5, 6], vec![1, 2, 7, 4, 5]]);
        // A reference itself: every precision 1, lengths equal.
        assert!((refs.bleu(&[1, 2, 3, 4, 5, 6], 4) - 1.0).abs() < 1e-12);
        // [1, 2, 3, 9]: unigrams 3/4, bigrams 2/3, trigrams 1/2; closest length 5 > 4, so the
        // brevity penalty is exp(1 - 5/4). BLEU-3 = exp(-1/4) (3/4 * 2/3 * 1/2)^(1/3).
        let want = (-0.25f64).exp() * (0.75f64 * (2.0 / 3.0) * 0.5).powf(1.0 / 3.0);
        assert!((refs.bleu(&[1, 2, 3, 9], 3) - want).abs() < 1e-12);
        // No 4-gram of [1, 2, 3, 9] is in a reference: 0.1 / 1 stands in for its precision.
        let want4 = (-0.25f64).exp() * (0.75f64 * (2.0 / 3.0) * 0.5 * 0.1).powf(0.25);
        assert!((refs.bleu(&[1, 2, 3, 9], 4) - want4).abs() < 1e-12);
        // Clipping: [1, 1, 1] matches "1" once per reference.
        let want_clip = (1.0f64 / 3.0 * (0.1 / 2.0)).powf(0.5) * (1.0 - 5.0f64 / 3.0).exp();
        assert!((refs.bleu(&[1, 1, 1], 2) - want_clip).abs() < 1e-12);
        assert_eq!(refs.bleu(&[1], 2), 0.0);
    }
}
