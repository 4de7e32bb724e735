//! Generator -> ONNX (opset 18, symbolic batch axis `N`), written with onnx-ir's generated
//! protobuf types.
//!
//! burn-onnx 0.22's exporter cannot lower `ConvTranspose2d` (nor LeakyReLU or Embedding), and its
//! dynamic-batch tracer rejects the `[N, C*H*W] -> [N, C, H, W]` reshape every DCGAN generator
//! starts with, so the graph is written here from the generator's layer list
//! ([`Generator::layers`]): Gemm, Reshape, BatchNormalization, Relu, ConvTranspose, Tanh, and for
//! a conditional generator a second input `class` (int64 `[N]`) that selects a row of the class
//! embedding (Gather) joined after z (Concat), as PyTorch exports `nn.Embedding` + `torch.cat`.

use onnx_ir::{
    AttributeProto, AttributeType, Message, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};

use super::ExportError;
use crate::model::layers::{Layer, Weights};
use crate::model::{batch_dims, Generator};
use crate::train::TrainConfig;

pub const OPSET: i64 = 18;
const FLOAT: i32 = 1; // TensorProto.DataType.FLOAT
const INT64: i32 = 7;

/// Facts about the generator stored in the ONNX file's `metadata_props`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxMetadata {
    pub entries: Vec<(String, String)>,
    pub latent: usize,
    pub sample_dims: [usize; 3],
}

impl OnnxMetadata {
    pub fn new(config: &TrainConfig, steps: u64) -> Self {
        let [_, c, h, w] = batch_dims(config.model.sample, 1);
        let entries = vec![
            ("pocketgan.version".into(), env!("CARGO_PKG_VERSION").into()),
            ("pocketgan.latent".into(), config.model.latent.to_string()),
            ("pocketgan.image_shape".into(), format!("{c},{h},{w}")),
            ("pocketgan.dataset".into(), config.data.clone()),
            ("pocketgan.class_names".into(), config.class_names.join(",")),
            (
                "pocketgan.conditioning".into(),
                format!("{:?}", config.model.conditioning).to_lowercase(),
            ),
            ("pocketgan.steps".into(), steps.to_string()),
            (
                "pocketgan.architecture".into(),
                format!("{:?}", config.model.architecture).to_lowercase(),
            ),
            (
                "pocketgan.loss".into(),
                format!("{:?}", config.loss).to_lowercase(),
            ),
        ];
        let mut entries = entries;
        if config.model.conditioning.conditions_generator() {
            entries.push(("pocketgan.classes".into(), config.model.classes.to_string()));
        }
        Self {
            entries,
            latent: config.model.latent,
            sample_dims: [c, h, w],
        }
    }
}

fn tensor(name: &str, w: &Weights) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = FLOAT;
    t.dims = w.dims.iter().map(|&d| d as i64).collect();
    t.raw_data = w.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = INT64;
    t.dims = vec![values.len() as i64];
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.iter().map(|&x| x as i64).collect();
    a
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

/// A tensor's value info; `None` dims are the symbolic batch axis.
fn value_info(name: &str, elem_type: i32, dims: &[Option<usize>]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    let tt = v.type_.mut_or_insert_default().mut_tensor_type();
    tt.elem_type = elem_type;
    let shape = tt.shape.mut_or_insert_default();
    for d in dims {
        shape.dim.push(Default::default());
        let dim = shape.dim.last_mut().expect("just pushed");
        match d {
            Some(n) => dim.set_dim_value(*n as i64),
            None => dim.set_dim_param("N".into()),
        }
    }
    v
}

struct GraphWriter {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    current: String,
    counter: usize,
}

impl GraphWriter {
    /// Append `op` reading the current value (plus `extra` initializers), making it current.
    fn node(
        &mut self,
        op: &str,
        extra: Vec<TensorProto>,
        attrs: Vec<AttributeProto>,
        output: Option<&str>,
    ) {
        self.counter += 1;
        let name = format!("{}_{}", op.to_lowercase(), self.counter);
        let out = output
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}_out"));
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = name;
        n.input.push(std::mem::take(&mut self.current));
        for mut t in extra {
            t.name = format!("{}.{}", n.name, t.name);
            n.input.push(t.name.clone());
            self.initializers.push(t);
        }
        n.output.push(out.clone());
        n.attribute = attrs;
        self.nodes.push(n);
        self.current = out;
    }

    /// Gather row `class` of `table` and join it after the current value along axis 1.
    fn class_embedding(&mut self, table: &Weights, class_input: &str) {
        let gathered = "class_vector".to_string();
        let mut t = tensor(CLASS_EMBEDDING, table);
        t.name = CLASS_EMBEDDING.into();
        let mut gather = NodeProto::new();
        gather.op_type = "Gather".into();
        gather.name = "gather_class".into();
        gather.input = vec![t.name.clone(), class_input.into()];
        gather.output = vec![gathered.clone()];
        gather.attribute = vec![attr_int("axis", 0)];
        self.initializers.push(t);
        self.nodes.push(gather);
        let mut concat = NodeProto::new();
        concat.op_type = "Concat".into();
        concat.name = "concat_class".into();
        concat.input = vec![std::mem::take(&mut self.current), gathered];
        concat.output = vec!["conditioned".into()];
        concat.attribute = vec![attr_int("axis", 1)];
        self.nodes.push(concat);
        self.current = "conditioned".into();
    }
}

/// The initializer that holds a conditional generator's class embedding `[K, E]`.
pub const CLASS_EMBEDDING: &str = "class_embedding";

/// Build the ONNX model for a list of layers.
pub fn model_proto(layers: &[Layer], meta: &OnnxMetadata) -> Result<ModelProto, ExportError> {
    let input = pocketgan_runtime::ONNX_INPUT;
    let output = pocketgan_runtime::ONNX_OUTPUT;
    let mut g = GraphWriter {
        nodes: Vec::new(),
        initializers: Vec::new(),
        current: input.into(),
        counter: 0,
    };
    let last = layers
        .len()
        .checked_sub(1)
        .ok_or_else(|| ExportError::Graph("no layers".into()))?;
    let mut classes = None;
    for (i, layer) in layers.iter().enumerate() {
        let out = (i == last).then_some(output);
        match layer {
            Layer::ClassEmbedding { table } => {
                if i != 0 || table.dims.len() != 2 {
                    return Err(ExportError::Graph(
                        "a class embedding must be the first layer, with a [K, E] table".into(),
                    ));
                }
                g.class_embedding(table, pocketgan_runtime::ONNX_CLASS_INPUT);
                classes = Some(table.dims[0]);
            }
            Layer::Linear { weight, bias } => {
                let mut inputs = vec![tensor("weight", weight)];
                if let Some(b) = bias {
                    inputs.push(tensor("bias", b));
                }
                g.node("Gemm", inputs, vec![], out);
            }
            Layer::Reshape { dims } => {
                let shape = [-1, dims[0] as i64, dims[1] as i64, dims[2] as i64];
                g.node("Reshape", vec![int64s("shape", &shape)], vec![], out);
            }
            Layer::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                epsilon,
            } => {
                let inputs = vec![
                    tensor("scale", gamma),
                    tensor("bias", beta),
                    tensor("mean", mean),
                    tensor("var", var),
                ];
                g.node(
                    "BatchNormalization",
                    inputs,
                    vec![attr_float("epsilon", *epsilon as f32)],
                    out,
                );
            }
            Layer::ConvTranspose {
                weight,
                bias,
                stride,
                padding,
                output_padding,
            } => {
                let mut inputs = vec![tensor("weight", weight)];
                if let Some(b) = bias {
                    inputs.push(tensor("bias", b));
                }
                let k = [weight.dims[2], weight.dims[3]];
                let attrs = vec![
                    attr_ints("kernel_shape", &k),
                    attr_ints("strides", stride),
                    attr_ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
                    attr_ints("output_padding", output_padding),
                ];
                g.node("ConvTranspose", inputs, attrs, out);
            }
            Layer::Relu => g.node("Relu", vec![], vec![], out),
            Layer::Tanh => g.node("Tanh", vec![], vec![], out),
        }
    }

    let mut model = ModelProto::new();
    model.ir_version = 8;
    model.producer_name = "pocketgan".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    model.opset_import.push(Default::default());
    model.opset_import.last_mut().expect("just pushed").version = OPSET;
    let graph = model.graph.mut_or_insert_default();
    graph.name = "pocketgan_generator".into();
    graph.node = g.nodes;
    graph.initializer = g.initializers;
    graph
        .input
        .push(value_info(input, FLOAT, &[None, Some(meta.latent)]));
    if classes.is_some() {
        graph.input.push(value_info(
            pocketgan_runtime::ONNX_CLASS_INPUT,
            INT64,
            &[None],
        ));
    }
    let [c, h, w] = meta.sample_dims;
    graph.output.push(value_info(
        output,
        FLOAT,
        &[None, Some(c), Some(h), Some(w)],
    ));
    for (k, v) in &meta.entries {
        model.metadata_props.push(Default::default());
        let e = model.metadata_props.last_mut().expect("just pushed");
        e.key = k.clone();
        e.value = v.clone();
    }
    Ok(model)
}

/// Export a generator in inference form to ONNX bytes.
pub fn export_generator(
    generator: &Generator,
    meta: &OnnxMetadata,
) -> Result<Vec<u8>, ExportError> {
    model_proto(&generator.layers(), meta)?
        .write_to_bytes()
        .map_err(|e| ExportError::Graph(e.to_string()))
}
