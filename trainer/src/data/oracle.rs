//! SeqGAN's synthetic benchmark (Yu et al. 2017, section "Synthetic Data Experiments"): an oracle
//! LSTM with random weights stands for the real world. It writes the training sequences, and it
//! scores a generator by NLL-oracle, its own mean per-token negative log-likelihood of the
//! generator's samples: a generator that has learnt the oracle's distribution scores low.
//!
//! The oracle, as the authors' `target_lstm.py`: vocabulary 5,000, embedding 32, hidden 32, four
//! separate gates each `x W + h U + b` (input `i`, forget `f`, output `og`, cell `c`), start token
//! 0 fed as the first input, sequences of 20 tokens; the logits are `h Wo + bo`, sampled through
//! the softmax (a multinomial draw). Every weight is N(0, 1), drawn from a seed.
//!
//! [`Lstm`] is that cell in plain Rust, for any sizes: the oracle, and the generator's copies that
//! draw samples and rollouts (the generator trains in Burn, `model::seqgan`, with the same
//! equations).

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use super::DataError;

/// The benchmark's vocabulary, embedding, hidden size and sequence length (the paper's).
pub const VOCAB: usize = 5000;
pub const EMBED: usize = 32;
pub const HIDDEN: usize = 32;
pub const LENGTH: usize = 20;
/// The token fed as the first input.
pub const START: u32 = 0;
/// Training sequences the oracle writes, and samples NLL-oracle scores (the paper's 10,000).
pub const SEQUENCES: usize = 10_000;
/// The seed of the built-in oracle's weights (the authors' `tf.set_random_seed(66)`) and of its
/// training sequences: the benchmark is the same for every run.
pub const ORACLE_SEED: u64 = 66;
const DATA_SEED: u64 = 0x5E9_DA7A;

/// The oracle of `--data oracle`, `oracle:V` (a random oracle of vocabulary V, e.g. 50 for tests)
/// or `oracle:DIR` (the weights in `DIR/*.npy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OracleSource {
    Random { vocab: usize },
    Dir(PathBuf),
}

impl OracleSource {
    /// `rest` is what follows `oracle:` (`None` for plain `oracle`).
    pub fn parse(rest: Option<&str>) -> Option<Self> {
        match rest {
            None => Some(Self::Random { vocab: VOCAB }),
            Some("") => None,
            Some(r) if r.bytes().all(|b| b.is_ascii_digit()) => r
                .parse()
                .ok()
                .filter(|&v| v >= 2)
                .map(|vocab| Self::Random { vocab }),
            Some(dir) => Some(Self::Dir(dir.into())),
        }
    }

    /// The oracle itself: drawn, or read from its folder.
    pub fn oracle(&self) -> Result<Lstm, DataError> {
        match self {
            Self::Random { vocab } => Ok(Lstm::random(*vocab, EMBED, HIDDEN, 1.0, ORACLE_SEED)),
            Self::Dir(dir) => load_dir(dir),
        }
    }
}

impl std::fmt::Display for OracleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Random { vocab } if *vocab == VOCAB => f.write_str("oracle"),
            Self::Random { vocab } => write!(f, "oracle:{vocab}"),
            Self::Dir(d) => write!(f, "oracle:{}", d.display()),
        }
    }
}

/// The oracle's training sequences: [`SEQUENCES`] of [`LENGTH`] tokens, row-major.
pub fn training_sequences(oracle: &Lstm) -> Vec<u32> {
    oracle.sample(SEQUENCES, LENGTH, DATA_SEED)
}

/// An LSTM language model in plain Rust: embedding `[V, E]`, gates `x W + h U + b` with W
/// `[E, 4H]`, U `[H, 4H]`, b `[4H]`, the four gates side by side in the order input, forget,
/// output, cell; logits `h Wo + bo`, Wo `[H, V]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lstm {
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub embedding: Vec<f32>,
    pub w: Vec<f32>,
    pub u: Vec<f32>,
    pub b: Vec<f32>,
    pub wo: Vec<f32>,
    pub bo: Vec<f32>,
}

/// One sequence's recurrent state and scratch space.
struct State {
    h: Vec<f32>,
    c: Vec<f32>,
    gates: Vec<f32>,
    logits: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A pure function of (seed, stream) for per-sequence random generators.
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

impl Lstm {
    /// Every weight N(0, std^2), from `seed`, in the order embedding, W, U, b, Wo, bo.
    pub fn random(vocab: usize, embed: usize, hidden: usize, std: f32, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| std * Distribution::<f32>::sample(&StandardNormal, &mut rng))
                .collect()
        };
        Self {
            vocab,
            embed,
            hidden,
            embedding: draw(vocab * embed),
            w: draw(embed * 4 * hidden),
            u: draw(hidden * 4 * hidden),
            b: draw(4 * hidden),
            wo: draw(hidden * vocab),
            bo: draw(vocab),
        }
    }

    fn state(&self) -> State {
        State {
            h: vec![0.0; self.hidden],
            c: vec![0.0; self.hidden],
            gates: vec![0.0; 4 * self.hidden],
            logits: vec![0.0; self.vocab],
        }
    }

    /// Feed `token`: the state moves one step and `s.logits` holds the next token's logits.
    fn step(&self, token: u32, s: &mut State) {
        let (e, h4, hd) = (self.embed, 4 * self.hidden, self.hidden);
        s.gates.copy_from_slice(&self.b);
        let x = &self.embedding[token as usize * e..(token as usize + 1) * e];
        for (k, &xk) in x.iter().enumerate() {
            for (g, &w) in s.gates.iter_mut().zip(&self.w[k * h4..(k + 1) * h4]) {
                *g += xk * w;
            }
        }
        for (k, &hk) in s.h.iter().enumerate() {
            for (g, &u) in s.gates.iter_mut().zip(&self.u[k * h4..(k + 1) * h4]) {
                *g += hk * u;
            }
        }
        for j in 0..hd {
            let i = sigmoid(s.gates[j]);
            let f = sigmoid(s.gates[hd + j]);
            let o = sigmoid(s.gates[2 * hd + j]);
            let cc = s.gates[3 * hd + j].tanh();
            s.c[j] = f * s.c[j] + i * cc;
            s.h[j] = o * s.c[j].tanh();
        }
        s.logits.copy_from_slice(&self.bo);
        let v = self.vocab;
        for (k, &hk) in s.h.iter().enumerate() {
            for (l, &w) in s.logits.iter_mut().zip(&self.wo[k * v..(k + 1) * v]) {
                *l += hk * w;
            }
        }
    }

    /// Draw a token from the softmax of `logits`.
    fn draw(logits: &[f32], rng: &mut impl Rng) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let mut u = rng.random::<f32>() * total;
        for (i, l) in logits.iter().enumerate() {
            u -= (l - max).exp();
            if u <= 0.0 {
                return i as u32;
            }
        }
        // Rounding left a sliver past the last token: the largest one.
        logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |a, (i, &l)| {
                    if l > a.1 {
                        (i, l)
                    } else {
                        a
                    }
                },
            )
            .0 as u32
    }

    /// `out.len()` tokens: `prefix` (given) then sampled ones, drawn from `rng`.
    pub fn complete(&self, prefix: &[u32], out: &mut [u32], rng: &mut impl Rng) {
        let mut s = self.state();
        let mut input = START;
        for t in 0..out.len() {
            self.step(input, &mut s);
            input = match prefix.get(t) {
                Some(&tok) => tok,
                None => Self::draw(&s.logits, rng),
            };
            out[t] = input;
        }
    }

    /// `n` sequences of `len` tokens, row-major; sequence `i` draws from its own generator seeded
    /// by `(seed, i)`, so the result does not depend on the number of threads.
    pub fn sample(&self, n: usize, len: usize, seed: u64) -> Vec<u32> {
        let mut out = vec![0u32; n * len];
        out.par_chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(i, seq)| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(stream_seed(seed, i as u64));
                self.complete(&[], seq, &mut rng);
            });
        out
    }

    /// The log-probability of each token of each sequence (`seqs` row-major, `len` per row).
    pub fn token_log_probs(&self, seqs: &[u32], len: usize) -> Vec<f64> {
        let mut out = vec![0f64; seqs.len()];
        out.par_chunks_mut(len.max(1))
            .zip(seqs.par_chunks(len.max(1)))
            .for_each(|(lp, seq)| {
                let mut s = self.state();
                let mut input = START;
                for (t, &tok) in seq.iter().enumerate() {
                    self.step(input, &mut s);
                    let max = s.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let lse = s
                        .logits
                        .iter()
                        .map(|&l| ((l - max) as f64).exp())
                        .sum::<f64>()
                        .ln()
                        + max as f64;
                    lp[t] = s.logits[tok as usize] as f64 - lse;
                    input = tok;
                }
            });
        out
    }

    /// The mean per-token negative log-likelihood of `seqs` (nats): with the oracle as `self`
    /// and a generator's samples as `seqs`, NLL-oracle.
    pub fn nll(&self, seqs: &[u32], len: usize) -> f64 {
        let lp = self.token_log_probs(seqs, len);
        -lp.iter().sum::<f64>() / lp.len().max(1) as f64
    }
}

/// The weight files of `oracle:DIR`, in the authors' pickle order, with their shapes as
/// functions of (vocabulary, embedding, hidden); the embedding fixes the vocabulary.
const FILES: [&str; 15] = [
    "embedding",
    "Wi",
    "Ui",
    "bi",
    "Wf",
    "Uf",
    "bf",
    "Wog",
    "Uog",
    "bog",
    "Wc",
    "Uc",
    "bc",
    "Wo",
    "bo",
];

/// An oracle of the benchmark's shape (embedding and hidden 32) from `DIR/{embedding, Wi, Ui, bi,
/// Wf, Uf, bf, Wog, Uog, bog, Wc, Uc, bc, Wo, bo}.npy`, float32; the vocabulary is the
/// embedding's first dimension.
pub fn load_dir(dir: &Path) -> Result<Lstm, DataError> {
    let mut arrays = Vec::new();
    for name in FILES {
        let file = dir.join(format!("{name}.npy"));
        let bytes = std::fs::read(&file).map_err(|e| DataError::Io {
            file: file.clone(),
            source: e,
        })?;
        let (shape, values) = read_npy(&bytes).map_err(|r| DataError::corrupt(&file, r))?;
        arrays.push((file, shape, values));
    }
    let vocab = match arrays[0].1.as_slice() {
        [v, EMBED] if *v >= 2 => *v,
        other => {
            return Err(DataError::corrupt(
                &arrays[0].0,
                format!("the embedding must be [vocabulary, {EMBED}], not {other:?}"),
            ))
        }
    };
    let (e, h) = (EMBED, HIDDEN);
    for (k, (file, shape, _)) in arrays.iter().enumerate() {
        let want: Vec<usize> = match FILES[k] {
            "embedding" => vec![vocab, e],
            "Wo" => vec![h, vocab],
            "bo" => vec![vocab],
            n if n.starts_with('W') => vec![e, h],
            n if n.starts_with('U') => vec![h, h],
            _ => vec![h],
        };
        if *shape != want {
            return Err(DataError::corrupt(
                file,
                format!("{} must have shape {want:?}, not {shape:?}", FILES[k]),
            ));
        }
    }
    let get = |name: &str| {
        let k = FILES.iter().position(|f| *f == name).expect("a known file");
        &arrays[k].2
    };
    // Gates side by side in the order input, forget, output, cell.
    let side_by_side = |names: [&str; 4], rows: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * 4 * h);
        for r in 0..rows {
            for n in names {
                out.extend_from_slice(&get(n)[r * h..(r + 1) * h]);
            }
        }
        out
    };
    Ok(Lstm {
        vocab,
        embed: e,
        hidden: h,
        embedding: get("embedding").clone(),
        w: side_by_side(["Wi", "Wf", "Wog", "Wc"], e),
        u: side_by_side(["Ui", "Uf", "Uog", "Uc"], h),
        b: side_by_side(["bi", "bf", "bog", "bc"], 1),
        wo: get("Wo").clone(),
        bo: get("bo").clone(),
    })
}

/// A NumPy `.npy` file of little-endian float32 in C order: its shape and values.
pub fn read_npy(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let magic = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != magic {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text .npy header")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("the .npy header has no '{key}'"))?;
        let rest = &header[at + key.len() + 2..];
        Ok(rest.trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    if !descr.starts_with("'<f4'") {
        let d = descr.split(',').next().unwrap_or(descr);
        return Err(format!(
            "values must be little-endian float32 ('<f4'), not {d}"
        ));
    }
    if !field("fortran_order")?.starts_with("False") {
        return Err("values must be in C order (fortran_order False)".into());
    }
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("unreadable shape in the .npy header")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad dimension `{s}`")))
        .collect::<Result<_, _>>()?;
    let data = &bytes[start + len..];
    let n: usize = shape.iter().product();
    if data.len() != n * 4 {
        return Err(format!(
            "shape {shape:?} needs {} bytes of values, the file has {}",
            n * 4,
            data.len()
        ));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, values))
}

/// `values` as a `.npy` file of the given shape (float32, C order).
pub fn write_npy(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write an oracle's weights as the authors' separate files, from our side-by-side layout.
    fn write_dir(dir: &Path, o: &Lstm) {
        let h = o.hidden;
        let gate = |m: &[f32], rows: usize, g: usize| -> Vec<f32> {
            (0..rows)
                .flat_map(|r| m[r * 4 * h + g * h..r * 4 * h + (g + 1) * h].to_vec())
                .collect()
        };
        let mut files: Vec<(String, Vec<usize>, Vec<f32>)> = vec![(
            "embedding".into(),
            vec![o.vocab, o.embed],
            o.embedding.clone(),
        )];
        for (g, name) in ["i", "f", "og", "c"].iter().enumerate() {
            files.push((format!("W{name}"), vec![o.embed, h], gate(&o.w, o.embed, g)));
            files.push((format!("U{name}"), vec![h, h], gate(&o.u, h, g)));
            files.push((format!("b{name}"), vec![h], gate(&o.b, 1, g)));
        }
        files.push(("Wo".into(), vec![h, o.vocab], o.wo.clone()));
        files.push(("bo".into(), vec![o.vocab], o.bo.clone()));
        for (name, shape, values) in files {
            std::fs::write(dir.join(format!("{name}.npy")), write_npy(&shape, &values)).unwrap();
        }
    }

    /// An oracle written as .npy files loads back as the same network; wrong shapes, dtypes and
    /// missing files are errors naming the file and what was expected.
    #[test]
    fn oracle_dir_round_trips_and_rejects_wrong_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let o = Lstm::random(40, EMBED, HIDDEN, 1.0, 3);
        write_dir(dir.path(), &o);
        let src = OracleSource::parse(Some(dir.path().to_str().unwrap())).unwrap();
        assert_eq!(src.oracle().unwrap(), o);

        // Wo transposed.
        std::fs::write(dir.path().join("Wo.npy"), write_npy(&[40, HIDDEN], &o.wo)).unwrap();
        let e = src.oracle().unwrap_err().to_string();
        assert!(
            e.contains("Wo.npy") && e.contains("[32, 40]") && e.contains("[40, 32]"),
            "{e}"
        );
        write_dir(dir.path(), &o);
        // A gate of the wrong size.
        std::fs::write(
            dir.path().join("Uog.npy"),
            write_npy(&[32, 31], &vec![0.0; 32 * 31]),
        )
        .unwrap();
        let e = src.oracle().unwrap_err().to_string();
        assert!(e.contains("Uog.npy") && e.contains("[32, 32]"), "{e}");
        // float64.
        let mut f8 = write_npy(&[HIDDEN], &o.b[..HIDDEN]);
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'8';
        std::fs::write(
            dir.path().join("Uog.npy"),
            write_npy(&[32, 32], &vec![0.0; 1024]),
        )
        .unwrap();
        std::fs::write(dir.path().join("bi.npy"), f8).unwrap();
        let e = src.oracle().unwrap_err().to_string();
        assert!(e.contains("bi.npy") && e.contains("float32"), "{e}");
        // Truncated values, and a missing file.
        let mut short = write_npy(&[HIDDEN], &o.b[..HIDDEN]);
        short.truncate(short.len() - 4);
        std::fs::write(dir.path().join("bi.npy"), short).unwrap();
        let e = src.oracle().unwrap_err().to_string();
        assert!(e.contains("bi.npy") && e.contains("needs 128 bytes"), "{e}");
        std::fs::remove_file(dir.path().join("bi.npy")).unwrap();
        let e = src.oracle().unwrap_err().to_string();
        assert!(e.contains("bi.npy"), "{e}");
        // The embedding decides the vocabulary; it must be [V, 32].
        write_dir(dir.path(), &o);
        std::fs::write(
            dir.path().join("embedding.npy"),
            write_npy(&[40, 16], &o.embedding[..640]),
        )
        .unwrap();
        let e = src.oracle().unwrap_err().to_string();
        assert!(
            e.contains("embedding.npy") && e.contains("[vocabulary, 32]"),
            "{e}"
        );
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            OracleSource::parse(None),
            Some(OracleSource::Random { vocab: VOCAB })
        );
        assert_eq!(
            OracleSource::parse(Some("50")),
            Some(OracleSource::Random { vocab: 50 })
        );
        assert_eq!(OracleSource::parse(Some("1")), None);
        assert_eq!(OracleSource::parse(Some("")), None);
        assert_eq!(
            OracleSource::parse(Some("o/x")),
            Some(OracleSource::Dir("o/x".into()))
        );
        assert_eq!(OracleSource::Random { vocab: 50 }.to_string(), "oracle:50");
    }

    /// The sampler draws from the softmax the scorer scores: on a small oracle, the mean NLL of
    /// its own samples is the entropy rate, below the NLL of uniform sequences and of another
    /// oracle's samples; and the empirical frequency of the first token matches its probability.
    #[test]
    fn sampler_and_scorer_agree() {
        let o = Lstm::random(6, 8, 8, 1.0, 1);
        let n = 40_000;
        let seqs = o.sample(n, 4, 9);
        assert_eq!(seqs, o.sample(n, 4, 9));
        let own = o.nll(&seqs, 4);
        let other = Lstm::random(6, 8, 8, 1.0, 2).sample(n, 4, 9);
        assert!(own < o.nll(&other, 4), "{own}");
        assert!(own < (6f64).ln());
        // First-token frequencies against the softmax of the first step.
        let lp = o.token_log_probs(&(0..6).flat_map(|t| [t, 0, 0, 0]).collect::<Vec<_>>(), 4);
        for t in 0..6u32 {
            let p = lp[t as usize * 4].exp();
            let freq = seqs.chunks(4).filter(|s| s[0] == t).count() as f64 / n as f64;
            assert!((freq - p).abs() < 0.01, "token {t}: {freq} vs {p}");
        }
    }
}
