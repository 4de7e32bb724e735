//! ONNX files are untrusted input: any bytes must import into a float graph or fail with an
//! error, and a graph that imports must run one sample (zero inputs, class 0) and go through the
//! quantizer without a panic. A token cell's metadata must read or fail cleanly, and a cell must
//! sample (`pocketgan sample` on tract) or fail cleanly.
//! tract sits under the importer; its panics are caught at the importer's boundary and become
//! [`ImportError::Panic`](pocketgan_runtime::import::ImportError), so this target replaces
//! libFuzzer's abort-on-panic hook: a panic caught by the library is an error like any other,
//! and one that escapes still reaches libFuzzer as a crash (it aborts on an unwound input).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pocketgan_runtime::import::{FloatGraph, InputKind};
use pocketgan_runtime::quantize::{quantize, QuantizeOptions};

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    token_cell(data);
    let Ok(graph) = FloatGraph::from_onnx_bytes(data) else {
        return;
    };
    // The importer bounds every tensor per sample; still, keep runs quick.
    let values: usize = graph
        .nodes
        .iter()
        .map(|n| n.shape.iter().product::<usize>())
        .sum();
    if values > 1 << 22 {
        return;
    }
    let inputs: Vec<(String, Vec<f32>)> = graph
        .inputs
        .iter()
        .map(|i| {
            let n = match i.kind {
                InputKind::Class { .. } => 1,
                _ => i.shape.iter().product(),
            };
            (i.name.clone(), vec![0.0; n])
        })
        .collect();
    let named: Vec<(&str, &[f32])> = inputs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let _ = graph.run(&named, 1);
    // The quantizer behind `pocketgan quantize`, calibrated on two samples (zeros for an image
    // or sequence input).
    let per: usize = graph
        .inputs
        .iter()
        .filter(|i| matches!(i.kind, InputKind::Image | InputKind::Sequence))
        .map(|i| i.shape.iter().product::<usize>())
        .sum();
    let options = QuantizeOptions {
        calib: 2,
        samples: vec![0.0; 2 * per],
        ..Default::default()
    };
    let _ = quantize(data, &options);
});

/// `pocketgan sample` on a token cell: its metadata, then two short sequences on tract.
fn token_cell(data: &[u8]) {
    use pocketgan_runtime::engine::runner::TractRunner;
    use pocketgan_runtime::tokens::{model_tokens, sample_tokens, TokenSpec};
    let Ok(Some(spec)) = model_tokens(data) else {
        return;
    };
    let spec = TokenSpec {
        length: spec.length.min(4),
        ..spec
    };
    if let Ok(mut cell) = TractRunner::new(data) {
        if let Ok(tokens) = sample_tokens(&mut cell, &spec, 2, 0) {
            let _ = tokens.chunks(spec.length).map(|s| spec.decode(s)).count();
        }
    }
}
