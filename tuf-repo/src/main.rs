//! `tuf-repo`: command-line front end of the `tuf_repo` library.

fn main() {
    eprintln!("tuf-repo: not built yet");
    std::process::exit(2);
}
