//! A real browser for the dashboard tests: headless Chromium driven by
//! ChromeDriver over the W3C WebDriver protocol (plain JSON over HTTP on
//! loopback, spoken here with reqwest, so no WebDriver crate is needed).
//!
//! `chromedriver` (or `HERALD_CHROMEDRIVER`) must be installed; the test
//! fails, naming the package, when it is not. `scripts/test` installs
//! Debian's `chromium` and `chromium-driver` when they are missing.
//! With `HERALD_SCREENSHOTS=dir`, [`Browser::screenshot`] saves PNGs there.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::PATIENCE;

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time: two Chromiums on a two-core machine make each
/// other slow enough to be flaky.
fn one_at_a_time() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

pub(crate) struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:port/session/{id}`
    session: String,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Start ChromeDriver and a headless Chromium window `width` pixels wide.
    pub(crate) async fn start(width: u32) -> Browser {
        let turn = one_at_a_time().lock().await;
        let driver_bin = std::env::var("HERALD_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the dashboard tests need ChromeDriver and Chromium ({driver_bin}: {e}); \
                     install Debian's chromium and chromium-driver (scripts/test does)"
                )
            });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "ChromeDriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut chrome = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                format!("--user-data-dir={}", profile.path().display()),
                format!("--window-size={width},900"),
            ]
        });
        let binary = std::env::var("HERALD_CHROMIUM").ok().or_else(|| {
            std::path::Path::new("/usr/bin/chromium")
                .exists()
                .then(|| "/usr/bin/chromium".to_owned())
        });
        if let Some(b) = binary {
            chrome["binary"] = json!(b);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": chrome}}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("ChromeDriver answers")
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("ChromeDriver could not start Chromium: {created}"))
            .to_owned();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{id}"),
            _profile: profile,
            _turn: turn,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.expect("ChromeDriver answers").json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.ok()?.json().await.ok()?;
        v["value"].get("error").is_none().then(|| v["value"].clone())
    }

    /// Open `url` (waits for the page to load).
    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The address the browser is at.
    pub(crate) async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn element_now(&self, css: &str) -> Option<String> {
        let v = self
            .try_call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// The element `css` selects, waiting for it to appear.
    pub(crate) async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.element_now(css).await {
                return e;
            }
            if Instant::now() >= deadline {
                let source = self.call(reqwest::Method::GET, "/source", None).await;
                panic!(
                    "no element {css} on {} after waiting; the page: {source}",
                    self.url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `css` selects an element now.
    pub(crate) async fn has(&self, css: &str) -> bool {
        self.element_now(css).await.is_some()
    }

    pub(crate) async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({})))
            .await;
    }

    /// Replace the text of input or textarea `css` with `text`, as typed.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/clear"), Some(json!({})))
            .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Pick the option labelled `label` in select `css`.
    pub(crate) async fn select(&self, css: &str, label: &str) {
        let options = format!("{css} option");
        self.find(&options).await;
        let found: Value = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": options})),
            )
            .await;
        for o in found.as_array().unwrap() {
            let id = o[ELEMENT].as_str().unwrap();
            let text = self
                .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await;
            if text.as_str() == Some(label) {
                self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})))
                    .await;
                return;
            }
        }
        panic!("{css} has no option {label}");
    }

    /// The visible text of `css`.
    pub(crate) async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Wait until the text of `css` contains `needle`, reloading the page
    /// between looks when `reload` (for pages that do not update themselves).
    pub(crate) async fn wait_for_text(&self, css: &str, needle: &str, reload: bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.element_now(css).await {
                if let Some(t) = self
                    .try_call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
                    .await
                {
                    if t.as_str().is_some_and(|t| t.contains(needle)) {
                        return;
                    }
                }
            }
            if Instant::now() >= deadline {
                let now = match self.element_now(css).await {
                    Some(_) => self.text(css).await,
                    None => format!("(no {css})"),
                };
                panic!("{css} never showed {needle:?}; it shows {now:?}");
            }
            if reload {
                self.call(reqwest::Method::POST, "/refresh", Some(json!({}))).await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The page's full width and the window's width, in CSS pixels.
    pub(crate) async fn widths(&self) -> (u64, u64) {
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "return [document.documentElement.scrollWidth, window.innerWidth]", "args": []})),
            )
            .await;
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    }

    /// The value of cookie `name`, as the browser holds it (HttpOnly too).
    pub(crate) async fn cookie(&self, name: &str) -> Option<Value> {
        self.try_call(reqwest::Method::GET, &format!("/cookie/{name}"), None)
            .await
    }

    /// Save the whole page as `HERALD_SCREENSHOTS/name.png` when that is set.
    pub(crate) async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("HERALD_SCREENSHOTS") else {
            return;
        };
        let height = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "return document.documentElement.scrollHeight", "args": []})),
            )
            .await
            .as_u64()
            .unwrap_or(900);
        let rect = self.call(reqwest::Method::GET, "/window/rect", None).await;
        let width = rect["width"].as_u64().unwrap_or(1280);
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": (height + 140).min(4000)})),
        )
        .await;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), bytes).unwrap();
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": 900})),
        )
        .await;
    }

    /// Close the browser and its driver.
    pub(crate) async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed assertion: end the session so Chromium exits too.
        if let Ok(None) = self.driver.try_wait() {
            delete_blocking(&self.session);
            let _ = self.driver.kill();
            let _ = self.driver.wait();
        }
    }
}

/// `DELETE url` on loopback without a runtime (from `Drop`).
fn delete_blocking(url: &str) {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = s.read_to_end(&mut Vec::new());
}
