//! A TimeGAN user's `csv:FILE`: any text must become windows of numbers in [0, 1] or a clean error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_trainer::data::series;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((values, columns)) = series::csv_windows(text, std::path::Path::new("fuzz.csv")) {
        assert!(columns > 0);
        assert_eq!(values.len() % (series::LENGTH * columns), 0);
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "scaled outside [0, 1]");
    }
});
