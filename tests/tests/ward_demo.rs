//! The README's first command, short mode: `ward-demo` runs the whole ward
//! (OTA server, Mosquitto, gateway, 50 devices) to its summary, and the
//! summary's figures are the story the demo promises: 19 of 20 pumps on
//! the new firmware, one rollback, one deferral for therapy, the flooding
//! monitor quarantined and nobody else, readings at the hospital broker,
//! and an intact audit chain. The demo reads each figure from the running
//! parts (admin API, audit export, broker subscription), so a part that
//! did not play its role fails here.

use std::process::Command;
use std::time::Duration;

use wardgate_tests::bins::Bins;
use wardgate_tests::process::ChildGuard;
use wardgate_tests::wait::wait_blocking;

fn figure<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map_or_else(|| panic!("no {label:?} in the summary:\n{out}"), str::trim)
}

#[test]
fn the_demo_tells_its_whole_story_in_short_mode() {
    let bins = Bins::for_tests();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut demo = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_ward-demo"))
            .arg("--bin-dir")
            .arg(&bins.dir)
            .arg("--dir")
            .arg(dir.path().join("ward"))
            .args(["--limit", "4m"])
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    )
    .unwrap();
    let status = wait_blocking(Duration::from_secs(330), || {
        demo.0.try_wait().ok().flatten()
    });
    let text = std::fs::read_to_string(&out_path).unwrap();
    let status = status.unwrap_or_else(|| panic!("the demo did not end in time:\n{text}"));
    assert!(status.success(), "the demo failed ({status}):\n{text}");

    assert_eq!(
        figure(&text, "devices updated:"),
        "19 of 20 to 2.0.0",
        "{text}"
    );
    assert_eq!(figure(&text, "rollbacks:"), "1", "{text}");
    assert_eq!(figure(&text, "deferrals for therapy:"), "1", "{text}");
    assert_eq!(figure(&text, "quarantined:"), "monitor-07", "{text}");
    assert!(
        figure(&text, "alerts:").parse::<u32>().unwrap() >= 1,
        "{text}"
    );
    let upstream: u64 = figure(&text, "messages delivered upstream:")
        .parse()
        .unwrap_or_else(|_| panic!("no broker in the demo (is Mosquitto installed?):\n{text}"));
    // 30 devices for at least half a minute, and 20 pumps.
    assert!(upstream > 500, "{text}");
    assert!(
        figure(&text, "audit chain verified:").starts_with("yes (audit log intact"),
        "{text}"
    );
    // The work folder stays (--dir); no process runs in it any more (the
    // demo starts every process there) or names it (Mosquitto's config).
    let ward = std::fs::canonicalize(dir.path().join("ward")).unwrap();
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cwd.is_some_and(|c| c.starts_with(&ward)) || cmdline.contains(&*ward.to_string_lossy()) {
            left.push(cmdline);
        }
    }
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}
