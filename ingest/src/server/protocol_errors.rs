//! Answers to requests that are not HTTP a handler can see, in JSON like every other
//! answer.
//!
//! When a request head cannot be parsed (a bad request line, a malformed header, a head
//! over the size limit, a URI too long), hyper answers by itself, before any handler runs:
//! a status line and `content-length: 0`. A client reading our answers expects a JSON
//! body with an `error_code`, so this stream recognizes those automatic answers on their
//! way out (our handlers never send an empty 400, 414 or 431) and writes them with a
//! body. The connection is closed after such an answer in any case.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that rewrites hyper's automatic error answers into JSON ones.
#[derive(Debug)]
pub struct ProtocolErrors<S> {
    inner: S,
    /// The largest request head accepted, named in the 431 answer.
    head_limit: usize,
    /// A rewritten answer still being written, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> ProtocolErrors<S> {
    pub fn new(inner: S, head_limit: usize) -> Self {
        ProtocolErrors {
            inner,
            head_limit,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ProtocolErrors<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProtocolErrors<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProtocolErrors<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = json_answer(buf, this.head_limit) {
            this.pending = answer;
            // Taken whole: the rest is written by the next write, flush or shutdown.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    /// Answers with a body come as several slices (head, body) and pass through; an
    /// automatic answer is a head alone, so only a single slice is looked at.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            return self.poll_write(cx, only);
        }
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The JSON answer replacing `written`, when `written` is exactly one of hyper's
/// automatic error answers: a whole head, no body, `content-length: 0`.
fn json_answer(written: &[u8], head_limit: usize) -> Option<Vec<u8>> {
    let head = written.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    let (status_line, headers) = head.split_once("\r\n")?;
    let status = status_line.strip_prefix("HTTP/1.")?.get(2..5)?;
    let (code, message) = match status {
        "400" => ("bad_request", "the request is not valid HTTP/1.1".to_string()),
        "414" => ("uri_too_long", "the request target is too long".to_string()),
        "431" => (
            "headers_too_large",
            format!("the request head must be at most {head_limit} bytes"),
        ),
        _ => return None,
    };
    let headers: Vec<&str> = headers.split("\r\n").collect();
    if !headers.iter().any(|h| h.eq_ignore_ascii_case("content-length: 0")) {
        return None;
    }
    let body = crate::api::error_body(code, &message, None).to_string();
    let mut answer = format!("{status_line}\r\n");
    for header in headers {
        if !header.to_ascii_lowercase().starts_with("content-length:") {
            answer.push_str(header);
            answer.push_str("\r\n");
        }
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(answer).unwrap();
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
    }

    #[test]
    fn hypers_empty_error_answers_get_a_json_body() {
        let automatic = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        let answer = json_answer(automatic, 16384).unwrap();
        let text = String::from_utf8(answer.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("date: Wed, 02 Dec 2026 10:00:00 GMT\r\n"), "{text}");
        assert!(text.contains("content-type: application/json\r\n"), "{text}");
        assert!(!text.contains("content-length: 0\r\n"), "{text}");
        let body = body_of(&answer);
        assert_eq!(body["error_code"], "headers_too_large");
        assert!(body["message"].as_str().unwrap().contains("16384"));
        let declared: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, text.split_once("\r\n\r\n").unwrap().1.len());

        let bad = json_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", 1).unwrap();
        assert_eq!(body_of(&bad)["error_code"], "bad_request");
        let long = json_answer(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n", 1).unwrap();
        assert_eq!(body_of(&long)["error_code"], "uri_too_long");
    }

    #[test]
    fn answers_with_a_body_or_another_status_pass_untouched() {
        for written in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert_eq!(json_answer(written, 1), None, "{}", String::from_utf8_lossy(written));
        }
    }

    #[tokio::test]
    async fn the_rewritten_answer_reaches_the_peer_whole() {
        // A pipe smaller than the answer: it is written over several polls.
        let (ours, mut theirs) = tokio::io::duplex(16);
        let mut stream = ProtocolErrors::new(ours, 8192);
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            theirs.read_to_end(&mut received).await.unwrap();
            received
        });
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        let received = reader.await.unwrap();
        assert_eq!(body_of(&received)["error_code"], "bad_request");
    }
}
