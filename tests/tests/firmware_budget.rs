//! Every firmware board binary fits its budget: flash (code, read-only data and the initial values
//! of `.data`) and RAM (statics) under each board's limit, with room left for the stack. The
//! STM32F411 build, which carries both demo models (digits for the OLED, colour emoji for the
//! ST7789), must stay within 480 KB of flash and 128 KB of RAM. `scripts/firmware.sh budget`
//! prints the same figures with the stack depth and instructions measured under QEMU.

use pocketgan_tests::firmware_boards;
use std::path::Path;
use std::process::Command;

/// Flash and RAM each board may use, in bytes, and the stack room its RAM must keep free of
/// statics (the deepest stack seen under QEMU is 9.3 KB on the MPS2 boards, 6.2 KB on the
/// micro:bit; `tests/tests/firmware.rs` checks it there).
fn limits(board: &str) -> (u64, u64, u64) {
    const K: u64 = 1024;
    match board {
        "stm32f4" => (480 * K, 128 * K, 16 * K),
        "rp2040" => (2048 * K - 256, 256 * K, 16 * K),
        "microbit" => (256 * K, 16 * K, 6 * K),
        "an386" | "an505" => (4096 * K, 4096 * K, 16 * K),
        other => panic!("no budget for board {other}"),
    }
}

/// `(flash, ram)` of an ELF from `arm-none-eabi-size -A`.
fn footprint(elf: &Path) -> (u64, u64) {
    let out = Command::new("arm-none-eabi-size")
        .arg("-A")
        .arg(elf)
        .output()
        .expect("run arm-none-eabi-size (apt-get install binutils-arm-none-eabi)");
    assert!(out.status.success(), "arm-none-eabi-size {}", elf.display());
    let (mut flash, mut ram) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut words = line.split_whitespace();
        let (Some(section), Some(size)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        match section {
            ".vector_table" | ".text" | ".rodata" | ".boot2" => flash += size,
            ".data" => {
                flash += size;
                ram += size;
            }
            ".bss" | ".uninit" => ram += size,
            _ => {}
        }
    }
    (flash, ram)
}

#[test]
fn every_board_binary_fits_its_flash_and_ram() {
    let mut over = Vec::new();
    for (board, elf) in firmware_boards() {
        let (flash, ram) = footprint(&elf);
        let (max_flash, max_ram, stack) = limits(&board);
        println!("{board}: flash {flash} of {max_flash} B, statics {ram} of {max_ram} B");
        assert!(
            flash > 100_000,
            "{board}: {flash} B of flash holds no model"
        );
        if flash > max_flash || ram + stack > max_ram {
            over.push(format!(
                "{board}: flash {flash}/{max_flash}, statics {ram} + stack {stack} / {max_ram}"
            ));
        }
    }
    assert!(over.is_empty(), "over budget: {over:?}");
}
