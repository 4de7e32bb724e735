//! `.pgq` files are untrusted input: any bytes must parse or fail cleanly. Because a checksum
//! stops almost every mutation at the door, the target also re-seals the input with a valid
//! checksum, so the validation behind it (tables, graph, ops, the arena planner) is what gets
//! fuzzed, and runs every model that parses: a model the parser accepts must run without
//! panicking or reading out of bounds, with every kernel family this CPU has giving the same
//! bytes. Class and text inputs take their ids from the input (in range and out of range: the
//! latter must be a clean error).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_runtime::{run_graph, Input, Isa, Model, RunError, TensorKind};

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
    let Ok(model) = Model::parse(&sealed) else {
        return;
    };
    let batch = 2;
    if model.arena_len(batch) > 1 << 26 {
        return; // Valid but too large to run quickly.
    }
    // Inputs: patterned int8 values; two classes from the last bytes, possibly out of range.
    let mut int8 = Vec::new();
    let mut classes = Vec::new();
    let mut in_range = true;
    for t in model.inputs() {
        let info = model.tensor(t).expect("parsed tensor");
        match info.kind {
            TensorKind::Int8 => int8.push(
                (0..batch * info.bytes())
                    .map(|i| (i * 37) as i8)
                    .collect::<Vec<_>>(),
            ),
            TensorKind::Index { classes: k } => {
                // `slots` ids per sample (a text input's), from the last bytes.
                let ids = batch * info.shape.elements();
                let raw: Vec<u32> = (0..ids)
                    .map(|i| data[data.len() - 1 - i % data.len()] as u32 % (k as u32 + 1))
                    .collect();
                in_range &= raw.iter().all(|&c| (c as usize) < k);
                classes.push(raw);
            }
        }
    }
    let (mut a, mut c) = (int8.iter(), classes.iter());
    let inputs: Vec<Input> = model
        .inputs()
        .map(|t| match model.tensor(t).expect("parsed tensor").kind {
            TensorKind::Int8 => Input::Int8(a.next().expect("one per input")),
            TensorKind::Index { .. } => Input::Index(c.next().expect("one per input")),
        })
        .collect();
    let sizes: Vec<usize> = model
        .outputs()
        .map(|t| batch * model.tensor(t).expect("parsed tensor").bytes())
        .collect();
    if sizes.iter().sum::<usize>() > 1 << 22 {
        return;
    }
    let mut arena = vec![0u8; model.arena_len(batch)];
    let run = |isa: Isa, arena: &mut Vec<u8>| {
        let mut outs: Vec<Vec<i8>> = sizes.iter().map(|&n| vec![0i8; n]).collect();
        let mut views: Vec<&mut [i8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        run_graph(
            &model,
            isa,
            batch,
            &inputs,
            arena,
            &mut views,
            |_, _, _, _| {},
        )
        .map(|()| outs)
    };
    let reference = match run(Isa::Scalar, &mut arena) {
        Ok(r) => r,
        Err(RunError::ClassRange { .. }) if !in_range => return,
        Err(e) => panic!("sizes are right: {e}"),
    };
    for isa in Isa::available() {
        let out = run(isa, &mut arena).expect("sizes are right");
        assert_eq!(out, reference, "{}", isa.name());
    }
});
