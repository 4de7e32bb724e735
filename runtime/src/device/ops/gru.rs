//! `Gru`: one GRU layer over a sequence, ONNX's `GRU` with `linear_before_reset = 1` (PyTorch's
//! arithmetic), one direction, the state starting at zero.
//!
//! A sequence of `T` steps of `F` features is stored as the image `[c = F, h = T, w = 1]`: in
//! NHWC its bytes are the `[T][F]` rows, step after step. For each step, with `x` the input row
//! and `h` the state,
//!
//! ```text
//! z = sigmoid(Wz x + bz + Rz h + b'z)      r = sigmoid(Wr x + br + Rr h + b'r)
//! n = tanh(Wn x + bn + r * (Rn h + b'n))  h = (1 - z) n + z h
//! ```
//!
//! Precision (the definition every ISA runs, so all give the same bytes): the two products are
//! exact i32 sums on the kernels (`x` and `h` int8, the weights int8 per gate row); each is
//! rescaled per row by a fixed-point multiplier to a pre-activation in 12 fractional bits, the
//! biases added there. Sigmoid and tanh are tables of 257 values in 15 fractional bits over
//! `[-8, 8]`, linearly interpolated (error below 4e-4; they are [`SIGMOID`] and [`TANH`], built at
//! compile time). **The state is carried in 15 fractional bits** (an i32 per unit), so the
//! recurrence `h = n + z (h - n)` does not round to int8 at every step and drift over the
//! sequence; only what the next products read, and the op's output, is int8: the output row of
//! step `t` (scale `s_out`, zero point 0) is exactly the `h` that step `t + 1` multiplies by `R`.
//!
//! Body: `input u16, hidden u16, steps u16, zp_in i8, reserved u8, out_mult i32, out_shift u8,
//! 3 reserved`, then per gate row `j` of `3 hidden` (ONNX's order z, r, n):
//! `x_mult i32, h_mult i32, x_bias i32, h_bias i32, x_shift u8, h_shift u8, 2 reserved`, then
//! the packed `[input x 3 hidden]` W and the packed `[hidden x 3 hidden]` R.

use super::add::{round_shift, saturate};
use super::gemm::read_weights;
use super::{expect_shape, expect_zero_point, int8_inputs, nz, part, part_mut, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo};
use crate::interp::RunError;
use crate::kernels::{gemm_i32, PackedWeights, MAX_SHIFT};
#[cfg(any(feature = "std", test))]
use crate::write::put_packed;
// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::{NodeCx, QuantizeError};
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{floats, Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

/// Largest hidden size and input width (the op's buffers are stack arrays: the core has no
/// heap). A microcontroller build (no `std`) takes small GRUs only (TimeGAN's default hidden 24
/// fits) and runs one sample at a time, so that the op's frames stay under 3 KB, which the
/// micro:bit's 16 KB of RAM can spare; a larger model is refused when it is parsed.
#[cfg(feature = "std")]
pub const MAX_HIDDEN: usize = 256;
#[cfg(feature = "std")]
pub const MAX_INPUT: usize = 4096;
#[cfg(not(feature = "std"))]
pub const MAX_HIDDEN: usize = 32;
#[cfg(not(feature = "std"))]
pub const MAX_INPUT: usize = 64;
/// Longest sequence.
pub const MAX_STEPS: usize = 4096;
/// Samples run in lockstep (their rows multiplied together).
pub const LANES: usize = if cfg!(feature = "std") { 8 } else { 1 };
/// Fractional bits of the pre-activations.
pub const PRE_BITS: u8 = 12;
/// Fractional bits of the gates and the state.
pub const STATE_BITS: u8 = 15;
/// Gate rows decoded before the steps: all of them on a host; none on a microcontroller, which
/// decodes each where it is used (2 KB of stack saved for a few percent more instructions).
const DECODED_ROWS: usize = if cfg!(feature = "std") { 3 * MAX_HIDDEN } else { 0 };
/// Bytes per gate row in the body.
const ROW_LEN: usize = 20;

/// `f(x) * 2^15` rounded, for `x = -8 + i / 16`, `i` in `0..=256`.
const fn table(tanh: bool) -> [i16; 257] {
    let mut t = [0i16; 257];
    let mut i = 0;
    while i < 257 {
        let x = -8.0 + i as f64 / 16.0;
        let v = if tanh {
            // tanh x = 1 - 2 / (e^{2x} + 1)
            1.0 - 2.0 / (exp(2.0 * x) + 1.0)
        } else {
            1.0 / (1.0 + exp(-x))
        };
        let q = v * 32768.0;
        let q = if q >= 0.0 { q + 0.5 } else { q - 0.5 };
        let q = if q > 32767.0 { 32767.0 } else if q < -32767.0 { -32767.0 } else { q };
        t[i] = q as i16;
        i += 1;
    }
    t
}

/// `e^x` for `|x| <= 16` at compile time: `x = k ln 2 + r`, `|r| <= ln 2 / 2`, the series of
/// `e^r` to 24 terms (below 1e-17 relative), times `2^k`.
const fn exp(x: f64) -> f64 {
    const LN2: f64 = core::f64::consts::LN_2;
    let kf = x / LN2;
    let k = if kf >= 0.0 { (kf + 0.5) as i32 } else { (kf - 0.5) as i32 };
    let r = x - k as f64 * LN2;
    let (mut sum, mut term, mut n) = (1.0, 1.0, 1);
    while n < 24 {
        term = term * r / n as f64;
        sum += term;
        n += 1;
    }
    let mut p = 1.0;
    let mut j = 0;
    while j < k.unsigned_abs() {
        p *= 2.0;
        j += 1;
    }
    if k >= 0 {
        sum * p
    } else {
        sum / p
    }
}

/// `sigmoid(-8 + i / 16) * 2^15`.
pub static SIGMOID: [i16; 257] = table(false);
/// `tanh(-8 + i / 16) * 2^15`.
pub static TANH: [i16; 257] = table(true);

/// `f(v / 2^12) * 2^15` from a table over `[-8, 8]`, linear between its points.
#[inline]
pub fn lookup(table: &[i16; 257], v: i32) -> i32 {
    let u = (v.clamp(-8 << PRE_BITS, (8 << PRE_BITS) - 1) + (8 << PRE_BITS)) as u32;
    let (i, frac) = ((u >> 8) as usize, (u & 255) as i32);
    let (a, b) = match (table.get(i), table.get(i + 1)) {
        (Some(&a), Some(&b)) => (a as i32, b as i32),
        _ => return 0,
    };
    a + (((b - a) * frac + 128) >> 8)
}

/// One gate row's rescaling: `pre = round((acc * mult) / 2^shift) + bias` in 12 fractional bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GateRow {
    pub x_mult: i32,
    pub h_mult: i32,
    pub x_bias: i32,
    pub h_bias: i32,
    pub x_shift: u8,
    pub h_shift: u8,
}

/// A quantized GRU layer, as the quantizer builds it: `w` `[input][3 hidden]` and `r`
/// `[hidden][3 hidden]` row-major.
#[cfg(any(feature = "std", test))]
#[derive(Clone, Debug, PartialEq)]
pub struct GruParams {
    pub input: usize,
    pub hidden: usize,
    pub steps: usize,
    pub zp_in: i8,
    pub out_mult: i32,
    pub out_shift: u8,
    pub rows: Vec<GateRow>,
    pub w: Vec<i8>,
    pub r: Vec<i8>,
}

#[cfg(any(feature = "std", test))]
impl GruParams {
    /// The body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [self.input, self.hidden, self.steps] {
            b.extend_from_slice(&(v as u16).to_le_bytes());
        }
        b.extend_from_slice(&[self.zp_in as u8, 0]);
        b.extend_from_slice(&self.out_mult.to_le_bytes());
        b.extend_from_slice(&[self.out_shift, 0, 0, 0]);
        for g in &self.rows {
            for v in [g.x_mult, g.h_mult, g.x_bias, g.h_bias] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&[g.x_shift, g.h_shift, 0, 0]);
        }
        let n = 3 * self.hidden;
        put_packed(&mut b, self.input, n, |k, j| self.w[k * n + j]);
        put_packed(&mut b, self.hidden, n, |k, j| self.r[k * n + j]);
        b
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Gru<'a> {
    pub input: usize,
    pub hidden: usize,
    pub steps: usize,
    pub zp_in: i8,
    /// `h * 2^-15 / s_out = h * out_mult * 2^-out_shift`.
    pub out_mult: i32,
    pub out_shift: u8,
    rows: &'a [u8],
    /// `[input x 3 hidden]`.
    pub w: PackedWeights<'a>,
    /// `[hidden x 3 hidden]`.
    pub r: PackedWeights<'a>,
}

impl<'a> Gru<'a> {
    pub fn row(&self, j: usize) -> GateRow {
        let b: &[u8; ROW_LEN] = self
            .rows
            .get(j * ROW_LEN..)
            .and_then(|s| s.first_chunk())
            .unwrap_or(&[0; ROW_LEN]);
        let i32_at = |k: usize| i32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
        GateRow {
            x_mult: i32_at(0),
            h_mult: i32_at(4),
            x_bias: i32_at(8),
            h_bias: i32_at(12),
            x_shift: b[16],
            h_shift: b[17],
        }
    }

    /// Up to [`LANES`] samples in lockstep: `x` their `[steps][input]` rows, `y` their
    /// `[steps][hidden]` rows; `rows` the decoded gate rows, or none to decode each where it is
    /// used (a microcontroller build: its stack has no room for them). Each step's two products take the
    /// samples' rows together (one weight pass for all of them); the arithmetic per sample is
    /// the same whatever the samples beside it.
    fn lanes(&self, cx: &Cx, rows: &[GateRow], x: &[i8], y: &mut [i8]) -> Result<(), RunError> {
        let (i_len, h_len) = (nz(self.input), nz(self.hidden));
        let (xs, ys) = (nz(self.steps * i_len), nz(self.steps * h_len));
        let lanes = (x.len() / xs).min(LANES);
        let n = 3 * h_len;
        let mut xg = [0i8; LANES * MAX_INPUT];
        let mut hg = [0i8; LANES * MAX_HIDDEN];
        let mut gx = [0i32; LANES * 3 * MAX_HIDDEN];
        let mut gh = [0i32; LANES * 3 * MAX_HIDDEN];
        let mut state = [0i32; LANES * MAX_HIDDEN];
        let xg = part_mut(&mut xg, ..lanes * i_len, "a GRU's input rows")?;
        let hg = part_mut(&mut hg, ..lanes * h_len, "a GRU's state rows")?;
        let gx = part_mut(&mut gx, ..lanes * n, "a GRU's gates")?;
        let gh = part_mut(&mut gh, ..lanes * n, "a GRU's gates")?;
        let state = part_mut(&mut state, ..lanes * h_len, "a GRU's state")?;
        for t in 0..self.steps {
            // Step t's input rows, and (after the first step) the outputs of step t - 1.
            gather(xg, x, xs, t * i_len, i_len)?;
            gemm_i32(cx.isa, xg, i_len, lanes, self.zp_in, self.w, gx).map_err(tiles)?;
            if t == 0 {
                gh.fill(0);
            } else {
                gather(hg, y, ys, (t - 1) * h_len, h_len)?;
                gemm_i32(cx.isa, hg, h_len, lanes, 0, self.r, gh).map_err(tiles)?;
            }
            let lanes_of = gx.chunks_exact_mut(n).zip(gh.chunks_exact_mut(n));
            for (l, ((gx, gh), h)) in lanes_of.zip(state.chunks_exact_mut(h_len)).enumerate() {
                for (j, (gx, gh)) in gx.iter_mut().zip(gh.iter_mut()).enumerate() {
                    let g = rows.get(j).copied().unwrap_or_else(|| self.row(j));
                    *gx = pre_activation(*gx, g.x_mult, g.x_shift, g.x_bias);
                    *gh = pre_activation(*gh, g.h_mult, g.h_shift, g.h_bias);
                }
                let at = l * ys + t * h_len;
                let yt = part_mut(y, at..at + h_len, "a GRU's output row")?;
                self.step(gx, gh, h, yt)?;
            }
        }
        Ok(())
    }

    /// One sample's step from its pre-activations: the gates, the new state `h` (15 fractional
    /// bits) and its int8 output row.
    #[inline]
    fn step(&self, gx: &[i32], gh: &[i32], h: &mut [i32], out: &mut [i8]) -> Result<(), RunError> {
        let h_len = h.len();
        let ([xz, xr, xn], [hz, hr, hn]) = (thirds(gx, h_len)?, thirds(gh, h_len)?);
        let gates = xz.iter().zip(hz).zip(xr.iter().zip(hr)).zip(xn.iter().zip(hn));
        for (((z, r), n), (h, out)) in gates.zip(h.iter_mut().zip(out)) {
            let z = lookup(&SIGMOID, z.0.saturating_add(*z.1));
            let r = lookup(&SIGMOID, r.0.saturating_add(*r.1));
            let rn = round_shift(r as i64 * *n.1 as i64, STATE_BITS);
            let nn = lookup(&TANH, clamp32(*n.0 as i64 + rn));
            *h = nn + round_shift(z as i64 * (*h - nn) as i64, STATE_BITS) as i32;
            let q = round_shift(*h as i64 * self.out_mult as i64, self.out_shift);
            *out = saturate(q, 0, -127, 127);
        }
        Ok(())
    }
}

/// Copies into each `len`-value row of `dst` (one per lane) that lane's row at offset `at` of
/// its sample, samples `stride` apart in `src`.
fn gather(dst: &mut [i8], src: &[i8], stride: usize, at: usize, len: usize) -> Result<(), RunError> {
    for (l, row) in dst.chunks_exact_mut(nz(len)).enumerate() {
        let from = l * stride + at;
        super::copy(row, part(src, from..from + len, "a GRU's row")?, "a GRU's row")?;
    }
    Ok(())
}

/// A GEMM's buffers did not fit its shape: the parser's checks should make this impossible.
fn tiles(_: crate::kernels::TileError) -> RunError {
    RunError::Internal("a GRU's product")
}

/// The gate blocks z, r, n of `h` values each.
fn thirds(v: &[i32], h: usize) -> Result<[&[i32]; 3], RunError> {
    let bad = || RunError::Internal("a GRU's gates");
    let (a, rest) = v.split_at_checked(h).ok_or_else(bad)?;
    let (b, c) = rest.split_at_checked(h).ok_or_else(bad)?;
    Ok([a, b, c])
}

/// An i64 saturated to i32.
#[inline]
fn clamp32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// A product's sum rescaled to 12 fractional bits, its bias added.
#[inline]
fn pre_activation(acc: i32, mult: i32, shift: u8, bias: i32) -> i32 {
    clamp32(round_shift(acc as i64 * mult as i64, shift) + bias as i64)
}

impl<'a> OpKind<'a> for Gru<'a> {
    const NAME: &'static str = "Gru";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, index: usize) -> Result<Self, FormatError> {
        let bad = |reason| FormatError::Op { index, reason };
        let input = b.u16("input size")? as usize;
        let hidden = b.u16("hidden size")? as usize;
        let steps = b.u16("steps")? as usize;
        let zp_in = b.i8("input zero point")?;
        b.u8("reserved")?;
        let out_mult = b.u32("output multiplier")? as i32;
        let out_shift = b.u8("output shift")?;
        b.take(3, "reserved")?;
        if !(1..=MAX_INPUT).contains(&input)
            || !(1..=MAX_HIDDEN).contains(&hidden)
            || !(1..=MAX_STEPS).contains(&steps)
        {
            return Err(bad("GRU sizes out of range"));
        }
        if !(1..=MAX_SHIFT).contains(&out_shift) {
            return Err(bad("shift out of range"));
        }
        let rows = b.take(3 * hidden * ROW_LEN, "gate rows")?;
        let w = read_weights(b, input, 3 * hidden, index)?;
        let r = read_weights(b, hidden, 3 * hidden, index)?;
        let op = Gru { input, hidden, steps, zp_in, out_mult, out_shift, rows, w, r };
        if b.validate
            && (0..3 * hidden).any(|j| {
                let g = op.row(j);
                !(1..=MAX_SHIFT).contains(&g.x_shift) || !(1..=MAX_SHIFT).contains(&g.h_shift)
            })
        {
            return Err(bad("shift out of range"));
        }
        Ok(op)
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        expect_shape(
            Shape::Image { c: self.input, h: self.steps, w: 1 },
            inputs[0].shape,
            index,
        )?;
        expect_zero_point(self.zp_in, &inputs[0], index)?;
        Ok(Shape::Image { c: self.hidden, h: self.steps, w: 1 })
    }

    fn macs(&self) -> usize {
        self.steps * 3 * self.hidden * (self.input + self.hidden)
    }

    fn params(&self) -> usize {
        3 * self.hidden * (self.input + self.hidden + 2)
    }

    fn run(&self, cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        let x = x.first().ok_or(RunError::Internal("a GRU's input"))?;
        let (xs, ys) = (nz(self.steps * self.input), nz(self.steps * self.hidden));
        if x.len() / xs != y.len() / ys {
            return Err(RunError::Internal("a GRU's batch"));
        }
        // The gate rows decoded once per batch, not at every step, where there is room for them.
        let mut rows = [GateRow::default(); DECODED_ROWS];
        let rows = rows.get_mut(..3 * nz(self.hidden)).unwrap_or_default();
        for (j, g) in rows.iter_mut().enumerate() {
            *g = self.row(j);
        }
        for (x, y) in x.chunks(LANES * xs).zip(y.chunks_mut(LANES * ys)) {
            self.lanes(cx, rows, x, y)?;
        }
        Ok(())
    }
}

/// A GRU layer (ONNX layouts, see [`FloatOp::Gru`]) on input `x`, its output `h` measured
/// (`values`) to choose the output's symmetric scale, which is also the scale at which the next
/// step's state-side product reads it (see [`crate::ops::gru`] for the arithmetic).
#[cfg(feature = "std")]
#[allow(clippy::too_many_arguments)]
fn quantize_gru(
    input: usize,
    hidden: usize,
    steps: usize,
    w: &[f32],
    r: &[f32],
    b: &[f32],
    x: crate::format::Quant,
    values: Option<&Vec<f32>>,
) -> Result<(GruParams, crate::format::Quant), String> {
    use crate::quantize::{multiplier, quantize_weights};
    let top = values
        .map(|v| v.iter().fold(0f32, |m, x| m.max(x.abs())))
        .ok_or("its output was not measured")?;
    // The state is within (-1, 1); a state that never moved still needs a scale.
    let s_out = (top.clamp(1.0 / 128.0, 1.0) / 127.0) as f64;
    let n = 3 * hidden;
    let (wq, ws) = quantize_weights(w, n, |i| i / input);
    let (rq, rs) = quantize_weights(r, n, |i| i / hidden);
    let pre = (1u64 << PRE_BITS) as f64;
    let rows = (0..n)
        .map(|j| {
            let (x_mult, x_shift) = multiplier(x.scale as f64 * ws[j] as f64 * pre)
                .ok_or_else(|| format!("gate row {j}: input scale out of range"))?;
            let (h_mult, h_shift) = multiplier(s_out * rs[j] as f64 * pre)
                .ok_or_else(|| format!("gate row {j}: state scale out of range"))?;
            let bias = |v: f32| {
                let q = (v as f64 * pre).round();
                if q.abs() < (1u64 << 30) as f64 {
                    Ok(q as i32)
                } else {
                    Err(format!("gate row {j}: bias {v} out of range"))
                }
            };
            Ok(GateRow {
                x_mult,
                h_mult,
                x_bias: bias(b[j])?,
                h_bias: bias(b[n + j])?,
                x_shift,
                h_shift,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (out_mult, out_shift) = multiplier(1.0 / (s_out * (1u64 << STATE_BITS) as f64))
        .ok_or("output scale out of range")?;
    // `[3 hidden][in]` to the kernels' `[in][3 hidden]`.
    let transpose = |m: &[i8], k: usize| (0..m.len()).map(|i| m[(i % n) * k + i / n]).collect();
    let params = GruParams {
        input,
        hidden,
        steps,
        zp_in: x.zero_point,
        out_mult,
        out_shift,
        rows,
        w: transpose(&wq, input),
        r: transpose(&rq, hidden),
    };
    Ok((
        params,
        crate::format::Quant {
            scale: s_out as f32,
            zero_point: 0,
        },
    ))
}

/// A float `Gru` over a sequence in int8 (see [`quantize_gru`]); the output's quantization is
/// the op's own (symmetric, the state's).
#[cfg(feature = "std")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize(
    cx: &NodeCx,
    input: usize,
    hidden: usize,
    w: &[f32],
    r: &[f32],
    b: &[f32],
    values: Option<&Vec<f32>>,
) -> Result<(QuantOp, crate::format::Quant), QuantizeError> {
    let Shape::Image { h: steps, .. } = cx.input_shape() else {
        return Err(cx.fail("a GRU takes a sequence"));
    };
    let (params, q) = quantize_gru(input, hidden, steps, w, r, b, cx.input(), values)
        .map_err(|e| cx.fail(e))?;
    Ok((QuantOp::Gru(params), q))
}

/// ONNX `GRU` (one direction, `linear_before_reset = 1`, standard activations), which
/// tract turns into its whole-sequence `GruSeq` op with the sequence batch-first, the
/// weights as constant inputs and the initial state last. The walker has absorbed the nodes
/// that make that zero initial state; they are checked to be zeros here.
#[cfg(feature = "std")]
pub(crate) fn import(cx: &mut Walker, node: &TypedNode, op: &ops::gru_seq::GruSeq) -> MapResult {
    if op.projected {
        return Err(format!(
            "a GRU of hidden size {} (above 64 tract moves its input product out of the op; not supported yet)",
            op.hidden
        ));
    }
    if op.chunk != 1 {
        return Err("a reverse or bidirectional GRU is not supported".into());
    }
    // The final state (output 1) may only be left unread: the int8 op emits the sequence.
    if node
        .outputs
        .get(1)
        .is_some_and(|o| !o.successors.is_empty())
    {
        return Err("the GRU's final state Y_h is read; only the sequence Y is supported".into());
    }
    let hidden = op.hidden;
    let konst = |slot: usize, what: &str| -> Result<Vec<f32>, String> {
        let outlet = *node
            .inputs
            .get(slot)
            .ok_or_else(|| format!("no {what} input"))?;
        floats(
            cx.konst(outlet)
                .ok_or_else(|| format!("its {what} is not a constant"))?,
        )
    };
    let x_shape = cx.shape(node.inputs[0])?;
    let [_, input] = x_shape[..] else {
        return Err(format!("its input {x_shape:?} is not a sequence [T, F]"));
    };
    let w = konst(1, "W")?;
    let r = konst(2, "R")?;
    let b = if op.has_bias {
        konst(3, "B")?
    } else {
        vec![0.0; 6 * hidden]
    };
    if w.len() != 3 * hidden * input || r.len() != 3 * hidden * hidden || b.len() != 6 * hidden {
        return Err(format!(
            "weights of {} / {} / {} values for input {input} and hidden {hidden}",
            w.len(),
            r.len(),
            b.len()
        ));
    }
    // The initial state: zeros, as a constant or computed from constants.
    let h0 = *node.inputs.last().ok_or("no initial state")?;
    if !cx.zeros(h0) {
        return Err(
            "its initial state is not zero; only a GRU starting from zero is supported".into(),
        );
    }
    Ok(Mapped::Op(
        FloatOp::Gru {
            input,
            hidden,
            w,
            r,
            b,
        },
        vec![node.inputs[0]],
    ))
}

/// The float definition this op is tested against ([`FloatOp::Gru`] in plain f32), on every
/// sample of `x` (`steps` rows of `input` each).
#[cfg(feature = "std")]
pub(crate) fn reference(
    e: &Eval,
    input: usize,
    hidden: usize,
    w: &[f32],
    r: &[f32],
    b: &[f32],
) -> Result<Vec<f32>, String> {
    let (x, steps) = (e.x, e.xs[0]);
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    let dot = |m: &[f32], row: usize, v: &[f32]| -> f32 {
        m[row * v.len()..(row + 1) * v.len()]
            .iter()
            .zip(v)
            .map(|(a, b)| a * b)
            .sum()
    };
    let mut y = Vec::with_capacity(x.len() / input.max(1) * hidden);
    for sample in x.chunks(steps * input) {
        let mut h = vec![0f32; hidden];
        for xt in sample.chunks(input) {
            let next: Vec<f32> = (0..hidden)
                .map(|j| {
                    let gx = |g: usize| dot(w, g * hidden + j, xt) + b[g * hidden + j];
                    let gh = |g: usize| dot(r, g * hidden + j, &h) + b[(3 + g) * hidden + j];
                    let z = sigmoid(gx(0) + gh(0));
                    let rr = sigmoid(gx(1) + gh(1));
                    let n = (gx(2) + rr * gh(2)).tanh();
                    (1.0 - z) * n + z * h[j]
                })
                .collect();
            y.extend_from_slice(&next);
            h = next;
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_the_functions_at_their_points() {
        for i in 0..257 {
            let x = -8.0 + i as f64 / 16.0;
            let s = (1.0 / (1.0 + (-x).exp()) * 32768.0).round().min(32767.0);
            let t = (x.tanh() * 32768.0).round().clamp(-32767.0, 32767.0);
            assert_eq!(SIGMOID[i] as f64, s, "sigmoid at {x}");
            assert_eq!(TANH[i] as f64, t, "tanh at {x}");
        }
    }

    #[test]
    fn interpolated_lookups_are_within_4e_4() {
        let mut worst = (0f64, 0f64);
        for v in (-(10 << PRE_BITS)..(10 << PRE_BITS)).step_by(7) {
            let x = v as f64 / 4096.0;
            let s = lookup(&SIGMOID, v) as f64 / 32768.0 - 1.0 / (1.0 + (-x).exp());
            let t = lookup(&TANH, v) as f64 / 32768.0 - x.tanh();
            worst = (worst.0.max(s.abs()), worst.1.max(t.abs()));
        }
        // Sigmoid: clamped at +-8 (sigmoid(10) - sigmoid(8) = 2.9e-4); tanh: the interpolation,
        // (1/16)^2 / 8 * max |tanh''| = 3.8e-4.
        assert!(worst.0 < 3e-4 && worst.1 < 4e-4, "{worst:?}");
    }
}
