//! The demo: seeded latents in, images out (grayscale digits, colour emoji), on the runtime's
//! no_std core.

use crate::render::{Caption, Picture};
use heapless::Vec;
use pocketgan_runtime::{
    latent, run_conditional_observed, FormatError, Isa, Model, Op, RunError, Shape,
};

/// Largest latent vector a demo model may take.
pub const MAX_LATENT: usize = 64;
/// The output values a [`Workspace`] holds by default: one channel of 28x28 (the digits models;
/// RAM is scarce). A colour model's workspace is declared with room for its three channels.
pub const MAX_PIXELS: usize = 28 * 28;

/// Why a model cannot run in this demo. Checked once at start-up, so generating never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoError {
    Format(FormatError),
    /// The model needs a bigger arena than the board reserved (see [`Workspace`]).
    Arena {
        needed: usize,
        have: usize,
    },
    /// The latent is longer than [`MAX_LATENT`].
    Latent(usize),
    /// The demo draws images of one channel (gray) or three (RGB) whose values fit the
    /// workspace's `room`.
    Image {
        c: usize,
        h: usize,
        w: usize,
        room: usize,
    },
    Run(RunError),
    /// A series demo model takes one noise sequence and makes one series, each `[T, F]` with at
    /// most [`crate::series::MAX_SERIES`] values.
    NotSeries,
}

impl core::fmt::Display for DemoError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            DemoError::Format(e) => write!(f, "invalid model: {e}"),
            DemoError::Arena { needed, have } => {
                write!(f, "model needs a {needed}-byte arena, the board has {have}")
            }
            DemoError::Latent(n) => write!(f, "latent of {n} values; at most {MAX_LATENT}"),
            DemoError::Image { c, h, w, room } => write!(
                f,
                "image {c}x{h}x{w}; the demo draws 1 (gray) or 3 (RGB) channels of at most \
                 {room} values in all"
            ),
            DemoError::Run(e) => write!(f, "{e}"),
            DemoError::NotSeries => write!(
                f,
                "not a series generator (one noise sequence in, one series out, at most {} values)",
                crate::series::MAX_SERIES
            ),
        }
    }
}

/// Every large buffer a [`Generator`] uses, in one value the board places in a `static` (a
/// microcontroller's stack is a few KB): the interpreter's arena of `ARENA` bytes and the image
/// (`VALUES` values: pixels x channels) as int8 codes and as 8-bit levels.
pub struct Workspace<const ARENA: usize, const VALUES: usize = MAX_PIXELS> {
    arena: [u8; ARENA],
    output: [i8; VALUES],
    levels: [u8; VALUES],
}

impl<const ARENA: usize, const VALUES: usize> Workspace<ARENA, VALUES> {
    pub const fn new() -> Self {
        Workspace {
            arena: [0; ARENA],
            output: [0; VALUES],
            levels: [0; VALUES],
        }
    }
}

impl<const ARENA: usize, const VALUES: usize> Workspace<ARENA, VALUES> {
    /// The arena alone, for another model once the digits demo is done with it (the series
    /// demo: the micro:bit has no RAM for a second arena).
    pub fn arena_mut(&mut self) -> &mut [u8] {
        &mut self.arena
    }
}

impl<const ARENA: usize, const VALUES: usize> Default for Workspace<ARENA, VALUES> {
    fn default() -> Self {
        Self::new()
    }
}

/// A model ready to run in a [`Workspace`].
pub struct Generator<'m, 'a> {
    model: Model<'m>,
    isa: Isa,
    arena: &'a mut [u8],
    input: Vec<i8, MAX_LATENT>,
    output: &'a mut [i8],
    levels: &'a mut [u8],
    /// Output code -> 8-bit level, computed once so that generating is integer-only.
    to_level: [u8; 256],
}

impl<'m, 'a> Generator<'m, 'a> {
    pub fn new<const ARENA: usize, const VALUES: usize>(
        bytes: &'m [u8],
        isa: Isa,
        workspace: &'a mut Workspace<ARENA, VALUES>,
    ) -> Result<Self, DemoError> {
        let model = Model::parse(bytes).map_err(DemoError::Format)?;
        let needed = model.arena_len(1);
        if needed > ARENA {
            return Err(DemoError::Arena {
                needed,
                have: ARENA,
            });
        }
        if model.latent > MAX_LATENT {
            return Err(DemoError::Latent(model.latent));
        }
        let (c, h, w) = match model.output {
            Shape::Image { c, h, w } => (c, h, w),
            Shape::Flat(n) => (n, 1, 1),
        };
        if !(c == 1 || c == 3) || c * h * w > VALUES {
            return Err(DemoError::Image {
                c,
                h,
                w,
                room: VALUES,
            });
        }
        let q = model.output_quant;
        let to_level = core::array::from_fn(|code| {
            // The host's picture mapping: [-1, 1] -> [0, 255], rounded.
            let v = q.dequantize(code as u8 as i8).clamp(-1.0, 1.0);
            ((v + 1.0) * 127.5 + 0.5) as u8
        });
        let mut input = Vec::new();
        // The capacity was checked above, so this cannot fail.
        let _ = input.resize(model.latent, 0);
        Ok(Generator {
            model,
            isa,
            arena: &mut workspace.arena[..needed],
            input,
            output: &mut workspace.output[..c * h * w],
            levels: &mut workspace.levels[..c * h * w],
            to_level,
        })
    }

    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Classes of a conditional model (0 for an unconditional one).
    pub fn classes(&self) -> usize {
        self.model.classes()
    }

    /// Generates one image from the float latent `z` (quantized with the model's input scale),
    /// of `class` for a conditional model (which must be given one; an unconditional model must
    /// not).
    pub fn generate(&mut self, z: &[f32], class: Option<u8>) -> Result<(), DemoError> {
        self.generate_observed(z, class, |_, _| {})
    }

    /// [`Self::generate`], calling `after_op(index, op)` as each op finishes (for per-layer timing).
    ///
    /// One of the inference path's entry points that `tests/tests/no_panic.rs` proves panic-free
    /// in every board binary: never inlined, so that it has a symbol there.
    #[inline(never)]
    pub fn generate_observed(
        &mut self,
        z: &[f32],
        class: Option<u8>,
        mut after_op: impl FnMut(usize, &Op),
    ) -> Result<(), DemoError> {
        let q = self.model.input_quant;
        for (dst, &v) in self.input.iter_mut().zip(z) {
            *dst = q.quantize(v);
        }
        let class = class.map(u32::from);
        run_conditional_observed(
            &self.model,
            self.isa,
            1,
            &self.input,
            class.as_slice(),
            self.arena,
            self.output,
            |i, op, _, _| after_op(i, op),
        )
        .map_err(DemoError::Run)?;
        for (l, &o) in self.levels.iter_mut().zip(self.output.iter()) {
            *l = self.to_level[o as u8 as usize];
        }
        Ok(())
    }

    /// The last image's int8 output, exactly as the host runtime's int8 engine makes it.
    pub fn output(&self) -> &[i8] {
        self.output
    }

    /// The last image in 8-bit levels (gray, or RGB with each pixel's channels together).
    pub fn image(&self) -> Picture<'_> {
        let (c, h, w) = match self.model.output {
            Shape::Image { c, h, w } => (c, h, w),
            Shape::Flat(n) => (n, 1, 1),
        };
        Picture {
            levels: self.levels,
            channels: c as u32,
            width: w as u32,
            height: h as u32,
        }
    }
}

/// What the demo shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A new random sample per frame: seeds `seed, seed + 1, ...`.
    Random,
    /// A slow walk: `steps` frames from seed `s`'s latent to seed `s + 1`'s, then on to `s + 2`.
    Walk { steps: u16 },
    /// A conditional model's classes in turn (0, 1, ..., K-1) on seed `s`'s latent, then on
    /// `s + 1`'s. For an unconditional model, the same as [`Mode::Random`].
    Classes,
}

/// What the QEMU boards generate, and the host replays to check them: per mode, the frames drawn
/// from seed [`QEMU_SEED`]. Classes 0 and 1 on one latent come last (an unconditional model
/// draws random samples there instead).
pub const QEMU_PROGRAMME: [(Mode, u16); 3] = [
    (Mode::Random, 2),
    (Mode::Walk { steps: 4 }, 2),
    (Mode::Classes, 2),
];
pub const QEMU_SEED: u64 = 1;

/// The latent (and class) of each frame.
pub struct Demo {
    pub mode: Mode,
    seed: u64,
    step: u16,
    latent: usize,
    /// Classes of a conditional model, 0 for an unconditional one.
    classes: u8,
    from: [f32; MAX_LATENT],
    to: [f32; MAX_LATENT],
}

/// Which latent a frame shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub seed: u64,
    /// The walk step (walks only).
    pub step: Option<u16>,
    /// The class drawn (conditional models): in turn in [`Mode::Classes`], else `seed mod K`.
    pub class: Option<u8>,
}

impl Demo {
    /// A demo of a model with latents of `latent` values and `classes` classes (0 if it is
    /// unconditional; at most 256). An entry point of the no-panic proof, as `next`.
    #[inline(never)]
    pub fn new(mode: Mode, seed: u64, latent: usize, classes: usize) -> Demo {
        let latent = latent.min(MAX_LATENT);
        let mut demo = Demo {
            mode,
            seed,
            step: 0,
            latent,
            classes: classes.min(u8::MAX as usize) as u8,
            from: [0.0; MAX_LATENT],
            to: [0.0; MAX_LATENT],
        };
        if let Mode::Walk { .. } = mode {
            latent::fill_normal(seed, &mut demo.from[..latent]);
            latent::fill_normal(seed + 1, &mut demo.to[..latent]);
        }
        demo
    }

    /// Writes the next frame's latent into `z` and says which frame it is. An entry point of the
    /// no-panic proof (see [`Generator::generate_observed`]).
    #[inline(never)]
    pub fn next(&mut self, z: &mut [f32]) -> Frame {
        let n = self.latent.min(z.len());
        let z = &mut z[..n];
        let k = self.classes;
        let class_of_seed = |seed: u64| (k > 0).then(|| (seed % k as u64) as u8);
        match self.mode {
            Mode::Classes if k > 0 => {
                let frame = Frame {
                    seed: self.seed,
                    step: None,
                    class: Some(self.step as u8),
                };
                latent::fill_normal(self.seed, z);
                self.step += 1;
                if self.step == k as u16 {
                    self.step = 0;
                    self.seed = self.seed.wrapping_add(1);
                }
                frame
            }
            Mode::Random | Mode::Classes => {
                let frame = Frame {
                    seed: self.seed,
                    step: None,
                    class: class_of_seed(self.seed),
                };
                latent::fill_normal(self.seed, z);
                self.seed = self.seed.wrapping_add(1);
                frame
            }
            Mode::Walk { steps } => {
                let steps = steps.max(1);
                let frame = Frame {
                    seed: self.seed,
                    step: Some(self.step),
                    class: class_of_seed(self.seed),
                };
                let t = self.step as f32 / steps as f32;
                latent::lerp(&self.from, &self.to, t, z);
                self.step += 1;
                if self.step == steps {
                    self.step = 0;
                    self.seed = self.seed.wrapping_add(1);
                    self.from = self.to;
                    // `latent` is at most MAX_LATENT (see `new`); `min` lets the compiler see it.
                    let n = self.latent.min(MAX_LATENT);
                    latent::fill_normal(self.seed.wrapping_add(1), &mut self.to[..n]);
                }
                frame
            }
        }
    }
}

/// The real boards' endless programme: `frames` random samples, then a `frames`-step walk, then
/// (conditional models) every class on one latent, then random samples from where that ended, and
/// so on.
pub struct Show {
    demo: Demo,
    frames: u16,
    left: u16,
}

impl Show {
    pub fn new(seed: u64, latent: usize, classes: usize, frames: u16) -> Show {
        let frames = frames.max(1);
        Show {
            demo: Demo::new(Mode::Random, seed, latent, classes),
            frames,
            left: frames,
        }
    }

    /// Generates the next frame with `generator` and returns its caption, timed with `clock`, a
    /// free-running `u32` counter of `ticks_per_us` ticks per microsecond (its wrap-around is
    /// harmless).
    pub fn generate(
        &mut self,
        generator: &mut Generator,
        mut clock: impl FnMut() -> u32,
        ticks_per_us: u32,
    ) -> Result<Caption, DemoError> {
        let mut z = [0.0f32; MAX_LATENT];
        let frame = self.next(&mut z);
        let start = clock();
        generator.generate(&z[..self.demo.latent], frame.class)?;
        Ok(Caption::of(
            &frame,
            clock().wrapping_sub(start) / ticks_per_us.max(1),
        ))
    }

    /// Writes the next frame's latent into `z`. An entry point of the no-panic proof on the real
    /// boards (see [`Generator::generate_observed`]).
    #[inline(never)]
    pub fn next(&mut self, z: &mut [f32]) -> Frame {
        if self.left == 0 {
            let classes = self.demo.classes;
            let (mode, left) = match self.demo.mode {
                Mode::Random => (Mode::Walk { steps: self.frames }, self.frames),
                Mode::Walk { .. } if classes > 0 => (Mode::Classes, classes as u16),
                Mode::Walk { .. } | Mode::Classes => (Mode::Random, self.frames),
            };
            self.demo = Demo::new(mode, self.demo.seed, self.demo.latent, classes as usize);
            self.left = left;
        }
        self.left -= 1;
        self.demo.next(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_alternates_random_samples_and_walks() {
        let mut show = Show::new(1, 4, 0, 3);
        let mut z = [0.0f32; 4];
        let seeds: std::vec::Vec<(u64, Option<u16>)> = (0..9)
            .map(|_| show.next(&mut z))
            .map(|f| (f.seed, f.step))
            .collect();
        assert_eq!(
            seeds,
            [
                (1, None),
                (2, None),
                (3, None),
                (4, Some(0)),
                (4, Some(1)),
                (4, Some(2)),
                (5, None),
                (6, None),
                (7, None)
            ]
        );
    }

    #[test]
    fn show_generates_and_times_a_frame() {
        let mut ws = Box::new(Workspace::<{ crate::models::ARENA_BYTES }>::new());
        let mut g = Generator::new(crate::models::MODEL, Isa::Scalar, &mut ws).unwrap();
        let latent = g.model().latent;
        let classes = g.classes();
        let mut show = Show::new(7, latent, classes, 3);
        // A clock at 5 ticks per microsecond that advances 250 ticks per reading and wraps.
        let mut t = u32::MAX - 100;
        let clock = || {
            t = t.wrapping_add(250);
            t
        };
        let caption = show.generate(&mut g, clock, 5).unwrap();
        assert_eq!((caption.seed, caption.step, caption.micros), (7, None, 50));
        let class = (classes > 0).then(|| (7 % classes) as u8);
        assert_eq!(caption.class, class);
        let shown = g.output().to_vec();
        let mut z = [0.0f32; MAX_LATENT];
        latent::fill_normal(7, &mut z[..latent]);
        g.generate(&z[..latent], class).unwrap();
        assert_eq!(shown, g.output());
    }

    #[test]
    fn random_mode_draws_one_seed_per_frame() {
        let mut demo = Demo::new(Mode::Random, 10, 8, 0);
        let mut z = [0.0f32; 8];
        assert_eq!(demo.next(&mut z).seed, 10);
        let mut expected = [0.0f32; 8];
        latent::fill_normal(10, &mut expected);
        assert_eq!(z, expected);
        assert_eq!(demo.next(&mut z).seed, 11);
        latent::fill_normal(11, &mut expected);
        assert_eq!(z, expected);
    }

    #[test]
    fn walk_moves_from_one_seed_to_the_next_and_continues() {
        let mut demo = Demo::new(Mode::Walk { steps: 4 }, 5, 6, 0);
        let (mut a, mut b, mut c) = ([0.0f32; 6], [0.0f32; 6], [0.0f32; 6]);
        latent::fill_normal(5, &mut a);
        latent::fill_normal(6, &mut b);
        latent::fill_normal(7, &mut c);
        let mut z = [0.0f32; 6];
        let first = demo.next(&mut z);
        assert_eq!((first.seed, first.step, z), (5, Some(0), a));
        for _ in 1..4 {
            demo.next(&mut z);
        }
        let next = demo.next(&mut z);
        assert_eq!((next.seed, next.step, z), (6, Some(0), b));
        demo.next(&mut z);
        // Halfway between 6 and 7 after two steps of four.
        demo.next(&mut z);
        for ((z, b), c) in z.iter().zip(b).zip(c) {
            assert!((z - (b + c) / 2.0).abs() < 1e-6);
        }
    }

    #[test]
    fn a_conditional_show_cycles_every_class_on_one_latent_after_the_walk() {
        let mut show = Show::new(1, 4, 3, 2);
        let mut z = [0.0f32; 4];
        let mut frames = std::vec::Vec::new();
        for _ in 0..9 {
            let f = show.next(&mut z);
            frames.push((f.seed, f.step, f.class, z));
        }
        let got: std::vec::Vec<_> = frames.iter().map(|f| (f.0, f.1, f.2)).collect();
        assert_eq!(
            got,
            [
                (1, None, Some(1)),
                (2, None, Some(2)),
                (3, Some(0), Some(0)),
                (3, Some(1), Some(0)),
                (4, None, Some(0)),
                (4, None, Some(1)),
                (4, None, Some(2)),
                (5, None, Some(2)),
                (6, None, Some(0)),
            ]
        );
        // The walk ended on seed 4's latent; the class frames share it.
        assert!(frames[4].3 == frames[5].3 && frames[5].3 == frames[6].3);
    }

    #[test]
    fn an_unconditional_model_refuses_a_class_and_a_conditional_one_needs_one() {
        let mut ws = Box::new(Workspace::<{ crate::models::ARENA_BYTES }>::new());
        let mut g = Generator::new(crate::models::MODEL, Isa::Scalar, &mut ws).unwrap();
        let z = [0.0f32; MAX_LATENT];
        let latent = g.model().latent;
        let (good, bad) = if g.classes() > 0 {
            (Some(0), None)
        } else {
            (None, Some(0))
        };
        assert!(g.generate(&z[..latent], good).is_ok());
        assert!(matches!(
            g.generate(&z[..latent], bad),
            Err(DemoError::Run(_))
        ));
        if g.classes() > 0 {
            let k = g.classes() as u8;
            assert!(matches!(
                g.generate(&z[..latent], Some(k)),
                Err(DemoError::Run(_))
            ));
        }
    }
}
