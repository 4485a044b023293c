//! Debian's nginx as the baseline: a child process with a generated config
//! in a temp dir, on a free 127.0.0.1 port, TLS with the ward's server
//! certificate and `ssl_verify_client on` against the ward device CA, so
//! it does the same mutual TLS as the gateway's image server. Installed by
//! `scripts/setup-bench-deps`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use wardgate_tests::pki::PkiDir;
use wardgate_tests::process::{read_log, ChildGuard};

/// A running nginx; stopped (master and workers) when dropped.
pub struct Nginx {
    child: ChildGuard,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn binary() -> anyhow::Result<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("nginx is not installed; run scripts/setup-bench-deps (as root) first")
}

impl Nginx {
    /// Serve `image` as `/images/<sha256>` with `workers` worker processes.
    pub fn start(pki: &PkiDir, image: &[u8], sha256: &str, workers: usize) -> anyhow::Result<Self> {
        let nginx = binary()?;
        let dir = tempfile::tempdir()?;
        // Workers run as `nobody` when started as root: they must be able
        // to read the image (certificates are read by the master).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let images = dir.path().join("images");
        std::fs::create_dir(&images)?;
        std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o755))?;
        let file = images.join(sha256);
        std::fs::write(&file, image)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        for t in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir(dir.path().join(t))?;
        }
        let port = wardgate_tests::port::free_port()?;
        let conf = config(dir.path(), pki, port, workers);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log = dir.path().join("nginx.log");
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"));
        let mut child = ChildGuard::spawn_logged(&mut cmd, &log)?;
        let error_log = dir.path().join("error.log");
        child.wait_for_port(port, Duration::from_secs(10), "nginx", || {
            format!("{}{}", read_log(&log), read_log(&error_log))
        })?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// The URL of the image.
    pub fn url(&self, sha256: &str) -> String {
        format!("https://127.0.0.1:{}/images/{sha256}", self.port)
    }

    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILL would orphan them).
        let _ = self.child.terminate(Duration::from_secs(5));
    }
}

fn config(dir: &Path, pki: &PkiDir, port: u16, workers: usize) -> String {
    let d = dir.display();
    format!(
        r"daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        location /images/ {{
            root {d};
        }}
    }}
}}
",
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.ca_path.display(),
    )
}
