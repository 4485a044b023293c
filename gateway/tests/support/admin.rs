//! The admin API server started in-process over real TLS on 127.0.0.1:0
//! with a manual clock, its PKI from the harness, and a `reqwest` client
//! that trusts only the test CA.
//!
//! The server and its temp dir go away when the [`AdminHarness`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gateway::admin::totp::TotpSecret;
use gateway::admin::{
    load_tls, AdminConfig, AdminServer, AdminState, IssuedToken, ManualClock, NewToken, Role,
    SystemClock, TokenName, TokenStore,
};
use gateway::audit::{AuditLog, AuditRecord};
use gateway::metrics::Metrics;
use gateway::registry::Registry;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::DeviceId;
use wardgate_tests::pki::PkiDir;
use wardgate_tests::wait::wait_for_async;

/// Start of the manual clock used by every harness.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
}

/// The token store in a running gateway's database `db_path`, on the real
/// clock with the default TOTP skew: a second handle beside the gateway's
/// own, as `gateway access` opens it, for tests that issue their callers.
pub fn token_store(db_path: &Path) -> TokenStore {
    TokenStore::open(db_path, Arc::new(SystemClock), 1).expect("token store")
}

/// A token named `name` with `role` that never expires, bound to a TOTP
/// secret when `totp`, issued straight through `store`: how a test gets
/// its callers without going through the API it is testing.
pub fn never_expiring(store: &TokenStore, name: &str, role: Role, totp: bool) -> IssuedToken {
    store
        .create(NewToken {
            name: TokenName::parse(name).expect("token name"),
            role,
            lifetime: None,
            bind_totp: totp,
        })
        .expect("issue token")
}

/// A response: status and JSON body (`Value::Null` if not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The stable error code of a JSON error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub struct AdminHarness {
    pub dir: tempfile::TempDir,
    pub db_path: PathBuf,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AdminState>,
    pub tokens: Arc<TokenStore>,
    pub registry: Registry,
    pub audit: AuditLog,
    pub metrics: Metrics,
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
    pub client: reqwest::Client,
    cancel: CancellationToken,
    server: Option<AdminServer>,
}

impl AdminHarness {
    pub async fn start() -> Self {
        Self::start_with(AdminConfig::default()).await
    }

    pub async fn start_with(mut config: AdminConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::generate(dir.path(), "wardgate admin test CA").expect("test PKI");
        config.bind = "127.0.0.1:0".parse().expect("addr");
        config.tls_cert = Some(pki.server_cert.clone());
        config.tls_key = Some(pki.server_key.clone());
        config.validate().expect("valid admin config");
        let db_path = dir.path().join("gateway.db");
        let clock = Arc::new(ManualClock::new(epoch()));
        let tokens = Arc::new(
            TokenStore::open(&db_path, clock.clone(), config.totp_skew_steps).expect("token store"),
        );
        let registry = Registry::open(&db_path).expect("registry");
        let audit = AuditLog::open(&db_path).expect("audit");
        let metrics = Metrics::new();
        let tls = load_tls(&pki.server_cert, &pki.server_key).expect("tls");
        let state = Arc::new(AdminState::new(
            config,
            tokens.clone(),
            registry.clone(),
            audit.clone(),
            metrics.clone(),
        ));
        let cancel = CancellationToken::new();
        let server = AdminServer::start(state.clone(), tls, cancel.clone()).expect("admin server");
        let addr = server.local_addr();
        let base = format!("https://{addr}");
        let client = wardgate_tests::https::client(&pki.ca.cert_pem).expect("client");
        let this = Self {
            dir,
            db_path,
            clock,
            state,
            tokens,
            registry,
            audit,
            metrics,
            base,
            addr,
            ca_pem: pki.ca.cert_pem.clone(),
            client,
            cancel,
            server: Some(server),
        };
        this.wait_ready().await;
        this
    }

    /// Poll `/healthz` until the server answers (no fixed sleeps).
    async fn wait_ready(&self) {
        let url = format!("{}/healthz", self.base);
        let up = wait_for_async(Duration::from_secs(10), || async {
            let reply = self.client.get(&url).send().await;
            reply.is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        assert!(up, "admin server did not become ready at {url}");
    }

    /// Issue a token straight through the store; returns (bearer, TOTP secret).
    pub fn issue(&self, name: &str, role: Role, totp: bool) -> (String, Option<TotpSecret>) {
        let issued = never_expiring(&self.tokens, name, role, totp);
        (issued.token.expose().to_owned(), issued.totp)
    }

    /// The TOTP code valid now on the harness clock.
    pub fn code(&self, secret: &TotpSecret) -> String {
        secret.code_at(u64::try_from(self.clock.now_secs()).expect("positive"))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        totp: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = totp {
            req = req.header("X-Wardgate-TOTP", c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, text }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        totp: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call(Method::POST, path, token, totp, body).await
    }

    /// Enrol a device directly in the registry.
    pub fn enroll(&self, id: &str) -> DeviceId {
        let id = DeviceId::parse(id).expect("device id");
        self.registry
            .enroll(&super::new_device(&id, "Infusomat", "pump-hw-1"), "test")
            .expect("enroll");
        id
    }

    /// Audit rows with this action, oldest first.
    pub fn audit_rows(&self, action: &str) -> Vec<AuditRecord> {
        self.audit
            .all()
            .expect("audit rows")
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }
}

impl Drop for AdminHarness {
    fn drop(&mut self) {
        self.cancel.cancel();
        drop(self.server.take());
    }
}

/// Seconds of the manual clock.
pub trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for ManualClock {
    fn now_secs(&self) -> i64 {
        use gateway::admin::Clock;
        self.now().timestamp()
    }
}
