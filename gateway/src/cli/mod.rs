//! The `gateway` command line: one module per subcommand.

pub mod access;
pub mod token;
