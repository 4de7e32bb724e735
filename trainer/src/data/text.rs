//! Users' own token sequences for SeqGAN: `--data text:FILE`, one sequence per line, split into
//! characters or whitespace-separated words (`--tokens char|word`).
//!
//! Token 0 is the end: SeqGAN's generator starts from it (the oracle's start token) and a
//! sequence shorter than [`LENGTH`] is padded with it, so G learns where a line ends and a sample
//! is read up to its first 0. The other ids go to the tokens by falling frequency (ties in
//! string order), at most [`MAX_VOCAB`] of them with the rarest folded into `<unk>`. The
//! vocabulary is stored in the run (`config.json`), so that its samples read back even without
//! the file. A fixed tenth of the lines (the same for every run on the file) is held out for
//! BLEU; lines longer than [`LENGTH`] tokens are left out and counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::oracle::LENGTH;
use super::DataError;
use pocketgan_runtime::tokens::TokenSpec;

/// The end (and padding) token's id and name.
pub const END: u32 = 0;
pub const END_NAME: &str = "<end>";
/// The unknown token's name, when the vocabulary is capped.
pub const UNKNOWN: &str = "<unk>";
/// The most ids a vocabulary has (the SeqGAN benchmark's 5,000).
pub const MAX_VOCAB: usize = 5000;
/// The share of lines held out, and the seed of that choice (not the run's).
pub const HELD_OUT: f64 = 0.1;
const SPLIT_SEED: u64 = 0x7E47_5911;

/// How a line is cut into tokens.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Tokens {
    /// Each character (Unicode scalar) is a token.
    #[default]
    Char,
    /// Each whitespace-separated word is a token.
    Word,
}

impl Tokens {
    pub fn split(self, line: &str) -> Vec<String> {
        match self {
            Tokens::Char => line.chars().map(String::from).collect(),
            Tokens::Word => line.split_whitespace().map(String::from).collect(),
        }
    }

    /// What goes between two tokens of a line.
    pub fn separator(self) -> &'static str {
        match self {
            Tokens::Char => "",
            Tokens::Word => " ",
        }
    }
}

/// A text file as token sequences.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub file: PathBuf,
    pub tokens: Tokens,
    /// Id -> token; id 0 is [`END_NAME`].
    pub vocabulary: Vec<String>,
    /// The training lines, [`LENGTH`] ids each, padded with [`END`], row-major.
    pub train: Vec<u32>,
    /// The held-out lines, the same way.
    pub held_out: Vec<u32>,
    /// Lines left out for having more than [`LENGTH`] tokens.
    pub too_long: usize,
}

impl Corpus {
    /// Reads `file` and builds its vocabulary and split.
    pub fn load(file: &Path, tokens: Tokens) -> Result<Self, DataError> {
        let bytes = std::fs::read(file).map_err(|e| DataError::Io {
            file: file.to_path_buf(),
            source: e,
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|e| DataError::corrupt(file, format!("not UTF-8 text: {e}")))?;
        let mut lines: Vec<Vec<String>> = Vec::new();
        let mut too_long = 0;
        for line in text.lines() {
            let t = tokens.split(line.trim_end_matches('\r'));
            match t.len() {
                0 => {}
                n if n > LENGTH => too_long += 1,
                _ => lines.push(t),
            }
        }
        if lines.len() < 10 {
            return Err(DataError::corrupt(
                file,
                format!(
                    "needs at least 10 lines of 1 to {LENGTH} tokens, has {} ({too_long} longer)",
                    lines.len()
                ),
            ));
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in lines.iter().flatten() {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut vocabulary = vec![END_NAME.to_string()];
        if by_count.len() + 1 > MAX_VOCAB {
            vocabulary.push(UNKNOWN.to_string());
        }
        let room = MAX_VOCAB - vocabulary.len();
        vocabulary.extend(by_count.iter().take(room).map(|(t, _)| t.to_string()));
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(SPLIT_SEED));
        let held = ((lines.len() as f64 * HELD_OUT).round() as usize).max(1);
        let ids: HashMap<&str, u32> = vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for (k, &i) in order.iter().enumerate() {
            let encoded = encode(&ids, &lines[i]);
            if k < held {
                held_out.extend(encoded);
            } else {
                train.extend(encoded);
            }
        }
        Ok(Self {
            file: file.to_path_buf(),
            tokens,
            vocabulary,
            train,
            held_out,
            too_long,
        })
    }

    /// A stored vocabulary's check: the file still gives the one the run trained with.
    pub fn check_vocabulary(&self, stored: &[String]) -> Result<(), DataError> {
        if self.vocabulary != stored {
            return Err(DataError::corrupt(
                &self.file,
                "its vocabulary is not the one the run trained with (the file changed, or \
                 --tokens differs)",
            ));
        }
        Ok(())
    }
}

/// A line's ids, padded with [`END`] to [`LENGTH`]; a token out of the vocabulary is `<unk>`.
fn encode(ids: &HashMap<&str, u32>, line: &[String]) -> Vec<u32> {
    let unknown = ids.get(UNKNOWN).copied().unwrap_or(END);
    let mut out: Vec<u32> = line
        .iter()
        .map(|t| ids.get(t.as_str()).copied().unwrap_or(unknown))
        .collect();
    out.resize(LENGTH, END);
    out
}

/// How the samples of a model trained on this text read back: the vocabulary, joined by
/// `tokens`' separator, each line ending at [`END`].
pub fn token_spec(vocabulary: &[String], tokens: Tokens) -> TokenSpec {
    TokenSpec {
        length: LENGTH,
        start: super::oracle::START,
        end: Some(END),
        vocabulary: Some(vocabulary.to_vec()),
        separator: tokens.separator().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(text: &str, tokens: Tokens) -> Result<Corpus, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lines.txt");
        std::fs::write(&file, text).unwrap();
        Corpus::load(&file, tokens)
    }

    #[test]
    fn lines_become_padded_ids_and_read_back() {
        let lines: Vec<String> = (0..40).map(|i| format!("ab{}", i % 7)).collect();
        let text = lines.join("\n") + "\n" + &"x".repeat(LENGTH + 1) + "\n\n";
        let c = corpus(&text, Tokens::Char).unwrap();
        assert_eq!(c.too_long, 1);
        assert_eq!(c.vocabulary[0], END_NAME);
        // 'a' and 'b' are in every line: the two most frequent, in string order.
        assert_eq!(&c.vocabulary[1..3], ["a", "b"]);
        assert_eq!((c.train.len() + c.held_out.len()) / LENGTH, 40);
        assert_eq!(c.held_out.len() / LENGTH, 4);
        let first = &c.train[..LENGTH];
        let line = token_spec(&c.vocabulary, Tokens::Char).decode(first);
        assert!(lines.contains(&line), "{line}");
        assert!(first[3..].iter().all(|&t| t == END));
        // The split does not depend on anything but the file.
        assert_eq!(corpus(&text, Tokens::Char).unwrap().held_out, c.held_out);
    }

    #[test]
    fn words_and_bad_files() {
        let text = (0..20)
            .map(|i| format!("the cat {i}\n"))
            .collect::<String>();
        let c = corpus(&text, Tokens::Word).unwrap();
        assert_eq!(&c.vocabulary[1..3], ["cat", "the"]);
        assert!(corpus("a\nb\n", Tokens::Char)
            .unwrap_err()
            .to_string()
            .contains("at least 10 lines"));
        let e = corpus("\u{0}\u{ff}", Tokens::Char).unwrap_err().to_string();
        assert!(e.contains("10 lines"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, [0xffu8, 0xfe, 0x41]).unwrap();
        assert!(Corpus::load(&bad, Tokens::Char)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        assert!(Corpus::load(&dir.path().join("none"), Tokens::Char).is_err());
    }
}
