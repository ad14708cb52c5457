//! A real headless Chromium for the browser tests (the store's script in `widget.rs`, the
//! agent console in `console.rs`), driven over WebDriver, and the example storefront of
//! `widget/example/` served on a loopback address.
//!
//! Chromium and chromedriver are Debian's (`scripts/browser-env.sh` installs them;
//! `SALES_CHROMEDRIVER` and `SALES_CHROMIUM` name others). Without them every browser
//! test fails saying so. One chromedriver serves the whole test process; each session is
//! a browser of its own with a fresh profile, so its storage starts empty.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use sales_tests::{eventually, free_local_addr};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use crate::ingest::ORG;

// ---------------------------------------------------------------------------------------
// chromedriver and browser sessions

struct Chromedriver {
    url: String,
    chromium: PathBuf,
    /// Profiles and logs; removed with chromedriver when this process exits.
    dir: PathBuf,
    /// The shell watching over chromedriver: its stdin closing (this process exiting,
    /// however) stops chromedriver and its browsers.
    _watchdog: std::sync::Mutex<Child>,
}

static CHROMEDRIVER: OnceCell<Chromedriver> = OnceCell::const_new();

/// Browser sessions open at once: each is a Chromium of its own, and the machine runs
/// the broker and the other tests too.
static SESSIONS: Semaphore = Semaphore::const_new(2);

fn installed(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found ({variable}); the browser tests need Debian's chromium and chromium-driver: \
         scripts/browser-env.sh installs them, scripts/test.sh runs it",
        path.display()
    );
    path
}

async fn chromedriver() -> &'static Chromedriver {
    CHROMEDRIVER
        .get_or_init(|| async {
            let driver = installed("SALES_CHROMEDRIVER", "/usr/bin/chromedriver");
            let chromium = installed("SALES_CHROMIUM", "/usr/bin/chromium");
            let dir = std::env::temp_dir().join(format!("sales-browser-it-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let port = free_local_addr().port();
            // chromedriver and the browsers it starts live in a process group of their
            // own, under a shell that waits for this process's end (its stdin closing)
            // and then stops the whole group and removes the profiles: test processes
            // end without running destructors of statics, and often by a panic.
            let script = r#"
                "$1" --port="$2" --log-path="$3/chromedriver.log" &
                trap '' TERM
                read -r _
                kill -TERM 0
                sleep 1
                rm -rf "$3"
                kill -KILL 0
            "#;
            let watchdog = Command::new("sh")
                .args(["-c", script, "sh"])
                .arg(&driver)
                .arg(port.to_string())
                .arg(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            eventually("chromedriver to be ready", Duration::from_secs(30), || async {
                tokio::task::spawn_blocking(move || chromedriver_ready(addr))
                    .await
                    .unwrap()
                    .then_some(())
            })
            .await;
            Chromedriver {
                url: format!("http://{addr}"),
                chromium,
                dir,
                _watchdog: std::sync::Mutex::new(watchdog),
            }
        })
        .await
}

/// Whether chromedriver at `addr` says it is ready for sessions. It keeps the connection
/// open after its answer whatever the request says, so the answer is read only until the
/// word is in, for a second at most.
fn chromedriver_ready(addr: SocketAddr) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.set_read_timeout(Some(Duration::from_secs(1))).is_err() || stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let (mut answer, mut buffer) = (Vec::new(), [0; 4096]);
    while let Ok(read @ 1..) = stream.read(&mut buffer) {
        answer.extend_from_slice(&buffer[..read]);
        if String::from_utf8_lossy(&answer).contains("\"ready\":true") {
            return true;
        }
    }
    false
}

/// One headless Chromium with a fresh profile.
pub(crate) struct Browser {
    pub(crate) client: Client,
    profile: PathBuf,
    /// Console messages read from the browser log so far.
    pub(crate) console: Vec<(String, String)>,
    _permit: SemaphorePermit<'static>,
}

/// chromedriver's browser log (`POST /session/{id}/se/log`): the console messages since
/// the last read, with level and source.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

impl Browser {
    /// A browser whose window is 1024×768.
    pub(crate) async fn open() -> Self {
        Self::open_sized(1024, 768).await
    }

    /// A browser whose window is `width`×`height` CSS pixels.
    pub(crate) async fn open_sized(width: u32, height: u32) -> Self {
        let driver = chromedriver().await;
        let permit = SESSIONS.acquire().await.unwrap();
        let profile = driver.dir.join(uuid::Uuid::new_v4().to_string());
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            // Without these Chromium reaches for Google's services at start, and on a
            // closed network its connections to the pages under test are refused too.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": driver.chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        Browser {
            client,
            profile,
            console: Vec::new(),
            _permit: permit,
        }
    }

    pub(crate) async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub(crate) async fn click(&self, selector: &str) {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {selector}: {e}"));
    }

    /// Writes what the window shows to `path` as PNG, creating its folder.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take a screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Waits until the widget's script has run on the current page.
    pub(crate) async fn widget_loaded(&self) {
        eventually("the widget's script to load", Duration::from_secs(15), || async {
            let loaded = self
                .execute(
                    "return !!(window.LiveChatWidget && window.LiveChatWidget.__sales)",
                    vec![],
                )
                .await;
            (loaded == json!(true)).then_some(())
        })
        .await;
    }

    /// Events of this site not acknowledged yet (the widget's outbox in localStorage).
    pub(crate) async fn outbox(&self) -> u64 {
        let script = "return Object.keys(localStorage).filter(k => k.startsWith('lcw_sales_e:')).length";
        self.execute(script, vec![]).await.as_u64().unwrap()
    }

    /// Waits until ingest has acknowledged every event of this site.
    pub(crate) async fn outbox_empty(&self) {
        eventually("the widget's outbox to empty", Duration::from_secs(30), || async {
            (self.outbox().await == 0).then_some(())
        })
        .await;
    }

    pub(crate) async fn customer_id(&self) -> String {
        let id = self.execute("return LiveChatWidget.get('customer_id')", vec![]).await;
        id.as_str().unwrap().to_string()
    }

    /// The console messages so far, with their level, oldest first.
    pub(crate) async fn console_messages(&mut self) -> &[(String, String)] {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or_else(|e| panic!("cannot read the browser log: {e}"));
        for entry in entries.as_array().into_iter().flatten() {
            self.console.push((
                entry["level"].as_str().unwrap_or_default().to_string(),
                entry["message"].as_str().unwrap_or_default().to_string(),
            ));
        }
        &self.console
    }

    /// The console warnings so far.
    pub(crate) async fn warnings(&mut self) -> Vec<String> {
        self.console_messages()
            .await
            .iter()
            .filter(|(level, _)| level == "WARNING")
            .map(|(_, message)| message.clone())
            .collect()
    }

    pub(crate) async fn warning_containing(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let warnings = self.warnings().await;
            if let Some(warning) = warnings.iter().find(|w| w.contains(needle)) {
                return warning.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no console warning names {needle}; the console: {:?}",
                self.console
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// the example storefront, served on a loopback address

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../widget/example")
}

/// The storefront's files (and a test's own pages) on `ip`, with a `config.js` naming
/// ingest and the organization.
pub(crate) struct Storefront {
    pub(crate) origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Storefront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Storefront {
    /// The store of the tests' organization ([`ORG`]) sending to `ingest`.
    pub(crate) async fn serve(ip: &str, ingest: SocketAddr, pages: &[(&str, String)]) -> Self {
        let config = json!({ "ingestUrl": format!("http://{ingest}"), "organizationId": ORG });
        Self::serve_with(ip, &config, pages).await
    }

    /// The store with `config` as its `window.STORE_CONFIG` (`ingestUrl`,
    /// `organizationId`, optionally `customerId`).
    pub(crate) async fn serve_with(ip: &str, config: &Value, pages: &[(&str, String)]) -> Self {
        let mut files: HashMap<String, (&'static str, String)> = HashMap::new();
        for entry in std::fs::read_dir(example_dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            files.insert(
                format!("/{name}"),
                (content_type(&name), std::fs::read_to_string(&path).unwrap()),
            );
        }
        let config = format!("window.STORE_CONFIG = {config};\n");
        files.insert("/config.js".into(), (content_type("config.js"), config));
        for (path, html) in pages {
            files.insert((*path).to_string(), (content_type(path), html.clone()));
        }
        let files = std::sync::Arc::new(files);
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let files = std::sync::Arc::clone(&files);
            async move {
                let path = if uri.path() == "/" { "/index.html" } else { uri.path() };
                match files.get(path) {
                    Some((content_type, body)) => {
                        let mut response = body.clone().into_response();
                        let headers = response.headers_mut();
                        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        response
                    }
                    None => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body("not found".into())
                        .unwrap(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Storefront { origin, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".html") {
        "text/html; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    }
}
