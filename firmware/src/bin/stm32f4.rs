//! STM32F411 "Black Pill" (Cortex-M4F at 100 MHz, DSP kernel) with an SSD1306 128x64 OLED on I2C1
//! (PB8 SCL, PB9 SDA) and/or an ST7789 240x240 TFT on SPI1 (PA5 SCK, PA7 MOSI, PA4 CS, PB0 DC,
//! PB1 RST). A display that does not answer at start-up is skipped. Flash with
//! `scripts/firmware.sh run stm32f4` (probe-rs).
//!
//! The OLED shows digits, the TFT colour emoji; each alternates ten random samples with a
//! ten-frame latent walk (and the digits every class), forever (`demo::Show`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;

use embedded_hal_bus::spi::ExclusiveDevice;
use mipidsi::{
    interface::SpiInterface,
    models::ST7789,
    options::{ColorInversion, Orientation},
    Builder,
};
use panic_halt as _;
use pocketgan_firmware::demo::{Generator, Show, Workspace};
use pocketgan_firmware::render;
use pocketgan_firmware::{isa, models};
use ssd1306::{prelude::*, I2CDisplayInterface, Ssd1306};
use stm32f4xx_hal::{
    i2c::I2c,
    pac,
    prelude::*,
    rcc::Config,
    spi::{Mode as SpiMode, Phase, Polarity, Spi},
};

const SYSCLK_HZ: u32 = 100_000_000;

static mut WORKSPACE: Workspace<{ models::ARENA_BYTES }> = Workspace::new();
static mut EMOJI_WORKSPACE: Workspace<{ models::EMOJI_ARENA_BYTES }, { models::EMOJI_VALUES }> =
    Workspace::new();

#[entry]
fn main() -> ! {
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        halt()
    };
    // 25 MHz crystal (Black Pill); use Config::hsi() on boards without one.
    let mut rcc = dp.RCC.freeze(Config::hse(25.MHz()).sysclk(SYSCLK_HZ.Hz()));
    // The cycle counter times each image.
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    let mut delay = dp.TIM5.delay_us(&mut rcc);
    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpiob = dp.GPIOB.split(&mut rcc);

    let i2c = I2c::new(dp.I2C1, (gpiob.pb8, gpiob.pb9), 400.kHz(), &mut rcc);
    let mut oled = Ssd1306::new(
        I2CDisplayInterface::new(i2c),
        DisplaySize128x64,
        DisplayRotation::Rotate0,
    )
    .into_buffered_graphics_mode();
    let oled_ok = oled.init().is_ok();

    let spi = Spi::new(
        dp.SPI1,
        (Some(gpioa.pa5), pac::SPI1::NoMiso, Some(gpioa.pa7)),
        SpiMode {
            polarity: Polarity::IdleHigh,
            phase: Phase::CaptureOnSecondTransition,
        },
        24.MHz(),
        &mut rcc,
    );
    let mut spi_buffer = [0u8; 512];
    let mut tft = ExclusiveDevice::new_no_delay(spi, gpioa.pa4.into_push_pull_output())
        .ok()
        .and_then(|device| {
            let di = SpiInterface::new(device, gpiob.pb0.into_push_pull_output(), &mut spi_buffer);
            Builder::new(ST7789, di)
                .display_size(240, 240)
                .invert_colors(ColorInversion::Inverted)
                .orientation(Orientation::new())
                .reset_pin(gpiob.pb1.into_push_pull_output())
                .init(&mut delay)
                .ok()
        });

    // SAFETY: the only references to the workspaces, taken once.
    let (workspace, emoji_workspace) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(WORKSPACE),
            &mut *core::ptr::addr_of_mut!(EMOJI_WORKSPACE),
        )
    };
    let (Ok(mut digits), Ok(mut emoji)) = (
        Generator::new(models::MODEL, isa(), workspace),
        Generator::new(models::EMOJI_MODEL, isa(), emoji_workspace),
    ) else {
        halt()
    };
    let mut digits_show = Show::new(1, digits.model().latent, digits.classes(), 10);
    let mut emoji_show = Show::new(1, emoji.model().latent, emoji.classes(), 10);
    let clock = cortex_m::peripheral::DWT::cycle_count;
    loop {
        if oled_ok {
            let Ok(caption) = digits_show.generate(&mut digits, clock, SYSCLK_HZ / 1_000_000)
            else {
                halt()
            };
            oled.clear_buffer();
            let _ = render::ssd1306_screen(&mut oled, digits.image(), &caption);
            let _ = oled.flush();
        }
        if let Some(tft) = tft.as_mut() {
            let Ok(caption) = emoji_show.generate(&mut emoji, clock, SYSCLK_HZ / 1_000_000) else {
                halt()
            };
            let _ = render::st7789_screen(tft, emoji.image(), &caption);
        }
        if !oled_ok && tft.is_none() {
            halt()
        }
    }
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
