//! A headless Chromium for the dashboard's browser tests, driven through Debian's
//! `chromedriver` over the W3C WebDriver protocol: JSON over HTTP on loopback, spoken with the
//! `ureq` client the other tests use.
//!
//! Why no WebDriver or DevTools crate: `fantoccini` depends on Mozilla's `webdriver` crate
//! (MPL-2.0) and `headless_chrome`'s build script on `webpki-roots` (CDLA-Permissive-2.0),
//! neither allowed by `deny.toml`; `chromiumoxide` would switch on tokio's `process` and `fs`
//! features, rebuilding the whole engine for the tests, and brings 111k lines of generated
//! protocol code to compile on a 2-core machine. The tests need eight commands.
//!
//! Where Chromium or chromedriver is missing, [`Browser::start_or_skip`] prints
//! `SKIP: … because …` and gives `None`, except under CI (`CI` set), where that is a failure:
//! `.ci/run` installs both.

use std::{
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{json, Value};

use super::TestResult;

/// How long the page may take to show what a step expects.
pub const STEP: Duration = Duration::from_secs(30);
/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A Chromium session with a fresh profile; the session and the driver end on drop.
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or prints `SKIP: <test> because …` and
    /// gives `None` when they are not installed (an error under CI, which must never skip).
    pub fn start_or_skip(test: &str) -> TestResult<Option<Self>> {
        let (Some(chromium), Some(driver)) = (
            find(
                "CHROMIUM",
                &["chromium", "chromium-browser", "google-chrome"],
            ),
            find("CHROMEDRIVER", &["chromedriver"]),
        ) else {
            let reason = "chromium or chromedriver is not installed \
                          (apt-get install chromium chromium-driver)";
            if std::env::var_os("CI").is_some() {
                return Err(format!("{test}: {reason}").into());
            }
            // Straight to stderr: the harness captures `eprintln!` of a passing test.
            let _ = writeln!(std::io::stderr(), "SKIP: {test} because {reason}");
            return Ok(None);
        };
        Self::start(&chromium, &driver).map(Some)
    }

    fn start(chromium: &Path, driver: &Path) -> TestResult<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir()?;
        let mut browser = Self {
            driver,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let start = Instant::now();
        while browser.agent.get(format!("{base}/status")).call().is_err() {
            if start.elapsed() > STEP {
                return Err("chromedriver never answered".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = browser._profile.path().display().to_string();
        // This machine has no outside network: nothing that would reach for it.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1100",
            &format!("--user-data-dir={profile}"),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let created = browser.call("POST", &format!("{base}/session"), Some(caps))?;
        let id = created["sessionId"].as_str().ok_or("no session id")?;
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    /// One WebDriver command; its `value`, or an error with the driver's message.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> TestResult<Value> {
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(url).call()?,
            ("DELETE", _) => self.agent.delete(url).call()?,
            (_, body) => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(&serde_json::to_vec(&body.unwrap_or_else(|| json!({})))?[..])?,
        };
        let status = resp.status().as_u16();
        let answer: Value = serde_json::from_str(&resp.into_body().read_to_string()?)?;
        if status != 200 {
            return Err(format!("WebDriver {method} {url}: {status} {}", answer["value"]).into());
        }
        Ok(answer["value"].clone())
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> TestResult<Value> {
        self.call(method, &format!("{}{path}", self.session), body)
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> TestResult {
        self.command("POST", "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    /// The value of a JavaScript expression in the page (awaited when it is a promise), with
    /// `$` for `document.getElementById`.
    pub fn eval(&self, expression: &str) -> TestResult<Value> {
        let script = format!(
            "return (async () => {{ const $ = (id) => document.getElementById(id); \
             return ({expression}); }})();"
        );
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// As [`eval`](Self::eval), as text.
    pub fn text(&self, expression: &str) -> TestResult<String> {
        Ok(match self.eval(expression)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// Waits until `condition` (an expression) is true in the page.
    pub fn wait(&self, what: &str, condition: &str) -> TestResult {
        let start = Instant::now();
        while start.elapsed() < STEP {
            if self.eval(condition)? == Value::Bool(true) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let page = self.text("document.body.innerText")?;
        Err(format!("the page never showed {what} ({condition}); it shows:\n{page}").into())
    }

    fn element(&self, css: &str) -> TestResult<String> {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        let id = found[ELEMENT].as_str();
        Ok(id
            .ok_or_else(|| format!("{css}: no element id in {found}"))?
            .to_owned())
    }

    /// Clicks the element `css` selects, as a user would.
    pub fn click(&self, css: &str) -> TestResult {
        let id = self.element(css)?;
        self.command("POST", &format!("/element/{id}/click"), None)?;
        Ok(())
    }

    /// Types `text` into the element `css` selects; for a file input, `text` is a file's path.
    pub fn type_into(&self, css: &str, text: &str) -> TestResult {
        let id = self.element(css)?;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// Makes the page see `prefers-color-scheme: scheme` ("light" or "dark"), as a system set
    /// to that scheme would (Chrome DevTools' media emulation, through chromedriver).
    pub fn prefer_color_scheme(&self, scheme: &str) -> TestResult {
        let features = [json!({ "name": "prefers-color-scheme", "value": scheme })];
        self.command(
            "POST",
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": features },
            })),
        )?;
        Ok(())
    }

    /// Saves a screenshot of the window as `target/screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> TestResult<PathBuf> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .ok_or("no target directory")?
            .join("screenshots");
        std::fs::create_dir_all(&dir)?;
        let png = self.command("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().ok_or("no screenshot")?)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(&self.session).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `$<var>`, or the first of `names` on the `PATH`.
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(path.into());
    }
    let dirs = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&dirs).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}
