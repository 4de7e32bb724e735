//! `Lut`: an elementwise function as a 256-entry table, `y = table[x as u8]` (Tanh, Sigmoid,
//! LeakyReLU, ReLU, or a plain requantization). Runs in place when its input is not read again.
//!
//! Body: the 256 table bytes.

use super::{int8_inputs, Cx, OpKind};
use crate::format::{FormatError, Reader, Shape, TensorInfo};
use crate::interp::RunError;

// Quantization: the float op this int8 op implements, calibrated (host side).
#[cfg(feature = "std")]
use crate::quantize::NodeCx;
#[cfg(feature = "std")]
use crate::write::QuantOp;
// Import and the float definition: the tract ops read into the float op this int8 op
// implements, and that op in plain f32 (host side).
#[cfg(feature = "std")]
use crate::import::{Eval, FloatOp, MapResult, Mapped, Walker};
#[cfg(feature = "std")]
use tract_onnx::prelude::TypedNode;
#[cfg(feature = "std")]
use tract_onnx::tract_core::ops;

#[derive(Clone, Copy, Debug)]
pub struct Lut<'a> {
    pub table: &'a [u8; 256],
}

impl<'a> OpKind<'a> for Lut<'a> {
    const NAME: &'static str = "Lut";

    #[inline(never)]
    fn parse(b: &mut Reader<'a>, _index: usize) -> Result<Self, FormatError> {
        Ok(Lut {
            table: b.array("lookup table")?,
        })
    }

    fn output(&self, inputs: &[TensorInfo], index: usize) -> Result<Shape, FormatError> {
        int8_inputs(inputs, 1, index)?;
        Ok(inputs[0].shape)
    }

    const IN_PLACE: bool = true;

    fn params(&self) -> usize {
        256
    }

    fn run(&self, _cx: &mut Cx, x: &[&[i8]], y: &mut [i8]) -> Result<(), RunError> {
        match x.first() {
            Some(x) if !x.is_empty() => {
                if x.len() != y.len() {
                    return Err(RunError::Internal("a lookup's output"));
                }
                for (d, &v) in y.iter_mut().zip(x.iter()) {
                    *d = self.table[v as u8 as usize] as i8;
                }
            }
            // In place.
            _ => {
                for v in y.iter_mut() {
                    *v = self.table[*v as u8 as usize] as i8;
                }
            }
        }
        Ok(())
    }
}

/// An elementwise float function `f` (ReLU, LeakyReLU, Tanh, Sigmoid) as the table of its value
/// at each of the input's 256 codes, in the output's quantization.
#[cfg(feature = "std")]
pub(crate) fn quantize(cx: &NodeCx, f: impl Fn(f32) -> f32) -> QuantOp {
    let mut table = [0u8; 256];
    for (code, t) in table.iter_mut().enumerate() {
        *t = cx.output.quantize(f(cx.input().dequantize(code as u8 as i8))) as u8;
    }
    QuantOp::Lut { table }
}

/// tract's elementwise activations: LeakyReLU, Tanh, Sigmoid and Relu. (A ReLU that tract
/// writes as `Max(x, 0)` is read with the walker's binary ops.)
#[cfg(feature = "std")]
pub(crate) fn import(
    _: &mut Walker,
    node: &TypedNode,
    op: &ops::element_wise::ElementWiseOp,
) -> MapResult {
    if let Some(l) = op.0.downcast_ref::<ops::nn::LeakyRelu>() {
        return Ok(Mapped::Op(
            FloatOp::LeakyRelu { alpha: l.alpha },
            vec![node.inputs[0]],
        ));
    }
    let float_op = match op.0.name().as_ref() {
        "Tanh" => FloatOp::Tanh,
        "Sigmoid" => FloatOp::Sigmoid,
        "Relu" => FloatOp::Relu,
        _ => return Ok(Mapped::Unsupported),
    };
    Ok(Mapped::Op(float_op, vec![node.inputs[0]]))
}

/// The float definition this op tabulates ([`FloatOp::activate`] on each value).
#[cfg(feature = "std")]
pub(crate) fn reference(e: &Eval, op: &FloatOp) -> Result<Vec<f32>, String> {
    Ok(e.x
        .iter()
        .map(|&v| op.activate(v).expect("elementwise"))
        .collect())
}
