//! `.pgq` files are untrusted input: any bytes must parse or fail cleanly. Because a checksum
//! stops almost every mutation at the door, the target also re-seals the input with a valid
//! checksum, so the validation behind it is what gets fuzzed, and runs every model that parses:
//! a model the parser accepts must run without panicking or reading out of bounds, with every
//! kernel family this CPU has giving the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_runtime::{run, Isa, Model};

fuzz_target!(|data: &[u8]| {
    let _ = Model::parse(data);
    if data.len() < 16 {
        return;
    }
    let mut sealed = data.to_vec();
    let len = sealed.len() as u32;
    sealed[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&sealed[16..]);
    sealed[12..16].copy_from_slice(&crc.to_le_bytes());
    let Ok(model) = Model::parse(&sealed) else { return };
    if model.arena_len(2) > 1 << 26 || model.output.elements() > 1 << 20 {
        return; // Valid but too large to run quickly.
    }
    let input: Vec<i8> = (0..2 * model.latent).map(|i| (i * 37) as i8).collect();
    let mut arena = vec![0u8; model.arena_len(2)];
    let mut reference = vec![0i8; 2 * model.output.elements()];
    run(&model, Isa::Scalar, 2, &input, &mut arena, &mut reference).expect("sizes are right");
    for isa in Isa::available() {
        let mut out = vec![0i8; reference.len()];
        run(&model, isa, 2, &input, &mut arena, &mut out).expect("sizes are right");
        assert_eq!(out, reference, "{}", isa.name());
    }
});
