fn main() {
    eprintln!("pocketgan: the int8 runtime is not built yet (see the runtime issue)");
    std::process::exit(2);
}
