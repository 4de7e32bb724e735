//! The integer interpreter: runs a validated [`Model`] inside a caller-provided arena.
//!
//! Arena layout, for a batch of `B` samples:
//! `[ tensors: B * max_pair | tile: TILE_ROWS * max_kp | tile out: TILE_ROWS * max_n ]`.
//! Each op reads its input from one end of the tensor region and writes its output at the other,
//! so the region never needs more than the largest input-plus-output pair. Convolutions gather
//! `TILE_ROWS` output positions' receptive fields at a time into the tile and run one GEMM over
//! them; positions of all samples in the batch share the GEMM.

use crate::format::{out_shape, ConvGeometry, Gemm, Model, Op, Shape};
use crate::kernels::{gemm_requant, Isa, PackedWeights, Requant};

/// Bytes of input plus output a transposed convolution processes per block of samples.
const SAMPLE_BLOCK_BYTES: usize = 128 * 1024;

/// Output positions gathered per GEMM call. On x86-64 a multiple of the AVX2 micro-tile's 6 rows,
/// and large enough that a 7x7 layer of one sample (49 positions) is one call; microcontrollers
/// keep the smaller tile to save RAM.
pub const TILE_ROWS: usize = if cfg!(target_arch = "x86_64") { 60 } else { 32 };

/// Why a run could not start. Runs themselves cannot fail once sizes are right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("arena has {actual} bytes, the model needs {needed} for a batch of {batch}")]
    Arena {
        needed: usize,
        actual: usize,
        batch: usize,
    },
    #[error("input has {actual} values, expected {expected} (batch x latent)")]
    Input { expected: usize, actual: usize },
    #[error("output buffer has {actual} values, expected {expected} (batch x c x h x w)")]
    Output { expected: usize, actual: usize },
    #[error("batch must be at least 1")]
    EmptyBatch,
    #[error("the model is conditional: give one class in 0..{classes} per sample")]
    MissingClasses { classes: usize },
    #[error("the model is unconditional: it takes no classes")]
    UnexpectedClasses,
    #[error("{actual} classes for a batch of {expected}: give one per sample")]
    ClassCount { expected: usize, actual: usize },
    #[error("sample {sample}: class {class} is out of range (the model has {classes} classes)")]
    ClassRange {
        sample: usize,
        class: u32,
        classes: usize,
    },
    /// A slice of the arena, the input or the model does not have the size the validated model
    /// implies. Never happens: every size follows from what [`Model::parse`] checked. It is an
    /// error rather than a panic so that no panic is reachable in inference (see
    /// `tests/tests/no_panic.rs`).
    #[error("internal error: {0} does not fit (a bug: validated models cannot cause this)")]
    Internal(&'static str),
}

impl From<crate::kernels::TileError> for RunError {
    fn from(_: crate::kernels::TileError) -> Self {
        RunError::Internal("a GEMM tile")
    }
}

/// `s[range]`, or [`RunError::Internal`] naming `what`.
fn part<'s, T>(
    s: &'s [T],
    range: impl core::slice::SliceIndex<[T], Output = [T]>,
    what: &'static str,
) -> Result<&'s [T], RunError> {
    s.get(range).ok_or(RunError::Internal(what))
}

/// `&mut s[range]`, or [`RunError::Internal`] naming `what`.
fn part_mut<'s, T>(
    s: &'s mut [T],
    range: impl core::slice::SliceIndex<[T], Output = [T]>,
    what: &'static str,
) -> Result<&'s mut [T], RunError> {
    s.get_mut(range).ok_or(RunError::Internal(what))
}

/// `s.split_at_mut(mid)`, or [`RunError::Internal`] naming `what`.
fn split_mut<'s, T>(
    s: &'s mut [T],
    mid: usize,
    what: &'static str,
) -> Result<(&'s mut [T], &'s mut [T]), RunError> {
    s.split_at_mut_checked(mid).ok_or(RunError::Internal(what))
}

/// The last `len` values of `s`, or [`RunError::Internal`] naming `what`.
fn tail_mut<'s, T>(
    s: &'s mut [T],
    len: usize,
    what: &'static str,
) -> Result<&'s mut [T], RunError> {
    let start = s.len().checked_sub(len).ok_or(RunError::Internal(what))?;
    part_mut(s, start.., what)
}

/// `dst.copy_from_slice(src)`, or [`RunError::Internal`] naming `what` if the lengths differ.
fn copy(dst: &mut [i8], src: &[i8], what: &'static str) -> Result<(), RunError> {
    if dst.len() != src.len() {
        return Err(RunError::Internal(what));
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// A size used as a chunk length or divisor: the parser refuses empty shapes and zero strides,
/// and `max(1)` lets the compiler see that `chunks_exact`, `step_by` and `/` cannot panic.
fn nz(n: usize) -> usize {
    n.max(1)
}

/// Checks `classes` (one per sample, empty for an unconditional model) against a model with
/// `model_classes` classes (0: unconditional) and a batch of `batch`.
pub fn check_classes(model_classes: usize, batch: usize, classes: &[u32]) -> Result<(), RunError> {
    match (model_classes, classes.len()) {
        (0, 0) => return Ok(()),
        (0, _) => return Err(RunError::UnexpectedClasses),
        (k, 0) => return Err(RunError::MissingClasses { classes: k }),
        (_, n) if n != batch => {
            return Err(RunError::ClassCount {
                expected: batch,
                actual: n,
            })
        }
        _ => {}
    }
    match classes
        .iter()
        .enumerate()
        .find(|(_, &c)| c as usize >= model_classes)
    {
        Some((sample, &class)) => Err(RunError::ClassRange {
            sample,
            class,
            classes: model_classes,
        }),
        None => Ok(()),
    }
}

/// Where a tensor sits in the tensor region.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Low,
    High,
}

/// Arena sizes of one model.
impl Model<'_> {
    /// Bytes of the tensor region for `batch` samples.
    pub fn tensor_bytes(&self, batch: usize) -> usize {
        self.max_pair * batch
    }
    /// Bytes of the GEMM tiles (independent of the batch).
    pub fn scratch_bytes(&self) -> usize {
        self.scratch_bytes_for(TILE_ROWS)
    }
    /// Bytes of the GEMM tiles on a machine whose tiles are `tile_rows` tall (see [`TILE_ROWS`]):
    /// lets a host check a microcontroller's arena.
    pub fn scratch_bytes_for(&self, tile_rows: usize) -> usize {
        tile_rows * (self.max_kp + self.max_n)
    }
    /// Total arena bytes for `batch` samples.
    pub fn arena_len(&self, batch: usize) -> usize {
        self.tensor_bytes(batch) + self.scratch_bytes()
    }
}

fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut i8, b.len()) }
}

/// Runs an unconditional `model` on `batch` quantized latents (`batch x latent`, see
/// [`Model::input_quant`]) and writes `batch` quantized images in NHWC order to `output`.
/// `observe` sees every op's output.
pub fn run_observed(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    arena: &mut [u8],
    output: &mut [i8],
    observe: impl FnMut(usize, &Op, Shape, &[i8]),
) -> Result<(), RunError> {
    run_conditional_observed(model, isa, batch, input, &[], arena, output, observe)
}

/// [`run_observed`] for any model: `classes` holds one class per sample for a conditional model
/// ([`Model::classes`] > 0) and is empty for an unconditional one. Wrong counts and classes out of
/// range are errors, checked before anything runs.
#[allow(clippy::too_many_arguments)]
pub fn run_conditional_observed(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    classes: &[u32],
    arena: &mut [u8],
    output: &mut [i8],
    mut observe: impl FnMut(usize, &Op, Shape, &[i8]),
) -> Result<(), RunError> {
    if batch == 0 {
        return Err(RunError::EmptyBatch);
    }
    check_classes(model.classes(), batch, classes)?;
    let needed = model.arena_len(batch);
    if arena.len() < needed {
        return Err(RunError::Arena {
            needed,
            actual: arena.len(),
            batch,
        });
    }
    if input.len() != batch * model.latent {
        return Err(RunError::Input {
            expected: batch * model.latent,
            actual: input.len(),
        });
    }
    let out_len = batch * model.output.elements();
    if output.len() != out_len {
        return Err(RunError::Output {
            expected: out_len,
            actual: output.len(),
        });
    }
    let arena = as_i8_mut(part_mut(arena, ..needed, "the arena")?);
    let (tensors, scratch) = split_mut(arena, model.tensor_bytes(batch), "the tensor region")?;
    let (tile, tile_out) = split_mut(scratch, TILE_ROWS * model.max_kp, "the tile")?;
    let region = tensors.len();

    let mut shape = Shape::Flat(model.latent);
    let mut at = End::Low;
    copy(
        part_mut(tensors, ..input.len(), "the input")?,
        input,
        "the input",
    )?;
    for (index, op) in model.ops().enumerate() {
        let in_len = batch * shape.elements();
        let next_shape = out_shape(&op, shape);
        let out_len = batch * next_shape.elements();
        if let Op::Lut { table } = op {
            let x = match at {
                End::Low => part_mut(tensors, ..in_len, "a tensor")?,
                End::High => tail_mut(tensors, in_len, "a tensor")?,
            };
            for v in x.iter_mut() {
                *v = table[*v as u8 as usize] as i8;
            }
        } else {
            // Input at one end, output at the other; they cannot overlap (in + out <= region).
            let (x, y) = match at {
                End::Low => {
                    let mid = region.checked_sub(out_len).unwrap_or(usize::MAX);
                    let (lo, hi) = split_mut(tensors, mid, "an op's output")?;
                    (&*part_mut(lo, ..in_len, "an op's input")?, hi)
                }
                End::High => {
                    let mid = region.checked_sub(in_len).unwrap_or(usize::MAX);
                    let (lo, hi) = split_mut(tensors, mid, "an op's input")?;
                    (&*hi, part_mut(lo, ..out_len, "an op's output")?)
                }
            };
            execute(&op, isa, batch, classes, x, y, tile, tile_out)?;
            at = if at == End::Low { End::High } else { End::Low };
        }
        let y = match at {
            End::Low => part_mut(tensors, ..out_len, "a tensor")?,
            End::High => tail_mut(tensors, out_len, "a tensor")?,
        };
        observe(index, &op, next_shape, y);
        shape = next_shape;
    }
    let y = match at {
        End::Low => part_mut(tensors, ..output.len(), "the output")?,
        End::High => tail_mut(tensors, output.len(), "the output")?,
    };
    copy(output, y, "the output")
}

/// [`run_observed`] without an observer (unconditional models).
pub fn run(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    arena: &mut [u8],
    output: &mut [i8],
) -> Result<(), RunError> {
    run_observed(model, isa, batch, input, arena, output, |_, _, _, _| {})
}

/// [`run_conditional_observed`] without an observer: one class per sample for a conditional
/// model, none for an unconditional one.
pub fn run_conditional(
    model: &Model,
    isa: Isa,
    batch: usize,
    input: &[i8],
    classes: &[u32],
    arena: &mut [u8],
    output: &mut [i8],
) -> Result<(), RunError> {
    run_conditional_observed(
        model,
        isa,
        batch,
        input,
        classes,
        arena,
        output,
        |_, _, _, _| {},
    )
}

#[allow(clippy::too_many_arguments)]
fn execute(
    op: &Op,
    isa: Isa,
    batch: usize,
    classes: &[u32],
    x: &[i8],
    y: &mut [i8],
    tile: &mut [i8],
    tile_out: &mut [i8],
) -> Result<(), RunError> {
    match *op {
        Op::Linear { gemm, weights } => linear(isa, &gemm, weights, x, y, tile),
        Op::Conv2d {
            gemm,
            geometry,
            weights,
        } => conv2d(isa, &gemm, &geometry, weights, x, y, tile),
        Op::ConvTranspose2d {
            gemm,
            geometry,
            phases,
        } => conv_transpose2d(isa, batch, &gemm, &geometry, phases, x, y, tile, tile_out),
        Op::Reshape { c, h, w } => {
            let (c, hw) = (nz(c), nz(h * w));
            let n = nz(c * hw);
            for (xs, ys) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
                // CHW -> HWC: channel `ch` of pixel `p` moves from `ch * h * w + p`. Eight
                // channels at a time, so that each pixel gets one 8-byte store.
                let c8 = c - c % 8;
                for ch in (0..c8).step_by(8) {
                    for (p, dst) in ys.chunks_exact_mut(c).enumerate() {
                        // (ch + j) * hw + p < c * hw = xs.len(): the fallback is never taken.
                        let v: [i8; 8] = core::array::from_fn(|j| {
                            xs.get((ch + j) * hw + p).copied().unwrap_or(0)
                        });
                        part_mut(dst, ch..ch + 8, "a pixel")?.copy_from_slice(&v);
                    }
                }
                for (ch, plane) in xs.chunks_exact(hw).enumerate().skip(c8) {
                    let dst = part_mut(ys, ch.., "a channel")?;
                    for (v, dst) in plane.iter().zip(dst.iter_mut().step_by(c)) {
                        *dst = *v;
                    }
                }
            }
            Ok(())
        }
        Op::Flatten { c, h, w } => {
            let (c, hw) = (nz(c), nz(h * w));
            let n = nz(c * hw);
            for (xs, ys) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
                // HWC -> CHW.
                for (ch, plane) in ys.chunks_exact_mut(hw).enumerate() {
                    let src = part(xs, ch.., "a channel")?;
                    for (dst, v) in plane.iter_mut().zip(src.iter().step_by(c)) {
                        *dst = *v;
                    }
                }
            }
            Ok(())
        }
        Op::Upsample { c, h, w, factor } => {
            let (c, factor) = (nz(c), nz(factor));
            let (ho, wo) = (h * factor, w * factor);
            for (xs, ys) in x
                .chunks_exact(nz(c * h * w))
                .zip(y.chunks_exact_mut(nz(c * ho * wo)))
            {
                let mut dst = ys.chunks_exact_mut(c);
                for oy in 0..ho {
                    for ox in 0..wo {
                        let src = ((oy / factor) * w + ox / factor) * c;
                        let d = dst.next().ok_or(RunError::Internal("a pixel"))?;
                        copy(d, part(xs, src..src + c, "a pixel")?, "a pixel")?;
                    }
                }
            }
            Ok(())
        }
        Op::Embed { dim, table, .. } => {
            // Classes were checked against the table by `check_classes`.
            let latent = nz(x.len() / nz(batch));
            for ((xs, ys), &class) in x
                .chunks_exact(latent)
                .zip(y.chunks_exact_mut(nz(latent + dim)))
                .zip(classes)
            {
                let (z, e) = split_mut(ys, latent, "an embedding")?;
                copy(z, xs, "a latent")?;
                let row = part(table, class as usize * dim.., "an embedding")?;
                copy(e, part(row, ..dim, "an embedding")?, "an embedding")?;
            }
            Ok(())
        }
        // Applied in place by the caller; nothing to do here.
        Op::Lut { .. } => Ok(()),
    }
}

fn linear(
    isa: Isa,
    gemm: &Gemm,
    w: PackedWeights,
    x: &[i8],
    y: &mut [i8],
    tile: &mut [i8],
) -> Result<(), RunError> {
    let (k, kp, n) = (nz(w.k()), w.kp(), w.n());
    // TILE_ROWS samples per GEMM: `x` holds batch rows of k, `y` batch rows of n.
    for (xs, ys) in x
        .chunks(nz(TILE_ROWS * k))
        .zip(y.chunks_mut(nz(TILE_ROWS * n)))
    {
        let rows = xs.len() / k;
        for (dst, src) in tile.chunks_exact_mut(kp).zip(xs.chunks_exact(k)) {
            let (head, pad) = split_mut(dst, k, "a GEMM row")?;
            copy(head, src, "a GEMM row")?;
            pad.fill(0);
        }
        gemm_requant(isa, tile, rows, w, &gemm.requant, ys)?;
    }
    Ok(())
}

/// `dst.copy_from_slice(src)` for the short runs the gathers and scatters move (one pixel's
/// channels): inline 16-byte moves or a byte loop rather than a `memcpy` call per pixel.
#[inline]
fn copy_run(dst: &mut [i8], src: &[i8]) -> Result<(), RunError> {
    if dst.len() != src.len() {
        return Err(RunError::Internal("a pixel"));
    }
    if dst.len().is_multiple_of(16) {
        for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
            // Four word moves: a 16-byte `copy_from_slice` of unknown alignment becomes a
            // `memcpy` call on Cortex-M, which costs more than the copy.
            for i in 0..4 {
                // SAFETY: both chunks hold 16 bytes; unaligned reads and writes of u32.
                unsafe {
                    let v = (s.as_ptr().add(4 * i) as *const u32).read_unaligned();
                    (d.as_mut_ptr().add(4 * i) as *mut u32).write_unaligned(v);
                }
            }
        }
    } else if dst.len() < 16 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
    Ok(())
}

/// Copies the `cin` values at input pixel `(iy, ix)` of sample `x`, or the zero point outside.
#[inline]
fn gather_pixel(
    dst: &mut [i8],
    x: &[i8],
    g: &ConvGeometry,
    iy: isize,
    ix: isize,
    zp: i8,
) -> Result<(), RunError> {
    if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
        let src = ((iy as usize) * g.w + ix as usize) * g.cin;
        copy_run(dst, part(x, src..src + g.cin, "a pixel")?)
    } else {
        dst.fill(zp);
        Ok(())
    }
}

/// An output position (sample, row, column), stepped in row-major order: the gathers and
/// scatters run per output row, where divisions by runtime sizes would cost as much as a GEMM's
/// worth of multiply-adds on small layers.
#[derive(Clone, Copy, Default)]
struct Pos {
    b: usize,
    y: usize,
    x: usize,
}

impl Pos {
    #[inline]
    fn advance(&mut self, h: usize, w: usize) {
        self.x += 1;
        if self.x == w {
            self.x = 0;
            self.y += 1;
            if self.y == h {
                self.y = 0;
                self.b += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conv2d(
    isa: Isa,
    gemm: &Gemm,
    g: &ConvGeometry,
    w: PackedWeights,
    x: &[i8],
    y: &mut [i8],
    tile: &mut [i8],
) -> Result<(), RunError> {
    let (ho, wo) = g.conv_out();
    let (kp, n) = (w.kp(), w.n());
    let sample = g.h * g.w * g.cin;
    let zp = gemm.zp_in;
    let mut pos = Pos::default();
    // Output rows are NHWC positions in order: the GEMM writes TILE_ROWS of them in place.
    for ys in y.chunks_mut(nz(TILE_ROWS * n)) {
        let rows = ys.len() / n;
        for dst in tile.chunks_exact_mut(kp).take(rows) {
            let xs = part(x, pos.b * sample..(pos.b + 1) * sample, "a sample")?;
            // Taps of one kernel row that fall inside the input are adjacent pixels: one copy.
            let x0 = (pos.x * g.stride) as isize - g.pad as isize;
            // max-then-min: `clamp` would panic on bounds it cannot see are ordered.
            let kx_lo = (-x0).max(0).min(g.kw as isize) as usize;
            let kx_hi = (g.w as isize - x0).max(kx_lo as isize).min(g.kw as isize) as usize;
            let (row, rest) = split_mut(dst, g.kh * g.kw * g.cin, "a GEMM row")?;
            for (ky, taps) in row.chunks_exact_mut(nz(g.kw * g.cin)).enumerate() {
                let iy = (pos.y * g.stride + ky) as isize - g.pad as isize;
                if iy < 0 || iy as usize >= g.h || kx_lo == kx_hi {
                    taps.fill(zp);
                    continue;
                }
                let src = (iy as usize * g.w + (x0 + kx_lo as isize) as usize) * g.cin;
                let (before, taps) = split_mut(taps, kx_lo * g.cin, "a kernel row")?;
                let (inside, after) = split_mut(taps, (kx_hi - kx_lo) * g.cin, "a kernel row")?;
                before.fill(zp);
                copy(
                    inside,
                    part(xs, src..src + inside.len(), "a kernel row")?,
                    "a kernel row",
                )?;
                after.fill(zp);
            }
            rest.fill(0);
            pos.advance(ho, wo);
        }
        gemm_requant(isa, tile, rows, w, &gemm.requant, ys)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn conv_transpose2d(
    isa: Isa,
    batch: usize,
    gemm: &Gemm,
    g: &ConvGeometry,
    phases: &[i8],
    x: &[i8],
    y: &mut [i8],
    tile: &mut [i8],
    tile_out: &mut [i8],
) -> Result<(), RunError> {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::col2im::suits(isa, g) {
        let rq = &gemm.requant;
        return crate::kernels::col2im::conv_transpose(isa, batch, gemm.zp_in, rq, g, phases, x, y)
            .ok_or(RunError::Internal("a col2im layer"));
    }
    let (ho, wo) = g.transpose_out();
    let s = nz(g.stride);
    let sample_in = nz(g.h * g.w * g.cin);
    let sample_out = nz(ho * wo * g.cout);
    // Each phase sweeps its samples' whole input: in blocks of samples that stay in L2 across
    // the phases, instead of the whole batch (megabytes at batch 64) once per phase.
    let block = (SAMPLE_BLOCK_BYTES / nz(sample_in + sample_out)).clamp(1, nz(batch));
    for (x, y) in x
        .chunks(nz(block * sample_in))
        .zip(y.chunks_mut(nz(block * sample_out)))
    {
        let nb = x.len() / sample_in;
        for ry in 0..s {
            for rx in 0..s {
                conv_transpose_phase(isa, nb, gemm, g, phases, (ry, rx), x, y, tile, tile_out)?;
            }
        }
    }
    Ok(())
}

/// The outputs of phase `(ry, rx)` of a transposed convolution over `batch` samples.
#[allow(clippy::too_many_arguments)]
fn conv_transpose_phase(
    isa: Isa,
    batch: usize,
    gemm: &Gemm,
    g: &ConvGeometry,
    phases: &[i8],
    (ry, rx): (usize, usize),
    x: &[i8],
    y: &mut [i8],
    tile: &mut [i8],
    tile_out: &mut [i8],
) -> Result<(), RunError> {
    let (ho, wo) = g.transpose_out();
    let (s, cout) = (nz(g.stride), nz(g.cout));
    let sample_in = g.h * g.w * g.cin;
    let sample_out = ho * wo * cout;
    let w = Op::phase_weights(g, phases, ry, rx).ok_or(RunError::Internal("a phase"))?;
    let requant = Requant {
        bias: (gemm.requant.bias.slice((ry * s + rx) * cout, cout))
            .ok_or(RunError::Internal("a phase's biases"))?,
        ..gemm.requant
    };
    let kp = w.kp();
    let (ty, tx) = (g.phase_taps(g.kh, ry), g.phase_taps(g.kw, rx));
    // Outputs of this phase: o with (o + pad) % s == r, i.e. o = first + i * s.
    let first_y = (ry + s - g.pad % s) % s;
    let first_x = (rx + s - g.pad % s) % s;
    let ny = if first_y < ho {
        (ho - first_y).div_ceil(s)
    } else {
        0
    };
    let nx = if first_x < wo {
        (wo - first_x).div_ceil(s)
    } else {
        0
    };
    // Output o = first + i * s takes tap t (kernel index r + t * s) from input
    // (o + pad - r) / s - t = base + i - t: `first + pad - r` is a non-negative multiple
    // of s by the choice of `first`.
    let (base_y, base_x) = ((first_y + g.pad - ry) / s, (first_x + g.pad - rx) / s);
    let total = batch * ny * nx;
    let mut pos = Pos::default();
    let mut r0 = 0;
    while r0 < total {
        let rows = TILE_ROWS.min(total - r0);
        let tile_start = pos;
        for dst in tile.chunks_exact_mut(kp).take(rows) {
            let xs = part(x, pos.b * sample_in..(pos.b + 1) * sample_in, "a sample")?;
            let mut k = 0;
            for t in 0..ty {
                let iy = (base_y + pos.y) as isize - t as isize;
                for u in 0..tx {
                    let ix = (base_x + pos.x) as isize - u as isize;
                    let d = part_mut(dst, k..k + g.cin, "a tap")?;
                    gather_pixel(d, xs, g, iy, ix, gemm.zp_in)?;
                    k += g.cin;
                }
            }
            part_mut(dst, k.., "a GEMM row")?.fill(0);
            pos.advance(ny, nx);
        }
        let out = part_mut(tile_out, ..rows * cout, "the output tile")?;
        gemm_requant(isa, tile, rows, w, &requant, out)?;
        let mut at = tile_start;
        for src in out.chunks_exact(cout) {
            let (oy, ox) = (first_y + at.y * s, first_x + at.x * s);
            let dst = at.b * sample_out + (oy * wo + ox) * cout;
            copy_run(part_mut(y, dst..dst + cout, "an output pixel")?, src)?;
            at.advance(ny, nx);
        }
        r0 += rows;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Quant;
    use crate::kernels::requantize;
    use crate::write::{encode, QuantModel, QuantOp, RequantParams};

    /// A small deterministic generator of test values.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn i8s(&mut self, n: usize, lo: i32, hi: i32) -> Vec<i8> {
            (0..n)
                .map(|_| (lo + (self.next() % (hi - lo + 1) as u32) as i32) as i8)
                .collect()
        }
        fn requant(&mut self, n: usize, relu: bool) -> RequantParams {
            let zp_out = self.i8s(1, -20, 20)[0];
            RequantParams {
                bias: (0..n)
                    .map(|_| (self.next() % 20001) as i32 - 10000)
                    .collect(),
                mult: (0..n)
                    .map(|_| (1 << 30) + (self.next() >> 2) as i32)
                    .collect(),
                shift: (0..n).map(|_| 38 + (self.next() % 4) as u8).collect(),
                zp_out,
                min: if relu { zp_out } else { -128 },
                max: 127,
            }
        }
    }

    fn rq(p: &RequantParams, acc: i64, n: usize) -> i8 {
        requantize(acc as i32, 0, p.mult[n], p.shift[n], p.zp_out, p.min, p.max)
    }

    /// Reference semantics on NCHW tensors, straight from the ONNX definitions (a transposed
    /// convolution scatters each input pixel; padding contributes nothing).
    fn reference(model: &QuantModel, batch: usize, input: &[i8]) -> Vec<i8> {
        reference_conditional(model, batch, input, &[])
    }

    fn reference_conditional(
        model: &QuantModel,
        batch: usize,
        input: &[i8],
        classes: &[u32],
    ) -> Vec<i8> {
        let mut x: Vec<i8> = input.to_vec();
        let mut chw = (model.latent, 1, 1);
        for op in &model.ops {
            match op {
                QuantOp::Embed { dim, table, .. } => {
                    let k = chw.0;
                    x = (0..batch)
                        .flat_map(|b| {
                            let row = classes[b] as usize * dim;
                            x[b * k..(b + 1) * k]
                                .iter()
                                .chain(&table[row..row + dim])
                                .copied()
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    chw = (k + dim, 1, 1);
                }
                QuantOp::Linear {
                    k,
                    n,
                    zp_in,
                    requant,
                    weights,
                } => {
                    let mut y = vec![0; batch * n];
                    for b in 0..batch {
                        for j in 0..*n {
                            let acc: i64 = (0..*k)
                                .map(|i| {
                                    (x[b * k + i] as i64 - *zp_in as i64)
                                        * weights[i * n + j] as i64
                                })
                                .sum::<i64>()
                                + requant.bias[j] as i64;
                            y[b * n + j] = rq(requant, acc, j);
                        }
                    }
                    x = y;
                    chw = (*n, 1, 1);
                }
                QuantOp::Reshape { c, h, w } => chw = (*c, *h, *w),
                QuantOp::Flatten { c, h, w } => chw = (c * h * w, 1, 1),
                QuantOp::Lut { table } => x
                    .iter_mut()
                    .for_each(|v| *v = table[*v as u8 as usize] as i8),
                QuantOp::Upsample { c, h, w, factor: f } => {
                    let (ho, wo) = (h * f, w * f);
                    let mut y = vec![0; batch * c * ho * wo];
                    for b in 0..batch {
                        for ch in 0..*c {
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    y[((b * c + ch) * ho + oy) * wo + ox] =
                                        x[((b * c + ch) * h + oy / f) * w + ox / f];
                                }
                            }
                        }
                    }
                    x = y;
                    chw = (*c, ho, wo);
                }
                QuantOp::Conv2d {
                    geometry: g,
                    zp_in,
                    requant,
                    weights,
                } => {
                    let (ho, wo) = g.conv_out();
                    let mut y = vec![0; batch * g.cout * ho * wo];
                    for b in 0..batch {
                        for co in 0..g.cout {
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    let mut acc = requant.bias[co] as i64;
                                    for ci in 0..g.cin {
                                        for ky in 0..g.kh {
                                            for kx in 0..g.kw {
                                                let iy =
                                                    (oy * g.stride + ky) as isize - g.pad as isize;
                                                let ix =
                                                    (ox * g.stride + kx) as isize - g.pad as isize;
                                                if iy < 0
                                                    || ix < 0
                                                    || iy as usize >= g.h
                                                    || ix as usize >= g.w
                                                {
                                                    continue;
                                                }
                                                let v = x[((b * g.cin + ci) * g.h + iy as usize)
                                                    * g.w
                                                    + ix as usize];
                                                let wv = weights
                                                    [((co * g.cin + ci) * g.kh + ky) * g.kw + kx];
                                                acc += (v as i64 - *zp_in as i64) * wv as i64;
                                            }
                                        }
                                    }
                                    y[((b * g.cout + co) * ho + oy) * wo + ox] =
                                        rq(requant, acc, co);
                                }
                            }
                        }
                    }
                    x = y;
                    chw = (g.cout, ho, wo);
                }
                QuantOp::ConvTranspose2d {
                    geometry: g,
                    zp_in,
                    requant,
                    weights,
                } => {
                    let (ho, wo) = g.transpose_out();
                    let mut acc = vec![0i64; batch * g.cout * ho * wo];
                    for b in 0..batch {
                        for co in 0..g.cout {
                            for oy in 0..ho {
                                for ox in 0..wo {
                                    acc[((b * g.cout + co) * ho + oy) * wo + ox] =
                                        requant.bias[co] as i64;
                                }
                            }
                            for ci in 0..g.cin {
                                for iy in 0..g.h {
                                    for ix in 0..g.w {
                                        let v = x[((b * g.cin + ci) * g.h + iy) * g.w + ix] as i64
                                            - *zp_in as i64;
                                        for ky in 0..g.kh {
                                            for kx in 0..g.kw {
                                                let oy =
                                                    (iy * g.stride + ky) as isize - g.pad as isize;
                                                let ox =
                                                    (ix * g.stride + kx) as isize - g.pad as isize;
                                                if oy < 0
                                                    || ox < 0
                                                    || oy as usize >= ho
                                                    || ox as usize >= wo
                                                {
                                                    continue;
                                                }
                                                let wv = weights
                                                    [((ci * g.cout + co) * g.kh + ky) * g.kw + kx]
                                                    as i64;
                                                acc[((b * g.cout + co) * ho + oy as usize) * wo
                                                    + ox as usize] += v * wv;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    x = (0..acc.len())
                        .map(|i| rq(requant, acc[i], (i / (ho * wo)) % g.cout))
                        .collect();
                    chw = (g.cout, ho, wo);
                }
            }
        }
        // NCHW -> NHWC to compare with the interpreter.
        let (c, h, w) = chw;
        let mut y = vec![0; x.len()];
        for b in 0..batch {
            for ch in 0..c {
                for p in 0..h * w {
                    y[(b * h * w + p) * c + ch] = x[(b * c + ch) * h * w + p];
                }
            }
        }
        y
    }

    fn geometry(
        cin: usize,
        cout: usize,
        hw: usize,
        k: usize,
        stride: usize,
        pad: usize,
        out_pad: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            cin,
            cout,
            h: hw,
            w: hw,
            kh: k,
            kw: k,
            stride,
            pad,
            out_pad,
        }
    }

    /// Linear -> Reshape -> ConvTranspose -> Lut -> Upsample -> Conv2d -> ConvTranspose, with
    /// kernels, strides and paddings that exercise every phase shape.
    fn test_model(rng: &mut Lcg, (k, s, p, op): (usize, usize, usize, usize)) -> QuantModel {
        let latent = 7;
        let t1 = geometry(5, 6, 3, k, s, p, op);
        let (h1, _) = t1.transpose_out();
        let c2 = geometry(6, 4, h1 * 2, 3, 2, 1, 0);
        let (h2, _) = c2.conv_out();
        let t3 = geometry(4, 3, h2, 4, 2, 1, 0);
        let (h3, _) = t3.transpose_out();
        let mut table = [0u8; 256];
        table.iter_mut().for_each(|v| *v = rng.next() as u8);
        let zp = |rng: &mut Lcg| rng.i8s(1, -30, 30)[0];
        QuantModel {
            latent,
            output: (3, h3, h3),
            input_quant: Quant {
                scale: 0.05,
                zero_point: 0,
            },
            output_quant: Quant {
                scale: 1.0 / 127.0,
                zero_point: 0,
            },
            metadata: "{}".into(),
            ops: vec![
                QuantOp::Linear {
                    k: latent,
                    n: 45,
                    zp_in: zp(rng),
                    requant: rng.requant(45, true),
                    weights: rng.i8s(latent * 45, -127, 127),
                },
                QuantOp::Reshape { c: 5, h: 3, w: 3 },
                QuantOp::ConvTranspose2d {
                    geometry: t1,
                    zp_in: zp(rng),
                    requant: rng.requant(6, true),
                    weights: rng.i8s(5 * 6 * k * k, -127, 127),
                },
                QuantOp::Lut { table },
                QuantOp::Upsample {
                    c: 6,
                    h: h1,
                    w: h1,
                    factor: 2,
                },
                QuantOp::Conv2d {
                    geometry: c2,
                    zp_in: zp(rng),
                    requant: rng.requant(4, false),
                    weights: rng.i8s(6 * 4 * 9, -127, 127),
                },
                QuantOp::ConvTranspose2d {
                    geometry: t3,
                    zp_in: zp(rng),
                    requant: rng.requant(3, false),
                    weights: rng.i8s(4 * 3 * 16, -127, 127),
                },
            ],
        }
    }

    #[test]
    fn interpreter_matches_reference_semantics() {
        let mut rng = Lcg(7);
        for conv in [
            (4, 2, 1, 0),
            (3, 2, 0, 1),
            (5, 3, 2, 2),
            (3, 1, 1, 0),
            (4, 2, 0, 0),
        ] {
            let qm = test_model(&mut rng, conv);
            let bytes = encode(&qm).expect("encodes");
            let model = Model::parse(&bytes).expect("parses");
            for batch in [1, 3] {
                let input = rng.i8s(batch * qm.latent, -128, 127);
                let expected = reference(&qm, batch, &input);
                for isa in Isa::available() {
                    let mut arena = vec![0u8; model.arena_len(batch)];
                    let mut out = vec![0i8; expected.len()];
                    run(&model, isa, batch, &input, &mut arena, &mut out).unwrap();
                    assert_eq!(
                        out,
                        expected,
                        "conv {conv:?} batch {batch} isa {}",
                        isa.name()
                    );
                }
            }
        }
    }

    /// A batch large enough that transposed convolutions run in several sample blocks, the last
    /// one partial.
    #[test]
    fn sample_blocks_match_reference_semantics() {
        let mut rng = Lcg(11);
        let qm = test_model(&mut rng, (4, 2, 1, 0));
        let bytes = encode(&qm).expect("encodes");
        let model = Model::parse(&bytes).expect("parses");
        let batch = 700;
        for op in model.ops() {
            if let Op::ConvTranspose2d { geometry: g, .. } = op {
                let (ho, wo) = g.transpose_out();
                let pair = g.h * g.w * g.cin + ho * wo * g.cout;
                assert!(
                    SAMPLE_BLOCK_BYTES / pair < batch && batch % (SAMPLE_BLOCK_BYTES / pair) != 0
                );
            }
        }
        let input = rng.i8s(batch * qm.latent, -128, 127);
        let expected = reference(&qm, batch, &input);
        for isa in Isa::available() {
            let mut arena = vec![0u8; model.arena_len(batch)];
            let mut out = vec![0i8; expected.len()];
            run(&model, isa, batch, &input, &mut arena, &mut out).unwrap();
            assert_eq!(out, expected, "isa {}", isa.name());
        }
    }

    /// [`test_model`] behind a class embedding of `classes` rows.
    fn conditional_model(rng: &mut Lcg, classes: usize) -> QuantModel {
        let mut qm = test_model(rng, (4, 2, 1, 0));
        let dim = 5;
        let QuantOp::Linear { k, weights, .. } = &mut qm.ops[0] else {
            unreachable!("test_model starts with a Linear")
        };
        *k += dim;
        *weights = rng.i8s(*k * 45, -127, 127);
        qm.ops.insert(
            0,
            QuantOp::Embed {
                classes,
                dim,
                table: rng.i8s(classes * dim, -128, 127),
            },
        );
        qm
    }

    #[test]
    fn embedding_matches_reference_semantics() {
        let mut rng = Lcg(5);
        let qm = conditional_model(&mut rng, 10);
        let bytes = encode(&qm).expect("encodes");
        let model = Model::parse(&bytes).expect("parses");
        assert_eq!((model.classes(), model.latent), (10, qm.latent));
        for batch in [1, 4, 70] {
            let input = rng.i8s(batch * qm.latent, -128, 127);
            let classes: Vec<u32> = (0..batch).map(|_| rng.next() % 10).collect();
            let expected = reference_conditional(&qm, batch, &input, &classes);
            for isa in Isa::available() {
                let mut arena = vec![0u8; model.arena_len(batch)];
                let mut out = vec![0i8; expected.len()];
                run_conditional(&model, isa, batch, &input, &classes, &mut arena, &mut out)
                    .unwrap();
                assert_eq!(out, expected, "batch {batch} isa {}", isa.name());
            }
        }
        // The class changes the image: same latent, classes 0 and 1.
        let input = rng.i8s(qm.latent, -128, 127);
        let image = |class: u32| reference_conditional(&qm, 1, &input, &[class]);
        assert_ne!(image(0), image(1));
    }

    #[test]
    fn classes_are_checked_before_running() {
        let mut rng = Lcg(6);
        let qm = conditional_model(&mut rng, 3);
        let bytes = encode(&qm).unwrap();
        let model = Model::parse(&bytes).unwrap();
        let mut arena = vec![0u8; model.arena_len(2)];
        let mut out = vec![0i8; 2 * model.output.elements()];
        let input = vec![0i8; 2 * qm.latent];
        let mut go = |classes: &[u32]| {
            run_conditional(
                &model,
                Isa::Scalar,
                2,
                &input,
                classes,
                &mut arena,
                &mut out,
            )
        };
        assert_eq!(
            go(&[0, 3]),
            Err(RunError::ClassRange {
                sample: 1,
                class: 3,
                classes: 3
            })
        );
        assert_eq!(
            go(&[u32::MAX, 0]),
            Err(RunError::ClassRange {
                sample: 0,
                class: u32::MAX,
                classes: 3
            })
        );
        assert_eq!(
            go(&[1]),
            Err(RunError::ClassCount {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(go(&[]), Err(RunError::MissingClasses { classes: 3 }));
        assert_eq!(go(&[2, 0]), Ok(()));
        // The unconditional entry points refuse a conditional model, and the other way round.
        let mut arena = vec![0u8; model.arena_len(2)];
        assert_eq!(
            run(&model, Isa::Scalar, 2, &input, &mut arena, &mut out),
            Err(RunError::MissingClasses { classes: 3 })
        );
        let plain = test_model(&mut rng, (4, 2, 1, 0));
        let bytes = encode(&plain).unwrap();
        let plain = Model::parse(&bytes).unwrap();
        let mut arena = vec![0u8; plain.arena_len(2)];
        let mut out = vec![0i8; 2 * plain.output.elements()];
        assert_eq!(
            run_conditional(
                &plain,
                Isa::Scalar,
                2,
                &vec![0; 2 * plain.latent],
                &[0, 0],
                &mut arena,
                &mut out
            ),
            Err(RunError::UnexpectedClasses)
        );
    }

    /// Header and embedding must agree, and the embedding comes first or not at all.
    #[test]
    fn embedding_placement_is_validated() {
        use crate::format::FormatError;
        let mut rng = Lcg(8);
        let qm = conditional_model(&mut rng, 4);
        let bytes = encode(&qm).unwrap();
        let reseal = |mut b: Vec<u8>| {
            let crc = crate::format::crc32(&b[16..]);
            b[12..16].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // Header class count (bytes 20..24) changed, or cleared.
        for classes in [0u32, 3, 5] {
            let mut b = bytes.clone();
            b[20..24].copy_from_slice(&classes.to_le_bytes());
            assert!(
                matches!(
                    Model::parse(&reseal(b)),
                    Err(FormatError::Op { index: 0, .. })
                ),
                "header classes {classes}"
            );
        }
        // An unconditional header on a model whose first op is not an embedding, but declaring
        // classes.
        let plain = encode(&test_model(&mut rng, (4, 2, 1, 0))).unwrap();
        let mut b = plain.clone();
        b[20..24].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            Model::parse(&reseal(b)),
            Err(FormatError::Op { index: 0, .. })
        ));
        // An embedding after the first op.
        let mut late = qm.clone();
        late.ops.insert(0, QuantOp::Lut { table: [0; 256] });
        assert!(matches!(
            encode(&late),
            Err(crate::write::EncodeError::Invalid(FormatError::Op {
                index: 1,
                reason: "an embedding must be the first op"
            }))
        ));
        // Too many classes for the format.
        let mut b = bytes.clone();
        b[20..24].copy_from_slice(&(1u32 << 20).to_le_bytes());
        assert!(matches!(
            Model::parse(&reseal(b)),
            Err(FormatError::Header(_))
        ));
    }

    #[test]
    fn arena_is_the_largest_pair_plus_tiles() {
        let qm = test_model(&mut Lcg(1), (4, 2, 1, 0));
        let bytes = encode(&qm).unwrap();
        let model = Model::parse(&bytes).unwrap();
        let shapes: Vec<usize> = model.shapes().map(|s| s.elements()).collect();
        let pair = shapes.windows(2).map(|w| w[0] + w[1]).max().unwrap();
        assert_eq!(model.tensor_bytes(1), pair);
        // A smaller arena is refused, not overrun.
        let mut arena = vec![0u8; model.arena_len(2) - 1];
        let mut out = vec![0i8; 2 * model.output.elements()];
        let err = run(
            &model,
            Isa::Scalar,
            2,
            &vec![0; 2 * qm.latent],
            &mut arena,
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Arena { .. }));
    }
}
