//! CycleGAN (Zhu et al. 2017): unpaired image-to-image translation. Two ResNet generators map
//! A -> B (`G_AB`) and B -> A (`G_BA`); two PatchGANs with instance norm judge real against
//! translated images of each domain (`D_A` judges domain A, `D_B` domain B). With no pairs to
//! compare against, the generators are held to the cycle: `G_BA(G_AB(a))` must give `a` back and
//! `G_AB(G_BA(b))` must give `b` (L1, weight lambda 10), and to the identity on images already of
//! their output domain (`G_AB(b) = b`, weight 0.5 lambda), which keeps colours.
//!
//! One iteration, as the authors' `optimize_parameters`: both generators' step (one Adam over
//! both), through frozen discriminators, on
//! `MSE(D_B(G_AB(a)), 1) + MSE(D_A(G_BA(b)), 1) + cycle + identity`; then both discriminators' step
//! (one Adam over both) on `0.5 [MSE(D(real), 1) + MSE(D(fake), 0)]` per domain, where the fakes
//! come from an [`ImagePool`] of 50 earlier translations (Shrivastava et al. 2017), which keeps D
//! from chasing the generators' latest move. The A and B batches are drawn by two independent
//! orders: the family never sees a pair.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};

use super::pix2pix::{inference, load_options, translator_onnx};
use super::{
    adam, checkpoint_sections, load_net, read_metrics, seeded_pair, Family, Iteration, Net,
    OnnxFile,
};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::pairs::{self, Split};
use crate::data::{BatchOrder, Dataset};
use crate::error::TrainError;
use crate::export::{ExportError, OnnxMetadata};
use crate::history::{StepMetrics, Terms};
use crate::loss::GanLoss;
use crate::model::resnet::{self, ResnetGenerator};
use crate::model::unet::{Norm, PatchGan};

/// Past translations each discriminator may be shown instead of the current ones (the authors'
/// `pool_size`).
pub const POOL_SIZE: usize = 50;
/// Held-out images of each domain shown in the sample picture.
const SHOWN: usize = 4;

/// The loss terms in `metrics.csv`, after the common columns: G's GAN terms, its cycle and
/// identity L1 (each weighted as in G's loss) and each discriminator's loss.
pub const TERMS: [&str; 8] = [
    "g_gan_ab",
    "g_gan_ba",
    "cycle_a",
    "cycle_b",
    "identity_a",
    "identity_b",
    "d_a",
    "d_b",
];

/// Both generators: one module, so one Adam steps both, as the authors chain their parameters.
#[derive(Module, Debug)]
pub struct Generators {
    /// A -> B.
    pub ab: ResnetGenerator,
    /// B -> A.
    pub ba: ResnetGenerator,
}

/// Both discriminators, stepped by one Adam.
#[derive(Module, Debug)]
pub struct Discriminators {
    /// Judges images of domain A: real ones against `G_BA(b)`.
    pub a: PatchGan,
    /// Judges images of domain B: real ones against `G_AB(a)`.
    pub b: PatchGan,
}

pub struct CycleGan {
    pub generators: Net<Generators>,
    pub discriminators: Net<Discriminators>,
    /// Past `G_BA(b)` shown to `D_A`, and past `G_AB(a)` shown to `D_B`.
    pub pools: [ImagePool; 2],
    /// The B side's batch order, independent of A's: built on the first step, when the B side's
    /// size is known (a function of the seed and the step, like A's, so resuming replays it).
    order_b: Option<BatchOrder>,
    /// The first held-out images of each domain, for the sample picture.
    shown: (Dataset, Dataset),
    /// Values per image.
    per: usize,
}

/// Checkpoint sections (parameters, optimizer) of each network pair, and of the pools.
const GENERATORS: (&str, &str) = ("generators", "adam_g");
const DISCRIMINATORS: (&str, &str) = ("discriminators", "adam_d");
const POOLS: &str = "image_pools";

impl CycleGan {
    pub fn init(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let (g, d) = seeded_pair(config.seed, device, || networks(config, device))?;
        let test = pairs::load(&config.source()?, &load_options(config), Split::Test)?;
        let shown: Vec<usize> = (0..test.a.len().min(SHOWN)).collect();
        Ok(Self {
            generators: Net::new(g, adam(config)),
            discriminators: Net::new(d, adam(config)),
            pools: [ImagePool::new(POOL_SIZE), ImagePool::new(POOL_SIZE)],
            order_b: None,
            shown: (test.a.subset(&shown), test.b.subset(&shown)),
            per: config.model.sample.numel(),
        })
    }

    pub fn generators(&self) -> &Generators {
        self.generators.get()
    }
}

/// Both generators and both discriminators, as `config` shapes them (parameters not yet drawn).
pub fn networks(
    config: &TrainConfig,
    device: &Device,
) -> Result<(Generators, Discriminators), TrainError> {
    let [_, c, side, _] = config.model.sample.batch_dims(1);
    let w = config.model.width;
    let blocks = resnet::blocks(side).map_err(TrainError::Config)?;
    let g = Generators {
        ab: ResnetGenerator::new(c, w, blocks, device),
        ba: ResnetGenerator::new(c, w, blocks, device),
    };
    let d = Discriminators {
        a: PatchGan::new(c, w, Norm::Instance, device),
        b: PatchGan::new(c, w, Norm::Instance, device),
    };
    Ok((g, d))
}

/// The seed of the B side's batch order: another stream than A's (which uses the run's seed).
fn order_b_seed(seed: u64) -> u64 {
    seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0xB51D_E0F0
}

/// The seed of pool `pool`'s draws at step `step`: a pure function of (seed, step, pool).
fn pool_seed(seed: u64, step: u64, pool: usize) -> u64 {
    seed.wrapping_mul(0x9FB2_1C65_1E98_DF25) ^ step ^ ((pool as u64 + 1) << 56) ^ 0x9001
}

/// G's GAN term as the authors write it, the loss of D's scores on G's images against "real":
/// least squares `MSE(D(G(x)), 1)` (this crate's LSGAN generator loss is half that), or the
/// vanilla GAN's cross-entropy.
fn generator_term(loss: GanLoss, scores: Tensor<2>) -> Tensor<1> {
    match loss {
        GanLoss::Lsgan => loss.generator(scores) * 2.0,
        _ => loss.generator(scores),
    }
}

/// A discriminator's loss as the authors write it, `0.5 [l(D(real), 1) + l(D(fake), 0)]` (halved
/// so that D learns more slowly than G); this crate's LSGAN discriminator loss already is that.
fn discriminator_term(loss: GanLoss, real: Tensor<2>, fake: Tensor<2>) -> Tensor<1> {
    match loss {
        GanLoss::Lsgan => loss.discriminator(real, fake),
        _ => loss.discriminator(real, fake) * 0.5,
    }
}

impl Family for CycleGan {
    fn step(&mut self, it: &mut Iteration<'_>) -> StepMetrics {
        let config = it.config;
        let (loss, lambda) = (config.loss, config.cycle_weight);
        let identity = lambda * config.identity_share;
        let target = it
            .target
            .expect("cyclegan trains on two image domains (the loop loads them)");
        let idx_a = it.order.indices(it.step).to_vec();
        let order_b = self.order_b.get_or_insert_with(|| {
            BatchOrder::new(target.len(), config.batch, order_b_seed(config.seed))
                .expect("the loop checks that each domain holds a batch")
        });
        let idx_b = order_b.indices(it.step).to_vec();
        let (a, b) = (
            it.data.batch(&idx_a, it.device),
            target.batch(&idx_b, it.device),
        );

        // (1) Both generators, through frozen discriminators (only G's parameters move).
        let g = self.generators.get();
        let fake_b = g.ab.forward(a.clone());
        let fake_a = g.ba.forward(b.clone());
        let cycle_a = (g.ba.forward(fake_b.clone()) - a.clone()).abs().mean() * lambda;
        let cycle_b = (g.ab.forward(fake_a.clone()) - b.clone()).abs().mean() * lambda;
        let zero = || Tensor::<1>::zeros([1], it.device);
        let (identity_a, identity_b) = if identity > 0.0 {
            (
                (g.ba.forward(a.clone()) - a.clone()).abs().mean() * identity,
                (g.ab.forward(b.clone()) - b.clone()).abs().mean() * identity,
            )
        } else {
            (zero(), zero())
        };
        let frozen = self.discriminators.get().clone().no_grad();
        let gan_ab = generator_term(loss, frozen.b.forward(fake_b.clone())) * config.gan_weight;
        let gan_ba = generator_term(loss, frozen.a.forward(fake_a.clone())) * config.gan_weight;
        let loss_g = gan_ab.clone()
            + gan_ba.clone()
            + cycle_a.clone()
            + cycle_b.clone()
            + identity_a.clone()
            + identity_b.clone();
        let grad_g = self.generators.descend(&loss_g, it.lr(), it.device);

        // (2) Both discriminators, on real images and on translations from the pools (made by
        //     the generators before their step, as the authors do).
        let per = self.per;
        let pooled = |pool: &mut ImagePool, fake: Tensor<4>, which: usize| {
            let dims = fake.dims();
            let values = fake
                .detach()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(pool_seed(config.seed, it.step, which));
            let shown = pool.query(&values, per, &mut rng);
            Tensor::<4>::from_data(TensorData::new(shown, dims), it.device)
        };
        let [pool_a, pool_b] = &mut self.pools;
        let fake_a = pooled(pool_a, fake_a, 0);
        let fake_b = pooled(pool_b, fake_b, 1);
        let d = self.discriminators.get();
        let (real_a_scores, fake_a_scores) = (d.a.forward(a), d.a.forward(fake_a));
        let (real_b_scores, fake_b_scores) = (d.b.forward(b), d.b.forward(fake_b));
        // Logged: the two discriminators' mean opinions of real and of translated images.
        let opinions = (loss.opinions(real_a_scores.clone(), fake_a_scores.clone())
            + loss.opinions(real_b_scores.clone(), fake_b_scores.clone()))
            * 0.5;
        let d_a = discriminator_term(loss, real_a_scores, fake_a_scores);
        let d_b = discriminator_term(loss, real_b_scores, fake_b_scores);
        let loss_d = d_a.clone() + d_b.clone();
        let grad_d = self.discriminators.descend(&loss_d, it.lr(), it.device);

        let terms = Tensor::cat(
            [
                gan_ab, gan_ba, cycle_a, cycle_b, identity_a, identity_b, d_a, d_b,
            ]
            .into_iter()
            .map(|t| t.detach().inner())
            .collect(),
            0,
        );
        let terms: Vec<f32> = terms
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_else(|_| vec![f32::NAN; TERMS.len()]);
        StepMetrics {
            terms: Terms::new(&terms),
            ..read_metrics(it.step + 1, loss_d, loss_g, opinions, grad_d, grad_g)
        }
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        let mut sections = checkpoint_sections([
            (GENERATORS, self.generators.records()?),
            (DISCRIMINATORS, self.discriminators.records()?),
        ]);
        let mut pools = Vec::new();
        for pool in &self.pools {
            pool.write(&mut pools);
        }
        sections.push((POOLS.into(), pools));
        Ok(sections)
    }

    fn load(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<(), TrainError> {
        load_net(&mut self.generators, ckpt, file, GENERATORS, None)?;
        load_net(&mut self.discriminators, ckpt, file, DISCRIMINATORS, None)?;
        let mut bytes = ckpt.section(POOLS, file)?;
        for pool in &mut self.pools {
            *pool = ImagePool::read(&mut bytes, POOL_SIZE, self.per).map_err(|reason| {
                TrainError::Record {
                    file: file.into(),
                    reason: format!("image pools: {reason}"),
                }
            })?;
        }
        Ok(())
    }

    /// Rows of held-out images through the cycle: A -> G_AB(A) -> G_BA(G_AB(A)), then
    /// B -> G_BA(B) -> G_AB(G_BA(B)).
    fn sample_picture(
        &self,
        config: &TrainConfig,
        _step: u64,
        device: &Device,
    ) -> Result<image::RgbImage, TrainError> {
        let device = device.clone().without_autodiff();
        let g = self.generators().valid();
        let per = self.per;
        let mut rows = Vec::new();
        for (images, there, back) in [(&self.shown.0, &g.ab, &g.ba), (&self.shown.1, &g.ba, &g.ab)]
        {
            let all: Vec<usize> = (0..images.len()).collect();
            let x = images.batch(&all, &device);
            let translated = there.forward(x);
            let out = inference(translated.clone(), |t| t);
            let cycled = inference(translated, |t| back.forward(t));
            for i in all {
                rows.extend_from_slice(images.sample(i));
                rows.extend_from_slice(&out[i * per..(i + 1) * per]);
                rows.extend_from_slice(&cycled[i * per..(i + 1) * per]);
            }
        }
        let [_, c, h, w] = config.model.sample.batch_dims(1);
        Ok(pocketgan_runtime::picture::image_grid_columns(
            &rows,
            (c, h, w),
            3,
        ))
    }

    fn export(&self, meta: &OnnxMetadata) -> Result<Vec<OnnxFile>, ExportError> {
        let g = self.generators().valid();
        [("generator_ab.onnx", &g.ab), ("generator_ba.onnx", &g.ba)]
            .into_iter()
            .map(|(name, net)| {
                Ok(OnnxFile {
                    name: name.into(),
                    bytes: translator_onnx(meta, "pocketgan_cyclegan", |graph, x, out| {
                        net.write_onnx(graph, x, out)
                    })?,
                })
            })
            .collect()
    }

    fn latent_generator(&self) -> Option<&crate::model::Generator> {
        None
    }

    fn terms(&self) -> &'static [&'static str] {
        &TERMS
    }

    /// G_AB: A -> B.
    fn translate(&self, images: Tensor<4>) -> Option<Vec<f32>> {
        let g = self.generators().valid();
        Some(inference(images, |x| g.ab.forward(x)))
    }

    /// A -> B -> A.
    fn reconstruct(&self, images: Tensor<4>) -> Option<Vec<f32>> {
        let g = self.generators().valid();
        Some(inference(images, |x| g.ba.forward(g.ab.forward(x))))
    }
}

/// The authors' image pool: up to `capacity` past translations, each `per` values. Until it is
/// full every image is stored and shown as is; then each image is, with probability 1/2, swapped
/// for a uniformly chosen stored one (which D is shown instead, the new one taking its place),
/// else shown as is.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePool {
    capacity: usize,
    images: Vec<Vec<f32>>,
}

impl ImagePool {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            images: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images to show D for the batch `fakes` (`per` values each), drawing from `rng` as
    /// `image_pool.py` draws: one uniform per image once full, and an index when it swaps.
    pub fn query(&mut self, fakes: &[f32], per: usize, rng: &mut impl Rng) -> Vec<f32> {
        if self.capacity == 0 || per == 0 {
            return fakes.to_vec();
        }
        let mut shown = Vec::with_capacity(fakes.len());
        for image in fakes.chunks_exact(per) {
            if self.images.len() < self.capacity {
                self.images.push(image.to_vec());
                shown.extend_from_slice(image);
            } else if rng.random::<f32>() > 0.5 {
                let i = rng.random_range(0..self.capacity);
                shown.extend_from_slice(&std::mem::replace(&mut self.images[i], image.to_vec()));
            } else {
                shown.extend_from_slice(image);
            }
        }
        shown
    }

    /// Append the pool to `out`: the number of images (u32 LE), then their values (f32 LE).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.images.len() as u32).to_le_bytes());
        for v in self.images.iter().flatten() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Read a pool that [`Self::write`] wrote at the start of `bytes`, advancing past it; its
    /// images must have `per` values and be at most `capacity`.
    pub fn read(bytes: &mut &[u8], capacity: usize, per: usize) -> Result<Self, String> {
        let (head, rest) = bytes
            .split_at_checked(4)
            .ok_or("truncated before the image count")?;
        let n = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
        if n > capacity {
            return Err(format!("{n} images in a pool of {capacity}"));
        }
        let len = n * per * 4;
        let (data, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| format!("{n} images of {per} values need {len} bytes"))?;
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        *bytes = rest;
        Ok(Self {
            capacity,
            images: values
                .chunks_exact(per.max(1))
                .map(<[f32]>::to_vec)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(v: f32) -> Vec<f32> {
        vec![v; 3]
    }

    /// Filling, then a coin per image: about half the images shown are old ones, each swapped for
    /// the new one; no image is lost or duplicated between the pool and what is shown.
    #[test]
    fn pool_fills_then_swaps_half() {
        let mut pool = ImagePool::new(4);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let first: Vec<f32> = (0..4).flat_map(|i| image(i as f32)).collect();
        assert_eq!(pool.query(&first, 3, &mut rng), first);
        assert_eq!(pool.len(), 4);
        let mut old_shown = 0;
        for round in 0..200 {
            let v = 10.0 + round as f32;
            let shown = pool.query(&image(v), 3, &mut rng);
            assert_eq!(shown.len(), 3);
            if shown[0] != v {
                old_shown += 1;
                // The new image took the old one's place.
                assert!(pool.images.contains(&image(v)));
                assert!(!pool.images.contains(&shown));
            } else {
                assert!(!pool.images.contains(&image(v)));
            }
            assert_eq!(pool.len(), 4);
        }
        assert!(
            (70..130).contains(&old_shown),
            "{old_shown} of 200 old images shown"
        );
        // A pool of 0 shows the batch as is.
        let mut none = ImagePool::new(0);
        assert_eq!(none.query(&first, 3, &mut rng), first);
        assert!(none.is_empty());
    }

    /// The same seed draws the same swaps; a pool written and read back is the same pool, and
    /// a truncated or oversized one is refused.
    #[test]
    fn pool_is_seeded_and_round_trips() {
        let run = |seed| {
            let mut pool = ImagePool::new(3);
            let mut shown = Vec::new();
            for step in 0..20u64 {
                let mut rng = rand::rngs::StdRng::seed_from_u64(pool_seed(seed, step, 0));
                let batch: Vec<f32> = (0..6).map(|i| (step * 6 + i) as f32).collect();
                shown.extend(pool.query(&batch, 3, &mut rng));
            }
            (pool, shown)
        };
        let (pool, shown) = run(7);
        assert_eq!(run(7), (pool.clone(), shown.clone()));
        assert_ne!(run(8).1, shown);
        let mut bytes = Vec::new();
        pool.write(&mut bytes);
        ImagePool::new(3).write(&mut bytes);
        let mut cursor = bytes.as_slice();
        assert_eq!(ImagePool::read(&mut cursor, 3, 3).unwrap(), pool);
        assert_eq!(
            ImagePool::read(&mut cursor, 3, 3).unwrap(),
            ImagePool::new(3)
        );
        assert!(cursor.is_empty());
        assert!(ImagePool::read(&mut &bytes[..10], 3, 3).is_err());
        assert!(ImagePool::read(&mut bytes.as_slice(), 2, 3).is_err());
    }
}
