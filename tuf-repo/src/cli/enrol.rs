//! `tuf-repo enrol`: the manufacturer signs its empty first role version for
//! the operator (proof of key possession; keeps tough clients walking all
//! delegations).

use std::path::PathBuf;

use super::{say, Context, ManufacturerSigning};
use crate::error::Result;
use crate::target_name::ManufacturerName;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manufacturer's role name.
    #[arg(long)]
    pub manufacturer: ManufacturerName,
    /// The manufacturer's keys and the expiry of the empty role.
    #[command(flatten)]
    pub signing: ManufacturerSigning,
    /// The threshold the operator will set.
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// Enrolment file to write (give it to the operator with the public keys).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `enrol`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let keys = a.signing.load_keys(ctx)?;
    let bytes =
        crate::repo::delegate::enrol(&a.manufacturer, &keys, a.threshold, a.signing.expires)
            .await?;
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
