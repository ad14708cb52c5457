//! Closes a connection that is idle: nothing received since it was opened or since the
//! last answer was sent, for longer than the idle timeout.
//!
//! The head of a request has its own, longer bound (hyper's header-read timeout, which
//! also starts when the connection starts waiting); the body has the request timeout and
//! the broker's acknowledgement its own. What is left unbounded without this is a
//! connection that sends nothing at all, kept alive or never used.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose reads end (as if the peer had closed) once it has been idle too long.
#[derive(Debug)]
pub struct Idle<S> {
    inner: S,
    timeout: Duration,
    /// True from the last byte written until the next byte read: waiting for a request.
    waiting: bool,
    deadline: Pin<Box<Sleep>>,
    closed_idle: Counter,
}

impl<S> Idle<S> {
    pub fn new(inner: S, timeout: Duration, closed_idle: Counter) -> Self {
        Idle {
            inner,
            timeout,
            waiting: true,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            closed_idle,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.waiting = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.waiting => {
                ready!(this.deadline.as_mut().poll(cx));
                this.closed_idle.inc();
                // Read as the end of the stream: hyper closes an idle connection quietly.
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if written > 0 {
            this.waiting = true;
            this.deadline.as_mut().reset(Instant::now() + this.timeout);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if written > 0 {
            this.waiting = true;
            this.deadline.as_mut().reset(Instant::now() + this.timeout);
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_reads_as_closed_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let closed = Counter::default();
        let mut idle = Idle::new(ours, Duration::from_secs(5), closed.clone());
        let started = Instant::now();
        let mut buf = [0; 8];
        assert_eq!(idle.read(&mut buf).await.unwrap(), 0);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(closed.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_is_not_idle_and_an_answer_restarts_the_clock() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let closed = Counter::default();
        let mut idle = Idle::new(ours, Duration::from_secs(5), closed.clone());
        let mut buf = [0; 8];
        theirs.write_all(b"GET").await.unwrap();
        assert_eq!(idle.read(&mut buf).await.unwrap(), 3);
        // Part of a request has come: waiting longer than the idle timeout for the rest
        // is the header timeout's business.
        let more = tokio::time::timeout(Duration::from_secs(60), idle.read(&mut buf)).await;
        assert!(more.is_err(), "still waiting for the rest of the request");
        assert_eq!(closed.get(), 0);

        idle.write_all(b"HTTP/1.1 202").await.unwrap();
        let answered = Instant::now();
        assert_eq!(idle.read(&mut buf).await.unwrap(), 0);
        assert_eq!(answered.elapsed(), Duration::from_secs(5));
        assert_eq!(closed.get(), 1);
    }
}
