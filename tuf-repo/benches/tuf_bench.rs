//! Benchmarks for tuf-repo (filled in below).
fn main() {}
