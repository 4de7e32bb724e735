//! `.npy` latents are untrusted input: any bytes must parse or fail cleanly, and what parses must
//! encode back to an equal array.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_runtime::npy;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = npy::parse(data) {
        let again = npy::parse(&npy::encode(&a.shape, &a.data)).expect("round trip");
        assert_eq!(again.shape, a.shape);
        assert_eq!(again.data.len(), a.data.len());
    }
});
