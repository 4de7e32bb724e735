//! Firmware parity: every QEMU board draws exactly what the host runtime computes.
//!
//! Each board binary runs under `qemu-system-arm` (through `scripts/firmware.sh qemu`, which builds
//! it) and prints each image's int8 output and the hashes of the frames it drew. The host redoes the
//! same latents, the same int8 inference (its own fastest kernel) and the same rendering with the
//! firmware library, and must agree byte for byte.

use pocketgan_firmware::demo::{Demo, Generator, Workspace, MAX_LATENT, QEMU_PROGRAMME, QEMU_SEED};
use pocketgan_firmware::framebuffer::{fnv1a, Ssd1306Framebuffer, St7789Framebuffer};
use pocketgan_firmware::models::{EMOJI_NAME, EMOJI_VALUES};
use pocketgan_firmware::render::{self, Caption};
use pocketgan_runtime::Isa;
use pocketgan_tests::repo_root;
use std::process::Command;

/// One image as a board reported it.
#[derive(Debug, Default)]
struct Image {
    seed: u64,
    step: Option<u16>,
    class: Option<u8>,
    micros: u32,
    output: Vec<u8>,
    screens: Vec<(String, u64)>,
}

/// The images of one model, after its header line (`board ...` for the digits, `colour ...` for
/// the emoji).
struct Section {
    header: String,
    images: Vec<Image>,
}

struct Report {
    sections: Vec<Section>,
    lines: Vec<String>,
}

fn run_board(board: &str) -> Report {
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("scripts/firmware.sh"))
        .args(["qemu", board])
        .output()
        .expect("run scripts/firmware.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{board} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let mut sections: Vec<Section> = Vec::new();
    // Series lines (checked by `check_series`) end a section's images.
    let mut in_series = false;
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["board" | "colour", ..] => {
                in_series = false;
                sections.push(Section {
                    header: line.clone(),
                    images: Vec::new(),
                });
            }
            ["series", ..] => in_series = true,
            _ if in_series => {}
            ["image", "seed", seed, "step", step, "class", class, "instructions", _, "micros", micros, "output", hex] =>
            {
                let step: i32 = step.parse().unwrap();
                let class: i32 = class.parse().unwrap();
                let section = sections.last_mut().expect("image after a header");
                section.images.push(Image {
                    seed: seed.parse().unwrap(),
                    step: (step >= 0).then_some(step as u16),
                    class: (class >= 0).then_some(class as u8),
                    micros: micros.parse().unwrap(),
                    output: (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                        .collect(),
                    screens: Vec::new(),
                });
            }
            ["screen", name, hash] => sections
                .last_mut()
                .and_then(|s| s.images.last_mut())
                .expect("screen after image")
                .screens
                .push((name.to_string(), u64::from_str_radix(hash, 16).unwrap())),
            _ => {}
        }
    }
    assert!(!sections.is_empty(), "{board}: no header in\n{stdout}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("done"),
        "{board}:\n{stdout}"
    );
    Report { sections, lines }
}

/// Replays the frames a board drew with one model (the section whose header starts with `kind`)
/// on the host and compares outputs and frame hashes.
fn check_parity(board: &str, report: &Report, kind: &str, model_file: &str, expect_isa: &str) {
    let section = report
        .sections
        .iter()
        .find(|s| s.header.starts_with(&format!("{kind} ")))
        .unwrap_or_else(|| panic!("{board} printed no `{kind}` section"));
    assert!(
        section.header.contains(&format!("isa {expect_isa} ")),
        "{}",
        section.header
    );
    assert!(section.header.contains(&format!("model {model_file} ")));
    let bytes = std::fs::read(repo_root().join("firmware/models").join(model_file)).unwrap();
    let mut workspace = Box::new(Workspace::<{ 64 * 1024 }, { EMOJI_VALUES }>::new());
    let mut generator = Generator::new(&bytes, Isa::detect(), &mut workspace).unwrap();
    let latent = generator.model().latent;
    let mut z = [0.0f32; MAX_LATENT];
    // The board's programme, replayed.
    let classes = generator.classes();
    let frames: Vec<_> = QEMU_PROGRAMME
        .iter()
        .flat_map(|&(mode, n)| {
            let mut demo = Demo::new(mode, QEMU_SEED, latent, classes);
            (0..n)
                .map(|_| {
                    let frame = demo.next(&mut z);
                    (frame, z)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        section.images.len(),
        frames.len(),
        "{board} printed {} {kind} images",
        section.images.len()
    );
    let mut differing = Vec::new();
    for (i, (image, (frame, z))) in section.images.iter().zip(&frames).enumerate() {
        assert_eq!(
            (image.seed, image.step, image.class),
            (frame.seed, frame.step, frame.class)
        );
        generator.generate(&z[..latent], frame.class).unwrap();
        let host: Vec<u8> = generator.output().iter().map(|&v| v as u8).collect();
        assert_eq!(image.output.len(), host.len());
        if image.output != host {
            differing.push((frame.seed, frame.step));
        }
        if i == 0 {
            // The images are digits or emoji, not blank frames: a trained generator uses many
            // codes.
            let distinct = host.iter().collect::<std::collections::BTreeSet<_>>().len();
            assert!(
                distinct > 20,
                "{board}: only {distinct} distinct output values"
            );
        }
        // The frames the board drew, caption included (its time is the board's own).
        let caption = Caption::of(frame, image.micros);
        let mut oled = Box::new(Ssd1306Framebuffer::new());
        render::ssd1306_screen(oled.as_mut(), generator.image(), &caption).unwrap();
        let mut tft = Box::new(St7789Framebuffer::new());
        render::st7789_screen(tft.as_mut(), generator.image(), &caption).unwrap();
        assert!(!image.screens.is_empty(), "{board} drew nothing");
        for (name, hash) in &image.screens {
            let host = match name.as_str() {
                "ssd1306" => fnv1a(&oled.bytes),
                "st7789" => fnv1a(&tft.bytes),
                other => panic!("unknown screen {other}"),
            };
            assert_eq!(
                *hash, host,
                "{board} seed {} {name} frame differs",
                frame.seed
            );
        }
    }
    assert!(
        differing.is_empty(),
        "{board}: {kind} images {differing:?} differ from the host's"
    );
}

/// The digits (and the board's own checks): every board.
fn check_board(board: &str, model_file: &str, expect_isa: &str) -> Report {
    let report = run_board(board);
    check_parity(board, &report, "board", model_file, expect_isa);
    assert!(report.lines.iter().any(|l| l.starts_with("stack ")));
    if expect_isa != "scalar" {
        let selftest = format!("selftest {expect_isa} 300 gemm cases match the scalar kernel");
        assert!(report.lines.contains(&selftest), "{board}: no '{selftest}'");
    }
    report
}

/// The series a board printed (`series seed S ... output HEX`, then its chart's hash) against the
/// host's: the same int8 GRU generator on the same noise, drawn by the same code.
fn check_series(board: &str, report: &Report) {
    use pocketgan_firmware::models::{SERIES_ARENA_BYTES, SERIES_SEEDS};
    use pocketgan_firmware::series::{ssd1306_series, SeriesGenerator};
    let bytes = std::fs::read(repo_root().join("firmware/models/sines.pgq")).unwrap();
    let mut arena = vec![0u8; SERIES_ARENA_BYTES + 32 * 1024];
    let mut g = SeriesGenerator::new(&bytes, Isa::detect(), &mut arena).unwrap();
    let (steps, features) = g.shape();
    assert_eq!((steps, features), (24, 5));
    let mut seen = 0;
    for (k, line) in report.lines.iter().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["series", "seed", seed, "instructions", _, "output", hex] = words[..] else {
            continue;
        };
        let seed: u64 = seed.parse().unwrap();
        assert_eq!(seed, SERIES_SEEDS[seen], "{board}: series order");
        g.generate(seed).unwrap();
        let host: String = g
            .output()
            .iter()
            .map(|&v| format!("{:02x}", v as u8))
            .collect();
        assert_eq!(
            hex, host,
            "{board}: series of seed {seed} differs from the host's"
        );
        // A trained generator's series moves: many codes.
        let distinct = g
            .output()
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(distinct > 20, "{board}: only {distinct} distinct codes");
        let mut oled = Box::new(Ssd1306Framebuffer::new());
        ssd1306_series(oled.as_mut(), g.output(), (steps, features), seed).unwrap();
        let want = format!("screen ssd1306 {:016x}", fnv1a(&oled.bytes));
        assert_eq!(
            report.lines.get(k + 1),
            Some(&want),
            "{board}: chart of seed {seed}"
        );
        seen += 1;
    }
    assert_eq!(seen, SERIES_SEEDS.len(), "{board} printed {seen} series");
}

#[test]
fn mps2_an386_cortex_m4_dsp_matches_host() {
    let report = check_board("an386", "digits.pgq", "cortex-m-dsp");
    // The QEMU boards carry the graph ops and also draw TimeGAN's series (its GRU layers).
    check_series("an386", &report);
    // The MPS2 boards draw colour emoji on the ST7789 too.
    check_parity("an386", &report, "colour", EMOJI_NAME, "cortex-m-dsp");
}

#[test]
fn mps2_an505_cortex_m33_dsp_matches_host() {
    let report = check_board("an505", "digits.pgq", "cortex-m-dsp");
    check_series("an505", &report);
    check_parity("an505", &report, "colour", EMOJI_NAME, "cortex-m-dsp");
}

#[test]
fn microbit_cortex_m0_scalar_matches_host() {
    let report = check_board("microbit", "digits-tiny.pgq", "scalar");
    assert!(
        report.sections.len() == 1,
        "the micro:bit has no colour screen"
    );
    // In the digits workspace's arena once the digits are drawn: 16 KB of RAM hold both.
    check_series("microbit", &report);
}
