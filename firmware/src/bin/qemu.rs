//! The demo on QEMU's Cortex-M boards, for CI: it draws into in-memory framebuffers, prints the
//! images and frame hashes over semihosting and exits non-zero if anything fails.
//!
//! Boards (chosen by target, see build.rs): MPS2-AN386 (Cortex-M4F, DSP kernel), MPS2-AN505
//! (Cortex-M33, DSP kernel), micro:bit (Cortex-M0, scalar kernel, tiny model).
//! Run with `-icount shift=0`: QEMU then executes one instruction per virtual nanosecond, so
//! SysTick (at the board's CPU clock) counts instructions, repeatably.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprint, hprintln};
use pocketgan_firmware::demo::{
    Demo, Generator, Mode, Workspace, MAX_LATENT, QEMU_PROGRAMME, QEMU_SEED,
};
use pocketgan_firmware::framebuffer::{fnv1a, Ssd1306Framebuffer};
use pocketgan_firmware::render::{self, Caption};
use pocketgan_firmware::{isa, models};

#[cfg(board = "mps2-an386")]
const BOARD: (&str, u64) = ("mps2-an386", 25_000_000);
#[cfg(board = "mps2-an505")]
const BOARD: (&str, u64) = ("mps2-an505", 20_000_000);
#[cfg(board = "microbit")]
const BOARD: (&str, u64) = ("microbit", 16_000_000);

/// Random samples printed for the host to compare, then walk frames.
const FIRST_SEED: u64 = QEMU_SEED;

static mut WORKSPACE: Workspace<{ models::ARENA_BYTES }> = Workspace::new();
static mut OLED: Ssd1306Framebuffer = Ssd1306Framebuffer::new();
#[cfg(not(board = "microbit"))]
static mut TFT: pocketgan_firmware::framebuffer::St7789Framebuffer =
    pocketgan_firmware::framebuffer::St7789Framebuffer::new();
/// The colour demo's workspace: three channels of 32x32.
#[cfg(feature = "emoji")]
static mut EMOJI_WORKSPACE: Workspace<{ models::EMOJI_ARENA_BYTES }, { models::EMOJI_VALUES }> =
    Workspace::new();
#[cfg(not(board = "microbit"))]
static mut SELFTEST: pocketgan_firmware::selftest::Buffers =
    pocketgan_firmware::selftest::Buffers::new();

/// SysTick wraps counted by its interrupt; with the current value they make a 64-bit clock.
static WRAPS: AtomicU32 = AtomicU32::new(0);
const RELOAD: u32 = 0x00ff_ffff;

#[exception]
fn SysTick() {
    // Load and store, not fetch_add: the Cortex-M0 has no atomic read-modify-write, and this
    // handler is the only writer.
    WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn ticks() -> u64 {
    loop {
        let w = WRAPS.load(Ordering::Relaxed);
        let v = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == w {
            return w as u64 * (RELOAD as u64 + 1) + (RELOAD - v) as u64;
        }
    }
}

/// Instructions executed in `ticks` SysTick ticks under `-icount shift=0` (1 ns each).
fn instructions(ticks: u64) -> u64 {
    ticks * 1_000_000_000 / BOARD.1
}

fn fail(what: &dyn core::fmt::Display) -> ! {
    hprintln!("FAIL {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

fn print_hex(bytes: impl Iterator<Item = u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = [0u8; 128];
    let mut len = 0;
    for b in bytes {
        line[len] = HEX[(b >> 4) as usize];
        line[len + 1] = HEX[(b & 15) as usize];
        len += 2;
        if len == line.len() {
            hprint!("{}", core::str::from_utf8(&line).unwrap_or(""));
            len = 0;
        }
    }
    hprintln!("{}", core::str::from_utf8(&line[..len]).unwrap_or(""));
}

extern "C" {
    /// End of .bss/.uninit (cortex-m-rt): the stack may grow down to here.
    static mut __sheap: u8;
    /// Top of RAM, where the stack starts.
    static _stack_start: u8;
}

const STACK_PAINT: u8 = 0xa5;

/// Fills the free RAM below the stack with a pattern, so [`stack_peak`] can see how deep it got.
fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = core::ptr::addr_of_mut!(__sheap);
    let mut p = bottom;
    while (p as usize) + 64 < sp {
        // SAFETY: between the end of the statics and 64 bytes below the live stack: unused RAM.
        unsafe {
            p.write_volatile(STACK_PAINT);
            p = p.add(1);
        }
    }
}

/// Bytes between the end of the statics and the top of RAM.
fn stack_room() -> usize {
    core::ptr::addr_of!(_stack_start) as usize - core::ptr::addr_of_mut!(__sheap) as usize
}

/// Deepest stack use since [`paint_stack`], in bytes.
fn stack_peak() -> usize {
    let bottom = core::ptr::addr_of_mut!(__sheap);
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = bottom;
    // SAFETY: reads RAM between the statics and the stack top.
    while (p as usize) < top && unsafe { p.read_volatile() } == STACK_PAINT {
        p = unsafe { p.add(1) };
    }
    top - p as usize
}

#[entry]
fn main() -> ! {
    paint_stack();
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail(&"peripherals taken"));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    // SAFETY: main runs once and these statics are touched nowhere else.
    let (workspace, oled) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(WORKSPACE),
            &mut *core::ptr::addr_of_mut!(OLED),
        )
    };
    let isa = isa();

    #[cfg(not(board = "microbit"))]
    {
        // SAFETY: as above.
        let buffers = unsafe { &mut *core::ptr::addr_of_mut!(SELFTEST) };
        match pocketgan_firmware::selftest::check_gemm(isa, 300, 7, buffers) {
            Ok(n) => hprintln!(
                "selftest {} {} gemm cases match the scalar kernel",
                isa.name(),
                n
            ),
            Err(m) => fail(&format_args!(
                "selftest {} differs from scalar: {:?}",
                isa.name(),
                m
            )),
        }
    }

    let mut generator = Generator::new(models::MODEL, isa, workspace).unwrap_or_else(|e| fail(&e));
    describe(
        "board",
        models::NAME,
        models::MODEL.len(),
        &generator,
        models::ARENA_BYTES,
    );
    programme(&mut generator, |generator, caption| {
        let _ = render::ssd1306_screen(oled, generator.image(), caption);
        hprintln!("screen ssd1306 {:016x}", fnv1a(&oled.bytes));
        #[cfg(not(board = "microbit"))]
        {
            // SAFETY: as above.
            let tft = unsafe { &mut *core::ptr::addr_of_mut!(TFT) };
            let _ = render::st7789_screen(tft, generator.image(), caption);
            hprintln!("screen st7789 {:016x}", fnv1a(&tft.bytes));
        }
    });
    #[cfg(feature = "graph-ops")]
    series_demo(isa, oled);
    #[cfg(feature = "emoji")]
    emoji_demo(isa);
    let (stack, room) = (stack_peak(), stack_room());
    hprintln!("stack {} bytes of {}", stack, room);
    if stack + 64 >= room {
        fail(&"the stack reached the statics");
    }
    hprintln!("done");
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}

/// The model line the host reads (`board ...` for the digits, `colour ...` for the emoji).
fn describe(kind: &str, name: &str, bytes: usize, generator: &Generator, arena: usize) {
    let model = generator.model();
    let macs: usize = model.ops().map(|op| op.macs()).sum();
    hprintln!(
        "{} {} isa {} model {} bytes {} latent {} arena {} of {} macs {}",
        kind,
        BOARD.0,
        generator.isa().name(),
        name,
        bytes,
        model.latent,
        model.arena_len(1),
        arena,
        macs
    );
}

/// [`QEMU_PROGRAMME`]'s frames from `generator`: each image's instructions and int8 output, the
/// first image's cost per op, then `draw` the screens (it prints their hashes).
fn programme(generator: &mut Generator, mut draw: impl FnMut(&Generator, &Caption)) {
    let latent = generator.model().latent;
    let macs: usize = generator.model().ops().map(|op| op.macs()).sum();
    let largest = generator
        .model()
        .ops()
        .enumerate()
        .max_by_key(|&(_, op)| op.macs())
        .map_or(0, |(i, _)| i);
    let mut z = [0.0f32; MAX_LATENT];
    for (mode, frames) in QEMU_PROGRAMME {
        let mut demo = Demo::new(mode, FIRST_SEED, latent, generator.classes());
        for _ in 0..frames {
            let frame = demo.next(&mut z);
            let mut op_ticks = [0u32; 16];
            let start = ticks();
            let mut last = start;
            generator
                .generate_observed(&z[..latent], frame.class, |i, _| {
                    let now = ticks();
                    if let Some(t) = op_ticks.get_mut(i) {
                        *t = (now - last) as u32;
                    }
                    last = now;
                })
                .unwrap_or_else(|e| fail(&e));
            let spent = ticks() - start;
            let insns = instructions(spent);
            let micros = (spent * 1_000_000 / BOARD.1) as u32;
            hprint!(
                "image seed {} step {} class {} instructions {} micros {} output ",
                frame.seed,
                frame.step.map_or(-1, |s| s as i32),
                frame.class.map_or(-1, |c| c as i32),
                insns,
                micros
            );
            print_hex(generator.output().iter().map(|&v| v as u8));
            if frame.seed == FIRST_SEED && frame.step.is_none() && mode == Mode::Random {
                for (i, op) in generator.model().ops().enumerate() {
                    let n = instructions(op_ticks.get(i).copied().unwrap_or(0) as u64);
                    hprintln!(
                        "op {} {} macs {} instructions {}",
                        i,
                        op.name(),
                        op.macs(),
                        n
                    );
                }
                let per = macs as u64 * 1000 / insns.max(1);
                hprintln!(
                    "cost {} instructions per image, {}.{:03} macs per instruction, largest op {}",
                    insns,
                    per / 1000,
                    per % 1000,
                    largest
                );
            }
            draw(generator, &Caption::of(&frame, micros));
        }
    }
}

/// The colour demo: the emoji generator's frames on the ST7789, in its own workspace.
#[cfg(feature = "emoji")]
#[inline(never)]
fn emoji_demo(isa: pocketgan_runtime::Isa) {
    // SAFETY: only this function touches these statics, and it runs once.
    let (workspace, tft) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(EMOJI_WORKSPACE),
            &mut *core::ptr::addr_of_mut!(TFT),
        )
    };
    let mut generator =
        Generator::new(models::EMOJI_MODEL, isa, workspace).unwrap_or_else(|e| fail(&e));
    describe(
        "colour",
        models::EMOJI_NAME,
        models::EMOJI_MODEL.len(),
        &generator,
        models::EMOJI_ARENA_BYTES,
    );
    programme(&mut generator, |generator, caption| {
        let _ = render::st7789_screen(tft, generator.image(), caption);
        hprintln!("screen st7789 {:016x}", fnv1a(&tft.bytes));
    });
}

/// TimeGAN's series: each seed's int8 output and the hash of its line chart, for the host to
/// redo (`tests/tests/firmware.rs`).
#[cfg(feature = "graph-ops")]
#[inline(never)]
fn series_demo(isa: pocketgan_runtime::Isa, oled: &mut Ssd1306Framebuffer) {
    use pocketgan_firmware::series::{ssd1306_series, SeriesGenerator};
    // The digits demo is done with its workspace: its arena holds the series model's tensors.
    // SAFETY: the digits generator that borrowed the workspace is no longer used.
    let arena = unsafe { (*core::ptr::addr_of_mut!(WORKSPACE)).arena_mut() };
    let mut g = SeriesGenerator::new(models::SERIES_MODEL, isa, arena).unwrap_or_else(|e| fail(&e));
    let (steps, features) = g.shape();
    hprintln!(
        "series model sines.pgq bytes {} steps {} features {} arena {}",
        models::SERIES_MODEL.len(),
        steps,
        features,
        g.model().arena_len(1)
    );
    for seed in models::SERIES_SEEDS {
        let start = ticks();
        g.generate(seed).unwrap_or_else(|e| fail(&e));
        let insns = instructions(ticks() - start);
        hprint!("series seed {} instructions {} output ", seed, insns);
        print_hex(g.output().iter().map(|&v| v as u8));
        let _ = ssd1306_series(oled, g.output(), (steps, features), seed);
        hprintln!("screen ssd1306 {:016x}", fnv1a(&oled.bytes));
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("PANIC {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("HARDFAULT {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
