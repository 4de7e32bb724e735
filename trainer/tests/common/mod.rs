//! Helpers shared by the trainer's end-to-end tests.

use std::path::Path;

/// A run's `metrics.csv`, header included, without its `seconds` column: every value two runs
/// of the same configuration must agree on (as text, so that NaN rows compare equal).
pub fn metrics_without_seconds(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let seconds = text
        .lines()
        .next()
        .and_then(|header| header.split(',').position(|c| c == "seconds"))
        .expect("a header with a seconds column");
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != seconds)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}
