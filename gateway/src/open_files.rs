//! The process's open-file limit, raised at start-up.
//!
//! Every device session holds one file, its TLS socket (the broker
//! connection behind it is an in-process pipe, [`crate::broker`]), so a
//! ward of 10,000 devices needs somewhat more than 10,000 open files. Most
//! systems start a process with a soft limit of 1,024 and a far higher hard
//! limit; the soft limit is raised to the hard one, as any process may, and
//! the log says so. When even the hard limit is below what the configured
//! listeners may hold, the gateway says which key and which system setting
//! to change, and runs on: it refuses connections at the limit rather than
//! failing (the edge's accept loop backs off when it runs out of files).

use crate::config::Config;

/// Files the gateway holds besides its listeners' connections: the
/// databases, logs, listening sockets, the uplink and the runtime.
const BASE_FILES: u64 = 256;

/// What the configuration may hold open at once.
#[must_use]
pub fn needed(config: &Config) -> u64 {
    let mut n = BASE_FILES + config.edge.max_connections as u64;
    if config.admin.enabled {
        n += config.admin.max_concurrent_requests as u64;
    }
    if let Some(ota) = &config.ota {
        n += ota.rollout.image_max_connections as u64;
    }
    n
}

/// The limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now (the hard limit, unless raising failed).
    pub now: u64,
}

/// Raise the soft open-file limit to the hard limit and log the outcome,
/// with a warning naming what to change when `needed` files do not fit.
pub fn raise(needed: u64) -> Option<Raised> {
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _hard)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; leaving it as it is");
            return None;
        }
    };
    let now = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(error = %e, limit = before, "cannot raise the open-file limit; leaving it as it is");
            before
        }
    };
    if now > before {
        tracing::info!(
            from = before,
            to = now,
            needed,
            "open-file limit raised to the hard limit"
        );
    } else {
        tracing::info!(limit = now, needed, "open-file limit");
    }
    if now < needed {
        tracing::warn!(
            limit = now,
            needed,
            "the open-file limit is below what edge.max_connections (one file per device session), the admin API and the image server may hold: connections beyond it are refused; raise LimitNOFILE in the service unit (deploy/systemd) or `ulimit -Hn`, or lower edge.max_connections"
        );
    }
    Some(Raised { before, now })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        // Lower the soft limit first (allowed), as a shell's default would.
        let low = hard.min(512);
        rlimit::setrlimit(rlimit::Resource::NOFILE, low, hard).unwrap();
        let raised = raise(1_000).unwrap();
        assert_eq!(raised.before, low);
        assert_eq!(raised.now, hard);
        assert_eq!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0, hard);
    }

    #[test]
    fn what_is_needed_grows_with_the_listeners() {
        let mut c = Config::default();
        let base = needed(&c);
        c.edge.max_connections += 10_000;
        assert_eq!(needed(&c), base + 10_000);
        c.admin.enabled = false;
        assert_eq!(
            needed(&c),
            base + 10_000 - c.admin.max_concurrent_requests as u64
        );
    }
}
