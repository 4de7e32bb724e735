//! No panic is reachable in the firmware's inference path, on every board binary (release), and
//! none in model validation either.
//!
//! The boards are built by `scripts/firmware.sh build`; each ELF's call graph is walked from the
//! entry points below by `pocketgan_tests::nopanic`, which fails on any reachable panic and on
//! any branch it cannot follow. `scripts/firmware.sh nopanic` runs this file and prints the
//! result per board. The last tests show that the checker does fail: on synthetic code and on a
//! board's `main`, which formats text and can panic.

use pocketgan_tests::firmware_boards;
use pocketgan_tests::nopanic::{Disassembly, Problem, Report};

/// What every image runs from an already validated model: the frame's latent (`Demo`, and `Show`
/// on the real boards) and the generator (`generate_observed`: quantizing the latent, the
/// interpreter with its kernels and requantization, and the gray levels). Each is
/// `#[inline(never)]` in `firmware/src/demo.rs` so that it has a symbol.
const INFERENCE: [&str; 3] = [
    "pocketgan_firmware::demo::Generator::generate_observed",
    "pocketgan_firmware::demo::Demo::new",
    "pocketgan_firmware::demo::Demo::next",
];
/// The real boards' programme (the QEMU boards drive `Demo` themselves).
const SHOW: &str = "pocketgan_firmware::demo::Show::next";
/// The series demo's generator (the QEMU boards' builds, which have the graph ops).
const SERIES: &str = "pocketgan_firmware::series::SeriesGenerator::generate";
/// Start-up: `Model::parse` and the demo's own checks of the embedded model.
const VALIDATION: [&str; 1] = ["pocketgan_firmware::demo::Generator::new"];

fn summary(report: &Report) -> String {
    let panics = report
        .violations
        .iter()
        .filter(|v| matches!(v.problem, Problem::Panic(_)))
        .count();
    format!(
        "{} functions, {} panic calls, {} unprovable branches",
        report.reachable.len(),
        panics,
        report.violations.len() - panics
    )
}

#[test]
fn no_panic_is_reachable_in_inference_or_validation_on_any_board() {
    let mut failures = Vec::new();
    for (board, elf) in firmware_boards() {
        let dis = Disassembly::of_elf(&elf).expect("disassemble the board binary");
        let mut inference = INFERENCE.to_vec();
        if board == "rp2040" || board == "stm32f4" {
            inference.push(SHOW);
        }
        // The boards with the graph ops also generate series (TimeGAN's GRU layers).
        if matches!(board.as_str(), "an386" | "an505" | "microbit") {
            inference.push(SERIES);
        }
        for (what, entries) in [("inference", &inference[..]), ("validation", &VALIDATION)] {
            let report = dis
                .check(entries)
                .unwrap_or_else(|e| panic!("{board}: {e}"));
            println!("{board} {what}: {}", summary(&report));
            for v in &report.violations {
                println!("  {v}");
            }
            if !report.violations.is_empty() {
                failures.push(format!("{board} {what}"));
            }
        }
    }
    assert!(failures.is_empty(), "not proven panic-free: {failures:?}");
}

/// `objdump -d -C --no-show-raw-insn` of a few functions: `entry` tail-calls `helper`, which calls
/// a bounds-check failure; `table` dispatches through a `tbb` jump table (alignment padding after
/// its return) and calls `leaf`; `fnptr` calls through a register.
const SYNTHETIC: &str = "
00001000 <entry>:
    1000:\tpush\t{r7, lr}
    1002:\tcmp\tr0, #3
    1004:\tbeq.n\t100a <entry+0xa>
    1006:\tpop\t{r7, pc}
    1008:\tnop
    100a:\tb.w\t1010 <helper>
    100e:\tbmi.n\t0f00 <nowhere>

00001010 <helper>:
    1010:\tcmp\tr0, r1
    1012:\tbcs.n\t1016 <helper+0x6>
    1014:\tbx\tlr
    1016:\tbl\t2000 <core::panicking::panic_bounds_check>
    101a:\tudf\t#254

00001020 <table>:
    1020:\tpush\t{r7, lr}
    1022:\tcmp\tr0, #2
    1024:\tbhi.n\t1034 <table+0x14>
    1026:\ttbb\t[pc, r0]
    102a:\t.word\t0x00050302
    102e:\tmovs\tr0, #1
    1030:\tbl\t1040 <leaf>
    1034:\tpop\t{r7, pc}
    1036:\tbmi.n\t0f00 <nowhere>

00001040 <leaf>:
    1040:\tbx\tlr

00001050 <fnptr>:
    1050:\tpush\t{r7, lr}
    1052:\tldr\tr3, [r0, #4]
    1054:\tblx\tr3
    1056:\tpop\t{r7, pc}

00002000 <core::panicking::panic_bounds_check>:
    2000:\tb.n\t2000 <core::panicking::panic_bounds_check>
";

#[test]
fn the_checker_finds_a_panic_behind_a_tail_call_and_prints_the_chain() {
    let report = Disassembly::parse(SYNTHETIC).check(&["entry"]).unwrap();
    assert_eq!(report.reachable, ["entry", "helper"]);
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    let v = &report.violations[0];
    assert_eq!(
        v.problem,
        Problem::Panic("core::panicking::panic_bounds_check".into())
    );
    assert_eq!(
        (v.chain.clone(), v.at),
        (vec!["entry".into(), "helper".into()], 0x1016)
    );
    let text = v.to_string();
    assert!(text.contains("entry\n    -> helper\n    -> core::panicking::panic_bounds_check"));
}

#[test]
fn the_checker_follows_a_jump_table_and_passes_clean_code() {
    let report = Disassembly::parse(SYNTHETIC).check(&["table"]).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.reachable, ["table", "leaf"]);
}

#[test]
fn the_checker_refuses_an_indirect_call() {
    let report = Disassembly::parse(SYNTHETIC).check(&["fnptr"]).unwrap();
    assert_eq!(report.violations.len(), 1);
    assert_eq!(
        report.violations[0].problem,
        Problem::Unprovable("blx r3".into())
    );
}

#[test]
fn a_missing_entry_is_an_error_not_a_pass() {
    assert!(Disassembly::parse(SYNTHETIC)
        .check(&["inlined_away"])
        .is_err());
}

/// On real compiler output: a QEMU board's `main` prints over semihosting (`core::fmt`, which
/// calls through vtables and can panic), so the checker must find both there.
#[test]
fn the_checker_finds_panics_in_a_board_main() {
    let (_, elf) = firmware_boards()
        .into_iter()
        .find(|(board, _)| board == "an386")
        .expect("an386 is a board");
    let report = Disassembly::of_elf(&elf).unwrap().check(&["main"]).unwrap();
    let panics: Vec<_> = report
        .violations
        .iter()
        .filter(|v| matches!(v.problem, Problem::Panic(_)))
        .collect();
    assert!(!panics.is_empty(), "no panic found from main");
    assert!(panics
        .iter()
        .all(|v| v.chain.first().map(String::as_str) == Some("main")));
    assert!(report
        .violations
        .iter()
        .any(|v| matches!(v.problem, Problem::Unprovable(_))));
}
