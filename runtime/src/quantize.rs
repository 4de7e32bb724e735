//! Post-training quantization: ONNX generator -> calibrated int8 `.pgq`.
//!
//! Activations get per-tensor asymmetric int8 ranges measured by running the float model in
//! tract on seeded latents; weights get per-output-channel symmetric int8 scales; BatchNorm is
//! folded first ([`Graph::simplify`]). The report compares the int8 interpreter with tract on
//! fresh latents: SQNR of every layer's output and PSNR of the images. A conditional generator
//! is calibrated and evaluated on classes drawn from the same seeds; its latent and class
//! embedding share one quantization, the range of their concatenation.

use crate::engine::{dequantize_nchw, EngineError, TractEngine};
use crate::format::{FormatError, Model, Quant, Shape};
use crate::graph::{FloatOp, Fused, Graph, ImportError};
use crate::interp::run_conditional_observed;
use crate::kernels::{Isa, MAX_SHIFT};
use crate::write::{encode, EncodeError, QuantModel, QuantOp, RequantParams};

/// How activation ranges are taken from calibration values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    MinMax,
    /// Clip to this percentile of the values on each side (for example 99.99).
    Percentile(f32),
}

#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// Calibration latents.
    pub calib: usize,
    pub seed: u64,
    pub calibration: Calibration,
    /// Latents for the SQNR/PSNR report (drawn from `seed + 1`).
    pub eval: usize,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            calib: 256,
            seed: 0,
            calibration: Calibration::MinMax,
            eval: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("calibration: {0}")]
    Calibration(String),
    #[error("layer {layer} ({op}): {reason}")]
    Layer {
        layer: usize,
        op: &'static str,
        reason: String,
    },
}

/// Per-layer quantization error.
#[derive(Debug, Clone)]
pub struct LayerReport {
    pub op: &'static str,
    pub tensor: String,
    pub shape: Shape,
    /// Signal-to-quantization-noise ratio of the layer's output against the float model, in dB.
    pub sqnr_db: f64,
}

#[derive(Debug, Clone)]
pub struct QuantizeReport {
    pub layers: Vec<LayerReport>,
    /// PSNR of the int8 images against the float images (peak-to-peak 2: pixels in [-1, 1]).
    pub psnr_db: f64,
    pub eval_samples: usize,
}

/// Seeded standard-normal latents `[n, latent]`, the same draws as the firmware's
/// (see [`crate::latent`]).
pub fn latents(seed: u64, n: usize, latent: usize) -> Vec<f32> {
    let mut z = vec![0.0; n * latent];
    crate::latent::fill_normal(seed, &mut z);
    z
}

/// Seeded classes in `0..classes`, one per sample (none for an unconditional model), drawn
/// apart from [`latents`] of the same seed.
pub fn classes(seed: u64, n: usize, classes: usize) -> Vec<u32> {
    if classes == 0 {
        return Vec::new();
    }
    let mut rng = crate::latent::Rng::new(seed ^ 0x636c_6173_7365_7321);
    (0..n)
        .map(|_| (rng.next_u64() % classes as u64) as u32)
        .collect()
}

/// Asymmetric int8 quantization covering `[lo, hi]` (widened to include 0).
pub fn quant_for_range(lo: f32, hi: f32) -> Quant {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i8;
    Quant { scale, zero_point }
}

fn range(values: &mut [f32], calibration: Calibration) -> (f32, f32) {
    match calibration {
        Calibration::MinMax => values
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v))),
        Calibration::Percentile(p) => {
            values.sort_unstable_by(f32::total_cmp);
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
            let p = (p as f64 / 100.0).clamp(0.5, 1.0);
            (at(1.0 - p), at(p))
        }
    }
}

/// `m = mult * 2^-shift` with `mult` in `[2^30, 2^31)` (or smaller when `m` is tiny).
pub fn multiplier(m: f64) -> Option<(i32, u8)> {
    if !(m.is_finite() && m > 0.0) {
        return None;
    }
    let mut exp = m.log2().floor() as i32 + 1;
    let mut frac = m / 2f64.powi(exp);
    while frac >= 1.0 {
        frac /= 2.0;
        exp += 1;
    }
    while frac < 0.5 {
        frac *= 2.0;
        exp -= 1;
    }
    let mut q = (frac * 2f64.powi(31)).round() as i64;
    if q == 1 << 31 {
        q /= 2;
        exp += 1;
    }
    let mut shift = 31 - exp;
    if shift < 1 {
        return None;
    }
    if shift > MAX_SHIFT as i32 {
        q >>= (shift - MAX_SHIFT as i32).min(62);
        shift = MAX_SHIFT as i32;
    }
    Some((q.max(1) as i32, shift as u8))
}

/// Per-output-channel symmetric weights: `w_q[c] = round(w / s[c])`, `s[c] = max|w_c| / 127`.
/// `channel(i)` gives the output channel of flat weight index `i`.
fn quantize_weights(
    w: &[f32],
    channels: usize,
    channel: impl Fn(usize) -> usize,
) -> (Vec<i8>, Vec<f32>) {
    let mut max = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        max[channel(i)] = max[channel(i)].max(v.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

fn requant_params(
    layer: usize,
    op: &'static str,
    bias: &[f32],
    w_scales: &[f32],
    input: Quant,
    output: Quant,
    act: Fused,
) -> Result<RequantParams, QuantizeError> {
    let fail = |reason: String| QuantizeError::Layer { layer, op, reason };
    let mut p = RequantParams {
        bias: Vec::with_capacity(bias.len()),
        mult: Vec::new(),
        shift: Vec::new(),
        zp_out: output.zero_point,
        min: if act == Fused::Relu {
            output.zero_point
        } else {
            -128
        },
        max: 127,
    };
    for (b, sw) in bias.iter().zip(w_scales) {
        let acc_scale = input.scale as f64 * *sw as f64;
        let bq = (*b as f64 / acc_scale).round();
        if bq.abs() > (1u64 << 29) as f64 {
            return Err(fail(format!(
                "bias {b} is too large for its scale {acc_scale:e}"
            )));
        }
        p.bias.push(bq as i32);
        let (m, s) = multiplier(acc_scale / output.scale as f64).ok_or_else(|| {
            fail(format!(
                "requantization scale {} is out of range",
                acc_scale / output.scale as f64
            ))
        })?;
        p.mult.push(m);
        p.shift.push(s);
    }
    Ok(p)
}

/// Lookup table of an elementwise function between two quantizations.
fn lut(op: &FloatOp, input: Quant, output: Quant) -> [u8; 256] {
    let mut table = [0u8; 256];
    for q in -128i32..=127 {
        let y = op
            .activate(input.dequantize(q as i8))
            .expect("elementwise op");
        table[q as u8 as usize] = output.quantize(y) as u8;
    }
    table
}

/// Quantizes an ONNX generator; returns the `.pgq` bytes and the accuracy report.
pub fn quantize(
    onnx: &[u8],
    options: &QuantizeOptions,
) -> Result<(Vec<u8>, QuantizeReport), QuantizeError> {
    let mut graph = Graph::from_onnx_bytes(onnx)?;
    graph.simplify()?;
    let latent = graph.latent;
    let image = graph.output_shape();
    let tensors: Vec<String> = graph.layers.iter().map(|l| l.tensor.clone()).collect();
    let mut tract = TractEngine::new(onnx, latent, image).with_outputs(tensors.clone());

    // Calibrate: collect every layer's float outputs over the calibration latents.
    if options.calib == 0 {
        return Err(QuantizeError::Calibration(
            "needs at least one calibration latent".into(),
        ));
    }
    let z = latents(options.seed, options.calib, latent);
    let labels = classes(options.seed, options.calib, graph.classes);
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); tensors.len()];
    const CHUNK: usize = 64;
    for (i, chunk) in z.chunks(CHUNK * latent).enumerate() {
        let n = chunk.len() / latent;
        let labels = labels.get(i * CHUNK..i * CHUNK + n).unwrap_or_default();
        let outs = tract.run_outputs(chunk, labels, n)?;
        for (v, o) in values.iter_mut().zip(outs) {
            if o.iter().any(|x| !x.is_finite()) {
                return Err(QuantizeError::Calibration(
                    "the float model produced NaN or infinity".into(),
                ));
            }
            v.extend(o);
        }
    }
    // A class embedding is copied next to the latent: both take the concatenation's range.
    let (lo, hi) = match graph.layers.first().map(|l| &l.op) {
        Some(FloatOp::Embed { .. }) => range(&mut values[0].clone(), options.calibration),
        _ => range(&mut z.clone(), options.calibration),
    };
    let input_quant = quant_for_range(lo, hi);

    let mut ops = Vec::new();
    let mut quants = Vec::new();
    let mut q = input_quant;
    for (i, (layer, vals)) in graph.layers.iter().zip(values.iter_mut()).enumerate() {
        let name = layer.op.name();
        let zp_in = q.zero_point;
        let (lo, hi) = range(vals, options.calibration);
        let out_q = quant_for_range(lo, hi);
        let op = match &layer.op {
            FloatOp::Linear {
                k,
                n,
                weights,
                bias,
                act,
            } => {
                let (weights, ws) = quantize_weights(weights, *n, |j| j % n);
                let requant = requant_params(i, name, bias, &ws, q, out_q, *act)?;
                q = out_q;
                QuantOp::Linear {
                    k: *k,
                    n: *n,
                    zp_in,
                    requant,
                    weights,
                }
            }
            FloatOp::Conv2d {
                geometry,
                weights,
                bias,
                act,
            } => {
                let per_out = geometry.cin * geometry.kh * geometry.kw;
                let (weights, ws) = quantize_weights(weights, geometry.cout, |j| j / per_out);
                let requant = requant_params(i, name, bias, &ws, q, out_q, *act)?;
                q = out_q;
                QuantOp::Conv2d {
                    geometry: *geometry,
                    zp_in,
                    requant,
                    weights,
                }
            }
            FloatOp::ConvTranspose2d {
                geometry,
                weights,
                bias,
                act,
            } => {
                let taps = geometry.kh * geometry.kw;
                let (weights, ws) =
                    quantize_weights(weights, geometry.cout, |j| (j / taps) % geometry.cout);
                let requant = requant_params(i, name, bias, &ws, q, out_q, *act)?;
                q = out_q;
                QuantOp::ConvTranspose2d {
                    geometry: *geometry,
                    zp_in,
                    requant,
                    weights,
                }
            }
            FloatOp::Relu | FloatOp::LeakyRelu { .. } | FloatOp::Tanh | FloatOp::Sigmoid => {
                let table = lut(&layer.op, q, out_q);
                q = out_q;
                QuantOp::Lut { table }
            }
            FloatOp::Reshape { c, h, w } => QuantOp::Reshape {
                c: *c,
                h: *h,
                w: *w,
            },
            FloatOp::Flatten { c, h, w } => QuantOp::Flatten {
                c: *c,
                h: *h,
                w: *w,
            },
            FloatOp::Upsample { c, h, w, factor } => QuantOp::Upsample {
                c: *c,
                h: *h,
                w: *w,
                factor: *factor,
            },
            FloatOp::Embed {
                classes,
                dim,
                table,
            } => QuantOp::Embed {
                classes: *classes,
                dim: *dim,
                table: table.iter().map(|&v| q.quantize(v)).collect(),
            },
            FloatOp::BatchNorm { .. } => unreachable!("simplify folds or rejects every BatchNorm"),
        };
        ops.push(op);
        quants.push(q);
    }
    // The ONNX names of the graph's inputs and outputs, in the model's order, so that `run`
    // takes the same names on every engine.
    let mut metadata: std::collections::BTreeMap<String, String> =
        graph.metadata.iter().cloned().collect();
    let inputs: Vec<&str> = std::iter::once(graph.input.as_str())
        .chain(graph.class_input.as_deref())
        .collect();
    metadata.insert("pocketgan.inputs".into(), inputs.join(","));
    if let Some(last) = graph.layers.last() {
        metadata.insert("pocketgan.outputs".into(), last.tensor.clone());
    }
    let metadata = serde_json::to_string(&metadata).expect("string map serializes");
    let qmodel = QuantModel {
        latent,
        output: image,
        input_quant,
        output_quant: q,
        metadata,
        ops,
        quants: quants.clone(),
    };
    let bytes = encode(&qmodel)?;
    let report = evaluate(&bytes, &graph, &quants, &mut tract, options)?;
    Ok((bytes, report))
}

fn sqnr_db(reference: &[f32], test: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&v| (v as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// PSNR of images in `[-1, 1]` (peak-to-peak 2).
pub fn psnr_db(reference: &[f32], test: &[f32]) -> f64 {
    let mse: f64 = reference
        .iter()
        .zip(test)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / reference.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (4.0 / mse).log10()
    }
}

/// NHWC image values to CHW order (flat values stay as they are).
fn to_chw(shape: Shape, q: &[i8], quant: impl Fn(i8) -> f32) -> Vec<f32> {
    match shape {
        Shape::Flat(_) => q.iter().map(|&v| quant(v)).collect(),
        Shape::Image { c, h, w } => {
            let mut out = vec![0.0; q.len()];
            for (src, dst) in q
                .chunks_exact(c * h * w)
                .zip(out.chunks_exact_mut(c * h * w))
            {
                for p in 0..h * w {
                    for ch in 0..c {
                        dst[ch * h * w + p] = quant(src[p * c + ch]);
                    }
                }
            }
            out
        }
    }
}

/// Compares the int8 model with tract on fresh latents.
fn evaluate(
    bytes: &[u8],
    graph: &Graph,
    quants: &[Quant],
    tract: &mut TractEngine,
    options: &QuantizeOptions,
) -> Result<QuantizeReport, QuantizeError> {
    let model = Model::parse(bytes)?;
    let n = options.eval.max(1);
    let z = latents(options.seed.wrapping_add(1), n, graph.latent);
    let labels = classes(options.seed.wrapping_add(1), n, graph.classes);
    let reference = tract.run_outputs(&z, &labels, n)?;
    let input: Vec<i8> = z.iter().map(|&v| model.input_quant.quantize(v)).collect();
    let mut arena = vec![0u8; model.arena_len(n)];
    let mut out = vec![0i8; n * model.output.elements()];
    let mut layers = Vec::new();
    run_conditional_observed(
        &model,
        Isa::detect(),
        n,
        &input,
        &labels,
        &mut arena,
        &mut out,
        |i, op, shape, y| {
            let got = to_chw(shape, y, |v| quants[i].dequantize(v));
            layers.push(LayerReport {
                op: op.name(),
                tensor: graph.layers[i].tensor.clone(),
                shape,
                sqnr_db: sqnr_db(&reference[i], &got),
            });
        },
    )
    .map_err(EngineError::from)?;
    let images = dequantize_nchw(&model, &out);
    let float_images = reference.last().expect("at least one layer");
    Ok(QuantizeReport {
        layers,
        psnr_db: psnr_db(float_images, &images),
        eval_samples: n,
    })
}
