//! Picks the linker memory map of the board being built. Each board's file has its own name under
//! `memory/`; it is copied to OUT_DIR as the `memory.x` that cortex-m-rt's `link.x` includes.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=memory");
    println!("cargo::rustc-check-cfg=cfg(board, values(\"mps2-an386\", \"mps2-an505\", \"microbit\", \"rp2040\", \"stm32f411\"))");
    let target = env::var("TARGET").unwrap_or_default();
    if !target.starts_with("thumb") {
        return; // host build: library, tests and simulator
    }
    let feature = |f: &str| env::var_os(format!("CARGO_FEATURE_{f}")).is_some();
    let board = if feature("RP2040") {
        "rp2040"
    } else if feature("STM32F4") {
        "stm32f411"
    } else if feature("QEMU") {
        match target.as_str() {
            "thumbv7em-none-eabihf" | "thumbv7em-none-eabi" => "mps2-an386",
            "thumbv8m.main-none-eabihf" | "thumbv8m.main-none-eabi" => "mps2-an505",
            "thumbv6m-none-eabi" => "microbit",
            other => panic!("no QEMU board for target {other}"),
        }
    } else {
        return; // the library alone, built for a Cortex-M target
    };
    println!("cargo:rustc-cfg=board=\"{board}\"");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(format!("memory/{board}.x"), out.join("memory.x")).expect("copy memory map");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    if board == "rp2040" {
        println!("cargo:rustc-link-arg-bins=--nmagic");
    }
}
