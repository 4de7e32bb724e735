//! The embedded demo model, a `.pgq` made by our own tools (`firmware/models/regenerate.sh`) and
//! read in place from flash.
//!
//! `digits.pgq` is a DCGAN of width 32 for the STM32F411, the RP2040 and the MPS2 boards;
//! `digits-tiny.pgq` (feature `tiny-model`) a width-16 DCGAN that fits the micro:bit's 16 KB RAM;
//! `emoji.pgq` (feature `emoji`) a 32 px colour DCGAN for the ST7789.
//! [`ARENA_BYTES`] is the arena each board reserves; a unit test holds it to the model's needs, and
//! [`crate::demo::Generator::new`] checks it again at start-up.

#[cfg(not(feature = "tiny-model"))]
mod chosen {
    pub const NAME: &str = "digits.pgq";
    pub static MODEL: &[u8] = include_bytes!("../models/digits.pgq");
    pub const MCU_ARENA_BYTES: usize = 19 * 1024;
}

#[cfg(feature = "tiny-model")]
mod chosen {
    pub const NAME: &str = "digits-tiny.pgq";
    pub static MODEL: &[u8] = include_bytes!("../models/digits-tiny.pgq");
    pub const MCU_ARENA_BYTES: usize = 7 * 1024 + 64;
}

pub use chosen::{MCU_ARENA_BYTES, MODEL, NAME};

/// The colour demo's generator: a 32 px RGB DCGAN (width 16, latent 32) trained on Google's emoji
/// (`firmware/models/regenerate.sh`), drawn on the ST7789 by the builds with the `emoji` feature
/// (the MPS2 boards and the STM32F411) and always present on a host (simulator, tests).
#[cfg(any(feature = "emoji", not(target_os = "none")))]
pub static EMOJI_MODEL: &[u8] = include_bytes!("../models/emoji.pgq");
pub const EMOJI_NAME: &str = "emoji.pgq";
/// The colour image's values: 3 channels of 32x32.
pub const EMOJI_VALUES: usize = 3 * 32 * 32;
/// Its arena on the Cortex-M4/M33 boards (32 tile rows), and on this build.
pub const EMOJI_MCU_ARENA_BYTES: usize = 16 * 1024;
pub const EMOJI_ARENA_BYTES: usize = if pocketgan_runtime::interp::TILE_ROWS == 32 {
    EMOJI_MCU_ARENA_BYTES
} else {
    EMOJI_MCU_ARENA_BYTES + 32 * 1024
};

/// TimeGAN's sines generator (`firmware/models/sines.pgq`: the README's run, quantized), drawn as
/// a line chart by the boards that carry the graph ops (its GRU layers).
#[cfg(feature = "graph-ops")]
pub static SERIES_MODEL: &[u8] = include_bytes!("../models/sines.pgq");
/// Its arena on a host (2,592 bytes for one series on the host's tiles). The boards lend it the
/// digits workspace's arena once the digits demo is done ([`MCU_ARENA_BYTES`], which a unit test
/// holds to be enough): the micro:bit has no RAM for a second one.
pub const SERIES_ARENA_BYTES: usize = 4 * 1024;
/// The noise seeds the QEMU boards draw series from.
pub const SERIES_SEEDS: [u64; 3] = [7, 8, 9];

/// Tile rows of the interpreter on this build's microcontroller
/// (`pocketgan_runtime::interp::TILE_ROWS`): 16 on a Cortex-M0 (thumbv6m: the RP2040, and the
/// micro:bit, the tiny model's board, also when a host checks that model), 32 on the
/// Cortex-M4/M33 boards.
pub const MCU_TILE_ROWS: usize =
    if cfg!(feature = "tiny-model") || cfg!(all(target_arch = "arm", target_abi = "eabi")) {
        16
    } else {
        32
    };

/// The arena this build reserves: [`MCU_ARENA_BYTES`] on a microcontroller; hosts (simulator,
/// tests) use taller GEMM tiles and get room for them.
pub const ARENA_BYTES: usize = if pocketgan_runtime::interp::TILE_ROWS == MCU_TILE_ROWS {
    MCU_ARENA_BYTES
} else {
    MCU_ARENA_BYTES + 32 * 1024
};

#[cfg(test)]
mod tests {
    use super::*;
    use pocketgan_runtime::Model;

    #[test]
    fn arena_fits_the_embedded_model_without_waste() {
        let model = Model::parse(MODEL).expect("embedded model parses");
        let needed = model.tensor_bytes(1) + model.scratch_bytes_for(MCU_TILE_ROWS);
        assert!(
            needed <= MCU_ARENA_BYTES,
            "{NAME} needs {needed} arena bytes"
        );
        assert!(
            MCU_ARENA_BYTES - needed < 1024,
            "{NAME} needs {needed} arena bytes; shrink MCU_ARENA_BYTES from {MCU_ARENA_BYTES}"
        );
        assert!(model.arena_len(1) <= ARENA_BYTES, "this host's arena");
    }

    #[test]
    fn the_emoji_arena_fits_its_model_without_waste() {
        let model = Model::parse(EMOJI_MODEL).expect("embedded emoji model parses");
        let needed = model.tensor_bytes(1) + model.scratch_bytes_for(32);
        assert!(
            needed <= EMOJI_MCU_ARENA_BYTES,
            "{EMOJI_NAME} needs {needed} arena bytes"
        );
        assert!(
            EMOJI_MCU_ARENA_BYTES - needed < 1024,
            "{EMOJI_NAME} needs {needed} arena bytes; shrink EMOJI_MCU_ARENA_BYTES from {EMOJI_MCU_ARENA_BYTES}"
        );
        assert!(model.arena_len(1) <= EMOJI_ARENA_BYTES, "this host's arena");
        assert_eq!(model.output.elements(), EMOJI_VALUES);
        assert_eq!(model.classes(), 0, "the colour demo draws random emoji");
    }

    #[cfg(feature = "graph-ops")]
    #[test]
    fn the_series_model_fits_the_digits_arena() {
        let model = Model::parse(SERIES_MODEL).expect("embedded series model parses");
        let needed = model.tensor_bytes(1) + model.scratch_bytes_for(MCU_TILE_ROWS);
        assert!(
            needed <= MCU_ARENA_BYTES,
            "the series model needs {needed} arena bytes, {NAME}'s workspace has {MCU_ARENA_BYTES}"
        );
    }
}
