//! CPU time of the servers under test, read from `/proc` (Linux): the
//! gateway's runtime threads by name, nginx's master and workers by process
//! id. Used to print each server's CPU per round beside its throughput.

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, 100 if
/// that cannot be run).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// `(comm, ppid, utime + stime)` of a `/proc/.../stat` file.
fn stat(path: &Path) -> Option<(String, u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // comm is in parentheses and may hold spaces; fields follow the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, ppid, utime + stime))
}

/// What to add up.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Threads of this process whose name starts with the prefix (tokio
    /// names worker and blocking threads after the runtime).
    Threads(String),
    /// A process and its direct children (nginx master and workers).
    ProcessTree(u32),
}

impl Probe {
    /// CPU time used so far.
    pub fn cpu(&self) -> Duration {
        let ticks = match self {
            Self::Threads(prefix) => std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| stat(&e.path().join("stat")))
                .filter(|(comm, _, _)| comm.starts_with(prefix.as_str()))
                .map(|(_, _, t)| t)
                .sum::<u64>(),
            Self::ProcessTree(pid) => {
                let own = stat(&Path::new("/proc").join(pid.to_string()).join("stat"))
                    .map_or(0, |(_, _, t)| t);
                let children: u64 = std::fs::read_dir("/proc")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .filter_map(|e| stat(&e.path().join("stat")))
                    .filter(|(_, ppid, _)| ppid == pid)
                    .map(|(_, _, t)| t)
                    .sum();
                own + children
            }
        };
        Duration::from_secs_f64(ticks as f64 / clock_ticks_cached())
    }
}

fn clock_ticks_cached() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(clock_ticks)
}
