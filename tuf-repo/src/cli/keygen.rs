//! `tuf-repo keygen`: a new Ed25519 key pair.

use std::path::PathBuf;

use super::Context;
use crate::error::{Error, Result};
use crate::keys::{self, KdfParams, SigningKey};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Private key file to create (mode 0600; must not exist). The public key
    /// goes next to it as `<name>.pub.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Encrypt the private key under the passphrase in the passphrase
    /// environment variable (Argon2id + ChaCha20-Poly1305).
    #[arg(long)]
    pub encrypt: bool,
}

/// Runs `keygen`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let pass = if args.encrypt {
        Some(ctx.passphrase()?.ok_or_else(|| Error::InvalidArgument {
            what: "passphrase",
            reason: format!("--encrypt needs the passphrase in ${}", ctx.passphrase_env),
        })?)
    } else {
        None
    };
    let key = SigningKey::generate();
    key.save(&args.out, pass.as_ref(), KdfParams::default())?;
    let pub_path = keys::public_key_path(&args.out);
    keys::save_public_key(&pub_path, &key.public_key())?;
    let public = serde_json::to_string(&key.public_key()).map_err(|e| Error::Serialize {
        what: "public key".into(),
        reason: e.to_string(),
    })?;
    println!("key id:      {}", key.key_id());
    println!("public key:  {public}");
    println!(
        "private key: {} ({})",
        args.out.display(),
        if pass.is_some() {
            "encrypted"
        } else {
            "plain, mode 0600"
        }
    );
    println!("public file: {}", pub_path.display());
    Ok(())
}
