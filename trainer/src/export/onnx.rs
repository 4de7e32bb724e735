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
use crate::model::Generator;

pub const OPSET: i64 = 18;
/// `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;
/// `TensorProto.DataType.INT64`.
pub const INT64: i32 = 7;

/// Facts about the generator stored in the ONNX file's `metadata_props`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxMetadata {
    pub entries: Vec<(String, String)>,
    pub latent: usize,
    pub sample_dims: [usize; 3],
}

pub fn tensor(name: &str, w: &Weights) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = FLOAT;
    t.dims = w.dims.iter().map(|&d| d as i64).collect();
    t.raw_data = w.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

pub fn int64s(name: &str, values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = INT64;
    t.dims = vec![values.len() as i64];
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

pub fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.iter().map(|&x| x as i64).collect();
    a
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::TENSOR.into();
    a.t = Some(t).into();
    a
}

pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec().into();
    a
}

/// A tensor's value info; `None` dims are the symbolic batch axis.
pub fn value_info(name: &str, elem_type: i32, dims: &[Option<usize>]) -> ValueInfoProto {
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

/// An ONNX graph being written. Every node names the values it reads, so a value can feed several
/// nodes (a skip connection) and a node can read several values (Concat, Gather, a second graph
/// input): any directed acyclic graph, written in topological order.
#[derive(Default)]
pub struct GraphWriter {
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl GraphWriter {
    /// Declare a graph input; `None` dims are the symbolic batch axis. Returns its name.
    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Option<usize>]) -> String {
        self.inputs.push(value_info(name, elem_type, dims));
        name.into()
    }

    /// Declare the value `name` a graph output.
    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Option<usize>]) {
        self.outputs.push(value_info(name, elem_type, dims));
    }

    /// Store a constant under its own name; returns the name.
    pub fn initializer(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.initializers.push(t);
        name
    }

    /// Append `op` reading the values `inputs`, then its own weights `params` (stored as
    /// initializers named `<node>.<param>`); the node is named `<op>_<n>`. Returns its output's
    /// name: `output`, or `<node>_out`.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        params: Vec<TensorProto>,
        attrs: Vec<AttributeProto>,
        output: Option<&str>,
    ) -> String {
        self.counter += 1;
        let name = format!("{}_{}", op.to_lowercase(), self.counter);
        self.named_node(&name, op, inputs, params, attrs, output)
    }

    /// [`Self::node`] with a name of the caller's.
    pub fn named_node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        params: Vec<TensorProto>,
        attrs: Vec<AttributeProto>,
        output: Option<&str>,
    ) -> String {
        let out = output
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}_out"));
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = name.into();
        n.input = inputs.iter().map(|i| i.to_string()).collect();
        for mut t in params {
            t.name = format!("{name}.{}", t.name);
            n.input.push(self.initializer(t));
        }
        n.output.push(out.clone());
        n.attribute = attrs;
        self.nodes.push(n);
        out
    }

    /// Append one layer reading `x`; returns its output's name (`output`, or a fresh one).
    /// A node with several outputs, named as given (`""` for an optional output left out);
    /// returns them.
    pub fn node_outputs<const N: usize>(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        outputs: [&str; N],
    ) -> [String; N] {
        self.named_node(name, op, inputs, vec![], attrs, None);
        let node = self.nodes.last_mut().expect("just pushed");
        node.output = outputs.iter().map(|o| o.to_string()).collect();
        outputs.map(str::to_string)
    }

    pub fn layer(
        &mut self,
        x: &str,
        layer: &Layer,
        out: Option<&str>,
    ) -> Result<String, ExportError> {
        Ok(match layer {
            Layer::ClassEmbedding { .. } => {
                return Err(ExportError::Graph(
                    "a class embedding is a graph input, written by model_proto".into(),
                ))
            }
            Layer::Linear { weight, bias } => {
                self.node("Gemm", &[x], weight_bias(weight, bias), vec![], out)
            }
            Layer::Reshape { dims } => {
                let shape = [-1, dims[0] as i64, dims[1] as i64, dims[2] as i64];
                self.node("Reshape", &[x], vec![int64s("shape", &shape)], vec![], out)
            }
            Layer::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                epsilon,
            } => {
                let params = vec![
                    tensor("scale", gamma),
                    tensor("bias", beta),
                    tensor("mean", mean),
                    tensor("var", var),
                ];
                let attrs = vec![attr_float("epsilon", *epsilon as f32)];
                self.node("BatchNormalization", &[x], params, attrs, out)
            }
            Layer::ConvTranspose {
                weight,
                bias,
                stride,
                padding,
                output_padding,
            } => {
                let mut attrs = window(weight, stride, padding);
                attrs.push(attr_ints("output_padding", output_padding));
                let params = weight_bias(weight, bias);
                self.node("ConvTranspose", &[x], params, attrs, out)
            }
            Layer::Relu => self.node("Relu", &[x], vec![], vec![], out),
            Layer::Conv {
                weight,
                bias,
                stride,
                padding,
            } => {
                let (params, attrs) = (weight_bias(weight, bias), window(weight, stride, padding));
                self.node("Conv", &[x], params, attrs, out)
            }
            Layer::LeakyRelu { slope } => self.node(
                "LeakyRelu",
                &[x],
                vec![],
                vec![attr_float("alpha", *slope as f32)],
                out,
            ),
            Layer::Tanh => self.node("Tanh", &[x], vec![], vec![], out),
            Layer::ReflectPad { pad } => {
                // ONNX's pads: every axis's start, then every axis's end (N and C unpadded).
                let p = *pad as i64;
                let pads = int64s("pads", &[0, 0, p, p, 0, 0, p, p]);
                let attrs = vec![attr_string("mode", "reflect")];
                self.node("Pad", &[x], vec![pads], attrs, out)
            }
            Layer::PixelNorm { epsilon } => {
                // x / sqrt(mean_c x^2 + eps), as PyTorch exports it (opset 18: the axes are an
                // input); the runtime's importer reads the pattern as one PixelNorm.
                let scalar = |name: &str, v: f32| {
                    tensor(
                        name,
                        &Weights {
                            dims: vec![],
                            values: vec![v],
                        },
                    )
                };
                let square = self.node("Pow", &[x], vec![scalar("exponent", 2.0)], vec![], None);
                let attrs = vec![attr_int("keepdims", 1)];
                let mean = self.node(
                    "ReduceMean",
                    &[&square],
                    vec![int64s("axes", &[1])],
                    attrs,
                    None,
                );
                let shifted = self.node(
                    "Add",
                    &[&mean],
                    vec![scalar("epsilon", *epsilon as f32)],
                    vec![],
                    None,
                );
                let root = self.node("Sqrt", &[&shifted], vec![], vec![], None);
                self.node("Div", &[x, &root], vec![], vec![], out)
            }
            Layer::Upsample { factor } => {
                let f = *factor as f32;
                let scales = Weights {
                    dims: vec![4],
                    values: vec![1.0, 1.0, f, f],
                };
                let attrs = vec![
                    attr_string("mode", "nearest"),
                    attr_string("coordinate_transformation_mode", "asymmetric"),
                    attr_string("nearest_mode", "floor"),
                ];
                self.node(
                    "Resize",
                    &[x, ""],
                    vec![tensor("scales", &scales)],
                    attrs,
                    out,
                )
            }
            Layer::InstanceNorm { channels, epsilon } => {
                let ones = Weights {
                    dims: vec![*channels],
                    values: vec![1.0; *channels],
                };
                let zeros = Weights {
                    values: vec![0.0; *channels],
                    ..ones.clone()
                };
                let params = vec![tensor("scale", &ones), tensor("bias", &zeros)];
                let attrs = vec![attr_float("epsilon", *epsilon as f32)];
                self.node("InstanceNormalization", &[x], params, attrs, out)
            }
        })
    }

    /// The model: this graph, opset [`OPSET`], and `metadata` as `metadata_props`.
    pub fn finish(self, graph_name: &str, metadata: &[(String, String)]) -> ModelProto {
        let mut model = ModelProto::new();
        model.ir_version = 8;
        model.producer_name = "pocketgan".into();
        model.producer_version = env!("CARGO_PKG_VERSION").into();
        model.opset_import.push(Default::default());
        model.opset_import.last_mut().expect("just pushed").version = OPSET;
        let graph = model.graph.mut_or_insert_default();
        graph.name = graph_name.into();
        graph.input = self.inputs;
        graph.output = self.outputs;
        graph.node = self.nodes;
        graph.initializer = self.initializers;
        for (k, v) in metadata {
            model.metadata_props.push(Default::default());
            let e = model.metadata_props.last_mut().expect("just pushed");
            e.key = k.clone();
            e.value = v.clone();
        }
        model
    }
}

/// A layer's `weight` and optional `bias` initializers.
fn weight_bias(weight: &Weights, bias: &Option<Weights>) -> Vec<TensorProto> {
    let mut params = vec![tensor("weight", weight)];
    params.extend(bias.iter().map(|b| tensor("bias", b)));
    params
}

/// A (transposed) convolution's kernel, strides and symmetric pads, from its weight
/// `[_, _, kH, kW]`.
fn window(weight: &Weights, stride: &[usize; 2], padding: &[usize; 2]) -> Vec<AttributeProto> {
    vec![
        attr_ints("kernel_shape", &[weight.dims[2], weight.dims[3]]),
        attr_ints("strides", stride),
        attr_ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
    ]
}

/// The initializer that holds a conditional generator's class embedding `[K, E]`.
pub const CLASS_EMBEDDING: &str = "class_embedding";

/// Build the ONNX model of a generator's layers: input `z` (and `class` for a class embedding),
/// output `image`.
pub fn model_proto(layers: &[Layer], meta: &OnnxMetadata) -> Result<ModelProto, ExportError> {
    let output = pocketgan_runtime::ONNX_OUTPUT;
    let mut g = GraphWriter::default();
    let mut x = g.input(
        pocketgan_runtime::ONNX_INPUT,
        FLOAT,
        &[None, Some(meta.latent)],
    );
    let last = layers
        .len()
        .checked_sub(1)
        .ok_or_else(|| ExportError::Graph("no layers".into()))?;
    for (i, layer) in layers.iter().enumerate() {
        let out = (i == last).then_some(output);
        x = match layer {
            Layer::ClassEmbedding { table } => {
                if i != 0 || table.dims.len() != 2 {
                    return Err(ExportError::Graph(
                        "a class embedding must be the first layer, with a [K, E] table".into(),
                    ));
                }
                // Row `class` of the table, joined after z: PyTorch's nn.Embedding + torch.cat.
                let class = g.input(pocketgan_runtime::ONNX_CLASS_INPUT, INT64, &[None]);
                let table = g.initializer(tensor(CLASS_EMBEDDING, table));
                let axis = |a| vec![attr_int("axis", a)];
                let row = g.named_node(
                    "gather_class",
                    "Gather",
                    &[&table, &class],
                    vec![],
                    axis(0),
                    Some("class_vector"),
                );
                g.named_node(
                    "concat_class",
                    "Concat",
                    &[&x, &row],
                    vec![],
                    axis(1),
                    Some("conditioned"),
                )
            }
            layer => g.layer(&x, layer, out)?,
        };
    }
    let [c, h, w] = meta.sample_dims;
    g.output(output, FLOAT, &[None, Some(c), Some(h), Some(w)]);
    Ok(g.finish("pocketgan_generator", &meta.entries))
}

/// Export a generator in inference form to ONNX bytes.
pub fn export_generator(
    generator: &Generator,
    meta: &OnnxMetadata,
) -> Result<Vec<u8>, ExportError> {
    match generator.as_progan() {
        Some(g) => g.model_proto(meta)?,
        None => model_proto(&generator.layers(), meta)?,
    }
    .write_to_bytes()
    .map_err(|e| ExportError::Graph(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer expresses what a chain cannot: one value read by two nodes (a skip connection)
    /// and a node reading two values. `out = Concat(x, Relu(x))`, run in tract.
    #[test]
    fn writes_a_skip_connection_that_tract_runs() {
        use tract_onnx::prelude::*;
        let mut g = GraphWriter::default();
        let x = g.input("x", FLOAT, &[None, Some(3)]);
        let r = g.node("Relu", &[&x], vec![], vec![], None);
        let out = g.node(
            "Concat",
            &[&x, &r],
            vec![],
            vec![attr_int("axis", 1)],
            Some("out"),
        );
        g.output(&out, FLOAT, &[None, Some(6)]);
        let bytes = g.finish("skip", &[]).write_to_bytes().unwrap();
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap()
            .with_input_fact(0, f32::fact([2, 3]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = [-1.0f32, 2.0, -3.0, 4.0, -5.0, 6.0];
        let input = tract_ndarray::Array2::from_shape_vec((2, 3), x.to_vec()).unwrap();
        let y = model.run(tvec!(Tensor::from(input).into())).unwrap();
        let y: Vec<f32> = y[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(
            y,
            [-1.0, 2.0, -3.0, 0.0, 2.0, 0.0, 4.0, -5.0, 6.0, 4.0, 0.0, 6.0]
        );
    }
}
