//! Exact folds on a [`FloatGraph`]: per-channel affines (BatchNorm, and the constant Mul/Add
//! tract leaves for biases) are merged with each other and folded into the Linear, Conv,
//! ConvTranspose or InstanceNorm that produces their input (including a Linear seen through a
//! Reshape); a scale alone is folded into the Linear, Conv or ConvTranspose that reads it. A
//! fold happens only when the value it changes is read by nothing else.

use super::{FloatGraph, FloatOp, Node};

impl FloatGraph {
    /// Applies the folds until none applies. Each removed BatchNorm's output name moves to the
    /// node that now produces its values, so readers and graph outputs stay valid.
    pub fn simplify(&mut self) {
        while self.fold_one() {}
        self.single_pixel_transposes_as_linear();
    }

    /// A transposed convolution of a 1x1 input without padding (DCGAN's first layer: the
    /// latent `[z, 1, 1]` to `[c, 4, 4]`) as Flatten, Linear, Reshape: output `(co, ky, kx)` is
    /// tap `(ky, kx)` of the one pixel, and ONNX's `[cin][cout][kh][kw]` weights are already
    /// the Linear's `[k][n]` in NCHW order. The same values; on int8 it saves the sub-pixel
    /// path's gather of `kh x kw` taps per output, all but one of them padding (pytorch/examples'
    /// 64 px DCGAN: 16 times the multiply-adds of the layer).
    fn single_pixel_transposes_as_linear(&mut self) {
        let mut i = 0;
        while i < self.nodes.len() {
            let node = &self.nodes[i];
            let FloatOp::ConvTranspose {
                cin,
                cout,
                kh,
                kw,
                pad,
                out_pad,
                ref weights,
                ref bias,
                ..
            } = node.op
            else {
                i += 1;
                continue;
            };
            let pointwise = self.shape_of(&node.inputs[0]) == Some(&[cin, 1, 1][..])
                && pad == [0; 4]
                && out_pad == (0, 0)
                && node.shape == [cout, kh, kw];
            if !pointwise {
                i += 1;
                continue;
            }
            let taps = kh * kw;
            let linear = FloatOp::Linear {
                k: cin,
                n: cout * taps,
                weights: weights.clone(),
                bias: (0..cout * taps).map(|j| bias[j / taps]).collect(),
            };
            let (name, input, output) = (
                node.name.clone(),
                node.inputs[0].clone(),
                node.output.clone(),
            );
            let flat = format!("{output}/flat");
            let columns = format!("{output}/linear");
            let nodes = [
                Node {
                    name: format!("{name}/flat"),
                    op: FloatOp::Flatten,
                    inputs: vec![input],
                    output: flat.clone(),
                    shape: vec![cin],
                },
                Node {
                    name: format!("{name}/linear"),
                    op: linear,
                    inputs: vec![flat],
                    output: columns.clone(),
                    shape: vec![cout * taps],
                },
                Node {
                    name,
                    op: FloatOp::Reshape {
                        shape: vec![cout, kh, kw],
                    },
                    inputs: vec![columns],
                    output,
                    shape: vec![cout, kh, kw],
                },
            ];
            self.nodes.splice(i..=i, nodes);
            i += 3;
        }
    }

    fn fold_one(&mut self) -> bool {
        for i in 0..self.nodes.len() {
            let FloatOp::BatchNorm { scale, shift } = self.nodes[i].op.clone() else {
                continue;
            };
            let input = self.nodes[i].inputs[0].clone();
            // A scale alone before the one matrix op that reads it (an equalised learning
            // rate's `conv(x * c)`): into that op's weights, per input channel. Exact with zero
            // padding, as a shift would not be.
            let output = self.nodes[i].output.clone();
            let reader = self.nodes.iter().position(|n| n.inputs.contains(&output));
            if let (true, 1, Some(r)) = (
                shift.iter().all(|&b| b == 0.0),
                self.readers(&output),
                reader,
            ) {
                if scale_inputs(&mut self.nodes[r].op, &scale) {
                    for name in &mut self.nodes[r].inputs {
                        if *name == output {
                            *name = input.clone();
                        }
                    }
                    self.nodes.remove(i);
                    return true;
                }
            }
            let Some(p) = self.nodes.iter().position(|n| n.output == input) else {
                continue;
            };
            if self.readers(&input) != 1 {
                continue;
            }
            // Directly after the producer.
            if fold_into(&mut self.nodes[p].op, &scale, &shift, 1) {
                let bn = self.nodes.remove(i);
                self.nodes[p].output = bn.output;
                return true;
            }
            // A Linear, then a Reshape, then the BatchNorm: channel c covers `per` outputs.
            if matches!(self.nodes[p].op, FloatOp::Reshape { .. }) {
                let linear_out = self.nodes[p].inputs[0].clone();
                let Some(l) = self.nodes.iter().position(|n| n.output == linear_out) else {
                    continue;
                };
                let n = match self.nodes[l].op {
                    FloatOp::Linear { n, .. } => n,
                    _ => continue,
                };
                if self.readers(&linear_out) != 1 || scale.is_empty() || n % scale.len() != 0 {
                    continue;
                }
                if fold_into(&mut self.nodes[l].op, &scale, &shift, n / scale.len()) {
                    let bn = self.nodes.remove(i);
                    self.nodes[p].output = bn.output;
                    return true;
                }
            }
        }
        false
    }
}

/// `y * scale[c] + shift[c]` folded into the op producing `y`; column `j` of a Linear belongs
/// to channel `j / per_column`.
fn fold_into(op: &mut FloatOp, scale: &[f32], shift: &[f32], per_column: usize) -> bool {
    match op {
        // An affine after an affine, or after InstanceNorm's own scale and shift.
        FloatOp::BatchNorm { scale: s, shift: b }
        | FloatOp::InstanceNorm {
            scale: s, shift: b, ..
        } if s.len() == scale.len() => {
            for c in 0..s.len() {
                s[c] *= scale[c];
                b[c] = b[c] * scale[c] + shift[c];
            }
            true
        }
        FloatOp::Linear {
            n, weights, bias, ..
        } if *n == scale.len() * per_column => {
            for (j, b) in bias.iter_mut().enumerate() {
                *b = *b * scale[j / per_column] + shift[j / per_column];
            }
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[(i % *n) / per_column];
            }
            true
        }
        FloatOp::Conv {
            cout,
            weights,
            bias,
            ..
        } if per_column == 1 && scale.len() == *cout => {
            let per_out = weights.len() / *cout;
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[i / per_out];
            }
            for (c, b) in bias.iter_mut().enumerate() {
                *b = *b * scale[c] + shift[c];
            }
            true
        }
        FloatOp::ConvTranspose {
            cout,
            kh,
            kw,
            weights,
            bias,
            ..
        } if per_column == 1 && scale.len() == *cout => {
            let taps = *kh * *kw;
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[(i / taps) % *cout];
            }
            for (c, b) in bias.iter_mut().enumerate() {
                *b = *b * scale[c] + shift[c];
            }
            true
        }
        _ => false,
    }
}

/// `op(x * scale[c])` as `op'(x)`: the weights of input channel `c` scaled (a Linear's input
/// must be the vector of channels itself).
fn scale_inputs(op: &mut FloatOp, scale: &[f32]) -> bool {
    match op {
        FloatOp::Linear { k, n, weights, .. } if *k == scale.len() => {
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[i / *n];
            }
            true
        }
        FloatOp::Conv {
            cin,
            kh,
            kw,
            weights,
            ..
        } if *cin == scale.len() => {
            let taps = *kh * *kw;
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[(i / taps) % *cin];
            }
            true
        }
        FloatOp::ConvTranspose {
            cin,
            cout,
            kh,
            kw,
            weights,
            ..
        } if *cin == scale.len() => {
            let per_in = *cout * *kh * *kw;
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[i / per_in];
            }
            true
        }
        _ => false,
    }
}
