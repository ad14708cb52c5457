//! Waiting out brokers that cannot serve for now.
//!
//! A cluster mends by itself: a partition whose leader died gets another within seconds,
//! a node that returns catches up, and a cluster left with fewer in-sync replicas than
//! `min.insync.replicas` takes writes again once a node is back. Until then every
//! transaction fails the same way, so a worker that counted those failures toward its
//! give-up limit would exit, be restarted, fail again: a crash loop that helps nobody.
//! Instead a retriable failure ([`Error::is_retriable`]) is waited out, a little longer
//! each time (up to [`MAX_DELAY`]), with the worker not ready and `/readyz` saying why;
//! only other failures count toward the limit.

use std::time::{Duration, Instant};

use crate::admin::ReadyCheck;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

use super::DisplayChain;

/// The first wait after a retriable failure; each next one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// How often a wait looks at the shutdown signal.
const SLICE: Duration = Duration::from_millis(100);

/// The waits of a run of retriable failures.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Duration,
    /// When the run began, if one is going on (the clock's time too, for `/readyz`).
    since: Option<(Instant, chrono::DateTime<chrono::Utc>)>,
}

impl Backoff {
    /// Ends a run of failures (a call succeeded); returns how long it lasted.
    pub(crate) fn reset(&mut self) -> Option<Duration> {
        self.next = Duration::ZERO;
        self.since.take().map(|(since, _)| since.elapsed())
    }

    /// Records a retriable failure of `what` (shown on `ready` as the reason the stage is
    /// not ready) and waits before the next try. Returns false when shutdown was asked
    /// for meanwhile.
    pub(crate) fn wait(&mut self, what: &str, error: &Error, ready: &ReadyCheck, shutdown: &Shutdown) -> bool {
        let (since, at) = *self.since.get_or_insert_with(|| (Instant::now(), chrono::Utc::now()));
        self.next = if self.next.is_zero() {
            FIRST_DELAY
        } else {
            (self.next * 2).min(MAX_DELAY)
        };
        let chain = DisplayChain(error);
        ready.fail(format!(
            "waiting for the brokers since {} ({what}): {chain}",
            rfc3339(at)
        ));
        tracing::warn!(
            error = %chain,
            waiting_for = ?since.elapsed(),
            retry_in = ?self.next,
            "{what}: the brokers cannot serve it for now; waiting and retrying"
        );
        let until = Instant::now() + self.next;
        while Instant::now() < until {
            if shutdown.is_triggered() {
                return false;
            }
            std::thread::sleep(SLICE.min(until.saturating_duration_since(Instant::now())));
        }
        !shutdown.is_triggered()
    }
}

/// A time as `/readyz` shows it: RFC 3339, UTC, to the second.
pub(crate) fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs `attempt` until it succeeds or fails for good, waiting out retriable failures;
/// `None` when shutdown was asked for meanwhile. Blocking.
pub(crate) fn retry<T>(
    what: &str,
    ready: &ReadyCheck,
    shutdown: &Shutdown,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<Option<T>> {
    let mut backoff = Backoff::default();
    loop {
        match attempt() {
            Ok(value) => {
                if let Some(waited) = backoff.reset() {
                    tracing::info!(?waited, "{what}: the brokers serve again");
                }
                return Ok(Some(value));
            }
            Err(e) if e.is_retriable() => {
                if !backoff.wait(what, &e, ready, shutdown) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`retry`] for an async `attempt`; the waits are taken off the async workers.
pub(crate) async fn retry_async<T, F>(
    what: &str,
    ready: &ReadyCheck,
    shutdown: &Shutdown,
    mut attempt: impl FnMut() -> F,
) -> Result<Option<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Backoff::default();
    loop {
        match attempt().await {
            Ok(value) => {
                if let Some(waited) = backoff.reset() {
                    tracing::info!(?waited, "{what}: the brokers serve again");
                }
                return Ok(Some(value));
            }
            Err(e) if e.is_retriable() => {
                let (what, ready, shutdown) = (what.to_string(), ready.clone(), shutdown.clone());
                let waited = tokio::task::spawn_blocking(move || {
                    let go_on = backoff.wait(&what, &e, &ready, &shutdown);
                    (backoff, go_on)
                })
                .await
                .map_err(|e| Error::Task(format!("waiting for the brokers: {e}")))?;
                backoff = waited.0;
                if !waited.1 {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Readiness;

    fn unavailable() -> Error {
        Error::kafka(
            "cannot commit the transaction",
            rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::NotEnoughReplicas),
        )
    }

    #[test]
    fn too_few_replicas_are_waited_out_and_the_reason_shown() {
        let readiness = Readiness::default();
        let ready = readiness.check("state");
        let mut calls = 0;
        let result = retry("committing", &ready, &Shutdown::new(), || {
            calls += 1;
            if calls < 3 {
                assert!(calls == 1 || readiness.reasons()["state"].contains("NotEnoughReplicas"));
                Err(unavailable())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.unwrap(), Some(3));
    }

    #[test]
    fn a_failure_that_would_happen_again_is_not_retried() {
        let ready = Readiness::default().check("state");
        let mut calls = 0;
        let result: Result<Option<()>> = retry("starting", &ready, &Shutdown::new(), || {
            calls += 1;
            Err(Error::Config("bad".into()))
        });
        assert!(matches!(result, Err(Error::Config(_))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn shutdown_ends_the_wait() {
        let ready = Readiness::default().check("state");
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let result: Result<Option<()>> = retry("starting", &ready, &shutdown, || Err(unavailable()));
        assert!(matches!(result, Ok(None)));
    }

    #[test]
    fn the_waits_double_up_to_the_bound() {
        let ready = Readiness::default().check("state");
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let mut backoff = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            backoff.wait("x", &unavailable(), &ready, &shutdown);
            waits.push(backoff.next);
        }
        assert_eq!(waits[0], FIRST_DELAY);
        assert_eq!(waits[1], FIRST_DELAY * 2);
        assert_eq!(*waits.last().unwrap(), MAX_DELAY);
        assert!(backoff.since.is_some());
        assert!(backoff.reset().is_some());
        assert!(backoff.since.is_none());
    }
}
