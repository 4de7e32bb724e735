//! StackGAN (Zhang et al. 2017, the authors' StackGAN-v1 code): text to image in two stages.
//! Stage-I draws a 32 px image from noise and the text; after `--stage1-steps` it is frozen and
//! Stage-II learns to draw the 64 px image from Stage-I's and the text. Both play the BCE game
//! against a matching-aware D, which must call real images with their own text real, and both
//! fakes and real images with another sample's text fake. The networks are in
//! [`crate::model::stackgan`].
//!
//! **Texts.** Each emoji's caption is its name and emojilib keywords ([`crate::data::emoji`]); the
//! vocabulary is every caption word, stored in the run (`config.vocabulary`, id 0 reserved).
//! Every iteration reads each sample's text as a random subset of its caption's words (1 up to
//! `--slots` of them, seeded by the iteration), so that short prompts such as `red apple` are
//! texts the model has seen the like of; the words fill the slots cyclically
//! ([`pocketgan_runtime::text::fill`]), as a prompt's do.

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::TensorData;
use onnx_ir::Message;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{
    adam, checkpoint_sections, latents, load_net, read_metrics, seeded, Family, Iteration, Net,
    OnnxFile,
};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::error::TrainError;
use crate::export::onnx::{GraphWriter, FLOAT, INT64};
use crate::export::{ExportError, OnnxMetadata};
use crate::history::{StepMetrics, Terms};
use crate::model::progan::{downsample, upsample};
use crate::model::stackgan::{
    self, Dims, Discriminator, Logits, Stage1Generator, Stage2Generator, STAGE1_SIDE, STAGE2_SIDE,
};
use crate::model::Materialize;

/// The family's own columns of `metrics.csv`: the stage training, the conditioning's KL, and
/// D's belief in real images with another's text.
pub const TERMS: [&str; 3] = ["stage", "kl", "d_wrong"];

/// The name of the exported graph's text input (int64 `[N, slots]`).
pub const TEXT_INPUT: &str = "text";

/// The sample picture's rows: one prompt each (words the vocabulary lacks are skipped; a prompt
/// with none is left out).
pub const PROMPTS: [&str; 8] = [
    "red apple",
    "smiling face",
    "dog",
    "flag",
    "blue heart",
    "car",
    "sun",
    "tree",
];

const STAGE1: (&str, &str) = ("stage1_generator", "adam_g1");
const D1: (&str, &str) = ("stage1_discriminator", "adam_d1");
const STAGE2: (&str, &str) = ("stage2_generator", "adam_g2");
const D2: (&str, &str) = ("stage2_discriminator", "adam_d2");

/// The run's vocabulary from the data's captions: the reserved empty word, then every caption
/// word in sorted order.
pub fn vocabulary(ds: &Dataset) -> Result<Vec<String>, TrainError> {
    if ds.captions.len() != ds.len() {
        return Err(TrainError::Config(
            "stackgan needs each image's caption: fetch emojilib's keywords with \
             `scripts/fetch-data.sh emoji-keywords`"
                .into(),
        ));
    }
    let mut words: Vec<String> = ds
        .captions
        .iter()
        .flat_map(|c| pocketgan_runtime::text::words(c))
        .collect();
    words.sort();
    words.dedup();
    Ok(std::iter::once(String::new()).chain(words).collect())
}

/// The networks' sizes for `config` (a vocabulary of at least 2 before the data is read).
pub fn dims(config: &TrainConfig) -> Dims {
    let s = &config.stackgan;
    Dims {
        vocabulary: config.vocabulary.len().max(2),
        slots: s.slots,
        embed: s.text_embed,
        condition: s.condition,
        latent: config.model.latent,
        width: config.model.width,
        channels: 3,
    }
}

/// The four networks, fresh from the device's current seed.
fn networks(
    config: &TrainConfig,
    device: &Device,
) -> (
    Stage1Generator,
    Discriminator,
    Stage2Generator,
    Discriminator,
) {
    let d = dims(config);
    (
        Stage1Generator::new(&d, device).map(&mut Materialize),
        Discriminator::new(&d, STAGE1_SIDE, device).map(&mut Materialize),
        Stage2Generator::new(&d, device).map(&mut Materialize),
        Discriminator::new(&d, STAGE2_SIDE, device).map(&mut Materialize),
    )
}

/// Parameters of the four networks (for the size check).
pub fn parameters(config: &TrainConfig, device: &Device) -> Result<usize, TrainError> {
    let (g1, d1, g2, d2) = networks(config, device);
    Ok(g1.num_params() + d1.num_params() + g2.num_params() + d2.num_params())
}

pub struct StackGan {
    stage1: Net<Stage1Generator>,
    d1: Net<Discriminator>,
    stage2: Net<Stage2Generator>,
    d2: Net<Discriminator>,
    /// Word -> id in the run's vocabulary.
    ids: HashMap<String, u32>,
    /// Each sample's caption as word ids, read from the data at the first iteration.
    captions: Vec<Vec<u32>>,
    slots: usize,
    stage1_steps: u64,
    /// Iterations completed (the picture shows the stage reached).
    steps: u64,
}

/// `-log sigmoid(s)` (a logit called real) and `-log(1 - sigmoid(s))` (called fake), averaged.
fn called_real(s: Tensor<2>) -> Tensor<1> {
    -log_sigmoid(s).mean()
}

fn called_fake(s: Tensor<2>) -> Tensor<1> {
    -log_sigmoid(-s).mean()
}

/// Token ids `[n, slots]`.
fn token_tensor(ids: Vec<u32>, slots: usize, device: &Device) -> Tensor<2, Int> {
    let n = ids.len() / slots.max(1);
    let v: Vec<i64> = ids.into_iter().map(i64::from).collect();
    Tensor::from_data(TensorData::new(v, [n, slots]), device)
}

/// D's loss on real images with their texts, fakes, and real images with others' texts (the
/// authors' `compute_discriminator_loss`), and D's mean beliefs in the three.
fn discriminator_loss(real: Logits, fake: Logits, wrong: Logits) -> (Tensor<1>, Tensor<1>) {
    let beliefs = Tensor::cat(
        vec![
            sigmoid(real.matching.clone()).mean(),
            sigmoid(fake.matching.clone()).mean(),
            sigmoid(wrong.matching.clone()).mean(),
        ],
        0,
    )
    .detach();
    let (r, f, w) = (
        called_real(real.matching),
        called_fake(fake.matching),
        called_fake(wrong.matching),
    );
    let loss = match (real.unconditional, fake.unconditional) {
        // Stage-II: the unconditional logit joins the real and fake terms.
        (Some(ru), Some(fu)) => (r + called_real(ru)) / 2.0 + (f + w + called_fake(fu)) / 3.0,
        _ => r + (f + w) * 0.5,
    };
    (loss, beliefs)
}

/// D's loss ([`discriminator_loss`]) on `real` images with their texts `tokens` and with the
/// `wrong` texts (the real images' features computed once), and on `fake` images.
fn discriminator_pass(
    d: &Discriminator,
    real: Tensor<4>,
    fake: Tensor<4>,
    tokens: &Tensor<2, Int>,
    wrong: Tensor<2, Int>,
) -> (Tensor<1>, Tensor<1>) {
    let real = d.features(real);
    discriminator_loss(
        d.judge(real.clone(), tokens.clone(), true),
        d.forward(fake, tokens.clone()),
        d.judge(real, wrong, false),
    )
}

/// G's adversarial loss: its fakes called real with their texts (and unconditionally).
fn generator_loss(fake: Logits) -> Tensor<1> {
    let m = called_real(fake.matching);
    match fake.unconditional {
        Some(u) => m + called_real(u),
        None => m,
    }
}

impl StackGan {
    pub fn init(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let (g1, d1, g2, d2) = seeded(config.seed, device, || networks(config, device));
        let ids = config
            .vocabulary
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Ok(StackGan {
            stage1: Net::new(g1, adam(config)),
            d1: Net::new(d1, adam(config)),
            stage2: Net::new(g2, adam(config)),
            d2: Net::new(d2, adam(config)),
            ids,
            captions: Vec::new(),
            slots: config.stackgan.slots,
            stage1_steps: config.stackgan.stage1_steps,
            steps: 0,
        })
    }

    /// A text's word ids in this run's vocabulary (unknown words skipped).
    pub fn word_ids(&self, text: &str) -> Vec<u32> {
        pocketgan_runtime::text::words(text)
            .iter()
            .filter_map(|w| self.ids.get(w).copied())
            .collect()
    }

    /// A prompt's token slots, read as the runtime's `generate --text` reads them, or `None` if
    /// no word of it is known.
    pub fn prompt(&self, text: &str) -> Option<Vec<u32>> {
        // (The vocabulary only names examples in the error, which is dropped here.)
        pocketgan_runtime::text::encode(text, self.slots, &[], |w| self.ids.get(w).copied())
            .ok()
            .map(|(ids, _)| ids)
    }

    /// The texts of samples `idx` at iteration stream `stream`: for each, a random subset of its
    /// caption's words (1 to `slots` of them, a pure function of the seed, stream and position)
    /// filling the slots.
    fn texts(&self, idx: &[usize], seed: u64, stream: u64) -> Vec<u32> {
        let mut out = Vec::with_capacity(idx.len() * self.slots);
        for (k, &i) in idx.iter().enumerate() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                seed.wrapping_mul(0x5851_F42D_4C95_7F2D)
                    ^ stream.wrapping_mul(0x1405_7B7E)
                    ^ k as u64,
            );
            let mut words = self.captions.get(i).cloned().unwrap_or_default();
            let take = rng.random_range(1..=words.len().clamp(1, self.slots));
            words.shuffle(&mut rng);
            words.truncate(take);
            out.extend(pocketgan_runtime::text::fill(&words, self.slots));
        }
        out
    }

    /// Images `[N, 3, 64, 64]` values from token slots `tokens` (`N x slots`) and noise `z`, in
    /// inference mode with `c = mu` (as exported): Stage-I's upsampled to 64 px, or Stage-II's.
    pub fn draw(&self, tokens: Vec<u32>, z: Tensor<2>, stage: u8) -> Vec<f32> {
        let device = z.device().without_autodiff();
        let z = z.to_device(&device);
        let tokens = token_tensor(tokens, self.slots, &device);
        let g1 = self.stage1.get().valid();
        let text = g1.text.forward(tokens);
        let small = g1.draw(z, g1.augment.forward(text.clone()).mu);
        let image = if stage == 1 {
            upsample(small, STAGE2_SIDE / STAGE1_SIDE)
        } else {
            let g2 = self.stage2.get().valid();
            g2.draw(small, g2.augment.forward(text).mu)
        };
        image.into_data().try_to_vec::<f32>().unwrap_or_default()
    }

    /// The stage iteration `step` trains.
    fn stage_at(&self, step: u64) -> u8 {
        if step < self.stage1_steps {
            1
        } else {
            2
        }
    }
}

impl Family for StackGan {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        if self.captions.len() != it.data.len() {
            self.captions = it.data.captions.iter().map(|c| self.word_ids(c)).collect();
        }
        let (config, device, lr) = (it.config, it.device.clone(), it.lr());
        let stream = it.step;
        let b = it.batches(stream);
        let n = b.idx.len();
        let ids = self.texts(&b.idx, config.seed, stream);
        // Real images with another sample's text: each row reads the next row's.
        let mut wrong_ids = ids[self.slots..].to_vec();
        wrong_ids.extend_from_slice(&ids[..self.slots]);
        let tokens = token_tensor(ids.clone(), self.slots, &device);
        let wrong = token_tensor(wrong_ids, self.slots, &device);
        let eps = latents(
            config.seed,
            stream ^ 0xCA_CA,
            n,
            config.stackgan.condition,
            &device,
        );
        let stage = self.stage_at(it.step);

        let (loss_d, beliefs, grad_d, loss_g, kl, grad_g) = if stage == 1 {
            // Stage-I: c ~ N(mu(t), sigma(t)); fake = G1(z, c) at 32 px.
            let real = downsample(b.real);
            let g = self.stage1.get();
            let code = g.augment.forward(g.text.forward(tokens.clone()));
            let fake = g.draw(b.z, code.sample(eps));
            // (1) D1: real with its text -> real; fake and real-with-wrong-text -> fake.
            let (loss_d, beliefs) =
                discriminator_pass(self.d1.get(), real, fake.clone().detach(), &tokens, wrong);
            let grad_d = self.d1.descend(&loss_d, lr, &device);
            // (2) G1: its fakes called real with their texts, plus the KL term.
            let frozen = self.d1.get().clone().no_grad();
            let kl = code.kl();
            let loss_g =
                generator_loss(frozen.forward(fake, tokens)) + kl.clone() * config.stackgan.kl;
            let grad_g = self.stage1.descend(&loss_g, lr, &device);
            (loss_d, beliefs, grad_d, loss_g, kl, grad_g)
        } else {
            // Stage-II on the frozen Stage-I (inference mode, c1 sampled as in training): its
            // 32 px image and the text's embedding are inputs, not parameters.
            let g1 = self.stage1.get().valid();
            let inner = device.clone().without_autodiff();
            let text = g1.text.forward(token_tensor(ids, self.slots, &inner));
            // Stage-I's own conditioning noise: a stream of its own (not the trained stage's).
            let eps1 = latents(
                config.seed.wrapping_add(0x5EED),
                stream,
                n,
                config.stackgan.condition,
                &inner,
            );
            let small = g1.draw(
                b.z.to_device(&inner),
                g1.augment.forward(text.clone()).sample(eps1),
            );
            let (small, text) = (small.to_device(&device), text.to_device(&device));
            let g = self.stage2.get();
            let code = g.augment.forward(text);
            let fake = g.draw(small, code.sample(eps));
            let (loss_d, beliefs) =
                discriminator_pass(self.d2.get(), b.real, fake.clone().detach(), &tokens, wrong);
            let grad_d = self.d2.descend(&loss_d, lr, &device);
            let frozen = self.d2.get().clone().no_grad();
            let kl = code.kl();
            let loss_g =
                generator_loss(frozen.forward(fake, tokens)) + kl.clone() * config.stackgan.kl;
            let grad_g = self.stage2.descend(&loss_g, lr, &device);
            (loss_d, beliefs, grad_d, loss_g, kl, grad_g)
        };
        self.steps = it.step + 1;
        let extra: Vec<f32> = Tensor::cat(vec![kl.detach(), beliefs.clone().narrow(0, 2, 1)], 0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_else(|_| vec![f32::NAN; 2]);
        let mut m = read_metrics(
            it.step + 1,
            loss_d,
            loss_g,
            beliefs.narrow(0, 0, 2),
            grad_d,
            grad_g,
        );
        m.terms = Terms::new(&[stage as f32, extra[0], extra[1]]);
        m
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        Ok(checkpoint_sections([
            (STAGE1, self.stage1.records()?),
            (D1, self.d1.records()?),
            (STAGE2, self.stage2.records()?),
            (D2, self.d2.records()?),
        ]))
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.stage1, ckpt, file, STAGE1, None)?;
        load_net(&mut self.d1, ckpt, file, D1, None)?;
        load_net(&mut self.stage2, ckpt, file, STAGE2, None)?;
        load_net(&mut self.d2, ckpt, file, D2, None)?;
        self.steps = ckpt.step;
        Ok(())
    }

    /// One prompt of [`PROMPTS`] per row, 8 fixed noise vectors per row: Stage-I's images
    /// (upsampled) while it trains, then Stage-II's.
    fn sample_picture(
        &self,
        config: &TrainConfig,
        _step: u64,
        device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        let cols = 8;
        let device = device.clone().without_autodiff();
        let mut tokens = Vec::new();
        let mut rows = 0;
        for p in PROMPTS {
            if let Some(t) = self.prompt(p) {
                for _ in 0..cols {
                    tokens.extend_from_slice(&t);
                }
                rows += 1;
            }
        }
        if rows == 0 {
            return Err(TrainError::Config(
                "no sample prompt has a word in the vocabulary".into(),
            ));
        }
        // The same 8 noise vectors in every row.
        let z = latents(config.seed, u64::MAX, cols, config.model.latent, &device);
        let z = Tensor::cat(vec![z; rows], 0);
        // The stage of the last iteration trained.
        let stage = self.stage_at(self.steps.saturating_sub(1));
        let values = self.draw(tokens, z, stage);
        Ok(pocketgan_runtime::picture::image_grid_columns(
            &values,
            (3, STAGE2_SIDE, STAGE2_SIDE),
            cols,
        ))
    }

    fn milestone(&self, steps: u64) -> Option<String> {
        (steps == self.stage1_steps).then(|| "stage_1_32px.png".to_string())
    }

    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        let mut g = GraphWriter::default();
        let z = g.input(
            pocketgan_runtime::ONNX_INPUT,
            FLOAT,
            &[None, Some(meta.latent)],
        );
        let text = g.input(TEXT_INPUT, INT64, &[None, Some(self.slots)]);
        let out = pocketgan_runtime::ONNX_OUTPUT;
        stackgan::write_onnx(
            &mut g,
            &self.stage1.get().valid(),
            &self.stage2.get().valid(),
            &z,
            &text,
            self.slots,
            out,
        )?;
        let [c, h, w] = meta.sample_dims;
        g.output(out, FLOAT, &[None, Some(c), Some(h), Some(w)]);
        let bytes = g
            .finish("pocketgan_stackgan", &meta.entries)
            .write_to_bytes()
            .map_err(|e| ExportError::Graph(e.to_string()))?;
        Ok(vec![OnnxFile {
            name: "generator.onnx".into(),
            bytes,
        }])
    }

    fn latent_generator(&self) -> Option<&crate::model::Generator> {
        None
    }

    fn terms(&self) -> &'static [&'static str] {
        &TERMS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataSource;
    use crate::loss::GanLoss;
    use crate::model::Architecture;

    fn config(vocabulary: usize) -> TrainConfig {
        let mut c = TrainConfig::new(
            &DataSource::Emoji,
            Architecture::Dcgan,
            GanLoss::Nonsaturating,
        );
        c.family = crate::family::FamilyKind::Stackgan;
        c.model.width = 16;
        c.vocabulary = (0..vocabulary).map(|i| format!("w{i}")).collect();
        c
    }

    /// The PyTorch anchor (`scripts/anchors/torch_stackgan_step.py`) asserts its networks'
    /// parameter counts at width 16 (64 V + 300,496, 75,872 and 64 V + 364,002): it times the
    /// networks trained here. Burn counts batch norm's running mean and variance too, PyTorch's
    /// `parameters()` not: 2 more per channel normalised (240, 224 and 352 channels).
    #[test]
    fn the_networks_match_the_pytorch_anchors_counts() {
        let v = 3001;
        let (g1, _, g2, d2) = networks(&config(v), &Device::flex());
        assert_eq!(
            (g1.num_params(), g2.num_params(), d2.num_params()),
            (
                64 * v + 300_496 + 2 * 240,
                75_872 + 2 * 224,
                64 * v + 364_002 + 2 * 352
            )
        );
    }

    /// Each sample's text is a seeded subset of its caption's words filling every slot.
    #[test]
    fn texts_are_seeded_subsets_of_the_captions() {
        let c = config(10);
        let mut family = StackGan::init(&c, &Device::flex()).unwrap();
        family.captions = vec![vec![1, 2, 3, 4, 5], vec![7]];
        let a = family.texts(&[0, 1, 0], 5, 42);
        assert_eq!(a, family.texts(&[0, 1, 0], 5, 42));
        assert_ne!(a, family.texts(&[0, 1, 0], 5, 43));
        let slots = family.slots;
        assert_eq!(a.len(), 3 * slots);
        assert!(a[..slots].iter().all(|t| (1..=5).contains(t)));
        assert!(a[slots..2 * slots].iter().all(|&t| t == 7));
        // Over many draws, every length from 1 word to all 5 occurs.
        let mut lengths = std::collections::BTreeSet::new();
        for stream in 0..200 {
            let t = family.texts(&[0], 5, stream);
            let distinct: std::collections::BTreeSet<_> = t.iter().collect();
            lengths.insert(distinct.len());
        }
        assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    }
}
