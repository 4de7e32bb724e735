//! Raspberry Pi Pico (RP2040, Cortex-M0+ at 125 MHz, scalar kernel) with an SSD1306 128x64 OLED
//! on I2C0 (GPIO4 SDA, GPIO5 SCL). Flash with `scripts/firmware.sh run rp2040` (probe-rs).
//!
//! It alternates ten random samples with a ten-frame latent walk, forever (`demo::Show`).
#![no_std]
#![no_main]

use panic_halt as _;
use pocketgan_firmware::demo::{Generator, Show, Workspace};
use pocketgan_firmware::render;
use pocketgan_firmware::{isa, models};
use rp2040_hal::{
    self as hal,
    clocks::init_clocks_and_plls,
    fugit::RateExtU32,
    gpio::{FunctionI2C, Pin, PullUp},
    pac, Clock, Sio, Timer, Watchdog,
};
use ssd1306::{prelude::*, I2CDisplayInterface, Ssd1306};

/// Second-stage boot loader for the Pico's W25Q080 flash (placed by memory/rp2040.x).
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

const XOSC_HZ: u32 = 12_000_000;

static mut WORKSPACE: Workspace<{ models::ARENA_BYTES }> = Workspace::new();

#[hal::entry]
fn main() -> ! {
    let Some(mut pac) = pac::Peripherals::take() else {
        halt()
    };
    let mut watchdog = Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = init_clocks_and_plls(
        XOSC_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        halt()
    };
    let sio = Sio::new(pac.SIO);
    let pins = hal::gpio::Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let timer = Timer::new(pac.TIMER, &mut pac.RESETS, &clocks); // 1 MHz

    let sda: Pin<_, FunctionI2C, PullUp> = pins.gpio4.reconfigure();
    let scl: Pin<_, FunctionI2C, PullUp> = pins.gpio5.reconfigure();
    let i2c = hal::I2C::i2c0(
        pac.I2C0,
        sda,
        scl,
        400.kHz(),
        &mut pac.RESETS,
        clocks.system_clock.freq(),
    );
    let mut display = Ssd1306::new(
        I2CDisplayInterface::new(i2c),
        DisplaySize128x64,
        DisplayRotation::Rotate0,
    )
    .into_buffered_graphics_mode();
    if display.init().is_err() {
        halt()
    }

    // SAFETY: the only reference to WORKSPACE, taken once.
    let workspace = unsafe { &mut *core::ptr::addr_of_mut!(WORKSPACE) };
    let Ok(mut generator) = Generator::new(models::MODEL, isa(), workspace) else {
        halt()
    };
    let mut show = Show::new(1, generator.model().latent, generator.classes(), 10);
    loop {
        // The timer counts microseconds.
        let clock = || timer.get_counter().ticks() as u32;
        let Ok(caption) = show.generate(&mut generator, clock, 1) else {
            halt()
        };
        display.clear_buffer();
        let _ = render::ssd1306_screen(&mut display, generator.image(), &caption);
        let _ = display.flush();
    }
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
