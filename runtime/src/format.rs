//! The `.pgq` int8 model file: a validated, zero-copy view over its bytes.
//!
//! Layout (little-endian), version 1:
//! ```text
//!  0 magic "PGQ\x1a"      4 version u16     6 flags u16 (0)
//!  8 file length u32     12 CRC32 of bytes 16..file length
//! 16 latent u32          20 classes u32 (0: unconditional)
//! 24 output c, h, w u16  30 reserved u16
//! 32 input scale f32     36 input zero point i8, 3 reserved
//! 40 output scale f32    44 output zero point i8, 3 reserved
//! 48 op count u32        52 metadata length u32 (UTF-8 JSON), then metadata padded to 4
//! ops: tag u8, 3 reserved, body length u32, body
//! ```
//! A class-conditional generator declares its class count in the header and starts with an
//! [`Op::Embed`]; an unconditional one has classes 0 and no `Embed` (files written before
//! conditional models existed parse unchanged, and older readers refuse conditional files).
//! Activations live as int8 in NHWC order; weights in the kernels' packed layout
//! ([`crate::kernels::packed_index`]); see [`Op`] for each body. [`Model::parse`] checks every
//! field, every shape transition and every requantization bound before anything runs.

use crate::kernels::{
    packed_len, padded_k, padded_n, I32s, PackedWeights, Requant, MAX_BIAS, MAX_K, MAX_SHIFT,
};

pub const MAGIC: [u8; 4] = *b"PGQ\x1a";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 56;
/// Largest height, width or channel count.
pub const MAX_DIM: usize = 4096;
/// Largest tensor, in elements per sample.
pub const MAX_ELEMENTS: usize = 1 << 24;
/// Largest packed weight matrix, in bytes.
pub const MAX_WEIGHT_BYTES: usize = 1 << 28;
/// Largest op count.
pub const MAX_OPS: usize = 256;
/// Largest class count of a conditional generator.
pub const MAX_CLASSES: usize = 65536;

pub mod tag {
    pub const LINEAR: u8 = 1;
    pub const CONV2D: u8 = 2;
    pub const CONV_TRANSPOSE2D: u8 = 3;
    pub const LUT: u8 = 4;
    pub const RESHAPE: u8 = 5;
    pub const FLATTEN: u8 = 6;
    pub const UPSAMPLE: u8 = 7;
    pub const EMBED: u8 = 8;
}

/// Why a model file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a pocketgan int8 model (bad magic)")]
    BadMagic,
    #[error("unsupported .pgq version {0} (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("file is truncated: {what} needs {needed} bytes, {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("header says {declared} bytes but the file has {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("checksum mismatch: header {expected:#010x}, contents {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("invalid header: {0}")]
    Header(&'static str),
    #[error("op {index}: unknown op tag {tag}")]
    UnknownOp { index: usize, tag: u8 },
    #[error("op {index}: {reason}")]
    Op { index: usize, reason: &'static str },
    #[error("op {index}: expects input {expected:?}, gets {actual:?}")]
    Shape {
        index: usize,
        expected: Shape,
        actual: Shape,
    },
    #[error("model output is {actual:?}, header declares {declared:?}")]
    Output { declared: Shape, actual: Shape },
}

/// The shape of one sample's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A feature vector.
    Flat(usize),
    /// An image, stored NHWC.
    Image { c: usize, h: usize, w: usize },
}

impl Shape {
    /// Equal, or a vector and a 1x1 image of as many channels (the same bytes in NHWC).
    pub fn same_layout(self, other: Shape) -> bool {
        let flat = |s: Shape| match s {
            Shape::Image { c, h: 1, w: 1 } => Shape::Flat(c),
            s => s,
        };
        flat(self) == flat(other)
    }

    pub fn elements(self) -> usize {
        match self {
            Shape::Flat(n) => n,
            Shape::Image { c, h, w } => c.saturating_mul(h).saturating_mul(w),
        }
    }
}

/// Quantization of a tensor at the model's boundary: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    pub scale: f32,
    pub zero_point: i8,
}

impl Quant {
    /// Rounds half away from zero and saturates; NaN maps to the zero point.
    pub fn quantize(self, x: f32) -> i8 {
        let v = (x / self.scale).clamp(-512.0, 512.0);
        if v.is_nan() {
            return self.zero_point;
        }
        // `as` truncates toward zero, so adding +-0.5 first rounds half away from zero (no_std
        // has no `f32::round`).
        let r = if v >= 0.0 {
            (v + 0.5) as i32
        } else {
            (v - 0.5) as i32
        };
        (r + self.zero_point as i32).clamp(-128, 127) as i8
    }
    pub fn dequantize(self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point as i32) as f32
    }
}

/// A matrix layer's integer parameters.
#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    pub zp_in: i8,
    pub requant: Requant<'a>,
}

/// A 2-D convolution geometry over an NHWC input of `cin x h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    /// Extra rows/columns at the end of a transposed convolution's output.
    pub out_pad: usize,
}

impl ConvGeometry {
    /// The stride, at least 1: the parser refuses 0, and inference must not divide by zero.
    fn step(&self) -> usize {
        self.stride.max(1)
    }
    /// Output height and width of a convolution.
    pub fn conv_out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.kh) / self.step() + 1,
            (self.w + 2 * self.pad - self.kw) / self.step() + 1,
        )
    }
    /// Output height and width of a transposed convolution.
    pub fn transpose_out(&self) -> (usize, usize) {
        let o = |i: usize, k: usize| (i - 1) * self.stride + k + self.out_pad - 2 * self.pad;
        (o(self.h, self.kh), o(self.w, self.kw))
    }
    /// Kernel taps of a transposed convolution's phase `r` along a kernel side of `k`: those
    /// with `tap % stride == r`. Output `o` belongs to phase `(o + pad) % stride`.
    pub fn phase_taps(&self, k: usize, r: usize) -> usize {
        (k + self.stride - 1 - r) / self.step()
    }
    /// Reduction depth of phase `(ry, rx)`: taps times input channels.
    pub fn phase_k(&self, ry: usize, rx: usize) -> usize {
        self.phase_taps(self.kh, ry) * self.phase_taps(self.kw, rx) * self.cin
    }
}

/// One validated op.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a> {
    /// `Flat(in) -> Flat(out)`; weights `[in x out]`.
    Linear {
        gemm: Gemm<'a>,
        weights: PackedWeights<'a>,
    },
    /// Convolution (cross-correlation); weights `[(ky, kx, cin) x cout]`.
    Conv2d {
        gemm: Gemm<'a>,
        geometry: ConvGeometry,
        weights: PackedWeights<'a>,
    },
    /// Transposed convolution as `stride^2` phase convolutions; `phases` holds each phase's
    /// packed `[(ty, tx, cin) x cout]` matrix in row-major phase order, tap `t` of phase `r`
    /// being kernel index `r + t * stride`. `requant.bias` holds `cout` biases per phase.
    ConvTranspose2d {
        gemm: Gemm<'a>,
        geometry: ConvGeometry,
        phases: &'a [i8],
    },
    /// Elementwise `y = table[x as u8]` (LeakyReLU, Tanh, Sigmoid, requantization).
    Lut { table: &'a [u8; 256] },
    /// `Flat(c*h*w)` in CHW order (as ONNX reshapes it) to an NHWC image.
    Reshape { c: usize, h: usize, w: usize },
    /// An NHWC image to `Flat(c*h*w)` in CHW order.
    Flatten { c: usize, h: usize, w: usize },
    /// Nearest-neighbour upsampling by an integer factor.
    Upsample {
        c: usize,
        h: usize,
        w: usize,
        factor: usize,
    },
    /// The class input of a conditional generator: `Flat(latent) -> Flat(latent + dim)`, each
    /// sample's latent followed by row `class` of `table` (`[classes x dim]`, row-major). Latent
    /// and table share the model's input quantization (the concatenation's), so this is a copy.
    Embed {
        classes: usize,
        dim: usize,
        table: &'a [i8],
    },
}

impl<'a> Op<'a> {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "Linear",
            Op::Conv2d { .. } => "Conv2d",
            Op::ConvTranspose2d { .. } => "ConvTranspose2d",
            Op::Lut { .. } => "Lut",
            Op::Reshape { .. } => "Reshape",
            Op::Flatten { .. } => "Flatten",
            Op::Upsample { .. } => "Upsample",
            Op::Embed { .. } => "Embed",
        }
    }

    /// Packed weights of a transposed convolution's phase `(ry, rx)`; `None` if there is no such
    /// phase (the parser checked that every phase of a model's op is there).
    pub fn phase_weights(
        geometry: &ConvGeometry,
        phases: &'a [i8],
        ry: usize,
        rx: usize,
    ) -> Option<PackedWeights<'a>> {
        let mut offset = 0;
        for py in 0..geometry.stride {
            for px in 0..geometry.stride {
                let len = packed_len(geometry.phase_k(py, px), geometry.cout);
                if (py, px) == (ry, rx) {
                    let data = phases.get(offset..offset + len)?;
                    return PackedWeights::new(data, geometry.phase_k(py, px), geometry.cout);
                }
                offset += len;
            }
        }
        None
    }

    /// Integer multiply-adds per sample (padding taps included).
    pub fn macs(&self) -> usize {
        match self {
            Op::Linear { weights, .. } => weights.k() * weights.n(),
            Op::Conv2d { geometry: g, .. } => {
                let (ho, wo) = g.conv_out();
                ho * wo * g.kh * g.kw * g.cin * g.cout
            }
            Op::ConvTranspose2d { geometry: g, .. } => g.h * g.w * g.kh * g.kw * g.cin * g.cout,
            _ => 0,
        }
    }
}

/// A parsed model: header fields plus the validated op bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub latent: usize,
    pub classes: usize,
    pub output: Shape,
    pub input_quant: Quant,
    pub output_quant: Quant,
    pub metadata: &'a str,
    op_count: usize,
    ops: &'a [u8],
    /// Largest per-sample `input + output` bytes of any op (and the input and output themselves).
    pub max_pair: usize,
    /// Largest padded reduction depth of any GEMM.
    pub max_kp: usize,
    /// Largest output channel count of a transposed convolution (its output tile's row).
    pub max_n: usize,
    pub file_len: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Check value ranges (the first pass); later passes only re-read validated bytes.
    validate: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let s = rest.get(..n).ok_or(FormatError::Truncated {
            what,
            needed: n,
            available: rest.len(),
        })?;
        self.pos += n;
        Ok(s)
    }
    /// The next `N` bytes.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<&'a [u8; N], FormatError> {
        let b = self.take(N, what)?;
        // `take` returned exactly N bytes; the error is never built.
        b.try_into().map_err(|_| FormatError::Truncated {
            what,
            needed: N,
            available: b.len(),
        })
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn i8(&mut self, what: &'static str) -> Result<i8, FormatError> {
        Ok(self.u8(what)? as i8)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(*self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(*self.array(what)?))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_bits(self.u32(what)?))
    }
    fn pad4(&mut self, what: &'static str) -> Result<(), FormatError> {
        let n = (4 - self.pos % 4) % 4;
        self.take(n, what).map(|_| ())
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it), a table lookup per byte. The parser's own rather
/// than a dependency's so that the no-panic proof of validation (`tests/tests/no_panic.rs`) sees
/// only `u8` indices into a 256-entry table.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(!0u32, |c, &b| CRC_TABLE[(c as u8 ^ b) as usize] ^ (c >> 8))
}

/// `CRC_TABLE[i]`: the CRC of byte `i` (reflected polynomial 0xedb88320).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Whether the product of `dims` is at most [`MAX_ELEMENTS`] (checked, for 32-bit targets).
fn fits(dims: &[usize]) -> bool {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_some_and(|n| n <= MAX_ELEMENTS)
}

fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts(b.as_ptr() as *const i8, b.len()) }
}

fn checked_quant(scale: f32, zp: i8) -> Result<Quant, FormatError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(FormatError::Header(
            "boundary scale must be finite and positive",
        ));
    }
    Ok(Quant {
        scale,
        zero_point: zp,
    })
}

impl<'a> Model<'a> {
    /// Validates `bytes` completely; nothing in a model that passes can make inference panic.
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, FormatError> {
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            validate: true,
        };
        if r.take(4, "magic")? != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if r.u16("flags")? != 0 {
            return Err(FormatError::Header("unknown flags"));
        }
        let declared = r.u32("file length")? as usize;
        let expected = r.u32("checksum")?;
        if declared != bytes.len() {
            if declared > bytes.len() {
                return Err(FormatError::Truncated {
                    what: "file",
                    needed: declared,
                    available: bytes.len(),
                });
            }
            return Err(FormatError::LengthMismatch {
                declared,
                actual: bytes.len(),
            });
        }
        if declared < HEADER_LEN {
            return Err(FormatError::Truncated {
                what: "header",
                needed: HEADER_LEN,
                available: declared,
            });
        }
        let actual = crc32(bytes.get(16..).unwrap_or_default());
        if actual != expected {
            return Err(FormatError::Checksum { expected, actual });
        }
        let latent = r.u32("latent")? as usize;
        let classes = r.u32("classes")? as usize;
        let (c, h, w) = (
            r.u16("out c")? as usize,
            r.u16("out h")? as usize,
            r.u16("out w")? as usize,
        );
        r.u16("reserved")?;
        let input_quant = checked_quant(r.f32("input scale")?, r.i8("input zero point")?)?;
        r.take(3, "reserved")?;
        let output_quant = checked_quant(r.f32("output scale")?, r.i8("output zero point")?)?;
        r.take(3, "reserved")?;
        let op_count = r.u32("op count")? as usize;
        let meta_len = r.u32("metadata length")? as usize;
        if latent == 0 || latent > MAX_DIM || classes > MAX_CLASSES {
            return Err(FormatError::Header(
                "latent must be 1..=4096 and classes 0..=65536",
            ));
        }
        if [c, h, w].iter().any(|&d| d == 0 || d > MAX_DIM) || !fits(&[c, h, w]) {
            return Err(FormatError::Header("output shape out of range"));
        }
        if op_count == 0 || op_count > MAX_OPS {
            return Err(FormatError::Header("op count must be 1..=256"));
        }
        let metadata = core::str::from_utf8(r.take(meta_len, "metadata")?)
            .map_err(|_| FormatError::Header("metadata is not UTF-8"))?;
        r.pad4("metadata padding")?;
        let ops = bytes.get(r.pos..).unwrap_or_default();
        let mut model = Model {
            latent,
            classes,
            output: Shape::Image { c, h, w },
            input_quant,
            output_quant,
            metadata,
            op_count,
            ops,
            max_pair: 0,
            max_kp: 0,
            max_n: 0,
            file_len: bytes.len(),
        };
        // Walk the ops once, checking each against the running shape.
        let mut shape = Shape::Flat(latent);
        let mut max_pair = 0;
        let mut ops_reader = Reader {
            buf: ops,
            pos: 0,
            validate: true,
        };
        for index in 0..op_count {
            let op = read_op(&mut ops_reader, index)?;
            // The class embedding is the first op exactly when the header declares classes.
            let embed_classes = match op {
                Op::Embed { classes, .. } => Some(classes),
                _ => None,
            };
            let expected_classes = (index == 0 && classes > 0).then_some(classes);
            if embed_classes != expected_classes {
                return Err(FormatError::Op {
                    index,
                    reason: if embed_classes.is_some() && index == 0 {
                        "embedding's class count differs from the header's"
                    } else if embed_classes.is_some() {
                        "an embedding must be the first op"
                    } else {
                        "the header declares classes: the first op must be an embedding"
                    },
                });
            }
            let next = check_op(&op, shape, index)?;
            max_pair = max_pair.max(shape.elements() + next.elements());
            match op {
                // Linear and Conv2d write GEMM rows in place; only transposed convolutions
                // scatter theirs from the output tile.
                Op::Linear { weights, .. } | Op::Conv2d { weights, .. } => {
                    model.max_kp = model.max_kp.max(weights.kp());
                }
                Op::ConvTranspose2d { geometry, .. } => {
                    for ry in 0..geometry.stride {
                        for rx in 0..geometry.stride {
                            model.max_kp = model.max_kp.max(padded_k(geometry.phase_k(ry, rx)));
                        }
                    }
                    model.max_n = model.max_n.max(geometry.cout);
                }
                _ => {}
            }
            shape = next;
        }
        if ops_reader.pos != ops.len() {
            return Err(FormatError::Header("bytes after the last op"));
        }
        if !shape.same_layout(model.output) {
            return Err(FormatError::Output {
                declared: model.output,
                actual: shape,
            });
        }
        model.max_pair = max_pair;
        Ok(model)
    }

    /// The ops in order. Infallible: [`Model::parse`] already read them once.
    pub fn ops(&self) -> impl Iterator<Item = Op<'a>> + 'a {
        let mut reader = Reader {
            buf: self.ops,
            pos: 0,
            validate: false,
        };
        (0..self.op_count).map_while(move |i| read_op(&mut reader, i).ok())
    }

    pub fn op_count(&self) -> usize {
        self.op_count
    }

    /// Class count of a conditional generator (each sample takes a class in `0..classes`); 0 for
    /// an unconditional one.
    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn is_conditional(&self) -> bool {
        self.classes > 0
    }

    /// Shapes of every op's input, then the model's output.
    pub fn shapes(&self) -> impl Iterator<Item = Shape> + 'a {
        let mut shape = Shape::Flat(self.latent);
        core::iter::once(shape).chain(self.ops().map(move |op| {
            shape = out_shape(&op, shape);
            shape
        }))
    }
}

/// Reads `biases` biases (one per column, or per phase and column) and `n` multipliers and shifts.
fn read_requant<'a>(
    r: &mut Reader<'a>,
    biases: usize,
    n: usize,
    (zp_out, min, max): (i8, i8, i8),
    index: usize,
) -> Result<Requant<'a>, FormatError> {
    let bad = |reason| Err(FormatError::Op { index, reason });
    // Whole i32s, since 4 * count bytes were taken.
    let (Some(bias), Some(mult)) = (
        I32s::new(r.take(4 * biases, "bias")?),
        I32s::new(r.take(4 * n, "multiplier")?),
    ) else {
        return bad("requantization arrays");
    };
    let shift = r.take(n, "shift")?;
    r.pad4("shift padding")?;
    if !r.validate {
        return Ok(Requant {
            bias,
            mult,
            shift,
            zp_out,
            min,
            max,
        });
    }
    if bias.iter().any(|b| !(-MAX_BIAS..=MAX_BIAS).contains(&b)) {
        return bad("bias out of range");
    }
    if mult.iter().any(|m| m <= 0) {
        return bad("multiplier must be positive");
    }
    if shift.iter().any(|&s| s == 0 || s > MAX_SHIFT) {
        return bad("shift out of range");
    }
    if min > max {
        return bad("clamp minimum above maximum");
    }
    Ok(Requant {
        bias,
        mult,
        shift,
        zp_out,
        min,
        max,
    })
}

fn read_weights<'a>(
    r: &mut Reader<'a>,
    k: usize,
    n: usize,
    index: usize,
) -> Result<PackedWeights<'a>, FormatError> {
    let bytes = padded_k(k).checked_mul(padded_n(n));
    if k == 0
        || k > MAX_K
        || n == 0
        || n > MAX_ELEMENTS
        || bytes.is_none_or(|b| b > MAX_WEIGHT_BYTES)
    {
        return Err(FormatError::Op {
            index,
            reason: "matrix size out of range",
        });
    }
    // Exactly packed_len(k, n) bytes, so `new` accepts them.
    let w = PackedWeights::new(as_i8(r.take(packed_len(k, n), "weights")?), k, n).ok_or(
        FormatError::Op {
            index,
            reason: "matrix size out of range",
        },
    )?;
    // -128 is excluded so that two products always fit i16 (NEON pairs products in i16).
    if r.validate && (w.data().contains(&i8::MIN) || !w.padding_is_zero()) {
        return Err(FormatError::Op {
            index,
            reason: "weights must be in -127..=127 with zero padding",
        });
    }
    Ok(w)
}

fn read_geometry(r: &mut Reader, index: usize) -> Result<ConvGeometry, FormatError> {
    let g = ConvGeometry {
        cin: r.u16("cin")? as usize,
        cout: r.u16("cout")? as usize,
        h: r.u16("height")? as usize,
        w: r.u16("width")? as usize,
        kh: r.u8("kernel height")? as usize,
        kw: r.u8("kernel width")? as usize,
        stride: r.u8("stride")? as usize,
        pad: r.u8("padding")? as usize,
        out_pad: r.u8("output padding")? as usize,
    };
    r.take(3, "reserved")?;
    let dims_ok = [g.cin, g.cout, g.h, g.w]
        .iter()
        .all(|&d| d > 0 && d <= MAX_DIM);
    if !dims_ok
        || g.kh == 0
        || g.kw == 0
        || g.stride == 0
        || g.stride > 8
        || !fits(&[g.h, g.w, g.cin])
    {
        return Err(FormatError::Op {
            index,
            reason: "convolution geometry out of range",
        });
    }
    Ok(g)
}

fn read_gemm_header(r: &mut Reader) -> Result<(i8, i8, i8, i8), FormatError> {
    Ok((
        r.i8("input zero point")?,
        r.i8("output zero point")?,
        r.i8("clamp min")?,
        r.i8("clamp max")?,
    ))
}

fn read_op<'a>(r: &mut Reader<'a>, index: usize) -> Result<Op<'a>, FormatError> {
    let t = r.u8("op tag")?;
    r.take(3, "op reserved")?;
    let body_len = r.u32("op length")? as usize;
    let body = r.take(body_len, "op body")?;
    let mut b = Reader {
        buf: body,
        pos: 0,
        validate: r.validate,
    };
    let bad = |reason| FormatError::Op { index, reason };
    let op = match t {
        tag::LINEAR => {
            let k = b.u32("in features")? as usize;
            let n = b.u32("out features")? as usize;
            let (zp_in, zp_out, min, max) = read_gemm_header(&mut b)?;
            if k > MAX_K || n > MAX_ELEMENTS {
                return Err(bad("matrix size out of range"));
            }
            let requant = read_requant(&mut b, n, n, (zp_out, min, max), index)?;
            let weights = read_weights(&mut b, k, n, index)?;
            Op::Linear {
                gemm: Gemm { zp_in, requant },
                weights,
            }
        }
        tag::CONV2D | tag::CONV_TRANSPOSE2D => {
            let g = read_geometry(&mut b, index)?;
            let (zp_in, zp_out, min, max) = read_gemm_header(&mut b)?;
            // A transposed convolution's phases have different column sums, so each phase has
            // its own folded biases.
            let biases = if t == tag::CONV2D {
                g.cout
            } else {
                g.stride * g.stride * g.cout
            };
            let requant = read_requant(&mut b, biases, g.cout, (zp_out, min, max), index)?;
            if t == tag::CONV2D {
                if g.kh > g.h + 2 * g.pad || g.kw > g.w + 2 * g.pad || g.out_pad != 0 {
                    return Err(bad("kernel larger than the padded input"));
                }
                let weights = read_weights(&mut b, g.kh * g.kw * g.cin, g.cout, index)?;
                Op::Conv2d {
                    gemm: Gemm { zp_in, requant },
                    geometry: g,
                    weights,
                }
            } else {
                // Every phase needs at least one tap, and the output must be non-empty.
                if g.kh < g.stride || g.kw < g.stride || g.out_pad >= g.stride {
                    return Err(bad(
                        "transposed convolution needs kernel >= stride > output padding",
                    ));
                }
                if 2 * g.pad >= (g.h - 1) * g.stride + g.kh + g.out_pad
                    || 2 * g.pad >= (g.w - 1) * g.stride + g.kw + g.out_pad
                {
                    return Err(bad("padding leaves no output"));
                }
                let start = b.pos;
                for ry in 0..g.stride {
                    for rx in 0..g.stride {
                        read_weights(&mut b, g.phase_k(ry, rx), g.cout, index)?;
                    }
                }
                Op::ConvTranspose2d {
                    gemm: Gemm { zp_in, requant },
                    geometry: g,
                    phases: as_i8(body.get(start..b.pos).unwrap_or_default()),
                }
            }
        }
        tag::LUT => Op::Lut {
            table: b.array("lookup table")?,
        },
        tag::RESHAPE | tag::FLATTEN | tag::UPSAMPLE => {
            let (c, h, w) = (
                b.u16("c")? as usize,
                b.u16("h")? as usize,
                b.u16("w")? as usize,
            );
            let factor = b.u16("factor")? as usize;
            if [c, h, w].iter().any(|&d| d == 0 || d > MAX_DIM) || !fits(&[c, h, w]) {
                return Err(bad("shape out of range"));
            }
            match t {
                tag::RESHAPE | tag::FLATTEN if factor != 0 => {
                    return Err(bad("reshape has a factor"))
                }
                tag::RESHAPE => Op::Reshape { c, h, w },
                tag::FLATTEN => Op::Flatten { c, h, w },
                _ => {
                    if !(2..=16).contains(&factor) || !fits(&[c, h, w, factor, factor]) {
                        return Err(bad("upsampling factor out of range"));
                    }
                    Op::Upsample { c, h, w, factor }
                }
            }
        }
        tag::EMBED => {
            let classes = b.u32("classes")? as usize;
            let dim = b.u32("embedding size")? as usize;
            if classes == 0 || classes > MAX_CLASSES || dim == 0 || dim > MAX_DIM {
                return Err(bad("embedding size out of range"));
            }
            // Both factors are bounded, so the product cannot overflow even on 32-bit targets.
            let table = as_i8(b.take(classes * dim, "embedding table")?);
            b.pad4("embedding padding")?;
            Op::Embed {
                classes,
                dim,
                table,
            }
        }
        _ => return Err(FormatError::UnknownOp { index, tag: t }),
    };
    if b.pos != body.len() {
        return Err(bad("op body has trailing bytes"));
    }
    Ok(op)
}

/// The output shape of `op` applied to `input` (shapes already checked by the parser).
pub(crate) fn out_shape(op: &Op, input: Shape) -> Shape {
    match *op {
        Op::Linear { weights, .. } => Shape::Flat(weights.n()),
        Op::Conv2d { geometry: g, .. } => {
            let (h, w) = g.conv_out();
            Shape::Image { c: g.cout, h, w }
        }
        Op::ConvTranspose2d { geometry: g, .. } => {
            let (h, w) = g.transpose_out();
            Shape::Image { c: g.cout, h, w }
        }
        Op::Lut { .. } => input,
        Op::Reshape { c, h, w } => Shape::Image { c, h, w },
        Op::Flatten { c, h, w } => Shape::Flat(c * h * w),
        Op::Upsample { c, h, w, factor } => Shape::Image {
            c,
            h: h * factor,
            w: w * factor,
        },
        Op::Embed { dim, .. } => Shape::Flat(input.elements() + dim),
    }
}

/// The input shape `op` requires, then its output shape.
fn check_op(op: &Op, input: Shape, index: usize) -> Result<Shape, FormatError> {
    let expected = match *op {
        Op::Linear { weights, .. } => Shape::Flat(weights.k()),
        Op::Conv2d { geometry: g, .. } | Op::ConvTranspose2d { geometry: g, .. } => Shape::Image {
            c: g.cin,
            h: g.h,
            w: g.w,
        },
        Op::Lut { .. } => input,
        Op::Reshape { c, h, w } => Shape::Flat(c * h * w),
        Op::Flatten { c, h, w } | Op::Upsample { c, h, w, .. } => Shape::Image { c, h, w },
        // Any vector: the parser only admits an embedding as the first op, on the latent.
        Op::Embed { .. } => Shape::Flat(input.elements()),
    };
    if !expected.same_layout(input) {
        return Err(FormatError::Shape {
            index,
            expected,
            actual: input,
        });
    }
    let out = out_shape(op, input);
    if out.elements() == 0 || out.elements() > MAX_ELEMENTS {
        return Err(FormatError::Op {
            index,
            reason: "output size out of range",
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn crc32_is_the_ieee_crc() {
        // The standard check value, and the empty input.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
