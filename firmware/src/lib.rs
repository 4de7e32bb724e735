//! pocketgan firmware: generates digits on a microcontroller and draws them on a display.
//!
//! The library is the board-independent part (`no_std`, no heap, tested on the host): the demo
//! loop over the runtime's int8 core ([`demo`]), the two screens ([`render`]), in-memory
//! framebuffers for the QEMU boards ([`framebuffer`]) and the embedded model ([`models`]). Each board
//! is a binary in `src/bin/` built with its feature; see README.md.
#![cfg_attr(not(test), no_std)]

pub mod demo;
pub mod framebuffer;
pub mod models;
pub mod render;
pub mod selftest;
pub mod series;

pub use pocketgan_runtime::Isa;

/// The kernel family this build runs: the DSP kernel when the `dsp` feature says the core has
/// the extension, the scalar reference otherwise (Cortex-M0/M0+, host).
pub fn isa() -> Isa {
    if Isa::CortexMDsp.is_available() {
        Isa::CortexMDsp
    } else {
        Isa::Scalar
    }
}
