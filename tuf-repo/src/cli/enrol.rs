//! `tuf-repo enrol`: the manufacturer signs its empty first role version for
//! the operator (proof of key possession; keeps tough clients walking all
//! delegations).

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, say, Context};
use crate::error::Result;
use crate::target_name::ManufacturerName;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manufacturer's role name.
    #[arg(long)]
    pub manufacturer: ManufacturerName,
    /// The manufacturer's private key files (repeat).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// The threshold the operator will set.
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// Expiry of the empty role.
    #[arg(long, default_value = "182d", value_parser = duration_arg)]
    pub expires: Duration,
    /// Enrolment file to write (give it to the operator with the public keys).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `enrol`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let keys = ctx.load_keys(&a.keys)?;
    let bytes =
        crate::repo::delegate::enrol(&a.manufacturer, &keys, a.threshold, a.expires).await?;
    crate::repo::layout::write_atomic(&a.out, &bytes)?;
    say(
        "enrol",
        format!(
            "'{}' empty role v1 signed; give {} to the operator",
            a.manufacturer,
            a.out.display()
        ),
    );
    Ok(())
}
