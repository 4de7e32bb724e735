//! An exponential moving average of a network's weights (Karras et al. 2018; Yazıcı et al. 2019):
//! after each step `avg <- beta avg + (1 - beta) latest`, for every float of the network (its
//! parameters and BatchNorm's running statistics, which Burn visits in the same order). The
//! average samples, is evaluated and is exported; the raw network keeps training, and both are kept
//! in checkpoints so that a resumed run is the run it would have been.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// How strongly the average remembers: a half-life in iterations, reached after a warm-up.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmaSchedule {
    /// Iterations after which a step's weights count half as much as the newest.
    pub half_life: f64,
}

/// While warming up, the half-life is at most this share of the iterations done, so that the
/// average does not hold on to the first, random weights (StyleGAN2-ADA's `ema_rampup`).
pub const WARM_UP: f64 = 0.1;

impl EmaSchedule {
    /// The weight of the average before iteration `step` (0-based) is blended in.
    pub fn beta(&self, step: u64) -> f32 {
        let half_life = self.half_life.min(WARM_UP * (step + 1) as f64);
        if half_life <= 0.0 {
            return 0.0;
        }
        0.5f64.powf(1.0 / half_life) as f32
    }
}

/// The checkpoint section of G's moving average ([`Ema::section`]).
pub const SECTION: &str = "generator_ema";

/// The average of a network, on a device without autodiff, in inference mode.
pub struct Ema<M> {
    average: M,
}

impl<M: Module> Ema<M> {
    /// An average that starts at `network`'s weights.
    pub fn new(network: &M) -> Self {
        Self {
            average: network.valid(),
        }
    }

    pub fn get(&self) -> &M {
        &self.average
    }

    /// Blend `latest` in with weight `1 - beta`, then run `forward` once on the average in
    /// training mode. Blended BatchNorm statistics are those of the raw weights' activations,
    /// which drift from the average's own; each forward pass moves them (by BatchNorm's
    /// momentum) toward the batch statistics of the average itself, which is what it samples
    /// with.
    pub fn update(&mut self, latest: &M, beta: f32, forward: impl FnOnce(&M)) {
        let mut floats = Floats(Vec::new());
        latest.valid().visit(&mut floats);
        let mut blend = Blend {
            latest: floats.0.into_iter(),
            beta,
            mismatched: false,
        };
        let blended = self.average.clone().map(&mut blend);
        let mismatched = blend.mismatched || blend.latest.next().is_some();
        debug_assert!(
            !mismatched,
            "the average and the network have the same floats"
        );
        // The average is built from the network it follows, so their floats always pair up; if
        // they ever did not, restart the average from the network rather than blend unlike
        // weights (or panic mid-run).
        let training = if mismatched {
            latest.valid().train()
        } else {
            blended.train()
        };
        forward(&training);
        self.average = training.valid();
    }

    /// The checkpoint section that holds G's moving average: its name and record.
    pub fn section(&self) -> Result<(String, Vec<u8>), crate::error::TrainError> {
        let record = self.record().map_err(|e| {
            crate::error::TrainError::Config(format!("cannot serialise G's moving average: {e}"))
        })?;
        Ok((SECTION.into(), record))
    }

    /// Restore the average from its section of `ckpt`, read from `file`.
    pub fn load_section(
        &mut self,
        ckpt: &crate::checkpoint::Checkpoint,
        file: &std::path::Path,
    ) -> Result<(), crate::error::TrainError> {
        self.load(ckpt.section(SECTION, file)?)
            .map_err(|reason| crate::error::TrainError::Record {
                file: file.into(),
                reason: format!("G's moving average: {reason}"),
            })
    }

    /// The average's record, serialised.
    pub fn record(&self) -> Result<Vec<u8>, String> {
        self.average
            .clone()
            .into_record()
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    /// Restore the average from [`Self::record`]'s bytes, checked against the network's shapes.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), String> {
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            bytes.to_vec(),
        ))
        .map_err(|e| e.to_string())?;
        self.average = self
            .average
            .clone()
            .try_load_record(record)
            .map_err(|e| e.to_string())?
            .valid();
        Ok(())
    }
}

/// Every float of a network, flattened, in visiting order.
struct Floats(Vec<Tensor<1>>);

impl ModuleVisitor for Floats {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().flatten(0, D - 1).detach());
    }
}

/// `avg <- beta avg + (1 - beta) latest`, float by float, in the order [`Floats`] collected them.
/// A float without a partner of its size is left as it is and `mismatched` is set.
struct Blend<I> {
    latest: I,
    beta: f32,
    mismatched: bool,
}

impl<I: Iterator<Item = Tensor<1>>> ModuleMapper for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, average, mapper) = param.consume();
        let shape = average.shape();
        let value = match self.latest.next() {
            Some(latest) if latest.shape().num_elements() == shape.num_elements() => {
                average * self.beta + latest.reshape(shape) * (1.0 - self.beta)
            }
            _ => {
                self.mismatched = true;
                average
            }
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Net {
        linear: Linear,
        norm: BatchNorm,
    }

    fn net(device: &Device) -> Net {
        Net {
            linear: LinearConfig::new(3, 2).init(device),
            norm: BatchNormConfig::new(2).init(device),
        }
    }

    fn weights(n: &Net) -> Vec<f32> {
        n.linear
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    /// The average is the blend of the weights it was given, float by float, and a zero
    /// half-life (the first step) takes the newest weights whole.
    #[test]
    fn the_average_blends_every_float() {
        let device = Device::flex();
        let (a, b) = (net(&device), net(&device));
        let mut ema = Ema::new(&a);
        ema.update(&b, 0.75, |_| ());
        for ((avg, x), y) in weights(ema.get()).iter().zip(weights(&a)).zip(weights(&b)) {
            assert!((avg - (0.75 * x + 0.25 * y)).abs() < 1e-6);
        }
        // A forward pass in training mode moves the running mean toward its batch's mean (10%,
        // BatchNorm's momentum): a batch of 5s from a running mean of 0 gives 0.5.
        let batch = || Tensor::<2>::full([4, 2], 5.0, &device.clone().autodiff());
        ema.update(&b, 0.0, |n| {
            n.norm.forward(batch());
        });
        assert_eq!(weights(ema.get()), weights(&b));
        let mean: Vec<f32> = ema
            .get()
            .norm
            .running_mean
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(mean.iter().all(|m| (m - 0.5).abs() < 1e-5), "{mean:?}");
        // Round trip through a checkpoint's bytes.
        let mut other = Ema::new(&a);
        other.load(&ema.record().unwrap()).unwrap();
        assert_eq!(weights(other.get()), weights(&b));
    }

    #[test]
    fn the_schedule_warms_up_to_its_half_life() {
        let s = EmaSchedule { half_life: 100.0 };
        // Step 0: the half-life is 0.1 iterations, so the first weights barely count.
        assert!(s.beta(0) < 1e-2);
        assert!(s.beta(99) < s.beta(500));
        // After the warm-up, 100 steps halve a weight's share.
        let b = s.beta(5000) as f64;
        assert!((b.powi(100) - 0.5).abs() < 1e-4, "{b}");
        assert_eq!(s.beta(5000), s.beta(1000));
    }
}
