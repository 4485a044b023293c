//! The `gateway` command line: one module per subcommand.
