//! Seeded latent vectors that are the same on every machine.
//!
//! The host CLI, the benchmarks and the firmware all draw `z` here, so a seed names the same image
//! on a workstation, a Raspberry Pi and a microcontroller. The generator is SplitMix64 (integer
//! only) and the normal deviates come from Marsaglia's polar method in f64, using nothing but IEEE
//! basic operations and `libm`'s software `log`/`sqrt`: results do not depend on the FPU, or on
//! whether there is one (Cortex-M0 uses soft float).

/// SplitMix64 (Steele, Lea and Flood 2014): one 64-bit state, full period, good enough mixing for
/// latent vectors and kernel self-tests.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed,
            spare: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)` with 53 random bits.
    fn symmetric_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (2.0 / (1u64 << 53) as f64) - 1.0
    }

    /// Uniform in `[0, 1)`, 24 random bits: every value is an f32 exactly ([`fill_uniform`]'s
    /// draws, one at a time).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A standard normal deviate.
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        loop {
            let (u, v) = (self.symmetric_unit(), self.symmetric_unit());
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let m = libm::sqrt(-2.0 * libm::log(s) / s);
                self.spare = Some(v * m);
                return u * m;
            }
        }
    }
}

/// Fills `out` with standard normal values drawn from `seed`: `n` latent vectors of length
/// `out.len() / n` are simply consecutive draws.
pub fn fill_normal(seed: u64, out: &mut [f32]) {
    let mut rng = Rng::new(seed);
    for v in out {
        *v = rng.normal() as f32;
    }
}

/// Fills `out` with values uniform in `[0, 1)` drawn from `seed`: TimeGAN's noise.
pub fn fill_uniform(seed: u64, out: &mut [f32]) {
    let mut rng = Rng::new(seed);
    for v in out {
        *v = rng.uniform();
    }
}

/// The ONNX (and `.pgq`) metadata key naming a generator's noise ([`Noise::name`]).
pub const NOISE_KEY: &str = "pocketgan.noise";

/// The distribution a generator's noise input is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noise {
    /// Standard normal (the image GANs' latents; the default).
    Normal,
    /// Uniform in `[0, 1)` (TimeGAN).
    Uniform,
}

impl Noise {
    pub fn name(self) -> &'static str {
        match self {
            Noise::Normal => "normal",
            Noise::Uniform => "uniform",
        }
    }

    pub fn from_name(name: &str) -> Option<Noise> {
        [Noise::Normal, Noise::Uniform]
            .into_iter()
            .find(|n| n.name() == name)
    }

    /// The noise a model's metadata (key, value pairs) names under [`NOISE_KEY`], if any.
    pub fn from_metadata<'m>(pairs: impl IntoIterator<Item = (&'m str, &'m str)>) -> Option<Noise> {
        pairs
            .into_iter()
            .find(|(k, _)| *k == NOISE_KEY)
            .and_then(|(_, v)| Noise::from_name(v))
    }

    /// Fills `out` with draws from `seed`.
    pub fn fill(self, seed: u64, out: &mut [f32]) {
        match self {
            Noise::Normal => fill_normal(seed, out),
            Noise::Uniform => fill_uniform(seed, out),
        }
    }
}

/// Linear interpolation `(1 - t) a + t b`, written into `out` (a latent walk's frame).
pub fn lerp(a: &[f32], b: &[f32], t: f32, out: &mut [f32]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = (1.0 - t) * a + t * b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_deviates_have_unit_moments() {
        let mut z = vec![0.0f32; 200_000];
        fill_normal(7, &mut z);
        let n = z.len() as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let beyond2 = z.iter().filter(|v| v.abs() > 2.0).count() as f64 / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        // P(|z| > 2) = 4.55% for a normal; a uniform or a sum of few uniforms misses it.
        assert!((beyond2 - 0.0455).abs() < 0.002, "tail {beyond2}");
    }

    #[test]
    fn same_seed_same_latents_different_seed_different() {
        let (mut a, mut b, mut c) = ([0.0f32; 64], [0.0f32; 64], [0.0f32; 64]);
        fill_normal(3, &mut a);
        fill_normal(3, &mut b);
        fill_normal(4, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn known_values_pin_the_definition() {
        // The firmware prints images made from these draws; changing the generator changes
        // every seed's picture, so it must be a deliberate act.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut z = [0.0f32; 3];
        fill_normal(0, &mut z);
        assert_eq!(z.map(f32::to_bits), [1065093637, 3191084820, 3208006136]);
    }

    #[test]
    fn uniform_draws_fill_the_unit_interval_evenly() {
        let mut u = vec![0.0f32; 100_000];
        Noise::from_name("uniform").unwrap().fill(5, &mut u);
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
        let mean = u.iter().map(|&v| v as f64).sum::<f64>() / u.len() as f64;
        let below_tenth = u.iter().filter(|&&v| v < 0.1).count() as f64 / u.len() as f64;
        assert!(
            (mean - 0.5).abs() < 0.005 && (below_tenth - 0.1).abs() < 0.005,
            "{mean} {below_tenth}"
        );
    }

    #[test]
    fn lerp_hits_both_ends() {
        let (a, b) = ([1.0f32, -2.0], [3.0f32, 4.0]);
        let mut o = [0.0f32; 2];
        lerp(&a, &b, 0.0, &mut o);
        assert_eq!(o, a);
        lerp(&a, &b, 1.0, &mut o);
        assert_eq!(o, b);
        lerp(&a, &b, 0.5, &mut o);
        assert_eq!(o, [2.0, 1.0]);
    }
}
