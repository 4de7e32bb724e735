//! Times the reference DCGAN's convolution layers one by one on Burn's flex backend, with Burn's
//! convolutions and with the GEMM ones of `pocketgan_trainer::ops::conv`, beside a GEMM with the
//! same multiply-adds: where the training iteration's time goes.
//!     RAYON_NUM_THREADS=2 cargo run --release -p pocketgan-trainer --example conv_ops
use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use pocketgan_trainer::ops::conv::{conv2d, conv_transpose2d};
use pocketgan_trainer::ops::set_enabled;
use std::time::Instant;

/// Median of 15 runs after 3 warm-ups.
fn time<F: FnMut()>(name: &str, mut f: F) {
    for _ in 0..3 {
        f();
    }
    let mut ts = vec![];
    for _ in 0..15 {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ts.sort_by(f64::total_cmp);
    println!("{name:<46} {:8.2} ms", ts[ts.len() / 2]);
}

fn main() {
    let dev = Device::flex().autodiff();
    let plain = Device::flex();
    let conv = Conv2dConfig::new([64, 128], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&dev);
    let conv1 = Conv2dConfig::new([1, 64], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&dev);
    let convt = ConvTranspose2dConfig::new([128, 64], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .init(&dev);
    let convt2 = ConvTranspose2dConfig::new([64, 1], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .init(&dev);
    let x14 = Tensor::<4>::random(
        [64, 64, 14, 14],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    let x28 = Tensor::<4>::random(
        [64, 1, 28, 28],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    let x7 = Tensor::<4>::random(
        [64, 128, 7, 7],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    let conv_p = conv.valid();
    let convt_p = convt.valid();
    let x14b = Tensor::<4>::random(
        [64, 64, 14, 14],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    for (label, on) in [("burn", false), ("gemm", true)] {
        set_enabled(on);
        time(&format!("{label}: D conv2 fwd (plain)"), || {
            let _ = conv2d(&conv_p, x14.clone()).into_data();
        });
        time(&format!("{label}: D conv2 fwd+bwd (x needs grad)"), || {
            let x = x14.clone().autodiff().require_grad();
            let _ = conv2d(&conv, x).sum().backward();
        });
        time(&format!("{label}: D conv2 fwd+bwd (weights only)"), || {
            let _ = conv2d(&conv, x14.clone().autodiff()).sum().backward();
        });
        time(&format!("{label}: D conv1 fwd+bwd (weights only)"), || {
            let _ = conv2d(&conv1, x28.clone().autodiff()).sum().backward();
        });
        time(&format!("{label}: G convT1 fwd (plain)"), || {
            let _ = conv_transpose2d(&convt_p, x7.clone()).into_data();
        });
        time(&format!("{label}: G convT1 fwd+bwd (weights only)"), || {
            let _ = conv_transpose2d(&convt, x7.clone().autodiff())
                .sum()
                .backward();
        });
        time(&format!("{label}: G convT2 fwd+bwd (x needs grad)"), || {
            let x = x14b.clone().autodiff().require_grad();
            let _ = conv_transpose2d(&convt2, x).sum().backward();
        });
    }
    let a = Tensor::<2>::random(
        [3136, 1024],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    let b = Tensor::<2>::random(
        [1024, 128],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    time("matmul 3136x1024x128 (=conv2 MACs)", || {
        let _ = a.clone().matmul(b.clone()).into_data();
    });
    let act = Tensor::<4>::random(
        [64, 128, 7, 7],
        burn::tensor::Distribution::Normal(0., 1.),
        &plain,
    );
    time("leaky_relu fwd 64x128x7x7", || {
        let _ = burn::tensor::activation::leaky_relu(act.clone(), 0.2).into_data();
    });
}
