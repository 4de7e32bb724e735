//! `.pgq` files are untrusted input: any bytes must parse or fail cleanly. Because a checksum
//! stops almost every mutation at the door, the target also re-seals the input with a valid
//! checksum, so the validation behind it is what gets fuzzed, and runs every model that parses:
//! a model the parser accepts must run without panicking or reading out of bounds, with every
//! kernel family this CPU has giving the same bytes. Conditional models run with classes taken
//! from the input (in range and out of range: the latter must be a clean error).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_runtime::{run_conditional, Isa, Model, RunError};

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
    // Two classes from the last bytes of the input, one value past the range allowed.
    let k = model.classes() as u32;
    let raw = [0, 1].map(|i| data[data.len() - 1 - i] as u32 % (k + 1));
    let classes: &[u32] = if model.is_conditional() { &raw } else { &[] };
    let in_range = classes.iter().all(|&c| (c as usize) < model.classes());
    match run_conditional(&model, Isa::Scalar, 2, &input, classes, &mut arena, &mut reference) {
        Ok(()) => {}
        Err(RunError::ClassRange { .. }) if !in_range => return,
        Err(e) => panic!("sizes are right: {e}"),
    }
    for isa in Isa::available() {
        let mut out = vec![0i8; reference.len()];
        run_conditional(&model, isa, 2, &input, classes, &mut arena, &mut out)
            .expect("sizes are right");
        assert_eq!(out, reference, "{}", isa.name());
    }
});
