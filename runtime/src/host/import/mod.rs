//! ONNX import into a float tensor graph ([`FloatGraph`]).
//!
//! tract loads the file with the batch as a symbol, types it and declutters it, which folds the
//! shape arithmetic PyTorch writes (`x.view(-1, ...)` becomes Shape/Gather/Concat/...),
//! Identity/Constant chains and Dropout. [`tract`](self::tract) then walks the decluttered
//! model op by op, each tract op read into [`FloatOp`]s with per-sample shapes (the batch axis
//! removed) by the `import` of the op file it becomes (`crate::ops::NAME::import`), or by the
//! walker where it is about the graph rather than one op. Everything an int8 runtime needs is
//! explicit: named inputs per node, topological order, weights in fixed layouts.
//! [`FloatGraph::run`] runs the plain-f32 definition of every op (the quantizer's calibration
//! and the tests' reference; each op's is its file's `reference`); [`FloatGraph::simplify`]
//! folds BatchNorm where the fold is exact.

mod exec;
mod simplify;
mod tract;
pub(crate) use tract::check_batch_norms;
// What the op files' `import` functions read tract's nodes with.
pub(crate) use tract::{bin, floats, sole_reader, MapResult, Mapped, Walker};
// What the op files' float definitions (`reference`) read.
pub(crate) use exec::{chw, Eval};

pub use self::exec::RunError;
pub use self::tract::import_onnx;

/// What a graph input holds, for callers that feed it (latents are drawn, classes are indices,
/// images are pictures).
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// Float `[latent]` or `[latent, 1, 1]` (pytorch/examples' DCGAN).
    Latent,
    /// Integer class indices `[N]` in `0..classes`, or a text's token ids `[N, T]` (its
    /// [`GraphInput::shape`] is then `[T]`), read by an [`FloatOp::Embed`]. The float executor
    /// takes them as f32 values that must be whole numbers.
    Class { classes: usize },
    /// Float `[C, H, W]` with `H, W > 1`.
    Image,
    /// Float `[T, F]`.
    Sequence,
    /// Float `[H]`: a token cell's recurrent state (SeqGAN's LSTM `h` and `c`), which the cell
    /// returns updated after its logits; zero before the first token.
    State,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    pub name: String,
    /// Per-sample shape (the batch axis removed); `[]` for a class index, `[T]` for a text's
    /// token ids.
    pub shape: Vec<usize>,
    pub kind: InputKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    Zero,
    Reflect,
}

/// A float op. Shapes are per sample, NCHW-logical (`[C, H, W]` or `[F]`); a "channel" is axis 0
/// of the per-sample shape, except in a sequence `[T, F]` (steps of F features), whose channel
/// is the feature, the last axis: a sequence's int8 layout is the image `[c = F, h = T, w = 1]`,
/// the same bytes. [`FloatOp::Linear`] and [`FloatOp::BatchNorm`] act on each step of one.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatOp {
    /// `y[j] = bias[j] + sum_i x[i] * weights[i * n + j]` (weights `[k][n]`).
    Linear {
        k: usize,
        n: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Weights `[cout][cin][kh][kw]`; `pad` is `[top, left, bottom, right]`.
    Conv {
        cin: usize,
        cout: usize,
        kh: usize,
        kw: usize,
        stride: (usize, usize),
        pad: [usize; 4],
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Weights `[cin][cout][kh][kw]` (ONNX's layout); output `(h - 1) * stride - pad_before -
    /// pad_after + k + out_pad` per axis.
    ConvTranspose {
        cin: usize,
        cout: usize,
        kh: usize,
        kw: usize,
        stride: (usize, usize),
        pad: [usize; 4],
        out_pad: (usize, usize),
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Per-channel affine `y = x * scale[c] + shift[c]`: BatchNormalization in inference form,
    /// and every per-channel constant Mul/Add/Sub/Div tract leaves after decluttering (a Gemm's
    /// bias among them).
    BatchNorm {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// Per-sample, per-channel normalisation over the spatial axes (biased variance), then
    /// `* scale[c] + shift[c]` (scale 1, shift 0 for PyTorch's default `affine=False`).
    InstanceNorm {
        scale: Vec<f32>,
        shift: Vec<f32>,
        eps: f32,
    },
    /// Each pixel's feature vector (axis 0, the channels) divided by its root mean square,
    /// `x / sqrt(mean_c(x^2) + eps)`: Progressive GAN's pixel normalisation (tract's `RmsNorm`
    /// on the channel axis).
    PixelNorm {
        eps: f32,
    },
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    Sigmoid,
    /// Elementwise over two inputs of the same shape (broadcasting is refused at import).
    Add,
    Mul,
    /// Joins the inputs along a per-sample axis (0 = channels).
    Concat {
        axis: usize,
    },
    Pad {
        mode: PadMode,
        pads: [usize; 4],
    },
    /// Same values in the same (row-major, NCHW) order, another per-sample shape.
    Reshape {
        shape: Vec<usize>,
    },
    /// `[C, H, W]` to `[C * H * W]` in the same order.
    Flatten,
    /// Nearest-neighbour upsampling of `[C, H, W]` by an integer factor on both spatial axes.
    Upsample {
        factor: usize,
    },
    /// One GRU layer over a sequence `[T, input]` -> `[T, hidden]`, ONNX's `GRU` with
    /// `linear_before_reset = 1` (PyTorch's `nn.GRU`), forward, the state starting at zero.
    /// Gate blocks in ONNX's order z, r, n: `w` `[3 hidden][input]`, `r` `[3 hidden][hidden]`,
    /// `b` the input-side then the state-side biases, `[6 hidden]`.
    Gru {
        input: usize,
        hidden: usize,
        w: Vec<f32>,
        r: Vec<f32>,
        b: Vec<f32>,
    },
    /// Channels `start..start + len` (axis 0 of the per-sample shape): one gate's share of an
    /// LSTM cell's pre-activations.
    Slice {
        start: usize,
        len: usize,
    },
    /// `table[class]` (table `[classes][dim]`), the class input's row: PyTorch's
    /// `nn.Embedding`, joined to the latent by a [`FloatOp::Concat`] in the project's cGANs, or
    /// a token cell's token embedding. On a text's `[T]` token ids, each id's row in order,
    /// `[T * dim]` (ONNX's `Gather` and the flattening after it).
    Embed {
        classes: usize,
        dim: usize,
        table: Vec<f32>,
    },
}

impl FloatOp {
    pub fn kind(&self) -> &'static str {
        match self {
            FloatOp::Linear { .. } => "Linear",
            FloatOp::Conv { .. } => "Conv",
            FloatOp::ConvTranspose { .. } => "ConvTranspose",
            FloatOp::BatchNorm { .. } => "BatchNorm",
            FloatOp::InstanceNorm { .. } => "InstanceNorm",
            FloatOp::Relu => "Relu",
            FloatOp::LeakyRelu { .. } => "LeakyRelu",
            FloatOp::Tanh => "Tanh",
            FloatOp::Sigmoid => "Sigmoid",
            FloatOp::Add => "Add",
            FloatOp::Mul => "Mul",
            FloatOp::Concat { .. } => "Concat",
            FloatOp::Pad { .. } => "Pad",
            FloatOp::Reshape { .. } => "Reshape",
            FloatOp::Flatten => "Flatten",
            FloatOp::Upsample { .. } => "Upsample",
            FloatOp::Slice { .. } => "Slice",
            FloatOp::PixelNorm { .. } => "PixelNorm",
            FloatOp::Embed { .. } => "Embed",
            FloatOp::Gru { .. } => "Gru",
        }
    }

    /// The op's function on one value, for the elementwise activations.
    pub fn activate(&self, x: f32) -> Option<f32> {
        Some(match self {
            FloatOp::Relu => x.max(0.0),
            FloatOp::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            FloatOp::Tanh => x.tanh(),
            FloatOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The decluttered tract node it came from (for messages).
    pub name: String,
    pub op: FloatOp,
    /// Tensor names: graph inputs or earlier nodes' outputs.
    pub inputs: Vec<String>,
    /// The tensor it writes: the ONNX tensor name where tract kept one (its outlet label), so
    /// tract can be asked for the same values; otherwise the tract node's name.
    pub output: String,
    /// Per-sample output shape.
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FloatGraph {
    pub inputs: Vec<GraphInput>,
    /// Tensor names of the graph outputs.
    pub outputs: Vec<String>,
    /// Topological order.
    pub nodes: Vec<Node>,
    /// ONNX `metadata_props`.
    pub metadata: Vec<(String, String)>,
}

impl FloatGraph {
    /// Reads an ONNX file (see [`import_onnx`]).
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<FloatGraph, ImportError> {
        import_onnx(bytes)
    }

    /// Per-sample shape of a tensor (an input or a node's output).
    pub fn shape_of(&self, tensor: &str) -> Option<&[usize]> {
        self.inputs
            .iter()
            .find(|i| i.name == tensor)
            .map(|i| i.shape.as_slice())
            .or_else(|| {
                self.nodes
                    .iter()
                    .find(|n| n.output == tensor)
                    .map(|n| n.shape.as_slice())
            })
    }

    /// How many nodes read `tensor`, plus one if it is a graph output.
    pub fn readers(&self, tensor: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| n.inputs.iter().filter(|i| *i == tensor).count())
            .sum::<usize>()
            + self.outputs.iter().filter(|o| *o == tensor).count()
    }
}

/// How a latent generator takes its inputs and what it returns: the view of a graph that the
/// `generate` convenience (engines of latents in, images out) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatentGenerator {
    /// The latent input's name and its position among the graph's inputs.
    pub latent_input: String,
    pub latent_at: usize,
    pub latent: usize,
    /// 2 for `[N, latent]`, 4 for `[N, latent, 1, 1]` (pytorch/examples' DCGAN).
    pub latent_rank: usize,
    /// A conditional generator's class input (int64 `[N]`, or a text's token ids `[N, T]`) and
    /// its position.
    pub class: Option<(String, usize)>,
    /// Class count (a text's vocabulary size), 0 for an unconditional generator.
    pub classes: usize,
    /// Per-sample shape of the class input: `[]` for a class, `[T]` for a text's `T` token ids.
    pub class_shape: Vec<usize>,
    /// `(c, h, w)` of one output (a vector `[n]` is `(n, 1, 1)`).
    pub image: (usize, usize, usize),
}

impl FloatGraph {
    /// This graph as a latent generator: one latent input, at most one class input, one output
    /// image or vector; otherwise an error that says what it takes instead.
    pub fn latent_generator(&self) -> Result<LatentGenerator, ImportError> {
        let bad = |reason: String| ImportError::Input {
            name: self
                .inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            reason,
        };
        let latents: Vec<usize> = (0..self.inputs.len())
            .filter(|&k| self.inputs[k].kind == InputKind::Latent)
            .collect();
        let classes: Vec<usize> = (0..self.inputs.len())
            .filter(|&k| matches!(self.inputs[k].kind, InputKind::Class { .. }))
            .collect();
        let (&[at], 0..=1) = (&latents[..], classes.len()) else {
            return Err(bad(format!(
                "a latent generator takes one latent and at most one class input, not {} and {}",
                latents.len(),
                classes.len()
            )));
        };
        if latents.len() + classes.len() != self.inputs.len() {
            return Err(bad("a latent generator takes no other inputs".into()));
        }
        let z = &self.inputs[at];
        let (latent, latent_rank) = match z.shape[..] {
            [n] => (n, 2),
            [n, 1, 1] => (n, 4),
            _ => return Err(bad(format!("the latent has shape {:?}", z.shape))),
        };
        let image = match (self.outputs.as_slice(), self.outputs.first().and_then(|o| self.shape_of(o))) {
            ([_], Some(&[c, h, w])) => (c, h, w),
            ([_], Some(&[n])) => (n, 1, 1),
            (outputs, shape) => {
                return Err(bad(format!(
                    "a latent generator returns one image or vector, not {} outputs (the first {shape:?})",
                    outputs.len()
                )))
            }
        };
        let class = classes.first().map(|&k| (self.inputs[k].name.clone(), k));
        let class_shape = classes
            .first()
            .map_or(Vec::new(), |&k| self.inputs[k].shape.clone());
        let classes = classes.first().map_or(0, |&k| match self.inputs[k].kind {
            InputKind::Class { classes } => classes,
            _ => 0,
        });
        Ok(LatentGenerator {
            latent_input: z.name.clone(),
            latent_at: at,
            latent,
            latent_rank,
            class,
            classes,
            class_shape,
            image,
        })
    }
}

impl LatentGenerator {
    /// Indices per sample of the class input: 1 for a class, `T` for a text's token ids.
    pub fn slots(&self) -> usize {
        self.class_shape.iter().product()
    }
}

/// An op the importer does not map, with the tract node that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    /// The ONNX op type (tract's op name for nodes tract made up).
    pub op: String,
    /// The ONNX node (tract's node name for nodes tract made up).
    pub node: String,
    /// The op tract turned it into, when that is what the importer could not map.
    pub tract_op: String,
}

impl std::fmt::Display for UnsupportedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (node {}", self.op, self.node)?;
        if self.tract_op != self.op {
            write!(f, ", {} after tract's decluttering", self.tract_op)?;
        }
        write!(f, ")")
    }
}

/// Why an ONNX file does not become a [`FloatGraph`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the ONNX file: {0}")]
    Onnx(String),
    #[error("tract cannot type or declutter the model: {0}")]
    Tract(String),
    /// tract panicked on this input (hostile or broken files can make it): caught at the
    /// boundary so callers get an error, never a crash.
    #[error("tract failed on this model (internal panic: {0})")]
    Panic(String),
    #[error("unsupported operators: {}", .0.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", "))]
    Unsupported(Vec<UnsupportedOp>),
    #[error("node {node} ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("input {name}: {reason}")]
    Input { name: String, reason: String },
    #[error("the graph has no outputs")]
    NoOutput,
    /// A tensor (the output or an intermediate) that no engine should allocate: empty, or
    /// larger than [`crate::limits::MAX_SAMPLE_ELEMENTS`] per sample.
    #[error("node {node} ({op}) makes {shape:?} per sample: {reason}")]
    Size {
        node: String,
        op: String,
        shape: Vec<usize>,
        reason: String,
    },
    /// A BatchNormalization whose running variance is negative (or not a number): the file is
    /// broken even where `var + eps` stays positive.
    #[error("BatchNormalization {node}: its variance `{input}` holds {value}, not a non-negative number")]
    Variance {
        node: String,
        input: String,
        value: f32,
    },
}
