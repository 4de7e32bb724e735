//! Generator -> ONNX through burn-onnx's exporter (opset 18, symbolic batch axis), then the
//! graph's boundary is renamed to the runtime's contract (`z` in, `image` out) and pocketgan's
//! metadata is attached, using onnx-ir's generated protobuf types.

use burn::prelude::*;
use burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};
use onnx_ir::{Message, ModelProto};

use super::ExportError;
use crate::model::{batch_dims, Generator};
use crate::train::TrainConfig;

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
        Self {
            entries,
            latent: config.model.latent,
            sample_dims: [c, h, w],
        }
    }
}

/// Export a generator (in inference mode: BatchNorm uses its running statistics) to ONNX bytes.
pub fn export_generator(
    generator: &Generator,
    meta: &OnnxMetadata,
) -> Result<Vec<u8>, ExportError> {
    let device = Device::flex();
    let sample = Tensor::<2>::zeros([2, meta.latent], &device);
    let validation = Tensor::<2>::zeros([3, meta.latent], &device);
    let spec = [InputSpec::new(vec![
        AxisSpec::dynamic("N"),
        AxisSpec::Static,
    ])];
    let onnx = OnnxExporter::new()
        .export_dynamic(
            generator,
            sample,
            validation,
            &spec,
            |g: &Generator, z: Tensor<2>| g.forward(z),
        )
        .map_err(|e| ExportError::Lower(e.to_string()))?;
    let mut model = ModelProto::parse_from_bytes(onnx.as_bytes())
        .map_err(|e| ExportError::Graph(e.to_string()))?;
    rename_boundary(&mut model)?;
    model.producer_name = "pocketgan".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    for (k, v) in &meta.entries {
        model.metadata_props.push(Default::default());
        let e = model.metadata_props.last_mut().expect("just pushed");
        e.key = k.clone();
        e.value = v.clone();
    }
    model
        .write_to_bytes()
        .map_err(|e| ExportError::Graph(e.to_string()))
}

/// Rename the single input to `z` and the single output to `image`, everywhere they are used.
fn rename_boundary(model: &mut ModelProto) -> Result<(), ExportError> {
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| ExportError::Graph("no graph".into()))?;
    let inits: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    let inputs: Vec<usize> = (0..graph.input.len())
        .filter(|&i| !inits.contains(&graph.input[i].name))
        .collect();
    if inputs.len() != 1 || graph.output.len() != 1 {
        return Err(ExportError::Graph(format!(
            "expected one input and one output, found {} and {}",
            inputs.len(),
            graph.output.len()
        )));
    }
    let renames = [
        (
            graph.input[inputs[0]].name.clone(),
            pocketgan_runtime::ONNX_INPUT,
        ),
        (graph.output[0].name.clone(), pocketgan_runtime::ONNX_OUTPUT),
    ];
    for (old, new) in renames {
        if old == new {
            continue;
        }
        for v in graph
            .input
            .iter_mut()
            .chain(graph.output.iter_mut())
            .chain(graph.value_info.iter_mut())
        {
            if v.name == old {
                v.name = new.into();
            }
        }
        for node in graph.node.iter_mut() {
            for name in node.input.iter_mut().chain(node.output.iter_mut()) {
                if *name == old {
                    *name = new.into();
                }
            }
        }
    }
    Ok(())
}
