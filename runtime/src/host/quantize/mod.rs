//! Post-training quantization: ONNX generator -> calibrated int8 `.pgq`.
//!
//! Activations get per-tensor asymmetric int8 ranges measured by running the float model in
//! tract on seeded latents; weights get per-output-channel symmetric int8 scales; BatchNorm is
//! folded first ([`Graph::simplify`]). The report compares the int8 interpreter with tract on
//! fresh latents: SQNR of every layer's output and PSNR of the images. A conditional generator
//! is calibrated and evaluated on classes drawn from the same seeds; its latent and class
//! embedding share one quantization, the range of their concatenation.

pub mod graph;

use crate::engine::runner::{dequantize_out, Int8Runner, Runner, Values};
use crate::engine::EngineError;
use crate::format::{FormatError, Model, Quant, Shape, TensorInfo};
use crate::import::{FloatGraph, InputKind};
use crate::kernels::{Isa, MAX_SHIFT};
use crate::tokens::TokenSpec;
use crate::write::{EncodeError, RequantParams};

/// An activation fused into the matrix op before it (its clamp).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fused {
    None,
    Relu,
}

/// How activation ranges are taken from calibration values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    MinMax,
    /// Clip to this percentile of the values on each side (for example 99.99).
    Percentile(f32),
}

#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// Calibration samples per input.
    pub calib: usize,
    /// Calibration values for inputs that are not latents or classes (images, sequences):
    /// samples of the input's per-sample shape, back to back, cycled as needed.
    pub samples: Vec<f32>,
    pub seed: u64,
    pub calibration: Calibration,
    /// Latents for the SQNR/PSNR report (drawn from `seed + 1`).
    pub eval: usize,
    /// A token cell's sequence length where its metadata names none (a PyTorch export).
    pub length: Option<usize>,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            calib: 256,
            samples: Vec::new(),
            seed: 0,
            calibration: Calibration::MinMax,
            eval: 64,
            length: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
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
    /// A token cell: the mean KL divergence, in nats, of the int8 cell's next-token
    /// distribution from the float cell's, one step from the same token and states (the eval
    /// samples are the steps of sequences the float cell drew).
    pub token_kl: Option<f64>,
}

/// Mean KL(p || q) in nats over rows of logits (`p` the reference's).
fn mean_kl(reference: &[f32], test: &[f32], width: usize) -> f64 {
    let log_softmax = |l: &[f32]| -> Vec<f64> {
        let max = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let total: f64 = l.iter().map(|&v| (v as f64 - max).exp()).sum();
        l.iter().map(|&v| v as f64 - max - total.ln()).collect()
    };
    let rows = reference.len() / width.max(1);
    let total: f64 = reference
        .chunks_exact(width.max(1))
        .zip(test.chunks_exact(width.max(1)))
        .map(|(p, q)| {
            let (p, q) = (log_softmax(p), log_softmax(q));
            p.iter()
                .zip(&q)
                .map(|(a, b)| a.exp() * (a - b))
                .sum::<f64>()
        })
        .sum();
    total / rows.max(1) as f64
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

/// Seeded indices of `n` samples for an index input of `slots` per sample in `0..classes`:
/// [`classes`] for one per sample; for a text's token ids, texts as [`crate::text::encode`]
/// makes them, 1 to `slots` words (ids from 1, 0 being the reserved empty word) filling the
/// slots cyclically.
pub fn indices(seed: u64, n: usize, classes: usize, slots: usize) -> Vec<u32> {
    if slots <= 1 || classes == 0 {
        return self::classes(seed, n, classes);
    }
    let mut rng = crate::latent::Rng::new(seed ^ 0x7465_7874_2069_6473);
    let first = u64::from(classes > 1);
    (0..n)
        .flat_map(|_| {
            let words = 1 + (rng.next_u64() % slots as u64) as usize;
            let known: Vec<u32> = (0..words)
                .map(|_| (first + rng.next_u64() % (classes as u64 - first)) as u32)
                .collect();
            crate::text::fill(&known, slots)
        })
        .collect()
}

/// Asymmetric int8 quantization covering `[lo, hi]` (widened to include 0).
pub fn quant_for_range(lo: f32, hi: f32) -> Quant {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i8;
    Quant { scale, zero_point }
}

pub(crate) fn range(values: &mut [f32], calibration: Calibration) -> (f32, f32) {
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
pub(crate) fn quantize_weights(
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

/// `m_i` as `mult_i * 2^-shift` with one shift for all, the largest multiplier in `[2^30, 2^31)`.
pub(crate) fn shared_multipliers(ms: &[f64]) -> Option<(Vec<i32>, u8)> {
    let top = ms.iter().fold(0f64, |a, m| a.max(m.abs()));
    let (_, shift) = multiplier(top)?;
    let mults = ms
        .iter()
        .map(|m| (m * 2f64.powi(shift as i32)).round() as i64)
        .map(|m| i32::try_from(m).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((mults, shift))
}

/// How a matrix op read only by an instance normalisation writes its output: channel `c` is
/// stored as `(x - centre[c]) / scale[c]` (zero point 0). The normalisation subtracts each
/// channel's mean and divides by its spread, so it is blind to both the centre and the scale
/// (but for its epsilon, which is recorded per channel).
pub(crate) struct ChannelQuant {
    pub scales: Vec<f32>,
    pub centres: Vec<f32>,
}

/// Requantization of a matrix op whose output channel `c` has its own scale and centre (see
/// [`ChannelQuant`]): `(bias[c] - centre[c]) / (s_in w[c])` and `s_in w[c] / scale[c]`.
pub(crate) fn per_channel_requant(
    bias: &[f32],
    w_scales: &[f32],
    input: Quant,
    out: &ChannelQuant,
) -> Option<RequantParams> {
    let mut p = RequantParams {
        bias: Vec::new(),
        mult: Vec::new(),
        shift: Vec::new(),
        zp_out: 0,
        min: -128,
        max: 127,
    };
    for (((b, sw), so), centre) in bias.iter().zip(w_scales).zip(&out.scales).zip(&out.centres) {
        let acc = input.scale as f64 * *sw as f64;
        let bq = ((*b as f64 - *centre as f64) / acc).round();
        if bq.abs() > (1u64 << 29) as f64 {
            return None;
        }
        let (m, s) = multiplier(acc / *so as f64)?;
        p.bias.push(bq as i32);
        p.mult.push(m);
        p.shift.push(s);
    }
    Some(p)
}

/// `m` (of either sign) as `mult * 2^-shift`.
pub(crate) fn signed_multiplier(m: f64) -> Option<(i32, u8)> {
    if m == 0.0 {
        return Some((0, 1));
    }
    let (q, s) = multiplier(m.abs())?;
    Some((if m < 0.0 { -q } else { q }, s))
}

/// One node as its op's quantization sees it (`ops::NAME::quantize`, in the op's own file, next
/// to its int8 definition): where it is, its inputs' int8 tensors, the quantization measured at
/// its output and the ReLU fused into it.
pub(crate) struct NodeCx<'a> {
    pub index: usize,
    pub name: &'a str,
    pub inputs: Vec<TensorInfo>,
    pub output: Quant,
    pub act: Fused,
}

impl NodeCx<'_> {
    pub fn fail(&self, reason: impl Into<String>) -> QuantizeError {
        QuantizeError::Calibration(format!("node {}: {}", self.name, reason.into()))
    }
    /// The first input's quantization (unit for a node that reads only indices).
    pub fn input(&self) -> Quant {
        self.inputs.first().map_or(Quant::UNIT, |t| t.quant)
    }
    pub fn input_shape(&self) -> Shape {
        self.inputs.first().map_or(Shape::Flat(0), |t| t.shape)
    }
    /// A vector is a 1x1 image (pytorch/examples' `[N, nz, 1, 1]` latent).
    pub fn input_hw(&self) -> (usize, usize) {
        match self.input_shape() {
            Shape::Image { h, w, .. } => (h, w),
            Shape::Flat(_) => (1, 1),
        }
    }
    /// The requantization of a matrix op `op` with per-output-channel weight scales `w_scales`,
    /// into its measured output or, read by an instance normalisation, per channel.
    pub fn requant(
        &self,
        op: &'static str,
        bias: &[f32],
        w_scales: &[f32],
        per_channel: Option<&ChannelQuant>,
    ) -> Result<RequantParams, QuantizeError> {
        match per_channel {
            Some(out) => per_channel_requant(bias, w_scales, self.input(), out)
                .ok_or_else(|| self.fail("scales out of range")),
            None => requant_params(
                self.index,
                op,
                bias,
                w_scales,
                self.input(),
                self.output,
                self.act,
            ),
        }
    }
}

pub(crate) fn requant_params(
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

/// Calibration (or evaluation) inputs for every graph input, and the batch they make: `n`
/// samples of seeded latents and classes, images from `options.samples` (cycled), else an error
/// naming the input; a token cell's come from whole sequences ([`token_cell_inputs`]).
fn inputs_for(
    graph: &FloatGraph,
    seed: u64,
    n: usize,
    options: &QuantizeOptions,
) -> Result<(Vec<Vec<f32>>, usize), QuantizeError> {
    if graph.inputs.iter().any(|i| i.kind == InputKind::State) {
        let metadata = graph.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let spec = match (TokenSpec::from_metadata(metadata), options.length) {
            (Err(e), _) => return Err(QuantizeError::Calibration(e.to_string())),
            (Ok(_), Some(length)) => TokenSpec::ids(length),
            (Ok(Some(spec)), None) => spec,
            (Ok(None), None) => {
                return Err(QuantizeError::Calibration(
                    "a token cell is calibrated on its own sequences: give their length (--length), which its metadata does not name".into(),
                ))
            }
        };
        return token_cell_inputs(graph, seed, n, &spec);
    }
    Ok((latent_inputs(graph, seed, n, options)?, n))
}

/// A token cell's inputs over whole sequences: `n` sequences of `spec.length` tokens, each
/// token drawn from the float cell's own softmax, from the start token and the zero state
/// (seeded), with every step's token and states kept. That makes `n * length` rows, so that the
/// states' ranges cover every step of a sequence, from the first (zeros) to the last. The rows
/// are held to [`crate::limits::MAX_CALIB`] (fewer sequences when they are long): a length from
/// a file's metadata must not make calibration hold `calib * 4096` rows of logits.
fn token_cell_inputs(
    graph: &FloatGraph,
    seed: u64,
    n: usize,
    spec: &TokenSpec,
) -> Result<(Vec<Vec<f32>>, usize), QuantizeError> {
    let fail = |why: String| QuantizeError::Calibration(format!("token cell: {why}"));
    let n = n.min(crate::limits::MAX_CALIB / spec.length.max(1)).max(1);
    let token = graph
        .inputs
        .iter()
        .position(|i| matches!(i.kind, InputKind::Class { .. }))
        .ok_or_else(|| fail("no token input".into()))?;
    let states: Vec<usize> = (0..graph.inputs.len())
        .filter(|&k| graph.inputs[k].kind == InputKind::State)
        .collect();
    if graph.outputs.len() != states.len() + 1 {
        return Err(fail(format!(
            "{} outputs for {} states: expected the logits, then each new state",
            graph.outputs.len(),
            states.len()
        )));
    }
    let mut current: Vec<Vec<f32>> = graph
        .inputs
        .iter()
        .map(|i| vec![0.0; n * i.shape.iter().product::<usize>()])
        .collect();
    current[token] = vec![spec.start as f32; n];
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); graph.inputs.len()];
    let mut rng = crate::latent::Rng::new(seed);
    for _ in 0..spec.length {
        for (r, c) in rows.iter_mut().zip(&current) {
            r.extend_from_slice(c);
        }
        let mut out = graph
            .run_ordered(&current, n)
            .map_err(|e| fail(e.to_string()))?;
        let mut take = |o: &String| {
            out.remove(o)
                .ok_or_else(|| fail(format!("{o} not computed")))
        };
        let logits = take(&graph.outputs[0])?;
        let vocabulary = logits.len() / n;
        current[token] = logits
            .chunks_exact(vocabulary.max(1))
            .map(|l| crate::tokens::draw(l, rng.uniform() as f64) as f32)
            .collect();
        for (&s, o) in states.iter().zip(&graph.outputs[1..]) {
            current[s] = take(o)?;
        }
    }
    Ok((rows, n * spec.length))
}

/// [`inputs_for`] a generator of noise (and classes) or of images and sequences.
fn latent_inputs(
    graph: &FloatGraph,
    seed: u64,
    n: usize,
    options: &QuantizeOptions,
) -> Result<Vec<Vec<f32>>, QuantizeError> {
    let noise = crate::latent::Noise::from_metadata(
        graph.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    graph
        .inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let size: usize = i.shape.iter().product();
            // A generator's noise, drawn as its metadata says (TimeGAN's is uniform), unless
            // calibration samples are given for a sequence.
            let sequence_given = i.kind == InputKind::Sequence && !options.samples.is_empty();
            if let (InputKind::Latent | InputKind::Sequence, Some(noise), false) =
                (&i.kind, noise, sequence_given)
            {
                let mut z = vec![0.0; n * size];
                noise.fill(seed.wrapping_add(k as u64 * 7919), &mut z);
                return Ok(z);
            }
            Ok(match i.kind {
                InputKind::Latent => latents(seed.wrapping_add(k as u64 * 7919), n, size),
                InputKind::Class { classes: c } => indices(seed, n, c, size).iter().map(|&c| c as f32).collect(),
                InputKind::State => return Err(QuantizeError::Calibration(format!(
                    "input {}: a state outside a token cell (one token input, logits then new states out)",
                    i.name
                ))),
                InputKind::Image | InputKind::Sequence => {
                    if options.samples.is_empty() || options.samples.len() % size != 0 {
                        return Err(QuantizeError::Calibration(format!(
                            "input {} takes {:?} values per sample: give calibration samples (for images, --calib-images DIR)",
                            i.name, i.shape
                        )));
                    }
                    let have = options.samples.len() / size;
                    let start = (seed as usize % have) * size;
                    (0..n * size).map(|j| options.samples[(start + j) % options.samples.len()]).collect()
                }
            })
        })
        .collect()
}

/// Quantizes an ONNX model (any graph of the supported ops); returns the `.pgq` bytes and the
/// accuracy report: every node's SQNR against the float graph and the outputs' PSNR, on inputs
/// drawn from `seed + 1`.
pub fn quantize(
    onnx: &[u8],
    options: &QuantizeOptions,
) -> Result<(Vec<u8>, QuantizeReport), QuantizeError> {
    let mut graph = FloatGraph::from_onnx_bytes(onnx)?;
    graph.simplify();
    if options.calib == 0 {
        return Err(QuantizeError::Calibration(
            "needs at least one calibration sample".into(),
        ));
    }
    let (calib, calib_n) = inputs_for(&graph, options.seed, options.calib, options)?;
    let q = graph::quantize_graph(&graph, &calib, calib_n, options.calibration)?;
    let report = evaluate(&graph, &q, options)?;
    Ok((q.bytes, report))
}

/// Runs the int8 model and the float graph on fresh inputs and compares them.
fn evaluate(
    graph: &FloatGraph,
    q: &graph::Quantized,
    options: &QuantizeOptions,
) -> Result<QuantizeReport, QuantizeError> {
    let model = Model::parse(&q.bytes)?;
    let (inputs, n) = inputs_for(
        graph,
        options.seed.wrapping_add(1),
        options.eval.max(1),
        options,
    )?;
    let reference = graph
        .run_ordered(&inputs, n)
        .map_err(|e| QuantizeError::Calibration(e.to_string()))?;
    let mut runner = Int8Runner::new(model, Isa::detect());
    let values: Vec<Values> = graph
        .inputs
        .iter()
        .zip(&inputs)
        .map(|(i, v)| match i.kind {
            InputKind::Class { .. } => Values::Index(v.iter().map(|&c| c as u32).collect()),
            _ => Values::F32(v.clone()),
        })
        .collect();
    let mut layers = Vec::new();
    runner.run_observed(&values, n, |i, node, shape, y| {
        let Some((name, relu)) = q.node_tensors.get(i) else {
            return;
        };
        let Some(quant) = q.quants.get(name) else {
            return;
        };
        let sequence = graph.shape_of(name).is_some_and(|s| s.len() == 2);
        let got = dequantize_out(shape, *quant, y, sequence);
        if let Some(want) = reference.get(name) {
            let want: Vec<f32> = want
                .iter()
                .map(|&v| if *relu { v.max(0.0) } else { v })
                .collect();
            layers.push(LayerReport {
                op: node.op.name(),
                tensor: name.clone(),
                shape,
                sqnr_db: sqnr_db(&want, &got),
            });
        }
    })?;
    let outputs = runner.run(&values, n)?;
    let cell = graph.inputs.iter().any(|i| i.kind == InputKind::State);
    let token_kl = match (cell, reference.get(&graph.outputs[0]), outputs.first()) {
        (true, Some(want), Some(Values::F32(got))) => Some(mean_kl(want, got, want.len() / n)),
        _ => None,
    };
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for (o, v) in graph.outputs.iter().zip(outputs) {
        if let (Some(r), Values::F32(y)) = (reference.get(o), v) {
            want.extend_from_slice(r);
            got.extend(y);
        }
    }
    Ok(QuantizeReport {
        layers,
        psnr_db: psnr_db(&want, &got),
        eval_samples: n,
        token_kl,
    })
}
