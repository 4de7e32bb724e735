//! Drawing a generated image (grayscale digits or colour emoji) and its caption on the two
//! supported displays.
//!
//! Both screens are plain `DrawTarget`s, so the same code draws on a real SSD1306 or ST7789, on the
//! QEMU boards' in-memory framebuffers, on the host simulator and on `MockDisplay` in tests.

use core::fmt::Write;
use embedded_graphics::{
    mono_font::{ascii::FONT_6X10, MonoTextStyle},
    pixelcolor::{BinaryColor, Rgb565},
    prelude::*,
    primitives::Rectangle,
    text::{Baseline, Text},
};

/// A generated image in 8-bit levels, row by row with each pixel's channels together (NHWC, as the
/// int8 core makes it): one channel (gray, 0 = black) or three (red, green, blue).
#[derive(Clone, Copy, Debug)]
pub struct Picture<'a> {
    pub levels: &'a [u8],
    pub channels: u32,
    pub width: u32,
    pub height: u32,
}

impl Picture<'_> {
    /// A one-channel picture.
    pub fn gray(levels: &[u8], width: u32, height: u32) -> Picture<'_> {
        Picture {
            levels,
            channels: 1,
            width,
            height,
        }
    }

    fn level(&self, channel: u32, x: u32, y: u32) -> u8 {
        self.levels
            .get(((y * self.width + x) * self.channels + channel) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// The gray level at `(x, y)`: a colour picture's luma (BT.601 weights in 1/256ths).
    fn luma(&self, x: u32, y: u32) -> u8 {
        if self.channels < 3 {
            return self.level(0, x, y);
        }
        let [r, g, b] = [0, 1, 2].map(|c| self.level(c, x, y) as u32);
        ((77 * r + 150 * g + 29 * b + 128) >> 8) as u8
    }

    /// The colour at `(x, y)`, rounded to 5-6-5 bits.
    fn rgb565(&self, x: u32, y: u32) -> Rgb565 {
        if self.channels < 3 {
            return gray_to_rgb565(self.level(0, x, y));
        }
        let [r, g, b] = [0, 1, 2].map(|c| self.level(c, x, y) as u32);
        Rgb565::new(
            ((r * 31 + 127) / 255) as u8,
            ((g * 63 + 127) / 255) as u8,
            ((b * 31 + 127) / 255) as u8,
        )
    }
}

/// 4x4 Bayer matrix: thresholds spread so that any 16 neighbouring pixels reproduce a gray level
/// to within 1/16.
const BAYER4: [[u8; 4]; 4] = [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]];

/// Ordered dithering: whether display pixel `(x, y)` of gray level `g` lights up. Threshold levels
/// sit at the centres of 16 equal bins, so 0 is all off and 255 all on.
pub fn dither(g: u8, x: u32, y: u32) -> bool {
    let t = BAYER4[(y % 4) as usize][(x % 4) as usize] as u32 * 16 + 8;
    g as u32 >= t
}

/// Maps gray levels to RGB565 (5-6-5 bits, rounded).
pub fn gray_to_rgb565(g: u8) -> Rgb565 {
    let g = g as u32;
    Rgb565::new(
        ((g * 31 + 127) / 255) as u8,
        ((g * 63 + 127) / 255) as u8,
        ((g * 31 + 127) / 255) as u8,
    )
}

/// Draws `image` scaled by `scale` with its top-left corner at `at`, one colour per display
/// pixel from `color(image_x, image_y, x, y)` (display coordinates relative to `at`).
fn draw_scaled<D: DrawTarget>(
    target: &mut D,
    image: Picture,
    at: Point,
    scale: u32,
    color: impl Fn(u32, u32, u32, u32) -> D::Color,
) -> Result<(), D::Error> {
    let (w, h) = (image.width * scale, image.height * scale);
    let colors = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| color(x / scale, y / scale, x, y));
    target.fill_contiguous(&Rectangle::new(at, Size::new(w, h)), colors)
}

/// Monochrome: scaled, then ordered-dithered at display resolution (a colour picture by its luma).
pub fn draw_mono<D: DrawTarget<Color = BinaryColor>>(
    target: &mut D,
    image: Picture,
    at: Point,
    scale: u32,
) -> Result<(), D::Error> {
    draw_scaled(target, image, at, scale, |ix, iy, x, y| {
        dither(image.luma(ix, iy), x, y).into()
    })
}

/// RGB565: scaled, each pixel mapped to the nearest 5-6-5 colour (gray stays neutral).
pub fn draw_rgb565<D: DrawTarget<Color = Rgb565>>(
    target: &mut D,
    image: Picture,
    at: Point,
    scale: u32,
) -> Result<(), D::Error> {
    draw_scaled(target, image, at, scale, |ix, iy, _, _| {
        image.rgb565(ix, iy)
    })
}

/// What the caption says about the image on screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caption {
    pub seed: u64,
    /// Walk frames show their step; random samples show `None`.
    pub step: Option<u16>,
    /// The class drawn, for a conditional model.
    pub class: Option<u8>,
    /// Time to generate the image, in microseconds.
    pub micros: u32,
}

/// One caption line; the longest, "seed 18446744073709551615", has 25 characters.
pub type Line = heapless::String<32>;

impl Caption {
    /// The caption of a demo frame that took `micros` to generate.
    pub fn of(frame: &crate::demo::Frame, micros: u32) -> Caption {
        Caption {
            seed: frame.seed,
            step: frame.step,
            class: frame.class,
            micros,
        }
    }

    /// The caption's lines: seed, class (conditional models), walk step (walks only), generation
    /// time.
    pub fn lines(&self) -> heapless::Vec<Line, 4> {
        let mut lines = heapless::Vec::new();
        let mut line = |args: core::fmt::Arguments| {
            let mut l = Line::new();
            // Every line fits in 32 characters and there are at most 4: neither can fail.
            let _ = l.write_fmt(args);
            let _ = lines.push(l);
        };
        line(format_args!("seed {}", self.seed));
        if let Some(class) = self.class {
            line(format_args!("class {class}"));
        }
        if let Some(step) = self.step {
            line(format_args!("step {step}"));
        }
        line(format_args!(
            "{}.{} ms",
            self.micros / 1000,
            self.micros % 1000 / 100
        ));
        lines
    }
}

/// Draws the caption's lines from `at` downwards, 11 pixels apart, in FONT_6X10, clipped to
/// `area` so that a long number never draws over the image or off the screen.
fn draw_caption<D: DrawTarget>(
    target: &mut D,
    caption: &Caption,
    area: Rectangle,
    color: D::Color,
) -> Result<(), D::Error> {
    let style = MonoTextStyle::new(&FONT_6X10, color);
    let mut clipped = target.clipped(&area);
    for (i, line) in caption.lines().iter().enumerate() {
        let p = area.top_left + Point::new(0, 11 * i as i32);
        Text::with_baseline(line, p, style, Baseline::Top).draw(&mut clipped)?;
    }
    Ok(())
}

/// SSD1306 128x64 screen: the image scaled 2x at the left (56x56 for digits), caption on the right.
pub const SSD1306_SIZE: Size = Size::new(128, 64);
pub const SSD1306_SCALE: u32 = 2;

pub fn ssd1306_screen<D: DrawTarget<Color = BinaryColor>>(
    target: &mut D,
    image: Picture,
    caption: &Caption,
) -> Result<(), D::Error> {
    target.clear(BinaryColor::Off)?;
    let side = image.height * SSD1306_SCALE;
    let top = (SSD1306_SIZE.height.saturating_sub(side) / 2) as i32;
    draw_mono(target, image, Point::new(0, top), SSD1306_SCALE)?;
    let left = image.width * SSD1306_SCALE + 4;
    let area = Rectangle::new(
        Point::new(left as i32, 14),
        Size::new(SSD1306_SIZE.width.saturating_sub(left), 36),
    );
    draw_caption(target, caption, area, BinaryColor::On)
}

/// ST7789 240x240 screen: the image scaled to fit a 200-pixel square (7x for 28 px digits, 196
/// px; 6x for 32 px emoji, 192 px) centred at the top, caption below it (two lines fit; a walk's
/// step line is clipped away).
pub const ST7789_SIZE: Size = Size::new(240, 240);
pub const ST7789_IMAGE_SIDE: u32 = 200;

/// The ST7789 screen's integer scale for an image (at least 1).
pub fn st7789_scale(image: &Picture) -> u32 {
    (ST7789_IMAGE_SIDE / image.width.max(image.height).max(1)).max(1)
}

pub fn st7789_screen<D: DrawTarget<Color = Rgb565>>(
    target: &mut D,
    image: Picture,
    caption: &Caption,
) -> Result<(), D::Error> {
    target.clear(Rgb565::BLACK)?;
    let scale = st7789_scale(&image);
    let side = image.width * scale;
    let left = (ST7789_SIZE.width.saturating_sub(side) / 2) as i32;
    draw_rgb565(target, image, Point::new(left, 4), scale)?;
    let below = image.height * scale + 8;
    let area = Rectangle::new(
        Point::new(left, below as i32),
        Size::new(
            ST7789_SIZE.width - left as u32,
            ST7789_SIZE.height.saturating_sub(below),
        ),
    );
    draw_caption(target, caption, area, Rgb565::WHITE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    fn gray(pixels: &[u8], width: u32) -> Picture<'_> {
        Picture::gray(pixels, width, pixels.len() as u32 / width)
    }

    #[test]
    fn mono_scales_each_pixel_into_a_square() {
        let image = [0u8, 255, 255, 0];
        let mut display = MockDisplay::<BinaryColor>::new();
        draw_mono(&mut display, gray(&image, 2), Point::new(1, 1), 2).unwrap();
        display.assert_pattern(&[
            "     ", //
            " ..##", " ..##", " ##..", " ##..",
        ]);
    }

    #[test]
    fn dithering_reproduces_gray_levels() {
        // Over a 4x4 tile the number of lit pixels is the gray level in sixteenths, rounded.
        for g in [0u8, 1, 16, 24, 100, 128, 200, 247, 254, 255] {
            let lit = (0..4)
                .flat_map(|y| (0..4).map(move |x| (x, y)))
                .filter(|&(x, y)| dither(g, x, y))
                .count() as u32;
            let expected = (g as u32 * 16 + 128) / 256;
            assert!(
                lit.abs_diff(expected) <= 1,
                "gray {g}: {lit} of 16 lit, expected about {expected}"
            );
        }
        assert!(!dither(0, 0, 0) && dither(255, 3, 3));
    }

    #[test]
    fn dithered_mid_gray_is_a_checkerboard_free_of_runs() {
        let image = [128u8; 4];
        let mut display = MockDisplay::<BinaryColor>::new();
        draw_mono(&mut display, gray(&image, 2), Point::zero(), 2).unwrap();
        // Bayer at level 8/16: every row and column alternates.
        display.assert_pattern(&["#.#.", ".#.#", "#.#.", ".#.#"]);
    }

    #[test]
    fn rgb565_maps_gray_to_neutral_colours() {
        assert_eq!(gray_to_rgb565(0), Rgb565::BLACK);
        assert_eq!(gray_to_rgb565(255), Rgb565::WHITE);
        let mid = gray_to_rgb565(128);
        assert_eq!((mid.r(), mid.g(), mid.b()), (16, 32, 16));
        let image = [0u8, 255];
        let mut display = MockDisplay::<Rgb565>::new();
        draw_rgb565(&mut display, gray(&image, 2), Point::zero(), 3).unwrap();
        display.assert_pattern(&["KKKWWW", "KKKWWW", "KKKWWW"]);
    }

    #[test]
    fn colour_pictures_interleave_channels_and_dither_by_luma() {
        // Two pixels, a red one and a green one, each as R, G, B (read as planes, they would be
        // magenta and black).
        let levels = [255u8, 0, 0, 0, 255, 0];
        let image = Picture {
            levels: &levels,
            channels: 3,
            width: 2,
            height: 1,
        };
        let mut display = MockDisplay::<Rgb565>::new();
        draw_rgb565(&mut display, image, Point::zero(), 2).unwrap();
        display.assert_pattern(&["RRGG", "RRGG"]);
        assert_eq!((image.luma(0, 0), image.luma(1, 0)), (77, 149));
        let white = [255u8; 3];
        let white = Picture {
            levels: &white,
            channels: 3,
            width: 1,
            height: 1,
        };
        assert_eq!(white.luma(0, 0), 255);
        assert_eq!(white.rgb565(0, 0), Rgb565::WHITE);
    }

    #[test]
    fn caption_formats_seed_step_and_time() {
        let c = Caption {
            seed: 42,
            step: Some(3),
            class: None,
            micros: 12_345,
        };
        let lines = c.lines();
        let lines: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
        assert_eq!(lines, ["seed 42", "step 3", "12.3 ms"]);
        let c = Caption {
            class: Some(7),
            ..c
        };
        let lines = c.lines();
        let lines: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
        assert_eq!(lines, ["seed 42", "class 7", "step 3", "12.3 ms"]);
        let c = Caption {
            seed: u64::MAX,
            step: None,
            class: None,
            micros: 999,
        };
        let lines = c.lines();
        let lines: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
        assert_eq!(lines, ["seed 18446744073709551615", "0.9 ms"]);
    }

    #[test]
    fn caption_overlay_matches_embedded_graphics_text() {
        let c = Caption {
            seed: 7,
            step: None,
            class: None,
            micros: 1500,
        };
        let mut ours = MockDisplay::<BinaryColor>::new();
        let area = Rectangle::new(Point::new(2, 3), Size::new(60, 30));
        draw_caption(&mut ours, &c, area, BinaryColor::On).unwrap();
        let mut theirs = MockDisplay::<BinaryColor>::new();
        let style = MonoTextStyle::new(&FONT_6X10, BinaryColor::On);
        Text::with_baseline("seed 7", Point::new(2, 3), style, Baseline::Top)
            .draw(&mut theirs)
            .unwrap();
        Text::with_baseline("1.5 ms", Point::new(2, 14), style, Baseline::Top)
            .draw(&mut theirs)
            .unwrap();
        ours.assert_eq(&theirs);
    }

    #[test]
    fn caption_is_clipped_to_its_area() {
        let c = Caption {
            seed: 123_456_789,
            step: None,
            class: None,
            micros: 1500,
        };
        let mut display = MockDisplay::<BinaryColor>::new();
        let area = Rectangle::new(Point::new(0, 0), Size::new(20, 8));
        draw_caption(&mut display, &c, area, BinaryColor::On).unwrap();
        let drawn = display.affected_area();
        assert!(drawn.size.width > 10, "the caption is drawn");
        assert_eq!(
            drawn.intersection(&area),
            drawn,
            "and stays inside its area"
        );
    }

    /// A display as big as the real one that records every pixel (MockDisplay stops at 64x64).
    struct Screen<C, const W: usize, const H: usize> {
        pixels: Vec<Option<C>>,
    }

    impl<C: PixelColor, const W: usize, const H: usize> Screen<C, W, H> {
        fn new() -> Self {
            Screen {
                pixels: vec![None; W * H],
            }
        }
    }

    impl<C: PixelColor, const W: usize, const H: usize> OriginDimensions for Screen<C, W, H> {
        fn size(&self) -> Size {
            Size::new(W as u32, H as u32)
        }
    }

    impl<C: PixelColor, const W: usize, const H: usize> DrawTarget for Screen<C, W, H> {
        type Color = C;
        type Error = core::convert::Infallible;
        fn draw_iter<I: IntoIterator<Item = Pixel<C>>>(
            &mut self,
            pixels: I,
        ) -> Result<(), Self::Error> {
            for Pixel(p, c) in pixels {
                assert!(
                    p.x >= 0 && p.y >= 0 && (p.x as usize) < W && (p.y as usize) < H,
                    "pixel {p} outside the {W}x{H} screen"
                );
                self.pixels[p.y as usize * W + p.x as usize] = Some(c);
            }
            Ok(())
        }
    }

    #[test]
    fn screens_fit_a_digit_and_a_long_caption() {
        let image = [255u8; 28 * 28];
        let caption = Caption {
            seed: 4_000_000_000,
            step: Some(59),
            class: None,
            micros: 123_456,
        };
        let mut oled = Screen::<BinaryColor, 128, 64>::new();
        ssd1306_screen(&mut oled, gray(&image, 28), &caption).unwrap();
        // A white image dithers to all-on: its 56x56 square is lit, the caption starts right of it.
        let lit = |x: usize, y: usize| oled.pixels[y * 128 + x] == Some(BinaryColor::On);
        assert!((0..56).all(|x| (4..60).all(|y| lit(x, y))));
        assert!((56..60).all(|x| (0..64).all(|y| !lit(x, y))));
        assert!((60..128).any(|x| (20..41).any(|y| lit(x, y))));

        let mut tft = Screen::<Rgb565, 240, 240>::new();
        st7789_screen(&mut tft, gray(&image, 28), &caption).unwrap();
        assert_eq!(tft.pixels[4 * 240 + 22], Some(Rgb565::WHITE));
        assert_eq!(tft.pixels[3 * 240 + 22], Some(Rgb565::BLACK));

        // A 32 px colour emoji is drawn 6x (192 px) from x = 24, its caption below.
        let green: Vec<u8> = [0u8, 255, 0].repeat(32 * 32);
        let emoji = Picture {
            levels: &green,
            channels: 3,
            width: 32,
            height: 32,
        };
        assert_eq!(st7789_scale(&emoji), 6);
        let mut tft = Screen::<Rgb565, 240, 240>::new();
        st7789_screen(&mut tft, emoji, &caption).unwrap();
        let at = |x: usize, y: usize| tft.pixels[y * 240 + x];
        assert_eq!(
            (at(24, 4), at(215, 195)),
            (Some(Rgb565::GREEN), Some(Rgb565::GREEN))
        );
        assert_eq!(
            (at(23, 4), at(216, 195), at(24, 196)),
            (
                Some(Rgb565::BLACK),
                Some(Rgb565::BLACK),
                Some(Rgb565::BLACK)
            )
        );
        assert!((24..120).any(|x| (204..226).any(|y| at(x, y) == Some(Rgb565::WHITE))));
    }
}
