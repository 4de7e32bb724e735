//! IDX image and label files come from users' folders: any bytes must parse or fail cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_trainer::data::idx;

fuzz_target!(|data: &[u8]| {
    let file = std::path::Path::new("fuzz.idx");
    if let Ok(images) = idx::parse_images(data, file) {
        assert_eq!(images.pixels.len(), images.count * images.rows * images.cols);
    }
    if let Ok(labels) = idx::parse_labels(data, file) {
        assert!(labels.len() <= data.len());
    }
});
