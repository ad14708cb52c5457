//! A minimal HTTP/1.0 client: what the simulator posts widget events with, and what
//! the tests drive the listeners with, exactly as a client on the network would.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A minimal HTTP/1.0 request over a fresh connection: enough to drive the listeners
/// exactly as a client on the network would. A connection closed before any byte of an
/// answer is an `UnexpectedEof` error.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpAnswer> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(&encode_request(addr, "HTTP/1.0", method, path, headers, body))
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    if response.is_empty() {
        // Closed without a byte of answer, as a server does with a connection it accepted
        // but never read from when it shuts down: no answer, not a malformed one.
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection was closed without an answer",
        ));
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let (status, headers) = parse_head(head)?;
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A request's bytes: its line in HTTP `version`, `Host`, `Content-Length`, `headers`,
/// then `body`.
pub(crate) fn encode_request(
    addr: std::net::SocketAddr,
    version: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} {version}\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// An answer's status and headers (names in lower case) from its head.
pub(crate) fn parse_head(head: &str) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// A GET, answering (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http(addr, "GET", path, &[], b"").await.map(|a| (a.status, a.body))
}
