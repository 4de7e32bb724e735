//! Pix2Pix (Isola et al. 2017): paired image-to-image translation. G, a U-Net, maps an input
//! image A to an output; D, a PatchGAN, judges (A, B) pairs patch by patch. G's loss adds
//! lambda x L1(G(A), B) to the GAN term: L1 gets the colours and layout right, the GAN term the
//! sharpness that L1 alone blurs away (the paper's ablation, `--gan-weight 0`).

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use onnx_ir::Message;

use super::{
    adam, checkpoint_sections, load_net, read_metrics, seeded_pair, Family, Iteration, Net,
    OnnxFile,
};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::pairs::{self, Split};
use crate::data::{Dataset, LoadOptions};
use crate::error::TrainError;
use crate::export::onnx::{GraphWriter, FLOAT};
use crate::export::{ExportError, OnnxMetadata};
use crate::history::StepMetrics;
use crate::model::unet::{Norm, PatchGan, Unet};

/// The name of the exported generator's input (PyTorch's default for a first argument `input`).
pub const ONNX_INPUT: &str = "input";
/// Held-out pairs shown in the sample picture.
const SHOWN: usize = 8;

pub struct Pix2Pix {
    pub generator: Net<Unet>,
    pub discriminator: Net<PatchGan>,
    /// The first held-out inputs and their targets, for the sample picture.
    shown: (Dataset, Dataset),
}

/// The checkpoint sections, in the order they are written.
/// Checkpoint sections (parameters, optimizer) of each network.
const GENERATOR: (&str, &str) = ("generator", "adam_g");
const DISCRIMINATOR: (&str, &str) = ("discriminator", "adam_d");

impl Pix2Pix {
    pub fn init(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let (g, d) = seeded_pair(config.seed, device, || networks(config, device))?;
        let test = pairs::load(&config.source()?, &load_options(config), Split::Test)?;
        let shown: Vec<usize> = (0..test.a.len().min(SHOWN)).collect();
        Ok(Self {
            generator: Net::new(g, adam(config)),
            discriminator: Net::new(d, adam(config)),
            shown: (test.a.subset(&shown), test.b.subset(&shown)),
        })
    }

    pub fn g(&self) -> &Unet {
        self.generator.get()
    }
}

/// The U-Net generator and the PatchGAN, as `config` shapes them (parameters not yet drawn).
pub fn networks(config: &TrainConfig, device: &Device) -> Result<(Unet, PatchGan), TrainError> {
    let [_, c, side, _] = config.model.sample.batch_dims(1);
    let w = config.model.width;
    let g = Unet::new(c, side, w, device).map_err(TrainError::Config)?;
    // D reads the input and the output (or target) joined along the channels.
    let d = PatchGan::new(2 * c, w, Norm::Batch, device);
    Ok((g, d))
}

/// How a run's image pairs load: at the model's size and channels.
pub fn load_options(config: &TrainConfig) -> LoadOptions {
    let [_, c, side, _] = config.model.sample.batch_dims(1);
    LoadOptions {
        size: Some(side),
        channels: Some(c),
        seed: config.seed,
        ..Default::default()
    }
}

/// The seed of step `step`'s dropout masks: a pure function of (seed, step), so a resumed run
/// draws the masks an uninterrupted one would.
fn dropout_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ step ^ 0xD20F_0D20
}

impl Family for Pix2Pix {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        let config = it.config;
        let loss = config.loss;
        let target = it
            .target
            .expect("pix2pix trains on image pairs (the loop loads them)");
        let idx = it.order.indices(it.step).to_vec();
        let (a, b) = (
            it.data.batch(&idx, it.device),
            target.batch(&idx, it.device),
        );
        let fake = self
            .g()
            .forward(a.clone(), Some(dropout_seed(config.seed, it.step)));

        // (1) D: minimise -[log D(A, B) + log(1 - D(A, G(A)))] over every patch, halved as the
        //     authors do so that D learns more slowly than G (only D's parameters move).
        let d = self.discriminator.get();
        let real_scores = d.forward(Tensor::cat(vec![a.clone(), b.clone()], 1));
        let fake_scores = d.forward(Tensor::cat(vec![a.clone(), fake.clone().detach()], 1));
        let opinions = loss.opinions(real_scores.clone(), fake_scores.clone());
        let loss_d = loss.discriminator(real_scores, fake_scores) * 0.5;
        let grad_d = self.discriminator.descend(&loss_d, it.lr(), it.device);

        // (2) G: minimise gan_weight x -log D(A, G(A)) + lambda x |G(A) - B|_1 through a frozen
        //     D (only G's parameters move).
        let frozen = self.discriminator.get().clone().no_grad();
        let gan = loss.generator(frozen.forward(Tensor::cat(vec![a, fake.clone()], 1)));
        let l1 = (fake - b).abs().mean();
        let loss_g = gan * config.gan_weight + l1 * config.l1_weight;
        let grad_g = self.generator.descend(&loss_g, it.lr(), it.device);
        read_metrics(it.step + 1, loss_d, loss_g, opinions, grad_d, grad_g)
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        Ok(checkpoint_sections([
            (GENERATOR, self.generator.records()?),
            (DISCRIMINATOR, self.discriminator.records()?),
        ]))
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.generator, ckpt, file, GENERATOR, None)?;
        load_net(&mut self.discriminator, ckpt, file, DISCRIMINATOR, None)
    }

    /// One held-out pair per row: input | output | target.
    fn sample_picture(
        &self,
        config: &TrainConfig,
        _step: u64,
        device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        let device = device.clone().without_autodiff();
        let (inputs, targets) = &self.shown;
        let all: Vec<usize> = (0..inputs.len()).collect();
        let outputs = translate(self.g(), inputs.batch(&all, &device));
        let per = config.model.sample.numel();
        let mut rows = Vec::with_capacity(3 * outputs.len());
        for i in all {
            rows.extend_from_slice(inputs.sample(i));
            rows.extend_from_slice(&outputs[i * per..(i + 1) * per]);
            rows.extend_from_slice(targets.sample(i));
        }
        let [_, c, h, w] = config.model.sample.batch_dims(1);
        Ok(pocketgan_runtime::picture::image_grid_columns(
            &rows,
            (c, h, w),
            3,
        ))
    }

    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        Ok(vec![OnnxFile {
            name: "generator.onnx".into(),
            bytes: export_translator(&self.g().valid(), meta)?,
        }])
    }

    fn latent_generator(&self) -> Option<&crate::model::Generator> {
        None
    }

    fn translate(&self, images: Tensor<4>) -> Option<Vec<f32>> {
        Some(translate(self.g(), images))
    }
}

/// G in inference mode (BatchNorm's running statistics, no dropout) on `x`, as `[N, C, H, W]`
/// values.
pub fn translate(g: &Unet, x: Tensor<4>) -> Vec<f32> {
    let g = g.valid();
    inference(x, |x| g.forward(x, None))
}

/// `net(x)` on `x`'s device without autodiff, read back as `[N, C, H, W]` values: how every
/// image-to-image family runs a generator outside training.
pub fn inference(x: Tensor<4>, net: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Vec<f32> {
    let device = x.device().without_autodiff();
    net(x.to_device(&device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The generator as ONNX: input `input` `[N, C, H, W]` (symbolic batch), output `image`.
pub fn export_translator(g: &Unet, meta: &OnnxMetadata) -> Result<Vec<u8>, ExportError> {
    translator_onnx(meta, "pocketgan_pix2pix", |graph, x, out| {
        g.write_onnx(graph, x, out)
    })
}

/// An image-to-image generator as ONNX: input [`ONNX_INPUT`] `[N, C, H, W]` (symbolic batch),
/// output `image` of the same shape, the graph in between written by `write(graph, input,
/// output)`.
pub fn translator_onnx(
    meta: &OnnxMetadata,
    name: &str,
    write: impl FnOnce(&mut GraphWriter, &str, &str) -> Result<(), ExportError>,
) -> Result<Vec<u8>, ExportError> {
    let [c, h, w] = meta.sample_dims;
    let dims = [None, Some(c), Some(h), Some(w)];
    let mut graph = GraphWriter::default();
    let x = graph.input(ONNX_INPUT, FLOAT, &dims);
    write(&mut graph, &x, pocketgan_runtime::ONNX_OUTPUT)?;
    graph.output(pocketgan_runtime::ONNX_OUTPUT, FLOAT, &dims);
    graph
        .finish(name, &meta.entries)
        .write_to_bytes()
        .map_err(|e| ExportError::Graph(e.to_string()))
}
