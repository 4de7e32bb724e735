//! The `.pgq` int8 model file: a validated, zero-copy view over its bytes.
//!
//! A model is a graph: a table of tensors, the tensors the caller supplies (inputs) and reads
//! (outputs), and nodes in topological order, each an op ([`crate::ops`]) reading named tensors
//! and writing new ones. Layout (little-endian), version 2:
//! ```text
//!  0 magic "PGQ\x1a"      4 version u16 (2)    6 flags u16 (0)
//!  8 file length u32     12 CRC32 of bytes 16..file length
//! 16 tensor count u16    18 node count u16    20 input count u16    22 output count u16
//! 24 metadata length u32 28 reserved u32
//! 32 metadata (UTF-8 JSON), padded to 4
//! tensors, 16 bytes each: c u32, h u16, w u16, kind u8, zero point i8, 2 reserved, scale f32
//!     kind 0: int8 vector of c values (h = w = 1); 1: int8 image c x h x w, stored NHWC;
//!     2: h indices in 0..c per sample (u32, given by the caller, not stored in the arena;
//!        w = 1): a class (h = 1, every file before text models) or a text's h token ids
//! inputs: u16 tensor index each, padded to 4;  outputs: u16 tensor index each, padded to 4
//! nodes: tag u8, input count u8, output count u8, reserved u8, body length u32,
//!        input tensor indices u16 each, output tensor indices u16 each, padded to 4, body
//! ```
//! Every tensor is defined once, by an input or by one node's output, before any node reads it,
//! so the order is topological and the graph has no cycle. Every tensor is read by a node or
//! is an output. [`Model::parse`] checks all of this, every op's body and shapes
//! ([`crate::ops::OpKind::output`]), then plans the arena ([`crate::plan`]): nothing in a model
//! that passes can make inference panic.

use crate::kernels::Requant;
use crate::ops::{Op, OpKind};
use crate::plan::Plan;

pub const MAGIC: [u8; 4] = *b"PGQ\x1a";
pub const VERSION: u16 = 2;
pub const HEADER_LEN: usize = 32;
/// Bytes of one entry of the tensor table.
pub const TENSOR_LEN: usize = 16;
/// Largest height, width or channel count.
pub const MAX_DIM: usize = 4096;
/// Largest tensor, in elements per sample.
pub const MAX_ELEMENTS: usize = 1 << 24;
/// Largest packed weight matrix, in bytes.
pub const MAX_WEIGHT_BYTES: usize = 1 << 28;
/// Largest node count.
pub const MAX_NODES: usize = 256;
/// Largest tensor count (the planner keeps one offset per tensor in the [`Model`], and plans
/// with arrays of this length on the stack): 128 on a host or a Pi, 16 on a microcontroller,
/// whose 16 KB of RAM (micro:bit) has no room for more and whose models are small. A power of
/// two, so that masking an index keeps it in bounds.
pub const MAX_TENSORS: usize = if cfg!(target_os = "none") { 16 } else { 128 };
/// Most inputs of one node (a concatenation of several skip connections); 4 on a
/// microcontroller, for the same reason.
pub const MAX_NODE_INPUTS: usize = if cfg!(target_os = "none") { 4 } else { 8 };
/// Most outputs of one node, and most inputs or outputs of a model.
pub const MAX_NODE_OUTPUTS: usize = 4;
pub const MAX_MODEL_IO: usize = 8;
/// Largest class count of a conditional generator.
pub const MAX_CLASSES: usize = 65536;

/// Why a model file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a pocketgan int8 model (bad magic)")]
    BadMagic,
    #[error("this is a version-1 .pgq file (a chain of layers), which this build no longer reads: quantize the generator's ONNX again with `pocketgan quantize MODEL.onnx --out MODEL.pgq`")]
    OldVersion,
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
    #[error("tensor {index}: {reason}")]
    Tensor { index: usize, reason: &'static str },
    #[error("node {index}: unknown op tag {tag}")]
    UnknownOp { index: usize, tag: u8 },
    #[error("node {index}: {reason}")]
    Op { index: usize, reason: &'static str },
    #[error("node {index}: expects input {expected:?}, gets {actual:?}")]
    Shape {
        index: usize,
        expected: Shape,
        actual: Shape,
    },
    #[error("node {index}: computes {actual:?} but its output tensor is declared {declared:?}")]
    Output {
        index: usize,
        declared: Shape,
        actual: Shape,
    },
    #[error("graph: {0}")]
    Graph(&'static str),
    #[error("the arena plan needs more than {0} bytes per sample")]
    Plan(usize),
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
    /// Scale 1, zero point 0: a placeholder where no quantization applies (class indices).
    pub const UNIT: Quant = Quant {
        scale: 1.0,
        zero_point: 0,
    };
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

/// What a tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// Quantized activations in the arena.
    Int8,
    /// Indices in `0..classes`, read from the caller's input (never stored): as many per
    /// sample as the tensor's `Shape::Flat` length, one for a class, `T` for a text's token
    /// ids ("slots").
    Index { classes: usize },
}

/// One entry of the tensor table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorInfo {
    pub shape: Shape,
    pub quant: Quant,
    pub kind: TensorKind,
}

impl TensorInfo {
    /// Arena bytes per sample.
    pub fn bytes(&self) -> usize {
        match self.kind {
            TensorKind::Int8 => self.shape.elements(),
            TensorKind::Index { .. } => 0,
        }
    }
}

/// A validated node: its op and the tensors it reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub op: Op<'a>,
    inputs: &'a [u8],
    outputs: &'a [u8],
}

pub(crate) fn u16s(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .as_chunks::<2>()
        .0
        .iter()
        .map(|b| u16::from_le_bytes(*b) as usize)
}

impl<'a> Node<'a> {
    /// Tensor indices the node reads, in the op's order.
    pub fn inputs(&self) -> impl Iterator<Item = usize> + 'a {
        u16s(self.inputs)
    }
    /// Tensor indices the node writes.
    pub fn outputs(&self) -> impl Iterator<Item = usize> + 'a {
        u16s(self.outputs)
    }
    pub fn input_count(&self) -> usize {
        self.inputs.len() / 2
    }
    /// The (first) output tensor.
    pub fn output(&self) -> usize {
        self.outputs().next().unwrap_or(0)
    }
}

/// A parsed model: the validated tables, the arena plan, and the shape of a latent generator
/// for the conveniences that drive one (`latent`, `classes`, `output`, the boundary quants).
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    tensors: &'a [u8],
    inputs: &'a [u8],
    outputs: &'a [u8],
    nodes: &'a [u8],
    node_count: usize,
    pub metadata: &'a str,
    /// Where each tensor lives in the arena.
    pub plan: Plan,
    /// Largest padded reduction depth of any GEMM.
    pub max_kp: usize,
    /// Largest output channel count of a transposed convolution (its output tile's row).
    pub max_n: usize,
    pub file_len: usize,
    /// Size of the first int8 vector input (the latent), 0 if the model has none.
    pub latent: usize,
    /// Class count of the first class input, 0 for an unconditional model.
    pub classes: usize,
    /// Indices per sample of that input: 1 for a class, `T` for a text's token ids (0 for an
    /// unconditional model).
    pub slots: usize,
    /// Shape of the first output.
    pub output: Shape,
    /// Quantization of the first int8 input and of the first output.
    pub input_quant: Quant,
    pub output_quant: Quant,
}

/// A cursor over a model's bytes; every read is checked, and a short read is
/// [`FormatError::Truncated`].
pub struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    /// Check value ranges (the first pass); later passes only re-read validated bytes.
    pub(crate) validate: bool,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
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
    pub fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<&'a [u8; N], FormatError> {
        let b = self.take(N, what)?;
        // `take` returned exactly N bytes; the error is never built.
        b.try_into().map_err(|_| FormatError::Truncated {
            what,
            needed: N,
            available: b.len(),
        })
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn i8(&mut self, what: &'static str) -> Result<i8, FormatError> {
        Ok(self.u8(what)? as i8)
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(*self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(*self.array(what)?))
    }
    pub fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_bits(self.u32(what)?))
    }
    pub fn pad4(&mut self, what: &'static str) -> Result<(), FormatError> {
        let n = (4 - self.pos % 4) % 4;
        self.take(n, what).map(|_| ())
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it). On std builds `crc32fast`, which uses the CPU's
/// CRC or carry-less multiply instructions where it has them (a Pi 4's Cortex-A72 does): the
/// table loop cost about 8 instructions per byte, more per model load than generating an image.
#[cfg(feature = "std")]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// CRC-32 (IEEE 802.3, as zlib computes it), a table lookup per byte: the no_std build's own
/// rather than a dependency's, so that the no-panic proof of validation
/// (`tests/tests/no_panic.rs`) sees only `u8` indices into a 256-entry table.
#[cfg(not(feature = "std"))]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_table(bytes)
}

/// The table-driven CRC-32 of [`crc32`].
pub fn crc32_table(bytes: &[u8]) -> u32 {
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
pub(crate) fn fits(dims: &[usize]) -> bool {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_some_and(|n| n <= MAX_ELEMENTS)
}

pub(crate) fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts(b.as_ptr() as *const i8, b.len()) }
}

/// Reads entry `index` of a tensor table; `validate` checks its ranges.
fn tensor_at(table: &[u8], index: usize, validate: bool) -> Result<TensorInfo, FormatError> {
    let mut r = Reader {
        buf: table,
        pos: index.saturating_mul(TENSOR_LEN),
        validate,
    };
    let c = r.u32("tensor c")? as usize;
    let (h, w) = (r.u16("tensor h")? as usize, r.u16("tensor w")? as usize);
    let kind = r.u8("tensor kind")?;
    let zero_point = r.i8("tensor zero point")?;
    r.u16("tensor reserved")?;
    let scale = r.f32("tensor scale")?;
    let bad = |reason| FormatError::Tensor { index, reason };
    if validate {
        // A vector's length is bounded by the element limit, an image's sides and channels by
        // the dimension limit, a class count by the class limit and an index tensor's slots
        // (its height) by the dimension limit.
        let (c_max, values) = match kind {
            0 => (MAX_ELEMENTS, [c, h, w]),
            2 => (MAX_CLASSES, [h, w, 1]),
            _ => (MAX_DIM, [c, h, w]),
        };
        if c == 0 || c > c_max || [h, w].iter().any(|&d| d == 0 || d > MAX_DIM) || !fits(&values) {
            return Err(bad("shape out of range"));
        }
        if (kind == 0 && (h, w) != (1, 1)) || (kind == 2 && w != 1) {
            return Err(bad(
                "a vector has height and width 1, an index tensor width 1",
            ));
        }
        // Scale 0 records an intermediate tensor whose scale is unknown (a model upgraded from
        // version 1); inference reads only zero points, and the model's inputs and outputs
        // must have a real scale (checked in `Model::parse`).
        if (kind == 0 || kind == 1) && !(scale.is_finite() && scale >= 0.0) {
            return Err(bad("scale must be finite and not negative"));
        }
    }
    let quant = Quant { scale, zero_point };
    Ok(match kind {
        0 => TensorInfo {
            shape: Shape::Flat(c),
            quant,
            kind: TensorKind::Int8,
        },
        1 => TensorInfo {
            shape: Shape::Image { c, h, w },
            quant,
            kind: TensorKind::Int8,
        },
        2 => TensorInfo {
            shape: Shape::Flat(h),
            quant,
            kind: TensorKind::Index { classes: c },
        },
        _ => return Err(bad("unknown kind")),
    })
}

/// Reads node `index`: its header, tensor lists and op body.
#[inline(never)]
fn read_node<'a>(r: &mut Reader<'a>, index: usize) -> Result<Node<'a>, FormatError> {
    let tag = r.u8("node tag")?;
    let n_in = r.u8("node input count")? as usize;
    let n_out = r.u8("node output count")? as usize;
    r.u8("node reserved")?;
    let body_len = r.u32("node body length")? as usize;
    let bad = |reason| FormatError::Op { index, reason };
    if r.validate && (n_in == 0 || n_in > MAX_NODE_INPUTS || n_out == 0 || n_out > MAX_NODE_OUTPUTS)
    {
        return Err(bad("input or output count out of range"));
    }
    let inputs = r.take(2 * n_in, "node inputs")?;
    let outputs = r.take(2 * n_out, "node outputs")?;
    r.pad4("node padding")?;
    if r.validate && !body_len.is_multiple_of(4) {
        return Err(bad("body length must be a multiple of 4"));
    }
    let body = r.take(body_len, "node body")?;
    let mut b = Reader {
        buf: body,
        pos: 0,
        validate: r.validate,
    };
    let op = Op::parse(tag, &mut b, index)?;
    if b.pos != body.len() {
        return Err(bad("op body has trailing bytes"));
    }
    Ok(Node {
        op,
        inputs,
        outputs,
    })
}

/// One flag per tensor.
type Flags = [bool; MAX_TENSORS];

/// Marks `index` defined; a second definition, or a tensor outside the table, is an error.
fn define(defined: &mut Flags, index: usize) -> Result<(), FormatError> {
    match defined.get_mut(index) {
        None => Err(FormatError::Graph(
            "a tensor index is outside the tensor table",
        )),
        Some(true) => Err(FormatError::Graph("a tensor is defined twice")),
        Some(d) => {
            *d = true;
            Ok(())
        }
    }
}

impl<'a> Model<'a> {
    /// Validates `bytes` completely and plans the arena; nothing in a model that passes can make
    /// inference panic.
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, FormatError> {
        let mut model = Self::validate(bytes)?;
        model.plan = Plan::new(&model)?;
        Ok(model)
    }

    /// Everything [`Model::parse`] checks, without the plan.
    #[inline(never)]
    fn validate(bytes: &'a [u8]) -> Result<Model<'a>, FormatError> {
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            validate: true,
        };
        if r.take(4, "magic")? != MAGIC {
            return Err(FormatError::BadMagic);
        }
        match r.u16("version")? {
            VERSION => {}
            1 => return Err(FormatError::OldVersion),
            v => return Err(FormatError::UnsupportedVersion(v)),
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
        let tensor_count = r.u16("tensor count")? as usize;
        let node_count = r.u16("node count")? as usize;
        let input_count = r.u16("input count")? as usize;
        let output_count = r.u16("output count")? as usize;
        let meta_len = r.u32("metadata length")? as usize;
        r.u32("reserved")?;
        if tensor_count == 0 || tensor_count > MAX_TENSORS {
            return Err(FormatError::Header(
                "tensor count out of range (at most 128; 16 on a microcontroller)",
            ));
        }
        if node_count == 0 || node_count > MAX_NODES {
            return Err(FormatError::Header("node count must be 1..=256"));
        }
        if !(1..=MAX_MODEL_IO).contains(&input_count) || !(1..=MAX_MODEL_IO).contains(&output_count)
        {
            return Err(FormatError::Header("input and output counts must be 1..=8"));
        }
        let metadata = core::str::from_utf8(r.take(meta_len, "metadata")?)
            .map_err(|_| FormatError::Header("metadata is not UTF-8"))?;
        r.pad4("metadata padding")?;
        let tensors = r.take(tensor_count * TENSOR_LEN, "tensor table")?;
        for index in 0..tensor_count {
            tensor_at(tensors, index, true)?;
        }
        let inputs = r.take(2 * input_count, "input list")?;
        r.pad4("input list padding")?;
        let outputs = r.take(2 * output_count, "output list")?;
        r.pad4("output list padding")?;
        let nodes = bytes.get(r.pos..).unwrap_or_default();
        let mut model = Model {
            tensors,
            inputs,
            outputs,
            nodes,
            node_count,
            metadata,
            plan: Plan::default(),
            max_kp: 0,
            max_n: 0,
            file_len: bytes.len(),
            latent: 0,
            classes: 0,
            slots: 0,
            output: Shape::Flat(1),
            input_quant: Quant::UNIT,
            output_quant: Quant::UNIT,
        };

        // Walk the graph once: every read must follow its tensor's one definition.
        let mut defined: Flags = [false; MAX_TENSORS];
        let mut used: Flags = [false; MAX_TENSORS];
        for t in model.inputs() {
            define(&mut defined, t)?;
        }
        let mut reader = Reader {
            buf: nodes,
            pos: 0,
            validate: true,
        };
        for index in 0..node_count {
            let node = read_node(&mut reader, index)?;
            let mut infos = [model.tensor_or_unit(0); MAX_NODE_INPUTS];
            for (slot, t) in infos.iter_mut().zip(node.inputs()) {
                if !defined.get(t).copied().unwrap_or(false) {
                    return Err(FormatError::Op {
                        index,
                        reason: "reads a tensor that no input or earlier node defines (a cycle or a dangling tensor)",
                    });
                }
                if let Some(u) = used.get_mut(t) {
                    *u = true;
                }
                *slot = model.tensor_or_unit(t);
            }
            let n_in = node.input_count().min(MAX_NODE_INPUTS);
            let shape = node.op.output(&infos[..n_in], index)?;
            if node.outputs().count() != 1 {
                return Err(FormatError::Op {
                    index,
                    reason: "this op writes exactly one tensor",
                });
            }
            let out = node.output();
            define(&mut defined, out)?;
            let declared = model.tensor_or_unit(out);
            if declared.kind != TensorKind::Int8 {
                return Err(FormatError::Op {
                    index,
                    reason: "an op's output must be an int8 tensor",
                });
            }
            if !shape.same_layout(declared.shape) {
                return Err(FormatError::Output {
                    index,
                    declared: declared.shape,
                    actual: shape,
                });
            }
            // Only matrix ops use the tiles. Matched here with a default arm rather than
            // through `Op::scratch`: a thumbv6m build turns that exhaustive match into a jump
            // table without a bounds check, which the no-panic proof cannot follow.
            let scratch = match node.op {
                Op::Linear(o) => o.scratch(),
                Op::Conv2d(o) => o.scratch(),
                Op::ConvTranspose2d(o) => o.scratch(),
                _ => crate::ops::Scratch::default(),
            };
            model.max_kp = model.max_kp.max(scratch.tile_depth);
            model.max_n = model.max_n.max(scratch.tile_out);
        }
        if reader.pos != nodes.len() {
            return Err(FormatError::Header("bytes after the last node"));
        }
        for t in model.inputs().chain(model.outputs()) {
            let info = model.tensor_or_unit(t);
            if info.kind == TensorKind::Int8 && info.quant.scale <= 0.0 {
                return Err(FormatError::Tensor {
                    index: t,
                    reason: "a model input or output needs a positive scale",
                });
            }
        }
        for t in model.outputs() {
            if !defined.get(t).copied().unwrap_or(false) {
                return Err(FormatError::Graph("an output is never computed"));
            }
            if model.tensor_or_unit(t).kind != TensorKind::Int8 {
                return Err(FormatError::Graph("an output must be an int8 tensor"));
            }
            if let Some(u) = used.get_mut(t) {
                *u = true;
            }
        }
        for t in 0..tensor_count {
            if !defined[t] {
                return Err(FormatError::Graph("a tensor is never defined"));
            }
            if !used[t] {
                return Err(FormatError::Graph("a tensor is never read"));
            }
        }
        // The conveniences of a latent generator.
        for t in model.inputs() {
            let info = model.tensor_or_unit(t);
            match info.kind {
                TensorKind::Int8 if model.latent == 0 => {
                    if let Shape::Flat(n) = info.shape {
                        model.latent = n;
                        model.input_quant = info.quant;
                    }
                }
                TensorKind::Index { classes } if model.classes == 0 => {
                    model.classes = classes;
                    model.slots = info.shape.elements();
                }
                _ => {}
            }
        }
        let first_out = model.tensor_or_unit(model.outputs().next().unwrap_or(0));
        model.output = first_out.shape;
        model.output_quant = first_out.quant;
        Ok(model)
    }

    /// Tensor `index` of the validated table; a unit vector past its end (never reached: the
    /// parser checked every index).
    fn tensor_or_unit(&self, index: usize) -> TensorInfo {
        self.tensor(index).unwrap_or(TensorInfo {
            shape: Shape::Flat(1),
            quant: Quant::UNIT,
            kind: TensorKind::Int8,
        })
    }

    /// Tensor `index`, or `None` past the table.
    pub fn tensor(&self, index: usize) -> Option<TensorInfo> {
        tensor_at(self.tensors, index, false).ok()
    }

    pub fn tensor_count(&self) -> usize {
        self.tensors.len() / TENSOR_LEN
    }

    /// Tensor indices the caller supplies, in order.
    pub fn inputs(&self) -> impl Iterator<Item = usize> + 'a {
        u16s(self.inputs)
    }

    /// Tensor indices the caller reads, in order.
    pub fn outputs(&self) -> impl Iterator<Item = usize> + 'a {
        u16s(self.outputs)
    }

    /// The nodes in order. Infallible: [`Model::parse`] already read them once.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        let mut reader = Reader {
            buf: self.nodes,
            pos: 0,
            validate: false,
        };
        (0..self.node_count).map_while(move |i| read_node(&mut reader, i).ok())
    }

    /// Each node's tag and the tensors it reads and writes, without parsing op bodies (the
    /// planner's view: light on the stack).
    pub fn links(&self) -> impl Iterator<Item = (u8, &'a [u8], &'a [u8])> + 'a {
        let mut r = Reader {
            buf: self.nodes,
            pos: 0,
            validate: false,
        };
        (0..self.node_count).map_while(move |_| {
            let tag = r.u8("node tag").ok()?;
            let n_in = r.u8("node input count").ok()? as usize;
            let n_out = r.u8("node output count").ok()? as usize;
            r.u8("node reserved").ok()?;
            let body_len = r.u32("node body length").ok()? as usize;
            let inputs = r.take(2 * n_in, "node inputs").ok()?;
            let outputs = r.take(2 * n_out, "node outputs").ok()?;
            r.pad4("node padding").ok()?;
            r.take(body_len, "node body").ok()?;
            Some((tag, inputs, outputs))
        })
    }

    /// The ops in node order.
    pub fn ops(&self) -> impl Iterator<Item = Op<'a>> + 'a {
        self.nodes().map(|n| n.op)
    }

    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// Class count of a conditional generator (each sample takes a class in `0..classes`); 0 for
    /// an unconditional one.
    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn is_conditional(&self) -> bool {
        self.classes > 0
    }

    /// Indices per sample of a conditional generator's index input: 1 for a class, `T` for a
    /// text of `T` token ids (0 for an unconditional model).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Integer multiply-adds per sample (padding taps included).
    pub fn macs(&self) -> usize {
        self.ops().map(|op| op.macs()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::{crc32, crc32_table};

    #[test]
    fn crc32_is_the_ieee_crc() {
        // The standard check value, and the empty input.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32_table(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn both_crc32s_agree_on_every_length_and_alignment() {
        let bytes: [u8; 300] =
            core::array::from_fn(|i| (i as u32).wrapping_mul(2_654_435_761) as u8 ^ (i >> 3) as u8);
        for start in 0..9 {
            for end in start..bytes.len() {
                assert_eq!(
                    crc32(&bytes[start..end]),
                    crc32_table(&bytes[start..end]),
                    "{start}..{end}"
                );
            }
        }
    }
}
