//! Generate Burn code from the committed generator fixture with burn-onnx's importer (the
//! successor of burn-import), so a test can check that Burn re-imports our ONNX export faithfully.
fn main() {
    println!("cargo:rerun-if-changed=fixtures/generator_tiny.onnx");
    burn_onnx::ModelGen::new()
        .input("fixtures/generator_tiny.onnx")
        .out_dir("model/")
        .load_strategy(burn_onnx::LoadStrategy::Embedded)
        .run_from_script();
}
