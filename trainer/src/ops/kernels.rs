//! f32 convolution kernels on plain slices: im2col / col2im around one batched GEMM per pass.
//!
//! A convolution maps `x [n, c_in, h, w]` to `y [n, c_out, oh, ow]` with `weight [c_out, c_in, kh, kw]`.
//! The three passes of training are each one GEMM over the whole batch:
//! - forward:         `y'  [c_out, n*L] = W [c_out, K] · cols [K, n*L]`
//! - input gradient:  `dcols [K, n*L]  = Wᵀ · dy'`, then col2im adds the columns back into `dx`
//! - weight gradient: `dW [c_out, K]    = dy' · colsᵀ`
//!
//! where `K = c_in*kh*kw`, `L = oh*ow`, and `y'`/`dy'` are channel-major (`[c, n, L]`).
//! One GEMM over the batch keeps its dimensions large (Burn's default weight gradient runs one
//! small GEMM per channel pair). A transposed convolution is the same geometry read backwards:
//! its forward is the input gradient of the convolution whose input is its output.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use rayon::prelude::*;

use super::written;

/// Temporaries (column matrices, channel-major copies) come from this pool rather than fresh
/// allocations: a fresh multi-megabyte buffer costs a page fault and a zeroing per 4 KiB page on
/// every call, which was a tenth of the training iteration. Contents are stale: users overwrite.
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// Buffers kept for reuse; an iteration needs at most three at a time.
const POOL_SIZE: usize = 6;

const ZERO: MaybeUninit<f32> = MaybeUninit::new(0.0);

/// A pooled buffer and the length in use; the buffer only grows, so reuse never re-zeroes it.
struct Scratch(Vec<f32>, usize);

impl Scratch {
    fn new(len: usize) -> Self {
        let reused = POOL.lock().ok().and_then(|mut pool| {
            let best = (0..pool.len()).max_by_key(|&i| pool[i].len())?;
            Some(pool.swap_remove(best))
        });
        let mut v = reused.unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0.0);
        }
        Scratch(v, len)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < POOL_SIZE {
                pool.push(std::mem::take(&mut self.0));
            }
        }
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[..self.1]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0[..self.1]
    }
}

/// A convolution's shapes: input `[n, c_in, h, w]` -> output `[n, c_out, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub oh: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding before the first row and column (any end padding is implied by `oh`, `ow`).
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

impl Geometry {
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    pub fn k(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels per sample.
    pub fn l(&self) -> usize {
        self.oh * self.ow
    }

    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.l()
    }

    pub fn w_len(&self) -> usize {
        self.c_out * self.k()
    }

    /// Output positions `o` in `0..out` whose input `o*stride + tap - pad` lies in `0..size`.
    fn valid(out: usize, size: usize, stride: usize, tap: usize, pad: usize) -> (usize, usize) {
        // o*stride + tap >= pad  and  o*stride + tap < pad + size
        let lo = pad.saturating_sub(tap).div_ceil(stride);
        let hi = (pad + size).saturating_sub(tap).div_ceil(stride).min(out);
        (lo.min(hi), hi)
    }
}

/// A read-only matrix view: element (r, c) at `data[r*rs + c*cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl Mat<'_> {
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len());
        }
    }
}

/// Below this many multiply-adds a GEMM runs on the calling thread (as Burn's flex does).
const PARALLEL_MACS: usize = 1 << 21;

/// `dst [m, n] (row-major) = a [m, k] · b [k, n]`, with the `gemm` crate that Burn's flex uses.
fn gemm(m: usize, n: usize, k: usize, dst: &mut [f32], a: Mat, b: Mat) {
    gemm_strided(m, n, k, dst, [n, 1], a, b, m * n * k >= PARALLEL_MACS)
}

/// [`gemm`] into `dst` with element (r, c) at `dst[r*rs + c*cs]` for `[rs, cs]` = `dst_strides`
/// (`dst` may hold other values between them, which are left alone); on rayon's threads if
/// `parallel`.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    [dst_rs, dst_cs]: [usize; 2],
    a: Mat,
    b: Mat,
    parallel: bool,
) {
    assert!(m * n == 0 || (m - 1) * dst_rs + (n - 1) * dst_cs < dst.len());
    a.check(m, k);
    b.check(k, n);
    if m * n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            for c in 0..n {
                dst[r * dst_rs + c * dst_cs] = 0.0;
            }
        }
        return;
    }
    let parallelism = if parallel && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views were bounds-checked above for every (row, column) the GEMM touches,
    // and `dst` is an exclusive m*n row-major buffer.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            false,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Column matrix `[K, n*L]` of `x` in a pooled buffer, for use within one call.
fn im2col(g: &Geometry, x: &[f32]) -> Scratch {
    let mut cols = Scratch::new(g.k() * g.n * g.l());
    fill_columns(g, x, slots(&mut cols));
    cols
}

/// Column matrix `[K, n*L]` of `x`, owned: kept from a forward pass for its backward pass.
pub fn columns(g: &Geometry, x: &[f32]) -> Vec<f32> {
    // SAFETY: `fill_columns` writes every element.
    unsafe { written(g.k() * g.n * g.l(), |cols| fill_columns(g, x, cols)) }
}

/// `s` as slots to write: same layout. Only ever given to code that stores initialised values, so
/// `s` stays initialised.
fn slots(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; see above for why no uninitialised
    // value can be stored through it.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Writes the column matrix `[K, n*L]` of `x`: row `(c, i, j)` holds, for every output pixel, the
/// input it sees through kernel tap `(i, j)` of channel `c` (0 in the padding).
fn fill_columns(g: &Geometry, x: &[f32], cols: &mut [MaybeUninit<f32>]) {
    assert_eq!(x.len(), g.x_len());
    assert_eq!(cols.len(), g.k() * g.n * g.l());
    let (l, hw) = (g.l(), g.h * g.w);
    if cols.is_empty() {
        return;
    }
    let kk = g.kernel[0] * g.kernel[1];
    let by_tap = g.taps_by_index();
    let sw = g.stride[1];
    cols.par_chunks_mut(g.n * l)
        .enumerate()
        .for_each(|(row, out)| {
            let (c, tap) = (row / kk, row % kk);
            let Some(t) = &by_tap[tap] else {
                out.fill(ZERO); // this tap only ever sees padding
                return;
            };
            for (b, out) in out.chunks_exact_mut(l).enumerate() {
                let plane = &x[(b * g.c_in + c) * hw..][..hw];
                if t.rows * t.cols < l {
                    out.fill(ZERO); // the outputs that see padding through this tap
                }
                for r in 0..t.rows {
                    let dst = &mut out[t.col0 + r * g.ow..][..t.cols];
                    let src = &plane[t.x0 + r * t.x_step..][..t.x_span];
                    for (k, d) in dst.iter_mut().enumerate() {
                        d.write(src[k * sw]);
                    }
                }
            }
        });
}

/// Adds the columns `[K, n*L]` back into an image `[n, c_in, h, w]`: the adjoint of [`im2col`].
pub fn col2im(g: &Geometry, cols: &[f32]) -> Vec<f32> {
    let (l, hw) = (g.l(), g.h * g.w);
    assert_eq!(cols.len(), g.k() * g.n * l);
    if g.x_len() == 0 {
        return Vec::new();
    }
    let taps = g.taps();
    let (kk, row_len) = (g.kernel[0] * g.kernel[1], g.n * l);
    // Channel-major planes `[c_in, n, h, w]` first: a channel's rows of `cols` are then read front to
    // back (sample after sample) instead of a 196-byte piece of each of 16 distant rows per plane,
    // which left col2im waiting on memory; the transpose after is one pass over the image.
    let mut x = Scratch::new(g.x_len());
    x.par_chunks_mut(hw).enumerate().for_each(|(p, plane)| {
        let (c, b) = (p / g.n, p % g.n);
        plane.fill(0.0);
        for t in &taps {
            let src = &cols[(c * kk + t.tap) * row_len + b * l..][..l];
            for r in 0..t.rows {
                let dst = &mut plane[t.x0 + r * t.x_step..][..t.x_span];
                let src = &src[t.col0 + r * g.ow..][..t.cols];
                for (k, s) in src.iter().enumerate() {
                    dst[k * g.stride[1]] += s;
                }
            }
        }
    });
    to_batch_major(&x, g.n, g.c_in, hw, None)
}

/// A kernel tap's overlap with the image, worked out once per call rather than per plane.
struct Tap {
    /// `i*kw + j`.
    tap: usize,
    /// Output rows and columns that see the image through this tap, and the first of each.
    rows: usize,
    cols: usize,
    col0: usize,
    /// Image offset seen by the first of them, the image offset between consecutive rows, and
    /// the image span of one row's `cols` taps.
    x0: usize,
    x_step: usize,
    x_span: usize,
}

impl Geometry {
    /// The taps, indexed by `i*kw + j` (`None`: the tap only sees padding).
    fn taps_by_index(&self) -> Vec<Option<Tap>> {
        let mut by_tap: Vec<Option<Tap>> =
            (0..self.kernel[0] * self.kernel[1]).map(|_| None).collect();
        for t in self.taps() {
            let i = t.tap;
            by_tap[i] = Some(t);
        }
        by_tap
    }

    /// The taps that see the image at all (the others only see padding).
    fn taps(&self) -> Vec<Tap> {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let mut taps = Vec::with_capacity(kh * kw);
        for i in 0..kh {
            let ti = i * self.dilation[0];
            let (y_lo, y_hi) = Geometry::valid(self.oh, self.h, sh, ti, self.pad[0]);
            for j in 0..kw {
                let tj = j * self.dilation[1];
                let (x_lo, x_hi) = Geometry::valid(self.ow, self.w, sw, tj, self.pad[1]);
                if y_lo == y_hi || x_lo == x_hi {
                    continue;
                }
                taps.push(Tap {
                    tap: i * kw + j,
                    rows: y_hi - y_lo,
                    cols: x_hi - x_lo,
                    col0: y_lo * self.ow + x_lo,
                    x0: (y_lo * sh + ti - self.pad[0]) * self.w + x_lo * sw + tj - self.pad[1],
                    x_step: sh * self.w,
                    x_span: (x_hi - x_lo - 1) * sw + 1,
                });
            }
        }
        taps
    }
}

/// `[n, c, L]` -> `[c, n, L]`.
fn to_channel_major(t: &[f32], n: usize, c: usize, l: usize) -> Scratch {
    assert_eq!(t.len(), n * c * l);
    let mut out = Scratch::new(t.len());
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(n * l).enumerate().for_each(|(ch, dst)| {
        for b in 0..n {
            dst[b * l..][..l].copy_from_slice(&t[(b * c + ch) * l..][..l]);
        }
    });
    out
}

/// `[c, n, L]` -> `[n, c, L]`, adding `bias[c]` when given.
fn to_batch_major(t: &[f32], n: usize, c: usize, l: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(t.len(), n * c * l);
    if t.is_empty() {
        return Vec::new();
    }
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(c * l).enumerate().for_each(|(b, dst)| {
            for ch in 0..c {
                let src = &t[(ch * n + b) * l..][..l];
                let dst = &mut dst[ch * l..][..l];
                let bias = bias.map_or(0.0, |bias| bias[ch]);
                for (d, s) in dst.iter_mut().zip(src) {
                    d.write(s + bias);
                }
            }
        })
    };
    // SAFETY: the chunks of `c*l` cover the output, and each channel's `l` values are written.
    unsafe { written(t.len(), fill) }
}

/// Adds `bias[ch]` to every pixel of channel `ch` of `y [n, c, plane]`.
pub fn add_channel_bias(mut y: Vec<f32>, plane: usize, bias: &[f32]) -> Vec<f32> {
    let c = bias.len();
    assert!(plane > 0 && c > 0 && y.len().is_multiple_of(c * plane));
    y.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
        let b = bias[i % c];
        p.iter_mut().for_each(|v| *v += b);
    });
    y
}

/// Convolution forward: `y [n, c_out, oh, ow]`.
pub fn conv_forward(g: &Geometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if g.by_sample() {
        return by_sample::forward(g, x, weight, bias);
    }
    forward_from_columns(g.gemm(), &im2col(g, x), weight, bias)
}

/// The GEMM sizes of a convolution: `c_out`, `K`, and the `n` samples of `L` output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmDims {
    pub c_out: usize,
    pub k: usize,
    pub n: usize,
    pub l: usize,
}

impl Geometry {
    pub fn gemm(&self) -> GemmDims {
        GemmDims {
            c_out: self.c_out,
            k: self.k(),
            n: self.n,
            l: self.l(),
        }
    }
}

/// Convolution forward from the column matrix `[K, n*L]`: `y [n, c_out, L]`.
pub fn forward_from_columns(
    g: GemmDims,
    cols: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (k, nl) = (g.k, g.n * g.l);
    assert_eq!(weight.len(), g.c_out * k);
    assert_eq!(cols.len(), k * nl);
    let mut y = Scratch::new(g.c_out * nl);
    gemm(
        g.c_out,
        nl,
        k,
        &mut y,
        Mat {
            data: weight,
            rs: k,
            cs: 1,
        },
        Mat {
            data: cols,
            rs: nl,
            cs: 1,
        },
    );
    to_batch_major(&y, g.n, g.c_out, g.l, bias)
}

/// Gradient of the convolution's input, `dx [n, c_in, h, w]`, from `dy [n, c_out, oh, ow]`.
pub fn conv_input_grad(g: &Geometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(weight.len(), g.w_len());
    assert_eq!(dy.len(), g.y_len());
    if g.by_sample() {
        return by_sample::input_grad(g, weight, dy);
    }
    let (k, nl) = (g.k(), g.n * g.l());
    let dy = to_channel_major(dy, g.n, g.c_out, g.l());
    let mut dcols = Scratch::new(k * nl);
    gemm(
        k,
        nl,
        g.c_out,
        &mut dcols,
        Mat {
            data: weight,
            rs: 1,
            cs: k,
        },
        Mat {
            data: &dy,
            rs: nl,
            cs: 1,
        },
    );
    col2im(g, &dcols)
}

/// Gradient of the convolution's weight `[c_out, K]` from the column matrix `[K, n*L]` of its
/// input and `dy [n, c_out, L]`.
pub fn weight_grad_from_columns(g: GemmDims, cols: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, nl) = (g.k, g.n * g.l);
    assert_eq!(dy.len(), g.c_out * nl);
    assert_eq!(cols.len(), k * nl);
    let dy = to_channel_major(dy, g.n, g.c_out, g.l);
    let size = g.c_out * k;
    if size == 0 {
        return Vec::new();
    }
    // Both operands are contiguous along the depth nL, so gemm packs the whole of its left one
    // first, and its left one is `dy'` if dst is column-major, `colsᵀ` if row-major: pack the
    // smaller. Its own threading splits dW's tiles after packing on the calling thread, which left
    // the other thread idle; instead each thread takes a share of the depth, its own GEMM of a
    // partial dW (packing its own share), and the partial sums are added.
    let transposed = g.c_out <= k;
    let parts = if size * nl >= PARALLEL_MACS {
        rayon::current_num_threads().clamp(1, nl)
    } else {
        1
    };
    let partial = |part: usize| {
        let (p0, p1) = (nl * part / parts, nl * (part + 1) / parts);
        let dy = Mat {
            data: &dy[p0..],
            rs: nl,
            cs: 1,
        };
        let cols = Mat {
            data: &cols[p0..],
            rs: 1,
            cs: nl,
        };
        let mut dw = Scratch::new(size);
        let strides = if transposed { [1, g.c_out] } else { [k, 1] };
        gemm_strided(g.c_out, k, p1 - p0, &mut dw, strides, dy, cols, false);
        dw
    };
    // One part runs here: handing it to rayon's pool would move it to another thread.
    let dw = if parts == 1 {
        partial(0)
    } else {
        (0..parts)
            .into_par_iter()
            .map(partial)
            .reduce_with(|mut sum, part| {
                sum.iter_mut().zip(part.iter()).for_each(|(s, p)| *s += p);
                sum
            })
            .unwrap_or_else(|| Scratch::new(size))
    };
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(k).enumerate().for_each(|(co, row)| {
            for (r, d) in row.iter_mut().enumerate() {
                d.write(if transposed {
                    dw[r * g.c_out + co]
                } else {
                    dw[co * k + r]
                });
            }
        })
    };
    // SAFETY: the rows of `k` cover the output and each is written in full.
    unsafe { written(size, fill) }
}

/// Gradient of the convolution's weight `[c_out, K]` from its input `x` and `dy [n, c_out, L]`,
/// when no column matrix was kept.
pub fn conv_weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    if g.by_sample() {
        return by_sample::weight_grad(g, x, dy);
    }
    weight_grad_from_columns(g.gemm(), &im2col(g, x), dy)
}

/// Layers with few channels over many pixels (Progressive GAN's and StackGAN's 3x3 convolutions
/// over 16-32 maps at 32 and 64 px) go sample by sample, in bands of output rows whose columns
/// stay in the core's cache: the batch's column matrix is nine times the input (38 MB for 16 maps
/// of 64x64 at batch 16), so building it, reading it back and transposing the GEMM's result cost
/// more than the multiply-adds, of which each column holds only `c_out`. Large layers keep the
/// batched GEMM, whose few big calls amortise the packing of the weight.
mod by_sample {
    use super::*;

    /// Bytes of one band's column matrix: within a core's L2 with room for the weight.
    const BAND_BYTES: usize = 192 << 10;

    /// At most this many output channels: beyond, the batched GEMM's arithmetic dominates.
    const MAX_C_OUT: usize = 32;

    /// At least this many bytes of columns per sample: below, one GEMM per band costs more in
    /// calls and packing than the batched column matrix does in memory.
    const MIN_SAMPLE_BYTES: usize = 256 << 10;

    impl Geometry {
        /// Whether this convolution runs sample by sample (see the module).
        pub fn by_sample(&self) -> bool {
            self.c_out <= MAX_C_OUT && self.k() * self.l() * 4 >= MIN_SAMPLE_BYTES && self.n > 0
        }

        /// Output rows per band.
        fn band_rows(&self) -> usize {
            (BAND_BYTES / (self.k() * self.ow * 4).max(1)).clamp(1, self.oh.max(1))
        }

        /// The bands of output rows, `oy0..oy1`.
        pub(super) fn bands(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
            let rows = self.band_rows();
            (0..self.oh)
                .step_by(rows)
                .map(move |oy0| (oy0, (oy0 + rows).min(self.oh)))
        }
    }

    /// Walks the column matrix of output rows `oy0..oy1` (`[K, (oy1-oy0)*ow]`): for each of its
    /// rows (channel `c`, tap) `row(r, whole)`, `whole` if the tap sees the image at every output
    /// pixel; then for each output row that sees it `run(r, at, x_at, cols)`: the `cols` columns
    /// from `at` in row `r` hold the image values from `x_at` on (in `[c_in, h, w]`), `stride[1]`
    /// apart. [`fill_band`] and [`add_band`] are the two directions of this one correspondence.
    fn walk_band(
        g: &Geometry,
        taps: &[Option<Tap>],
        (oy0, oy1): (usize, usize),
        mut row: impl FnMut(usize, bool),
        mut run: impl FnMut(usize, usize, usize, usize),
    ) {
        let (kk, hw) = (g.kernel[0] * g.kernel[1], g.h * g.w);
        for r in 0..g.k() {
            let (c, tap) = (r / kk, r % kk);
            let Some(t) = &taps[tap] else {
                row(r, false); // this tap only sees padding
                continue;
            };
            row(r, t.cols == g.ow && t.rows == g.oh);
            let (y_lo, x_lo) = (t.col0 / g.ow, t.col0 % g.ow);
            for oy in oy0.max(y_lo)..oy1.min(y_lo + t.rows) {
                let x_at = c * hw + t.x0 + (oy - y_lo) * t.x_step;
                run(r, (oy - oy0) * g.ow + x_lo, x_at, t.cols);
            }
        }
    }

    /// The columns `[K, (oy1-oy0)*ow]` of output rows `oy0..oy1` of one sample `x [c_in, h, w]`.
    fn fill_band(
        g: &Geometry,
        taps: &[Option<Tap>],
        x: &[f32],
        band: (usize, usize),
        cols: &mut [f32],
    ) {
        let (len, sw) = ((band.1 - band.0) * g.ow, g.stride[1]);
        let cols = std::cell::RefCell::new(cols);
        walk_band(
            g,
            taps,
            band,
            |r, whole| {
                if !whole {
                    cols.borrow_mut()[r * len..][..len].fill(0.0); // outputs that see padding
                }
            },
            |r, at, x_at, n| {
                let dst = &mut cols.borrow_mut()[r * len + at..][..n];
                let src = &x[x_at..][..(n - 1) * sw + 1];
                if sw == 1 {
                    dst.copy_from_slice(src);
                } else {
                    dst.iter_mut()
                        .zip(src.iter().step_by(sw))
                        .for_each(|(d, s)| *d = *s);
                }
            },
        );
    }

    /// Adds the columns of output rows `oy0..oy1` back into one sample `dx [c_in, h, w]`.
    fn add_band(
        g: &Geometry,
        taps: &[Option<Tap>],
        cols: &[f32],
        band: (usize, usize),
        dx: &mut [f32],
    ) {
        let (len, sw) = ((band.1 - band.0) * g.ow, g.stride[1]);
        walk_band(
            g,
            taps,
            band,
            |_, _| {},
            |r, at, x_at, n| {
                let src = &cols[r * len + at..][..n];
                let dst = &mut dx[x_at..][..(n - 1) * sw + 1];
                if sw == 1 {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    dst.iter_mut()
                        .step_by(sw)
                        .zip(src)
                        .for_each(|(d, s)| *d += s);
                }
            },
        );
    }

    /// A band's column buffer (stale contents: `fill_band` writes every element it is read at).
    fn band_buffer(g: &Geometry) -> Scratch {
        Scratch::new(g.k() * g.band_rows() * g.ow)
    }

    pub(super) fn forward(
        g: &Geometry,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        assert_eq!(x.len(), g.x_len());
        assert_eq!(weight.len(), g.w_len());
        let (k, l, xs) = (g.k(), g.l(), g.c_in * g.h * g.w);
        let taps = g.taps_by_index();
        super::super::par_new(g.y_len(), g.c_out * l, |b, y| {
            let x = &x[b * xs..][..xs];
            let mut cols = band_buffer(g);
            for band in g.bands() {
                let len = (band.1 - band.0) * g.ow;
                let cols = &mut cols[..k * len];
                fill_band(g, &taps, x, band, cols);
                let at = band.0 * g.ow;
                gemm_strided(
                    g.c_out,
                    len,
                    k,
                    &mut y[at..],
                    [l, 1],
                    Mat {
                        data: weight,
                        rs: k,
                        cs: 1,
                    },
                    Mat {
                        data: cols,
                        rs: len,
                        cs: 1,
                    },
                    false,
                );
            }
            if let Some(bias) = bias {
                for (plane, b) in y.chunks_exact_mut(l).zip(bias) {
                    plane.iter_mut().for_each(|v| *v += b);
                }
            }
        })
    }

    pub(super) fn input_grad(g: &Geometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
        let (k, l, xs) = (g.k(), g.l(), g.c_in * g.h * g.w);
        let taps = g.taps_by_index();
        super::super::par_new(g.x_len(), xs, |b, dx| {
            let dy = &dy[b * g.c_out * l..][..g.c_out * l];
            let mut dcols = band_buffer(g);
            for band in g.bands() {
                let len = (band.1 - band.0) * g.ow;
                let dcols = &mut dcols[..k * len];
                gemm_strided(
                    k,
                    len,
                    g.c_out,
                    dcols,
                    [len, 1],
                    Mat {
                        data: weight,
                        rs: 1,
                        cs: k,
                    },
                    Mat {
                        data: &dy[band.0 * g.ow..],
                        rs: l,
                        cs: 1,
                    },
                    false,
                );
                add_band(g, &taps, dcols, band, dx);
            }
        })
    }

    pub(super) fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), g.x_len());
        assert_eq!(dy.len(), g.y_len());
        let (k, l, xs) = (g.k(), g.l(), g.c_in * g.h * g.w);
        let size = g.c_out * k;
        let taps = g.taps_by_index();
        // Each thread sums its share of the samples' products into its own dW.
        let sample = |mut dw: Scratch, b: usize| {
            let (x, dy) = (&x[b * xs..][..xs], &dy[b * g.c_out * l..][..g.c_out * l]);
            let mut cols = band_buffer(g);
            for band in g.bands() {
                let len = (band.1 - band.0) * g.ow;
                let cols = &mut cols[..k * len];
                fill_band(g, &taps, x, band, cols);
                accumulate(
                    g.c_out,
                    k,
                    len,
                    &mut dw,
                    Mat {
                        data: &dy[band.0 * g.ow..],
                        rs: l,
                        cs: 1,
                    },
                    Mat {
                        data: cols,
                        rs: 1,
                        cs: len,
                    },
                );
            }
            dw
        };
        let zeroed = || {
            let mut dw = Scratch::new(size);
            dw.fill(0.0);
            dw
        };
        // Fixed shares of the batch, added in order: the sums' rounding depends on the thread
        // count alone, not on which thread stole which sample, so a run repeats bit for bit.
        let parts = rayon::current_num_threads().clamp(1, g.n.max(1));
        let partials: Vec<Scratch> = (0..parts)
            .into_par_iter()
            .map(|p| (g.n * p / parts..g.n * (p + 1) / parts).fold(zeroed(), sample))
            .collect();
        let mut partials = partials.into_iter();
        let mut dw = partials.next().unwrap_or_else(zeroed);
        for part in partials {
            dw.iter_mut().zip(part.iter()).for_each(|(s, p)| *s += p);
        }
        dw.to_vec()
    }

    /// `dst [m, n] (row-major) += a [m, depth] · b [depth, n]`, on the calling thread.
    fn accumulate(m: usize, n: usize, depth: usize, dst: &mut [f32], a: Mat, b: Mat) {
        assert_eq!(dst.len(), m * n);
        a.check(m, depth);
        b.check(depth, n);
        if m * n * depth == 0 {
            return;
        }
        // SAFETY: as in `gemm_strided`: both views were bounds-checked for every element the
        // product reads, and `dst` is an exclusive m*n row-major buffer.
        unsafe {
            gemm::gemm(
                m,
                n,
                depth,
                dst.as_mut_ptr(),
                1,
                n as isize,
                true,
                a.data.as_ptr(),
                a.cs as isize,
                a.rs as isize,
                b.data.as_ptr(),
                b.cs as isize,
                b.rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// Gradient of a per-channel bias: `dy [n, c, L]` summed over `n` and `L`.
pub fn bias_grad(dy: &[f32], n: usize, c: usize, l: usize) -> Vec<f32> {
    assert_eq!(dy.len(), n * c * l);
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n)
                .map(|b| dy[(b * c + ch) * l..][..l].iter().sum::<f32>())
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient of the convolution's weight, `dW [c_out, c_in, kh, kw]`, from its input (training
    /// computes it from columns its forward pass kept or its backward pass built).
    fn conv_weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
        weight_grad_from_columns(g.gemm(), &im2col(g, x), dy)
    }

    /// Direct 7-loop convolution, the definition the GEMM path must match.
    fn naive(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; g.y_len()];
        for b in 0..g.n {
            for co in 0..g.c_out {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut s = 0.0;
                        for ci in 0..g.c_in {
                            for i in 0..g.kernel[0] {
                                for j in 0..g.kernel[1] {
                                    let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize
                                        - g.pad[0] as isize;
                                    let ix = (ox * g.stride[1] + j * g.dilation[1]) as isize
                                        - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi =
                                        ((b * g.c_in + ci) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi =
                                        ((co * g.c_in + ci) * g.kernel[0] + i) * g.kernel[1] + j;
                                    s += x[xi] * w[wi];
                                }
                            }
                        }
                        y[((b * g.c_out + co) * g.oh + oy) * g.ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum()
    }

    #[test]
    fn gemm_path_matches_direct_convolution_and_its_adjoints() {
        // (c_in, h, w, c_out, kernel, stride, pad, dilation, end padding)
        let cases = [
            (3, 9, 7, 5, [4, 4], [2, 2], [1, 1], [1, 1], [1, 1]),
            (2, 8, 8, 3, [3, 2], [1, 2], [0, 1], [2, 1], [0, 0]),
            (1, 28, 28, 4, [4, 4], [2, 2], [1, 1], [1, 1], [1, 1]),
            (4, 5, 6, 2, [1, 1], [1, 1], [0, 0], [1, 1], [0, 0]),
            (2, 6, 5, 3, [3, 3], [3, 2], [2, 1], [1, 1], [0, 1]),
        ];
        for (seed, &(c_in, h, w, c_out, kernel, stride, pad, dilation, end)) in
            cases.iter().enumerate()
        {
            let size = |len: usize, k: usize, s: usize, p: usize, e: usize, d: usize| {
                (len + p + e - d * (k - 1) - 1) / s + 1
            };
            let g = Geometry {
                n: 3,
                c_in,
                h,
                w,
                c_out,
                oh: size(h, kernel[0], stride[0], pad[0], end[0], dilation[0]),
                ow: size(w, kernel[1], stride[1], pad[1], end[1], dilation[1]),
                kernel,
                stride,
                pad,
                dilation,
            };
            let seed = seed as u32 * 3;
            let (x, wt, dy) = (
                values(g.x_len(), seed),
                values(g.w_len(), seed + 1),
                values(g.y_len(), seed + 2),
            );
            let y = conv_forward(&g, &x, &wt, None);
            let want = naive(&g, &x, &wt);
            let diff = y.iter().zip(&want).map(|(a, b)| (a - b).abs());
            assert!(diff.fold(0.0, f32::max) < 1e-5, "{g:?}");
            // Adjoint identities: <dy, conv(x, W)> = <conv_input_grad(dy), x> = <dW, W>.
            let lhs = dot(&dy, &want);
            let dx = conv_input_grad(&g, &wt, &dy);
            let dw = conv_weight_grad(&g, &x, &dy);
            assert!(
                (dot(&dx, &x) - lhs).abs() < 1e-4 * (1.0 + lhs.abs()),
                "{g:?}"
            );
            assert!(
                (dot(&dw, &wt) - lhs).abs() < 1e-4 * (1.0 + lhs.abs()),
                "{g:?}"
            );
        }
    }

    #[test]
    fn sample_by_sample_path_gives_the_batched_paths_results() {
        // (n, c_in, h, w, c_out, kernel, stride, pad, dilation): odd geometries (padding-only
        // taps, strides, dilation), and layers big enough to run in several bands of rows.
        let cases = [
            (3, 3, 9, 7, 5, [4, 4], [2, 2], [1, 1], [1, 1]),
            (2, 2, 6, 5, 3, [3, 3], [3, 2], [2, 1], [1, 1]),
            (2, 2, 8, 8, 3, [3, 2], [1, 2], [0, 1], [2, 1]),
            (3, 16, 32, 32, 16, [3, 3], [1, 1], [1, 1], [1, 1]),
            (2, 16, 64, 64, 3, [1, 1], [1, 1], [0, 0], [1, 1]),
            (2, 8, 33, 31, 12, [4, 4], [2, 2], [1, 1], [1, 1]),
        ];
        let mut banded = false;
        for (seed, &(n, c_in, h, w, c_out, kernel, stride, pad, dilation)) in
            cases.iter().enumerate()
        {
            let size = |len: usize, k: usize, s: usize, p: usize, d: usize| {
                (len + 2 * p - d * (k - 1) - 1) / s + 1
            };
            let g = Geometry {
                n,
                c_in,
                h,
                w,
                c_out,
                oh: size(h, kernel[0], stride[0], pad[0], dilation[0]),
                ow: size(w, kernel[1], stride[1], pad[1], dilation[1]),
                kernel,
                stride,
                pad,
                dilation,
            };
            banded |= g.bands().count() > 1;
            let seed = seed as u32 * 5;
            let (x, wt, dy, bias) = (
                values(g.x_len(), seed),
                values(g.w_len(), seed + 1),
                values(g.y_len(), seed + 2),
                values(c_out, seed + 3),
            );
            let close = |a: &[f32], b: &[f32], what: &str| {
                assert_eq!(a.len(), b.len(), "{what} {g:?}");
                let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let diff = a
                    .iter()
                    .zip(b)
                    .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(diff <= 1e-5 * scale, "{what}: {diff} {g:?}");
            };
            let cols = im2col(&g, &x);
            close(
                &by_sample::forward(&g, &x, &wt, Some(&bias)),
                &forward_from_columns(g.gemm(), &cols, &wt, Some(&bias)),
                "forward",
            );
            close(
                &by_sample::weight_grad(&g, &x, &dy),
                &weight_grad_from_columns(g.gemm(), &cols, &dy),
                "weight gradient",
            );
            let dcols = {
                let dy = to_channel_major(&dy, g.n, g.c_out, g.l());
                let mut dcols = vec![0.0; g.k() * g.n * g.l()];
                let (k, nl) = (g.k(), g.n * g.l());
                gemm(
                    k,
                    nl,
                    g.c_out,
                    &mut dcols,
                    Mat {
                        data: &wt,
                        rs: 1,
                        cs: k,
                    },
                    Mat {
                        data: &dy,
                        rs: nl,
                        cs: 1,
                    },
                );
                dcols
            };
            close(
                &by_sample::input_grad(&g, &wt, &dy),
                &col2im(&g, &dcols),
                "input gradient",
            );
        }
        assert!(banded, "no case runs in several bands");
    }

    #[test]
    fn bias_is_added_per_channel_and_its_gradient_sums_over_batch_and_pixels() {
        let g = Geometry {
            n: 2,
            c_in: 1,
            h: 3,
            w: 3,
            c_out: 2,
            oh: 3,
            ow: 3,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
        };
        let x = values(g.x_len(), 7);
        let y = conv_forward(&g, &x, &[1.0, 2.0], Some(&[0.5, -1.0]));
        assert_eq!(y[0], x[0] + 0.5);
        assert_eq!(y[9], 2.0 * x[0] - 1.0);
        let dy: Vec<f32> = (0..g.y_len()).map(|i| i as f32).collect();
        let db = bias_grad(&dy, 2, 2, 9);
        assert_eq!(
            db,
            vec![
                (0..9).chain(18..27).sum::<i32>() as f32,
                (9..18).chain(27..36).sum::<i32>() as f32
            ]
        );
    }
}
