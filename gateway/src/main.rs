//! `gateway`: wiring only; see the `gateway` library.

fn main() {
    eprintln!("gateway: not built yet");
    std::process::exit(2);
}
