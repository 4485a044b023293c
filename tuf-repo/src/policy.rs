//! The release rules, in one place, applied both by the manufacturer's
//! `release` and by the OTA server when it takes an upload.
//!
//! - Scope: a manufacturer's role may only list targets under
//!   `<manufacturer>/*` ([`check_scope`]).
//! - Monotonic versions: a new image must have a higher semver version than
//!   every published image for any of the same hardware ids, and a published
//!   target name may not be re-pointed at other bytes ([`check_new_target`]).

use tough::schema::{Target, Targets};

use crate::error::{Error, Result};
use crate::firmware::FirmwareMeta;
use crate::target_name::{ManufacturerName, TargetPath};

/// Parses a raw target name from a role and checks it is in `role`'s scope.
pub fn check_scope(role: &ManufacturerName, raw: &str) -> Result<TargetPath> {
    let refused = || Error::OutsideDelegation {
        role: role.to_string(),
        target: raw.to_owned(),
        pattern: role.path_pattern(),
    };
    // A name that is not even a well-formed path is reported as such; a
    // well-formed one under another manufacturer is out of scope.
    let path = TargetPath::new(raw)?;
    if !path.is_in_scope_of(role) {
        return Err(refused());
    }
    Ok(path)
}

/// Checks that adding `name` -> `target` (with firmware facts `fw`) to a role
/// whose published metadata is `published` respects the version rules.
pub fn check_new_target(
    published: Option<&Targets>,
    name: &TargetPath,
    target: &Target,
    fw: &FirmwareMeta,
) -> Result<()> {
    let Some(published) = published else {
        return Ok(());
    };
    for (pname, ptarget) in &published.targets {
        if pname.raw() == name.to_string() {
            if ptarget.hashes.sha256 == target.hashes.sha256 && ptarget.length == target.length {
                // The same image again: not new, handled by the caller.
                continue;
            }
            let published_version = FirmwareMeta::from_custom(pname.raw(), &ptarget.custom)
                .map_or_else(|_| "unknown".to_owned(), |m| m.version.to_string());
            return Err(Error::VersionNotNewer {
                target: name.to_string(),
                published: published_version,
                offered: format!("{} (a different image under a published name)", fw.version),
            });
        }
        let Ok(pfw) = FirmwareMeta::from_custom(pname.raw(), &ptarget.custom) else {
            continue;
        };
        if pfw.shares_hardware(fw) && fw.version <= pfw.version {
            return Err(Error::VersionNotNewer {
                target: name.to_string(),
                published: format!("{} ({})", pfw.version, pname.raw()),
                offered: fw.version.to_string(),
            });
        }
    }
    Ok(())
}
