//! Reading a version-1 `.pgq` (a chain of ops) into the version-2 graph, op bodies unchanged.
//!
//! Version 1 stored a latent generator as a header and a list of ops, each reading the previous
//! one's output. Its op bodies are the version-2 bodies of the same ops, so the upgrade moves
//! them into nodes over a chain of tensors. Version 1 did not record the scales of intermediate
//! tensors: the upgraded file records their zero points (what inference reads) and scale 0, "not
//! recorded". Version-1 header (little-endian):
//! ```text
//!  0 magic "PGQ\x1a"      4 version u16 (1)    6 flags u16
//!  8 file length u32     12 CRC32 of bytes 16..
//! 16 latent u32          20 classes u32       24 output c, h, w u16   30 reserved u16
//! 32 input scale f32     36 input zero point i8, 3 reserved
//! 40 output scale f32    44 output zero point i8, 3 reserved
//! 48 op count u32        52 metadata length u32, then metadata padded to 4
//! ops: tag u8, 3 reserved, body length u32, body
//! ```

use crate::format::{crc32, FormatError, Quant, Reader, Shape, TensorInfo, TensorKind, MAGIC};
use crate::ops::Op;
use crate::write::{encode_raw, EncodeError, RawNode};

/// Why a version-1 file cannot be upgraded.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("not a version-1 .pgq file: {0}")]
    Format(#[from] FormatError),
    #[error("the upgraded model does not encode: {0}")]
    Encode(#[from] EncodeError),
}

/// The version-2 bytes of the version-1 model `bytes`.
pub fn upgrade_v1(bytes: &[u8]) -> Result<Vec<u8>, UpgradeError> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        validate: true,
    };
    if r.take(4, "magic")? != MAGIC {
        return Err(FormatError::BadMagic.into());
    }
    match r.u16("version")? {
        1 => {}
        v => return Err(FormatError::UnsupportedVersion(v).into()),
    }
    r.u16("flags")?;
    let declared = r.u32("file length")? as usize;
    let expected = r.u32("checksum")?;
    if declared != bytes.len() {
        return Err(FormatError::LengthMismatch {
            declared,
            actual: bytes.len(),
        }
        .into());
    }
    let actual = crc32(bytes.get(16..).unwrap_or_default());
    if actual != expected {
        return Err(FormatError::Checksum { expected, actual }.into());
    }
    let latent = r.u32("latent")? as usize;
    let classes = r.u32("classes")? as usize;
    let (c, h, w) = (
        r.u16("out c")? as usize,
        r.u16("out h")? as usize,
        r.u16("out w")? as usize,
    );
    r.u16("reserved")?;
    let input_quant = Quant {
        scale: r.f32("input scale")?,
        zero_point: r.i8("input zero point")?,
    };
    r.take(3, "reserved")?;
    let output_quant = Quant {
        scale: r.f32("output scale")?,
        zero_point: r.i8("output zero point")?,
    };
    r.take(3, "reserved")?;
    let op_count = r.u32("op count")? as usize;
    let meta_len = r.u32("metadata length")? as usize;
    let metadata = core::str::from_utf8(r.take(meta_len, "metadata")?)
        .map_err(|_| FormatError::Header("metadata is not UTF-8"))?;
    r.pad4("metadata padding")?;

    let int8 = |shape, zero_point| TensorInfo {
        shape,
        quant: Quant {
            scale: 0.0,
            zero_point,
        },
        kind: TensorKind::Int8,
    };
    let mut tensors = vec![TensorInfo {
        shape: Shape::Flat(latent),
        quant: input_quant,
        kind: TensorKind::Int8,
    }];
    let mut inputs = vec![0];
    if classes > 0 {
        tensors.push(TensorInfo {
            shape: Shape::Flat(1),
            quant: Quant::UNIT,
            kind: TensorKind::Index { classes },
        });
        inputs.push(1);
    }
    // Each op's tag, body and output; zero points follow the ops' own records.
    let mut ops = Vec::new();
    let mut x = 0;
    for index in 0..op_count {
        let tag = r.u8("op tag")?;
        r.take(3, "op reserved")?;
        let len = r.u32("op length")? as usize;
        let body = r.take(len, "op body")?;
        let mut b = Reader {
            buf: body,
            pos: 0,
            validate: true,
        };
        let op = Op::parse(tag, &mut b, index)?;
        let mut reads = vec![tensors[x]];
        if let Op::Embed(_) = op {
            reads.push(tensors[1]);
        }
        let shape = op.output(&reads, index)?;
        let zp = match op {
            Op::Linear(o) => o.gemm.requant.zp_out,
            Op::Conv2d(o) => o.gemm.requant.zp_out,
            Op::ConvTranspose2d(o) => o.gemm.requant.zp_out,
            _ => tensors[x].quant.zero_point,
        };
        tensors.push(int8(shape, zp));
        let node_inputs = if matches!(op, Op::Embed(_)) {
            vec![x, 1]
        } else {
            vec![x]
        };
        x = tensors.len() - 1;
        ops.push((tag, node_inputs, x, body, op));
    }
    // A lookup's output takes the zero point its reader expects (the last one, the model's).
    for i in (0..ops.len()).rev() {
        if let Op::Lut(_) = ops[i].4 {
            let out = ops[i].2;
            tensors[out].quant.zero_point = match ops.get(i + 1).map(|o| o.4) {
                Some(Op::Linear(o)) => o.gemm.zp_in,
                Some(Op::Conv2d(o)) => o.gemm.zp_in,
                Some(Op::ConvTranspose2d(o)) => o.gemm.zp_in,
                Some(_) => ops.get(i + 1).map_or(0, |o| tensors[o.2].quant.zero_point),
                None => output_quant.zero_point,
            };
        }
    }
    let last = tensors.len() - 1;
    tensors[last].quant = output_quant;
    if (Shape::Image { c, h, w }).same_layout(tensors[last].shape) {
        tensors[last].shape = Shape::Image { c, h, w };
    }
    let nodes: Vec<RawNode> = ops
        .iter()
        .map(|(tag, inputs, output, body, _)| RawNode {
            tag: *tag,
            inputs,
            output: *output,
            body,
        })
        .collect();
    Ok(encode_raw(&tensors, &inputs, &[last], &nodes, metadata)?)
}
