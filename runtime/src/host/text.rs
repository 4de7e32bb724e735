//! Text prompts as token ids: the one tokenizer shared by the trainer (captions of the training
//! images) and by `pocketgan generate --text` (a user's prompt), so both read a text the same way.
//!
//! **Words**: the text lowercased and cut at every character that is not a letter or a digit
//! (`"Red_Apple!"` reads `red`, `apple`).
//!
//! **Ids**: a text model's vocabulary (metadata [`VOCABULARY_KEY`], a JSON array of words in id
//! order) gives each word its id; id 0 is reserved (the empty word) and never a word's. Words the
//! vocabulary lacks are skipped, and reported.
//!
//! **A fixed number of slots** ([`LENGTH_KEY`]): the model reads `length` ids per text, and its
//! text encoder averages their embeddings. The known words fill the slots cyclically (`red apple`
//! in 4 slots: `red apple red apple`), so that the encoder's fixed-width average is the average
//! of the words whatever their number (exactly when it divides the slots, within one word's
//! weight otherwise); past `length` words, the first `length` are kept.

use thiserror::Error;

/// Metadata key: the words of a text model's vocabulary in id order (a JSON array; entry 0 is
/// the reserved empty word).
pub const VOCABULARY_KEY: &str = "pocketgan.text_vocabulary";
/// Metadata key: token slots per text.
pub const LENGTH_KEY: &str = "pocketgan.text_length";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TextError {
    #[error("no word of {text:?} is in the model's vocabulary ({size} words; e.g. {examples})")]
    NoKnownWord {
        text: String,
        size: usize,
        examples: String,
    },
    #[error("the model's text length is 0")]
    NoSlots,
    #[error("the model's metadata: {0}")]
    Metadata(String),
}

/// How a text model reads its prompts: its vocabulary and slots, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSpec {
    /// Words in id order; entry 0 is the reserved empty word.
    pub vocabulary: Vec<String>,
    /// Token slots per text.
    pub length: usize,
}

impl TextSpec {
    /// The spec a model's metadata gives; `Ok(None)` if it names no vocabulary (not a text
    /// model), an error if it names one badly or no length.
    pub fn from_metadata<'m>(
        pairs: impl IntoIterator<Item = (&'m str, &'m str)>,
    ) -> Result<Option<TextSpec>, TextError> {
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let bad = |key: &str, why: &str| TextError::Metadata(format!("{key}: {why}"));
        let Some(vocabulary) = get(VOCABULARY_KEY) else {
            return Ok(None);
        };
        let vocabulary: Vec<String> = serde_json::from_str(vocabulary)
            .map_err(|_| bad(VOCABULARY_KEY, "not a JSON array of strings"))?;
        if vocabulary.len() < 2 {
            return Err(bad(VOCABULARY_KEY, "no word after the reserved entry 0"));
        }
        let length: usize = get(LENGTH_KEY)
            .ok_or_else(|| bad(LENGTH_KEY, "missing beside the vocabulary"))?
            .parse()
            .map_err(|_| bad(LENGTH_KEY, "not a number"))?;
        if length == 0 || length > crate::format::MAX_DIM {
            return Err(bad(LENGTH_KEY, "out of range"));
        }
        Ok(Some(TextSpec { vocabulary, length }))
    }

    /// The spec of a model file ([`crate::sample::model_metadata`]): `Ok(None)` for a model
    /// that reads no text.
    pub fn of_model(bytes: &[u8]) -> Result<Option<TextSpec>, TextError> {
        let metadata = crate::sample::model_metadata(bytes);
        Self::from_metadata(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// A prompt as [`TextSpec::length`] token ids, and the words skipped (see [`encode`]).
    pub fn encode(&self, text: &str) -> Result<(Vec<u32>, Vec<String>), TextError> {
        let ids = index(&self.vocabulary);
        encode(text, self.length, &self.vocabulary, |w| ids.get(w).copied())
    }
}

/// The words of `text`, in order: lowercase runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A text as `length` token ids, and the words that were skipped because the vocabulary lacks
/// them. `id_of` maps a word to its id (never 0).
pub fn encode(
    text: &str,
    length: usize,
    vocabulary: &[String],
    id_of: impl Fn(&str) -> Option<u32>,
) -> Result<(Vec<u32>, Vec<String>), TextError> {
    if length == 0 {
        return Err(TextError::NoSlots);
    }
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for w in words(text) {
        match id_of(&w).filter(|&id| id != 0) {
            Some(id) => known.push(id),
            None => unknown.push(w),
        }
    }
    if known.is_empty() {
        let examples = suggestions(&unknown, vocabulary);
        return Err(TextError::NoKnownWord {
            text: text.to_string(),
            size: vocabulary.len().saturating_sub(1),
            examples: examples.join(", "),
        });
    }
    Ok((fill(&known, length), unknown))
}

/// `length` slots from word ids `known` (not empty): the first `length` of them, repeated
/// cyclically to fill every slot.
pub fn fill(known: &[u32], length: usize) -> Vec<u32> {
    let kept = &known[..known.len().min(length)];
    (0..length)
        .map(|i| kept.get(i % kept.len().max(1)).copied().unwrap_or(0))
        .collect()
}

/// Up to 8 vocabulary words to show for the `unknown` words of a prompt: those sharing the
/// longest beginning (at least 3 letters) with one of them (`apples` -> `apple`), else the first
/// words that start with a letter.
fn suggestions<'v>(unknown: &[String], vocabulary: &'v [String]) -> Vec<&'v str> {
    const SHOWN: usize = 8;
    let common = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let mut scored: Vec<(usize, &str)> = vocabulary
        .iter()
        .skip(1)
        .filter_map(|v| {
            let best = unknown.iter().map(|u| common(u, v)).max().unwrap_or(0);
            (best >= 3).then_some((best, v.as_str()))
        })
        .collect();
    // Longest shared beginning first, then the vocabulary's own order.
    scored.sort_by(|a, b| b.0.cmp(&a.0));
    let mut shown: Vec<&str> = scored.into_iter().take(SHOWN).map(|(_, v)| v).collect();
    if shown.is_empty() {
        shown = vocabulary
            .iter()
            .skip(1)
            .filter(|v| v.chars().next().is_some_and(char::is_alphabetic))
            .take(SHOWN)
            .map(String::as_str)
            .collect();
    }
    shown
}

/// A vocabulary's word -> id map (entry 0, the reserved empty word, is not a word).
pub fn index(vocabulary: &[String]) -> std::collections::HashMap<&str, u32> {
    vocabulary
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, w)| (w.as_str(), i as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vec<String> {
        ["", "red", "apple", "face"].map(String::from).to_vec()
    }

    fn ids(text: &str, length: usize) -> Result<(Vec<u32>, Vec<String>), TextError> {
        let v = vocab();
        let map = index(&v);
        encode(text, length, &v, |w| map.get(w).copied())
    }

    #[test]
    fn words_are_lowercase_alphanumeric_runs() {
        assert_eq!(words("Red_Apple! :D x2"), ["red", "apple", "d", "x2"]);
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn known_words_fill_the_slots_cyclically() {
        assert_eq!(ids("red apple", 4).unwrap().0, [1, 2, 1, 2]);
        assert_eq!(ids("red apple", 3).unwrap().0, [1, 2, 1]);
        assert_eq!(ids("face red apple", 2).unwrap().0, [3, 1]);
        let (got, skipped) = ids("green apple", 2).unwrap();
        assert_eq!((got, skipped), (vec![2, 2], vec!["green".to_string()]));
    }

    #[test]
    fn a_spec_comes_from_the_metadata() {
        let vocabulary = serde_json::to_string(&vocab()).unwrap();
        let spec =
            TextSpec::from_metadata([(VOCABULARY_KEY, vocabulary.as_str()), (LENGTH_KEY, "3")])
                .unwrap()
                .unwrap();
        assert_eq!(spec.encode("Apple, red!").unwrap().0, [2, 1, 2]);
        assert_eq!(TextSpec::from_metadata([(LENGTH_KEY, "3")]).unwrap(), None);
        for bad in [
            vec![(VOCABULARY_KEY, vocabulary.as_str())],
            vec![(VOCABULARY_KEY, vocabulary.as_str()), (LENGTH_KEY, "0")],
            vec![(VOCABULARY_KEY, "[1, 2]"), (LENGTH_KEY, "3")],
            vec![(VOCABULARY_KEY, "[\"\"]"), (LENGTH_KEY, "3")],
        ] {
            assert!(matches!(
                TextSpec::from_metadata(bad),
                Err(TextError::Metadata(_))
            ));
        }
    }

    #[test]
    fn an_unknown_word_is_shown_its_closest_words() {
        let v: Vec<String> = ["", "0", "12", "apple", "applause", "red", "face"]
            .map(String::from)
            .to_vec();
        let map = index(&v);
        let err = encode("apples", 4, &v, |w| map.get(w).copied()).unwrap_err();
        let TextError::NoKnownWord { examples, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(examples, "apple, applause");
        // Nothing alike: the first words that are words, not numbers.
        let err = encode("xyzzy", 4, &v, |w| map.get(w).copied()).unwrap_err();
        assert!(
            err.to_string().contains("e.g. apple, applause, red, face"),
            "{err}"
        );
    }

    #[test]
    fn a_text_without_known_words_is_refused() {
        let err = ids("green pear", 4).unwrap_err();
        assert!(err.to_string().contains("red, apple, face"), "{err}");
        assert_eq!(ids("red", 0).unwrap_err(), TextError::NoSlots);
    }
}
