//! The ward console in a real browser: a whole gateway runs in-process
//! (edge with mutual TLS, admin HTTPS listener serving the console), three
//! simulated devices stream vitals, and headless Chromium, driven over
//! WebDriver (plain W3C JSON to `chromedriver`), signs in with a viewer and
//! then with a TOTP-bound operator token, checks what each sees, and
//! quarantines a device from the page; the test then checks the gateway's
//! registry and audit log. Screenshots go to `target/console-screenshots/`.
//!
//! Skips (with a message) only when `chromium` or `chromedriver` is not
//! installed; `scripts/setup-test-deps` installs both.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use gateway::access::totp::TotpSecret;
use gateway::admin::Role;
use gateway::registry::DeviceState;
use serde_json::{json, Value};
use support::admin::{never_expiring, token_store};
use wardgate_protocol::{Reading, VitalKind};
use wardgate_tests::port::free_port;
use wardgate_tests::process::{read_log, ChildGuard};
use wardgate_tests::wait::wait_for_async;

/// Bound against a hung browser, not a timing assertion.
const UI_WAIT: Duration = Duration::from_secs(20);

fn find(program: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A W3C WebDriver session on chromedriver, over plain JSON.
struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: ChildGuard,
}

/// The W3C web element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path, dir: &Path) -> Self {
        let port = free_port().unwrap();
        let log = dir.join("chromedriver.log");
        let mut driver = ChildGuard::spawn_logged(
            Command::new(chromedriver).arg(format!("--port={port}")),
            &log,
        )
        .unwrap();
        driver
            .wait_for_port(port, Duration::from_secs(20), "chromedriver", || {
                read_log(&log)
            })
            .unwrap();
        let http = reqwest::Client::new();
        let profile = dir.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The gateway's certificate is from the test's own CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1100",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let r: Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Self {
            http,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        if r["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", r["value"]);
        }
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Run `script` (a function body) in the page and return its value.
    async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Poll `script` until it returns something truthy; returns that.
    async fn until(&self, what: &str, script: &str) -> Value {
        let v = wait_for_async(UI_WAIT, || async {
            let v = self.eval(script).await;
            let ok = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            ok.then_some(v)
        })
        .await;
        match v {
            Some(v) => v,
            None => {
                let body = self.eval("return document.body.innerText").await;
                panic!(
                    "page never showed {what}; it shows:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.innerText : null",
            json!(css)
        );
        self.eval(&script).await.as_str().unwrap_or("").to_owned()
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("target")
            .join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

fn readings(all: Vec<Reading>, kinds: &[VitalKind]) -> Vec<Reading> {
    all.into_iter()
        .filter(|r| kinds.contains(&r.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_sees_the_ward_and_an_operator_quarantines_a_device_from_the_page() {
    let (Some(chromium), Some(chromedriver)) = (
        find("chromium", "WARDGATE_CHROMIUM"),
        find("chromedriver", "WARDGATE_CHROMEDRIVER"),
    ) else {
        eprintln!(
            "SKIPPED console browser test: chromium and chromedriver are not installed \
             (run scripts/setup-test-deps, or set WARDGATE_CHROMIUM / WARDGATE_CHROMEDRIVER)"
        );
        return;
    };

    let gw = support::TestGateway::start().await;
    let admin = gw.handle().admin_addr.expect("admin API on by default");
    let ctx = gw.handle().context.clone();

    // Two monitors and a pump stream a few readings each and stay connected.
    let monitor = [
        VitalKind::HeartRate,
        VitalKind::Spo2,
        VitalKind::RespiratoryRate,
    ];
    let mut devices = Vec::new();
    for (id, kinds) in [
        ("mon-01", &monitor[..]),
        ("mon-02", &monitor[..]),
        ("pump-01", &[VitalKind::InfusionRate][..]),
    ] {
        let mut d = gw.device(id).await;
        let mut g = device_sim::VitalsGenerator::new(7);
        for _ in 0..5 {
            d.publish_telemetry(readings(g.next_readings(), kinds))
                .await
                .unwrap();
            d.wait_puback(Duration::from_secs(10)).await.unwrap();
        }
        devices.push(d);
    }

    let store = token_store(&ctx.db_path);
    let viewer = never_expiring(&store, "ward-screen", Role::Viewer, false);
    let operator = never_expiring(&store, "charge-nurse", Role::Operator, true);
    let secret: TotpSecret = operator.totp.clone().expect("operator bound to TOTP");

    let dir = tempfile::tempdir().unwrap();
    let browser = Browser::start(&chromium, &chromedriver, dir.path()).await;
    let page = format!("https://127.0.0.1:{}/console", admin.port());

    // A wrong token is refused in plain words.
    browser.goto(&page).await;
    browser.type_into("#token", "wgt_nonsense").await;
    browser.click("#sign-in").await;
    browser
        .until(
            "the refusal",
            "return !document.getElementById('login-message').hidden",
        )
        .await;
    let refusal = browser.text("#login-message").await;
    assert!(refusal.contains("Token not accepted"), "{refusal}");
    assert!(refusal.contains("What to do"), "{refusal}");

    // The viewer sees every device, its readings, the audit trail, and no buttons.
    browser
        .eval("document.getElementById('token').value = ''; return true")
        .await;
    browser.type_into("#token", viewer.token.expose()).await;
    browser.click("#sign-in").await;
    browser
        .until(
            "three devices with readings",
            "return [...document.querySelectorAll('#device-table tbody tr')] \
               .filter(r => r.cells[5].innerText.includes('ago')).length === 3",
        )
        .await;
    assert!(browser
        .text("#whoami")
        .await
        .contains("ward-screen (viewer)"));
    let row = browser.text("tr[data-device-id='mon-01']").await;
    assert!(row.contains("Patient monitor"), "{row}");
    assert!(row.contains("Active"), "{row}");
    assert!(row.contains("Connected"), "{row}");
    assert!(row.contains("1.0.0"), "{row}");
    assert!(row.contains("Heart rate"), "{row}");
    assert!(browser
        .text("tr[data-device-id='pump-01']")
        .await
        .contains("Infusion pump"));
    let charts = browser
        .eval("return document.querySelectorAll('#device-table svg.chart polyline').length")
        .await;
    assert!(charts.as_u64().unwrap() >= 7, "a line per vital: {charts}");
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('button[data-action]').length")
            .await,
        json!(0),
        "a viewer is shown no action buttons"
    );
    browser
        .until(
            "the chain check",
            "return document.getElementById('audit-verify').dataset.intact === 'true'",
        )
        .await;
    assert!(browser.text("#audit").await.contains("edge.connect"));
    assert!(browser
        .text("#uplink")
        .await
        .contains("No hospital link configured"));
    assert!(browser.text("#campaign").await.len() > 10);
    assert!(browser.text("#alerts").await.len() > 10);
    assert!(browser
        .text("#access")
        .await
        .contains("administrators only"));
    let token_in_storage = browser
        .eval("return sessionStorage.getItem('wardgate.console.token')")
        .await;
    assert_eq!(token_in_storage, json!(viewer.token.expose()));
    let url = browser.eval("return location.href").await;
    assert!(
        !url.as_str().unwrap().contains("wgt_"),
        "no token in the URL: {url}"
    );
    let shot = browser.screenshot("viewer.png").await;
    eprintln!("screenshot: {}", shot.display());

    // The operator sees quarantine buttons (not revoke: that is admin's).
    browser.click("#sign-out").await;
    browser
        .until(
            "the sign-in form",
            "return !document.getElementById('login').hidden",
        )
        .await;
    browser.type_into("#token", operator.token.expose()).await;
    browser.click("#sign-in").await;
    browser
        .until(
            "the quarantine button",
            "return document.querySelector(\"button[data-action='quarantine'][data-device='mon-01']\")",
        )
        .await;
    assert!(browser
        .text("#whoami")
        .await
        .contains("charge-nurse (operator)"));
    assert_eq!(
        browser
            .eval("return document.querySelectorAll(\"button[data-action='revoke']\").length")
            .await,
        json!(0)
    );
    browser
        .click("button[data-action='quarantine'][data-device='mon-01']")
        .await;
    browser
        .until(
            "the TOTP prompt",
            "return !document.getElementById('confirm').hidden && \
                    !document.getElementById('confirm-totp-row').hidden",
        )
        .await;
    assert!(browser
        .text("#confirm")
        .await
        .contains("readings stop leaving the ward"));
    browser
        .type_into(
            "#confirm-reason",
            "alarm pattern looks wrong, checked by biomed",
        )
        .await;
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    browser
        .type_into("#confirm-totp", &secret.code_at(now))
        .await;
    browser.click("#confirm-go").await;
    browser
        .until(
            "mon-01 quarantined",
            "return document.querySelector(\"tr[data-device-id='mon-01']\").dataset.state === 'quarantined'",
        )
        .await;
    assert!(browser
        .text("#notice")
        .await
        .contains("mon-01 is now quarantined"));
    browser
        .until(
            "the release button",
            "return document.querySelector(\"button[data-action='reactivate'][data-device='mon-01']\")",
        )
        .await;
    let shot = browser.screenshot("operator-quarantined.png").await;
    eprintln!("screenshot: {}", shot.display());
    browser.close().await;

    // The gateway's own records agree with the page.
    let record = ctx
        .registry
        .get(&wardgate_protocol::DeviceId::parse("mon-01").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(record.state, DeviceState::Quarantined);
    let rows = gw.audit("mon-01", Some("registry.quarantine"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].actor, format!("admin:{}", operator.record.id));
    assert_eq!(
        rows[0].detail_json()["reason"],
        "alarm pattern looks wrong, checked by biomed"
    );
    for other in ["mon-02", "pump-01"] {
        let r = ctx
            .registry
            .get(&wardgate_protocol::DeviceId::parse(other).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(r.state, DeviceState::Active, "{other} untouched");
    }
    assert!(ctx.audit.verify().unwrap().is_intact());
    drop(devices);
}
