//! Shared settings of the end-to-end tests (the tests themselves live in `tests/`).

/// The short toy run: small enough for CI, long enough to cover the ring.
pub const RING8_STEPS: u64 = 6000;
pub const RING8_BATCH: usize = 256;
pub const RING8_LR: f64 = 1e-3;
