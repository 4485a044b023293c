//! `ota-server`: wiring only; see the `ota_server` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ota-server", version, about = "Wardgate central OTA server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the TUF repository and the API until SIGINT/SIGTERM.
    Serve {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the repository from `tuf-repo` output (metadata/ and targets/).
    Init {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Directory written by `tuf-repo`.
        #[arg(long)]
        from: PathBuf,
    },
    /// Export the current repository as static files for a CDN or mirror.
    Export {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a new API token and the SHA-256 to put in the configuration.
    Token,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve { config } => ota_server::cli::load_config(&config).and_then(|cfg| {
            ota_server::cli::init_tracing(&cfg.log_format);
            let rt = tokio::runtime::Runtime::new().map_err(|source| ota_server::Error::Io {
                action: "starting the tokio runtime".into(),
                source,
            })?;
            rt.block_on(ota_server::cli::serve::run(cfg))
        }),
        Cmd::Init { config, from } => ota_server::cli::load_config(&config).and_then(|cfg| {
            let rt = tokio::runtime::Runtime::new().map_err(|source| ota_server::Error::Io {
                action: "starting the tokio runtime".into(),
                source,
            })?;
            let n = rt.block_on(ota_server::cli::init::run(&cfg, &from))?;
            println!(
                "repository created in {} with {n} published target(s)",
                cfg.data_dir.display()
            );
            Ok(())
        }),
        Cmd::Export { config, out } => ota_server::cli::load_config(&config).and_then(|cfg| {
            let (m, t) = ota_server::cli::export::run(&cfg, &out)?;
            println!(
                "exported {m} metadata file(s) and {t} target file(s) to {}",
                out.display()
            );
            Ok(())
        }),
        Cmd::Token => {
            let (token, hash) = ota_server::cli::token::run();
            println!("token (give to the holder, store nowhere else): {token}");
            println!("token_sha256 (put in the config):              {hash}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ota-server: {e}");
            ExitCode::from(2)
        }
    }
}
