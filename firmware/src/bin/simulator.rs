//! Host simulator: renders the demo's screens as PNG files with embedded-graphics-simulator (no
//! SDL), from the same library code and model the boards run, so README can show what the displays
//! show.
//!
//! `cargo run -p pocketgan-firmware --features simulator --bin simulator -- [OUT_DIR] [SEED]`

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
use embedded_graphics_simulator::{BinaryColorTheme, OutputSettingsBuilder, SimulatorDisplay};
use pocketgan_firmware::demo::{Demo, Generator, Mode, Workspace, MAX_LATENT};
use pocketgan_firmware::render::{self, Caption};
use pocketgan_firmware::{isa, models};
use std::{path::PathBuf, time::Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "firmware/screens".into()));
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    std::fs::create_dir_all(&out)?;

    let mut workspace = Box::new(Workspace::<{ models::ARENA_BYTES }>::new());
    let mut generator =
        Generator::new(models::MODEL, isa(), &mut workspace).map_err(|e| e.to_string())?;
    let latent = generator.model().latent;
    let mut z = [0.0f32; MAX_LATENT];
    let mono = OutputSettingsBuilder::new()
        .scale(3)
        .pixel_spacing(0)
        .theme(BinaryColorTheme::OledBlue)
        .build();
    let color = OutputSettingsBuilder::new().scale(1).build();

    for (name, mode) in [
        ("random", Mode::Random),
        ("walk", Mode::Walk { steps: 4 }),
        ("classes", Mode::Classes),
    ] {
        let mut demo = Demo::new(mode, seed, latent, generator.classes());
        for i in 0..4 {
            let frame = demo.next(&mut z);
            let start = Instant::now();
            generator
                .generate(&z[..latent], frame.class)
                .map_err(|e| e.to_string())?;
            let caption = Caption::of(&frame, start.elapsed().as_micros() as u32);
            let mut oled = SimulatorDisplay::<BinaryColor>::new(render::SSD1306_SIZE);
            render::ssd1306_screen(&mut oled, generator.image(), &caption)?;
            let path = out.join(format!("ssd1306-{name}-{i}.png"));
            oled.to_rgb_output_image(&mono).save_png(&path)?;
            let mut tft = SimulatorDisplay::<Rgb565>::new(render::ST7789_SIZE);
            render::st7789_screen(&mut tft, generator.image(), &caption)?;
            tft.to_rgb_output_image(&color)
                .save_png(out.join(format!("st7789-{name}-{i}.png")))?;
            println!(
                "{} (seed {}, step {:?}, class {:?})",
                path.display(),
                frame.seed,
                frame.step,
                frame.class
            );
        }
    }
    // Colour emoji on the ST7789, as the MPS2 boards and the STM32F411 draw them.
    let mut emoji_workspace = Box::new(Workspace::<
        { models::EMOJI_ARENA_BYTES },
        { models::EMOJI_VALUES },
    >::new());
    let mut emoji = Generator::new(models::EMOJI_MODEL, isa(), &mut emoji_workspace)
        .map_err(|e| e.to_string())?;
    let latent = emoji.model().latent;
    for (name, mode) in [("random", Mode::Random), ("walk", Mode::Walk { steps: 4 })] {
        let mut demo = Demo::new(mode, seed, latent, 0);
        for i in 0..4 {
            let frame = demo.next(&mut z);
            let start = Instant::now();
            emoji
                .generate(&z[..latent], None)
                .map_err(|e| e.to_string())?;
            let caption = Caption::of(&frame, start.elapsed().as_micros() as u32);
            let mut tft = SimulatorDisplay::<Rgb565>::new(render::ST7789_SIZE);
            render::st7789_screen(&mut tft, emoji.image(), &caption)?;
            let path = out.join(format!("st7789-emoji-{name}-{i}.png"));
            tft.to_rgb_output_image(&color).save_png(&path)?;
            println!(
                "{} (emoji, seed {}, step {:?})",
                path.display(),
                frame.seed,
                frame.step
            );
        }
    }
    // TimeGAN's series, as the MPS2-AN505 board draws them.
    let mut arena = vec![0u8; models::SERIES_ARENA_BYTES + 32 * 1024];
    let mut series =
        pocketgan_firmware::series::SeriesGenerator::new(models::SERIES_MODEL, isa(), &mut arena)
            .map_err(|e| e.to_string())?;
    for (i, seed) in models::SERIES_SEEDS.into_iter().enumerate() {
        series.generate(seed).map_err(|e| e.to_string())?;
        let mut oled = SimulatorDisplay::<BinaryColor>::new(render::SSD1306_SIZE);
        pocketgan_firmware::series::ssd1306_series(
            &mut oled,
            series.output(),
            series.shape(),
            seed,
        )?;
        let path = out.join(format!("ssd1306-series-{i}.png"));
        oled.to_rgb_output_image(&mono).save_png(&path)?;
        println!("{} (series, seed {seed})", path.display());
    }
    Ok(())
}
