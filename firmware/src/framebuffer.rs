//! In-memory displays: what the QEMU boards draw into, laid out like the real controllers' RAM so
//! that their bytes (and hashes) are what a driver would send.

use embedded_graphics::{
    pixelcolor::{raw::RawU16, BinaryColor, Rgb565},
    prelude::*,
};

/// `p` as indices into a `width x height` frame, or `None` off-screen (dropped, as the driver
/// crates do).
fn on_screen(p: Point, width: usize, height: usize) -> Option<(usize, usize)> {
    let (x, y) = (usize::try_from(p.x).ok()?, usize::try_from(p.y).ok()?);
    (x < width && y < height).then_some((x, y))
}

/// SSD1306 128x64 RAM: 8 pages of 8 rows, one byte per column and page, bit `y % 8` = row.
pub struct Ssd1306Framebuffer {
    pub bytes: [u8; Self::BYTES],
}

impl Ssd1306Framebuffer {
    pub const WIDTH: usize = 128;
    pub const HEIGHT: usize = 64;
    pub const BYTES: usize = Self::WIDTH * Self::HEIGHT / 8;

    pub const fn new() -> Self {
        Ssd1306Framebuffer {
            bytes: [0; Self::BYTES],
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> bool {
        self.bytes[(y / 8) * Self::WIDTH + x] & (1 << (y % 8)) != 0
    }
}

impl Default for Ssd1306Framebuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginDimensions for Ssd1306Framebuffer {
    fn size(&self) -> Size {
        Size::new(Self::WIDTH as u32, Self::HEIGHT as u32)
    }
}

impl DrawTarget for Ssd1306Framebuffer {
    type Color = BinaryColor;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<BinaryColor>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, color) in pixels {
            let Some((x, y)) = on_screen(p, Self::WIDTH, Self::HEIGHT) else {
                continue;
            };
            let (byte, bit) = ((y / 8) * Self::WIDTH + x, 1u8 << (y % 8));
            if color.is_on() {
                self.bytes[byte] |= bit;
            } else {
                self.bytes[byte] &= !bit;
            }
        }
        Ok(())
    }
}

/// ST7789 240x240 RGB565 frame, row-major, each pixel as the two big-endian bytes the
/// controller receives.
pub struct St7789Framebuffer {
    pub bytes: [u8; Self::BYTES],
}

impl St7789Framebuffer {
    pub const WIDTH: usize = 240;
    pub const HEIGHT: usize = 240;
    pub const BYTES: usize = Self::WIDTH * Self::HEIGHT * 2;

    pub const fn new() -> Self {
        St7789Framebuffer {
            bytes: [0; Self::BYTES],
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> Rgb565 {
        let i = 2 * (y * Self::WIDTH + x);
        RawU16::new(u16::from_be_bytes([self.bytes[i], self.bytes[i + 1]])).into()
    }
}

impl Default for St7789Framebuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginDimensions for St7789Framebuffer {
    fn size(&self) -> Size {
        Size::new(Self::WIDTH as u32, Self::HEIGHT as u32)
    }
}

impl DrawTarget for St7789Framebuffer {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb565>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, color) in pixels {
            let Some((x, y)) = on_screen(p, Self::WIDTH, Self::HEIGHT) else {
                continue;
            };
            let i = 2 * (y * Self::WIDTH + x);
            let raw = RawU16::from(color).into_inner().to_be_bytes();
            self.bytes[i..i + 2].copy_from_slice(&raw);
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits: a short fingerprint of a frame or an image to print and compare.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn ssd1306_pages_hold_eight_rows_per_byte() {
        let mut fb = Ssd1306Framebuffer::new();
        Pixel(Point::new(3, 9), BinaryColor::On)
            .draw(&mut fb)
            .unwrap();
        assert_eq!(fb.bytes[128 + 3], 0b10);
        assert!(fb.pixel(3, 9) && !fb.pixel(3, 8));
        Pixel(Point::new(3, 9), BinaryColor::Off)
            .draw(&mut fb)
            .unwrap();
        assert!(fb.bytes.iter().all(|&b| b == 0));
        // Off-screen pixels are ignored, not a panic.
        Pixel(Point::new(-1, 70), BinaryColor::On)
            .draw(&mut fb)
            .unwrap();
        Pixel(Point::new(128, 0), BinaryColor::On)
            .draw(&mut fb)
            .unwrap();
        assert!(fb.bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn st7789_stores_big_endian_rgb565() {
        let mut fb = St7789Framebuffer::new();
        Rectangle::new(Point::new(239, 239), Size::new(5, 5))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(&mut fb)
            .unwrap();
        let end = St7789Framebuffer::BYTES;
        assert_eq!(fb.bytes[end - 2..], [0xf8, 0x00]);
        assert_eq!(fb.pixel(239, 239), Rgb565::RED);
        assert_eq!(fb.bytes.iter().filter(|&&b| b != 0).count(), 1);
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
