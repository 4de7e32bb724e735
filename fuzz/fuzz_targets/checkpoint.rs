//! Checkpoint files are read back from disk: any bytes must parse or fail cleanly, and what parses
//! must write back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_trainer::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(ckpt) = Checkpoint::from_bytes(data, std::path::Path::new("fuzz.ckpt")) {
        let again = Checkpoint::from_bytes(&ckpt.to_bytes(), std::path::Path::new("again.ckpt")).expect("round trip");
        assert_eq!(again, ckpt);
    }
});
