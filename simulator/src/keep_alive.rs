//! HTTP/1.1 with the connection kept open between requests, as a browser keeps its
//! connection to a site: what the load posts widget events with. A request on a fresh
//! connection costs both ends a TCP handshake, an accept and a close, which at
//! thousands of events a second is more than the request itself.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{HttpAnswer, encode_request, parse_head};

/// Idle connections kept for the next requests, at most this many.
const MAX_IDLE: usize = 64;
/// Largest answer head read; a server sending more is not one this client talks to.
const MAX_HEAD: usize = 64 * 1024;

/// Connections to one server, kept open between requests.
#[derive(Debug)]
pub struct KeepAlive {
    addr: SocketAddr,
    idle: Mutex<Vec<TcpStream>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> Self {
        KeepAlive {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends a request on an idle connection, or a new one; the connection is kept for
    /// the next request unless the server says it closes it. A kept connection the
    /// server closed meanwhile (its idle timeout) is dropped and the request sent again
    /// on a new one; a widget event carries its `event_id`, so a request the server did
    /// take is not counted twice.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpAnswer> {
        let request = encode_request(self.addr, "HTTP/1.1", method, path, headers, body);
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        if let Some(stream) = kept
            && let Ok(answered) = exchange(stream, &request).await
        {
            return Ok(self.keep(answered));
        }
        let stream = TcpStream::connect(self.addr).await?;
        Ok(self.keep(exchange(stream, &request).await?))
    }

    fn keep(&self, (answer, stream): (HttpAnswer, Option<TcpStream>)) -> HttpAnswer {
        if let Some(stream) = stream {
            let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(stream);
            }
        }
        answer
    }
}

/// Sends `request` and reads its answer; the stream comes back when it may carry
/// another request (the answer had a length and did not say `Connection: close`).
async fn exchange(mut stream: TcpStream, request: &[u8]) -> std::io::Result<(HttpAnswer, Option<TcpStream>)> {
    stream.write_all(request).await?;
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(std::io::Error::other("the answer's head is too large"));
        }
        read_more(&mut stream, &mut buffer, "the connection was closed without an answer").await?;
    };
    let (status, headers) = parse_head(&String::from_utf8_lossy(&buffer[..head_end]))?;
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let closes = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = buffer.split_off(head_end + 4);
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let reusable = match length {
        Some(length) => {
            while body.len() < length {
                read_more(
                    &mut stream,
                    &mut body,
                    "the connection was closed in the middle of an answer",
                )
                .await?;
            }
            body.truncate(length);
            !closes
        }
        // No length: the answer ends where the connection does.
        None => {
            stream.read_to_end(&mut body).await?;
            false
        }
    };
    let answer = HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    Ok((answer, reusable.then_some(stream)))
}

/// Reads what `stream` has next onto `buffer`; the connection closed is an
/// `UnexpectedEof` error saying `closed`.
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>, closed: &str) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            closed.to_string(),
        ));
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A server on a local port answering every request with `answer`, closing each
    /// connection after `per_connection` answers; counts the connections it accepted.
    async fn server(answer: &'static str, per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    for _ in 0..per_connection {
                        // One request: a head and a body of its Content-Length.
                        loop {
                            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                                let length: usize = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .map_or(0, |v| v.trim().parse().unwrap());
                                if buffer.len() >= end + 4 + length {
                                    buffer.drain(..end + 4 + length);
                                    break;
                                }
                            }
                            let mut chunk = [0u8; 1024];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    const KEPT: &str = "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";

    #[tokio::test]
    async fn requests_share_one_connection_while_the_server_keeps_it() {
        let (addr, accepted) = server(KEPT, usize::MAX).await;
        let client = KeepAlive::new(addr);
        for _ in 0..5 {
            let answer = client.request("POST", "/v1/events", &[], b"{\"a\":1}").await.unwrap();
            assert_eq!((answer.status, answer.body.as_str()), (202, "{}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_not_used_again() {
        let (addr, accepted) = server("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", 1).await;
        let client = KeepAlive::new(addr);
        for _ in 0..3 {
            assert_eq!(client.request("GET", "/", &[], b"").await.unwrap().body, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_kept_connection_closed_meanwhile_is_replaced_by_a_new_one() {
        // The server answers once per connection and then closes it without saying so,
        // as one whose idle timeout ran out between two requests.
        let (addr, accepted) = server(KEPT, 1).await;
        let client = KeepAlive::new(addr);
        for _ in 0..3 {
            assert_eq!(client.request("POST", "/", &[], b"x").await.unwrap().status, 202);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_without_a_length_ends_with_its_connection() {
        let (addr, accepted) = server("HTTP/1.0 200 OK\r\n\r\nall of it", 1).await;
        let client = KeepAlive::new(addr);
        assert_eq!(client.request("GET", "/", &[], b"").await.unwrap().body, "all of it");
        assert_eq!(client.request("GET", "/", &[], b"").await.unwrap().body, "all of it");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
