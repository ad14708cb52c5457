//! What the API's tests share: the tests' token secret and tokens, and an event-stream
//! client that reads Server-Sent Events off a plain connection, as a browser would.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The HS256 secret of the tests' tokens.
pub const JWT_SECRET: &str = "the tests' own secret, 48 bytes long, not real!!";

/// A file holding [`JWT_SECRET`], as API_JWT_SECRET_FILE names it.
pub fn secret_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("sales-tests-jwt-{}", std::process::id()));
        std::fs::write(&path, format!("{JWT_SECRET}\n")).unwrap();
        path
    })
    .clone()
}

/// A valid token of `org` for an hour, as the chat platform would issue it.
pub fn token(org: &str) -> String {
    accounts::tokens::mint_hs256(
        JWT_SECRET.as_bytes(),
        "sales-api",
        "organization_id",
        org,
        "agent-1",
        Duration::from_secs(3600),
    )
    .unwrap()
}

/// `Authorization: Bearer <token of org>`.
pub fn bearer(org: &str) -> String {
    format!("Bearer {}", token(org))
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the event names none.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }
}

/// What waiting for the next event gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Event(SseEvent),
    /// The server ended the stream.
    Closed,
    TimedOut,
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// Keep-alive comment lines seen so far.
    pub comments: usize,
}

impl EventStream {
    /// `GET path` with `headers` (HTTP/1.0: the body is the stream, no chunking).
    pub async fn open(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        Ok(EventStream {
            reader,
            status,
            headers,
            comments: 0,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The rest of the answer, for a stream refused with an error.
    pub async fn body(mut self) -> String {
        let mut body = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut self.reader, &mut body).await;
        body
    }

    /// The next event within `timeout` (keep-alive comments are counted and skipped).
    pub async fn next(&mut self, timeout: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut event, mut id, mut data): (Option<String>, Option<String>, Vec<String>) = (None, None, Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Err(_) => return Next::TimedOut,
                Ok(Err(_)) | Ok(Ok(0)) => return Next::Closed,
                Ok(Ok(_)) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if event.is_some() || !data.is_empty() || id.is_some() {
                    return Next::Event(SseEvent {
                        event: event.unwrap_or_else(|| "message".into()),
                        id,
                        data: data.join("\n"),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "event" => event = Some(value),
                "id" => id = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
    }

    /// Every event until none comes for `quiet` (or the stream ends).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Next::Event(e) = self.next(quiet).await {
            events.push(e);
        }
        events
    }
}
