//! `device-sim`: wiring only; see the `device_sim` library.

fn main() {
    eprintln!("device-sim: not built yet");
    std::process::exit(2);
}
