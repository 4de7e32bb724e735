//! Fast CPU operators plugged into Burn's flex backend, each concept in its own file. They take
//! Burn's own modules, so models, checkpoints and export do not change.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod activation;
pub mod conv;
pub mod kernels;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns these operators on or off for the whole process (off: Burn's own), so that `bench` can
/// time both in one run.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}
