//! Version-1 models (chains) read into the graph format: the upgraded file must generate
//! exactly what the version-1 runtime generated. The fixtures are the firmware's two demo models
//! as they were before the graph format, and `generate --seed 7 --save-npy` output written by
//! that runtime (commit 7128fb3): a conditional cGAN and an unconditional DCGAN.
#![cfg(feature = "std")]

mod common;

use std::process::Command;

fn pocketgan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pocketgan"))
        .args(args)
        .output()
        .expect("pocketgan runs")
}

#[test]
fn upgraded_models_generate_what_version_1_generated() {
    let fixtures = common::repo_root().join("runtime/tests/fixtures/v1");
    let dir = std::env::temp_dir().join(format!("pocketgan-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, n) in [("digits", "20"), ("digits-tiny", "16")] {
        let v1 = fixtures.join(format!("{name}.pgq"));
        let v2 = dir.join(format!("{name}.pgq"));
        let p = |f: &std::path::Path| f.to_string_lossy().into_owned();
        // The old file is refused with the way out.
        let refused = pocketgan(&["inspect", &p(&v1)]);
        let msg = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && msg.contains("pocketgan quantize"),
            "{msg}"
        );
        let up = pocketgan(&["upgrade", &p(&v1), "--out", &p(&v2)]);
        assert!(
            up.status.success(),
            "{}",
            String::from_utf8_lossy(&up.stderr)
        );
        // The same bytes as the firmware's committed model.
        let firmware = common::repo_root().join(format!("firmware/models/{name}.pgq"));
        assert_eq!(
            std::fs::read(&v2).unwrap(),
            std::fs::read(firmware).unwrap(),
            "{name}"
        );
        for isa in pocketgan_runtime::Isa::available() {
            let npy = dir.join(format!("{name}-{}.npy", isa.name()));
            let args = [
                "generate",
                &p(&v2),
                "--n",
                n,
                "--seed",
                "7",
                "--isa",
                isa.name(),
                "--out",
                &p(&dir.join("grid.png")),
                "--save-npy",
                &p(&npy),
            ];
            let out = pocketgan(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                std::fs::read(&npy).unwrap(),
                std::fs::read(fixtures.join(format!("{name}.npy"))).unwrap(),
                "{name} on {}",
                isa.name()
            );
        }
    }
}
