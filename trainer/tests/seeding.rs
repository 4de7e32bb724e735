//! Fresh networks are a function of the seed alone, even while other threads of the same process
//! build other runs' networks.
//!
//! A test binary of its own: the device's random generator is process-wide, and the library's
//! unit tests draw from it freely (random inputs for gradient checks) without the lock that every
//! library initialisation takes, so this property can only be observed in a process where all
//! draws are the library's.

use burn::prelude::*;
use pocketgan_trainer::config::TrainConfig;
use pocketgan_trainer::data::DataSource;
use pocketgan_trainer::family;
use pocketgan_trainer::loss::GanLoss;
use pocketgan_trainer::model::layers::Layer;
use pocketgan_trainer::model::Architecture;

fn first_weights(config: &TrainConfig, device: &Device) -> Vec<f32> {
    let family = family::init(config, device).expect("a DCGAN pair initialises");
    let generator = family
        .latent_generator()
        .expect("a pair has a latent generator");
    match &generator.layers()[0] {
        Layer::Linear { weight, .. } => weight.values.clone(),
        other => panic!("unexpected first layer {other:?}"),
    }
}

#[test]
fn init_is_seeded_under_concurrency() {
    let mut config = TrainConfig::new(
        &DataSource::Digits,
        Architecture::Dcgan,
        GanLoss::Nonsaturating,
    );
    config.model.width = 8;
    let device = Device::flex().autodiff();
    let reference = first_weights(&config, &device);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (config, device, reference) = (&config, &device, &reference);
            s.spawn(move || {
                for i in 0..20u64 {
                    let mut c = config.clone();
                    c.seed = if (t + i) % 2 == 0 {
                        config.seed
                    } else {
                        1000 + t
                    };
                    let w = first_weights(&c, device);
                    assert_eq!(
                        w == *reference,
                        c.seed == config.seed,
                        "thread {t} iteration {i}"
                    );
                }
            });
        }
    });
}
