//! Token sequences from a one-step recurrent cell: SeqGAN's generator as exported, or any model
//! of that signature.
//!
//! **The cell** takes a token id and its state and gives the next token's logits and the new
//! state: inputs `token` (int64 `[N]`) and one or more float state vectors (`[N, H]` each),
//! outputs the logits (`[N, V]`, first) and the new states in the inputs' order. Sampling is a
//! loop any engine can drive: the state starts at zero and the token at [`TokenSpec::start`];
//! each step draws the next token from the softmax of the logits and feeds it back.
//!
//! **The draws** are seeded per sample, as [`crate::sample`]'s noise: sample `k` reads uniforms
//! from its own [`crate::latent::Rng`], one per step, so a sample does not depend on `--n`, the
//! batch or the engine, only on the logits it meets (inverse CDF over the softmax, in f64).
//!
//! **What the tokens mean** is in the model's metadata ([`TokenSpec`]): the sequence length, the
//! start token, and for text the vocabulary (id order) and how tokens join into a line.

use crate::engine::runner::{Runner, TensorSpec, Values};
use crate::latent::Rng;
use crate::sample::{seed_of, SampleError, BATCH};
use std::path::Path;

/// Metadata key: the tokens' strings in id order, a JSON array (text models; none for the
/// oracle benchmark, whose tokens are ids).
pub const VOCABULARY_KEY: &str = "pocketgan.vocabulary";
/// Metadata key: the string between tokens of a line (`""` for characters, `" "` for words).
pub const SEPARATOR_KEY: &str = "pocketgan.token_separator";
/// Metadata key: tokens per sequence.
pub const LENGTH_KEY: &str = "pocketgan.sequence_length";
/// Metadata key: the token fed to the cell before the first one.
pub const START_KEY: &str = "pocketgan.start_token";
/// Metadata key: the token that ends a line, if any (text: 0, which also pads).
pub const END_KEY: &str = "pocketgan.end_token";

/// How a model's token sequences read: from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub length: usize,
    pub start: u32,
    pub end: Option<u32>,
    /// Token strings by id; `None`: write ids.
    pub vocabulary: Option<Vec<String>>,
    pub separator: String,
}

/// Longest sequence `sample` draws.
pub const MAX_LENGTH: usize = 4096;

impl TokenSpec {
    /// Sequences of `length` ids from token 0, without an end token or a vocabulary (the oracle
    /// benchmark's, and a cell's that names none).
    pub fn ids(length: usize) -> TokenSpec {
        TokenSpec {
            length,
            start: 0,
            end: None,
            vocabulary: None,
            separator: " ".into(),
        }
    }

    /// The metadata entries that describe these sequences.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut m = vec![
            (LENGTH_KEY.into(), self.length.to_string()),
            (START_KEY.into(), self.start.to_string()),
        ];
        if let Some(end) = self.end {
            m.push((END_KEY.into(), end.to_string()));
        }
        if let Some(v) = &self.vocabulary {
            m.push((
                VOCABULARY_KEY.into(),
                serde_json::to_string(v).unwrap_or_default(),
            ));
            m.push((SEPARATOR_KEY.into(), self.separator.clone()));
        }
        m
    }

    /// The spec a model's metadata gives; `Ok(None)` if it names no sequence length (not a
    /// token model), an error if it names one badly.
    pub fn from_metadata<'m>(
        pairs: impl IntoIterator<Item = (&'m str, &'m str)>,
    ) -> Result<Option<TokenSpec>, SampleError> {
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let bad = |key: &str, why: &str| SampleError::Metadata(format!("{key}: {why}"));
        let Some(length) = get(LENGTH_KEY) else {
            return Ok(None);
        };
        let length: usize = length
            .parse()
            .map_err(|_| bad(LENGTH_KEY, "not a number"))?;
        if length == 0 || length > MAX_LENGTH {
            return Err(bad(LENGTH_KEY, "out of range"));
        }
        let id = |key: &str| -> Result<Option<u32>, SampleError> {
            get(key)
                .map(|v| v.parse().map_err(|_| bad(key, "not a token id")))
                .transpose()
        };
        let vocabulary = get(VOCABULARY_KEY)
            .map(|v| {
                serde_json::from_str::<Vec<String>>(v)
                    .map_err(|_| bad(VOCABULARY_KEY, "not a JSON array of strings"))
            })
            .transpose()?;
        Ok(Some(TokenSpec {
            length,
            start: id(START_KEY)?.unwrap_or(0),
            end: id(END_KEY)?,
            vocabulary,
            separator: get(SEPARATOR_KEY).unwrap_or(" ").to_string(),
        }))
    }

    /// One sequence as a line: its strings up to the end token (ids where there is no
    /// vocabulary, or past it).
    pub fn decode(&self, sequence: &[u32]) -> String {
        let words = sequence
            .iter()
            .take_while(|&&t| Some(t) != self.end)
            .map(|&t| match &self.vocabulary {
                Some(v) => v.get(t as usize).cloned().unwrap_or_else(|| t.to_string()),
                None => t.to_string(),
            });
        let sep = match self.vocabulary {
            Some(_) => self.separator.as_str(),
            None => " ",
        };
        words.collect::<Vec<_>>().join(sep)
    }
}

/// The spec a model file's metadata gives ([`crate::sample::model_metadata`]): `Ok(None)` for a
/// model that is no token cell.
pub fn model_tokens(bytes: &[u8]) -> Result<Option<TokenSpec>, SampleError> {
    let metadata = crate::sample::model_metadata(bytes);
    TokenSpec::from_metadata(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Where a cell's token, states and logits are among its runner's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub token: usize,
    /// Each state input, and its size.
    pub states: Vec<(usize, usize)>,
    pub vocabulary: usize,
}

impl Cell {
    /// Checks that `runner` has the cell's signature.
    pub fn of(runner: &dyn Runner) -> Result<Cell, SampleError> {
        let (inputs, outputs) = (runner.inputs(), runner.outputs());
        let names = |s: &[TensorSpec]| {
            s.iter()
                .map(|t| format!("{} {:?}", t.name, t.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let not = |why: &str| {
            SampleError::NotTokenModel(format!(
                "{why} (inputs: {}; outputs: {})",
                names(&inputs),
                names(&outputs)
            ))
        };
        let tokens: Vec<usize> = (0..inputs.len())
            .filter(|&i| inputs[i].classes.is_some())
            .collect();
        let [token] = tokens[..] else {
            return Err(not("a token cell takes exactly one token input"));
        };
        let states: Vec<(usize, usize)> = (0..inputs.len())
            .filter(|&i| i != token)
            .map(|i| (i, inputs[i].shape.iter().product()))
            .collect();
        let vocabulary = match outputs.first().map(|o| &o.shape[..]) {
            Some([v]) | Some([1, v]) if *v > 0 => *v,
            _ => return Err(not("its first output must be the logits [N, V]")),
        };
        // The new states, in the inputs' order, follow the logits.
        let same = outputs.len() == states.len() + 1
            && states
                .iter()
                .zip(&outputs[1..])
                .all(|((i, _), o)| inputs[*i].shape == o.shape);
        if states.is_empty() || !same {
            return Err(not(
                "a token cell takes state vectors and returns the logits, then new states of the same shapes",
            ));
        }
        Ok(Cell {
            token,
            states,
            vocabulary,
        })
    }
}

/// `n` sequences of `spec.length` tokens (row-major) sampled from the cell `runner`, the draws
/// from `seed`, run in batches of [`BATCH`].
pub fn sample_tokens(
    runner: &mut dyn Runner,
    spec: &TokenSpec,
    n: usize,
    seed: u64,
) -> Result<Vec<u32>, SampleError> {
    let cell = Cell::of(runner)?;
    if n == 0 {
        return Err(SampleError::NoSamples);
    }
    if spec.start as usize >= cell.vocabulary {
        return Err(SampleError::Metadata(format!(
            "{START_KEY}: token {} is outside the vocabulary of {}",
            spec.start, cell.vocabulary
        )));
    }
    let (len, v) = (spec.length, cell.vocabulary);
    let mut out = vec![0u32; n * len];
    for (b, chunk) in out.chunks_mut(BATCH * len).enumerate() {
        let m = chunk.len() / len;
        let mut rngs: Vec<Rng> = (0..m)
            .map(|k| Rng::new(seed_of(seed, (b * BATCH + k) as u64)))
            .collect();
        let mut token = vec![spec.start; m];
        let mut states: Vec<Vec<f32>> =
            cell.states.iter().map(|&(_, s)| vec![0.0; m * s]).collect();
        for t in 0..len {
            let mut inputs = vec![Values::F32(Vec::new()); cell.states.len() + 1];
            inputs[cell.token] = Values::Index(token.clone());
            for ((i, _), s) in cell.states.iter().zip(&mut states) {
                inputs[*i] = Values::F32(std::mem::take(s));
            }
            let mut outs = runner.run(&inputs, m)?.into_iter();
            let Some(Values::F32(logits)) = outs.next() else {
                return Err(SampleError::NotTokenModel(
                    "its logits are not float".into(),
                ));
            };
            for (s, o) in states.iter_mut().zip(outs) {
                match o {
                    Values::F32(x) => *s = x,
                    Values::Index(_) => {
                        return Err(SampleError::NotTokenModel(
                            "a state output is not float".into(),
                        ))
                    }
                }
            }
            for (k, (row, rng)) in logits.chunks_exact(v).zip(&mut rngs).enumerate() {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                token[k] = draw(row, u);
                chunk[k * len + t] = token[k];
            }
        }
    }
    Ok(out)
}

/// The token whose softmax interval of `logits` holds `u` in `[0, 1)` (the last one if rounding
/// leaves `u` past the sum). A non-finite logit makes its token impossible.
pub fn draw(logits: &[f32], u: f64) -> u32 {
    let finite = |l: &f32| l.is_finite().then_some(*l as f64);
    let max = logits
        .iter()
        .filter_map(finite)
        .fold(f64::NEG_INFINITY, f64::max);
    // Each exponential once (they are most of a large vocabulary's sampling time).
    let weights: Vec<f64> = logits
        .iter()
        .map(|l| finite(l).map_or(0.0, |l| (l - max).exp()))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut left = u * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last = i;
            if left < w {
                return i as u32;
            }
            left -= w;
        }
    }
    last as u32
}

/// Writes `tokens` (`spec.length` per sequence) to `path`: `.txt` (one decoded line per
/// sequence), `.csv` (`sample,t0,t1,...` of ids) or `.npy` (float32 ids `[n, T]`).
pub fn write(path: &Path, spec: &TokenSpec, tokens: &[u32]) -> Result<(), SampleError> {
    use std::fmt::Write;
    let len = spec.length.max(1);
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some("txt") => {
            let mut s = String::new();
            for seq in tokens.chunks_exact(len) {
                let _ = writeln!(s, "{}", spec.decode(seq));
            }
            s.into_bytes()
        }
        Some("csv") => {
            let names: Vec<String> = (0..len).map(|t| format!("t{t}")).collect();
            let mut s = format!("sample,{}\n", names.join(","));
            for (k, seq) in tokens.chunks_exact(len).enumerate() {
                let ids: Vec<String> = seq.iter().map(u32::to_string).collect();
                let _ = writeln!(s, "{k},{}", ids.join(","));
            }
            s.into_bytes()
        }
        Some("npy") => {
            let v: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
            crate::npy::encode(&[tokens.len() / len, len], &v)
        }
        _ => {
            return Err(SampleError::Format(format!(
                "{}: token sequences are written as .txt, .csv or .npy",
                path.display()
            )))
        }
    };
    std::fs::write(path, bytes).map_err(|source| SampleError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_softmax() {
        // logits ln(1), ln(3): probabilities 1/4 and 3/4.
        let l = [0.0f32, 3f32.ln()];
        assert_eq!(draw(&l, 0.0), 0);
        assert_eq!(draw(&l, 0.2499), 0);
        assert_eq!(draw(&l, 0.2501), 1);
        assert_eq!(draw(&l, 0.9999999), 1);
        // A NaN or -inf logit is never drawn.
        assert_eq!(draw(&[f32::NAN, 0.0, f32::NEG_INFINITY], 0.0), 1);
        assert_eq!(draw(&[f32::NAN, 0.0, f32::NEG_INFINITY], 0.99), 1);
    }

    #[test]
    fn metadata_round_trips_and_bad_values_are_errors() {
        let spec = TokenSpec {
            length: 20,
            start: 0,
            end: Some(0),
            vocabulary: Some(vec!["<end>".into(), "a".into(), "b".into()]),
            separator: String::new(),
        };
        let m = spec.metadata();
        let back = TokenSpec::from_metadata(m.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back.unwrap(), Some(spec.clone()));
        assert_eq!(spec.decode(&[1, 2, 1, 0, 2]), "aba");
        assert_eq!(TokenSpec::from_metadata([("x", "y")]).unwrap(), None);
        assert!(TokenSpec::from_metadata([(LENGTH_KEY, "twenty")]).is_err());
        assert!(TokenSpec::from_metadata([(LENGTH_KEY, "0")]).is_err());
        assert!(TokenSpec::from_metadata([(LENGTH_KEY, "3"), (VOCABULARY_KEY, "[1")]).is_err());
        let ids = TokenSpec::from_metadata([(LENGTH_KEY, "3")])
            .unwrap()
            .unwrap();
        assert_eq!(ids, TokenSpec::ids(3));
        assert_eq!(ids.decode(&[4, 0, 7]), "4 0 7");
    }
}
