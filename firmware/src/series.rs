//! A generated time series on a microcontroller: TimeGAN's int8 generator (its GRU layers on the
//! runtime's core) from seeded uniform noise, drawn as a line chart of its features.
//!
//! The noise of seed `s` is [`pocketgan_runtime::latent::fill_uniform`]`(s)`, the same draws on
//! every machine, so the host redoes a board's series byte for byte (`tests/tests/firmware.rs`).

use crate::demo::DemoError;
use embedded_graphics::{
    mono_font::{ascii::FONT_6X10, MonoTextStyle},
    pixelcolor::BinaryColor,
    prelude::*,
    primitives::{Line, PrimitiveStyle},
    text::{Baseline, Text},
};
use pocketgan_runtime::interp::{run_graph, Input};
use pocketgan_runtime::{Isa, Model, Shape};

/// Most values in a series (steps x features), its noise's and its own.
pub const MAX_SERIES: usize = 256;

/// The generator and its buffers (caller-provided arena; no heap).
pub struct SeriesGenerator<'m, 'a> {
    model: Model<'m>,
    isa: Isa,
    arena: &'a mut [u8],
    steps: usize,
    features: usize,
    noise: [i8; MAX_SERIES],
    output: [i8; MAX_SERIES],
}

/// `[steps, features]` of a sequence tensor (the image `[c = F, h = T, w = 1]`).
fn series_shape(shape: Shape) -> Option<(usize, usize)> {
    match shape {
        Shape::Image { c, h, w: 1 } if c * h <= MAX_SERIES => Some((h, c)),
        _ => None,
    }
}

impl<'m, 'a> SeriesGenerator<'m, 'a> {
    /// Parses `bytes` (one noise sequence in, one series out) and checks that it fits `arena`.
    pub fn new(bytes: &'m [u8], isa: Isa, arena: &'a mut [u8]) -> Result<Self, DemoError> {
        let model = Model::parse(bytes).map_err(DemoError::Format)?;
        let needed = model.arena_len(1);
        if needed > arena.len() {
            return Err(DemoError::Arena {
                needed,
                have: arena.len(),
            });
        }
        let shape = |t: Option<usize>| t.and_then(|t| model.tensor(t)).map(|i| i.shape);
        let (input, output) = (shape(model.inputs().next()), shape(model.outputs().next()));
        let (Some(noise), Some((steps, features))) =
            (input.and_then(series_shape), output.and_then(series_shape))
        else {
            return Err(DemoError::NotSeries);
        };
        if model.inputs().count() != 1 || noise.0 != steps {
            return Err(DemoError::NotSeries);
        }
        Ok(SeriesGenerator {
            model,
            isa,
            arena: arena.get_mut(..needed).unwrap_or_default(),
            steps,
            features,
            noise: [0; MAX_SERIES],
            output: [0; MAX_SERIES],
        })
    }

    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// `(steps, features)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.steps, self.features)
    }

    /// The series of noise seed `seed`.
    ///
    /// One of the inference path's entry points that `tests/tests/no_panic.rs` proves
    /// panic-free: never inlined, so that it has a symbol in the board binary.
    #[inline(never)]
    pub fn generate(&mut self, seed: u64) -> Result<(), DemoError> {
        let Some(input) = self
            .model
            .inputs()
            .next()
            .and_then(|t| self.model.tensor(t))
        else {
            return Err(DemoError::NotSeries);
        };
        let noise_len = input.shape.elements().min(MAX_SERIES);
        let noise = self.noise.get_mut(..noise_len).unwrap_or_default();
        // `latent::fill_uniform`'s draws, quantized one by one: no float buffer on the stack.
        let mut rng = pocketgan_runtime::latent::Rng::new(seed);
        for q in noise.iter_mut() {
            *q = input.quant.quantize(rng.uniform());
        }
        let len = self.steps * self.features;
        let out = self.output.get_mut(..len).unwrap_or_default();
        run_graph(
            &self.model,
            self.isa,
            1,
            &[Input::Int8(noise)],
            self.arena,
            &mut [out],
            |_, _, _, _| {},
        )
        .map_err(DemoError::Run)
    }

    /// The last series, int8 `[steps][features]` as the host's int8 engine makes it.
    pub fn output(&self) -> &[i8] {
        self.output
            .get(..self.steps * self.features)
            .unwrap_or_default()
    }
}

/// Draws `series` (`[steps][features]` int8 codes of one quantization) as one line per feature
/// across the screen, code -128 at the bottom and 127 at the top, with `seed` in a corner.
/// Integer arithmetic only, so a board and the host draw the same pixels.
pub fn ssd1306_series<D: DrawTarget<Color = BinaryColor>>(
    target: &mut D,
    series: &[i8],
    (steps, features): (usize, usize),
    seed: u64,
) -> Result<(), D::Error> {
    target.clear(BinaryColor::Off)?;
    let size = target.bounding_box().size;
    let (w, h) = (size.width.max(2) as i32, size.height.max(2) as i32);
    let point = |t: usize, code: i8| {
        let x = t as i32 * (w - 1) / (steps.max(2) as i32 - 1);
        let y = (h - 1) - (code as i32 + 128) * (h - 1) / 255;
        Point::new(x, y)
    };
    let style = PrimitiveStyle::with_stroke(BinaryColor::On, 1);
    for f in 0..features {
        let code = |t: usize| series.get(t * features + f).copied().unwrap_or(0);
        for t in 1..steps {
            Line::new(point(t - 1, code(t - 1)), point(t, code(t)))
                .into_styled(style)
                .draw(target)?;
        }
    }
    let mut text = heapless::String::<24>::new();
    let _ = core::fmt::Write::write_fmt(&mut text, format_args!("seed {seed}"));
    Text::with_baseline(
        &text,
        Point::zero(),
        MonoTextStyle::new(&FONT_6X10, BinaryColor::On),
        Baseline::Top,
    )
    .draw(target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    #[test]
    fn the_chart_spans_the_screen_from_bottom_to_top() {
        let mut display = MockDisplay::<BinaryColor>::new();
        display.set_allow_overdraw(true);
        // One feature rising from the lowest code to the highest over 4 steps.
        ssd1306_series(&mut display, &[-128, -43, 42, 127], (4, 1), 7).unwrap();
        assert_eq!(display.get_pixel(Point::new(0, 63)), Some(BinaryColor::On));
        assert_eq!(display.get_pixel(Point::new(63, 0)), Some(BinaryColor::On));
    }
}
