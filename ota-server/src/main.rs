//! `ota-server`: wiring only; see the `ota_server` library.

fn main() {
    eprintln!("ota-server: not built yet");
    std::process::exit(2);
}
