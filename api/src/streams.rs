//! Server-Sent Events: the wins counter and notifications, pushed as they change.
//!
//! - Every event has an id; a client reconnecting with `Last-Event-ID` gets exactly what
//!   came after it (notifications: from the history held, see
//!   [`crate::tables::notifications`]; the counter: its value, unless unchanged).
//! - A comment line every `API_KEEPALIVE` keeps proxies from closing an idle stream.
//! - A client that falls `API_STREAM_BUFFER` changes behind is not buffered for: it gets
//!   an `error` event (`slow_consumer`) and the stream ends; it resumes where it was.
//! - At shutdown every stream ends, so the listener can drain.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::metrics::{ApiMetrics, StreamEndLabel, StreamLabel};
use crate::routes::AppState;
use crate::tables::notifications::{Cursor, Scope, Start};
use crate::tables::wins::{WinsView, next_midnight};

/// Counts an open stream, and how it ended when dropped.
struct Open {
    metrics: ApiMetrics,
    stream: &'static str,
    end: &'static str,
}

impl Open {
    fn new(metrics: &ApiMetrics, stream: &'static str) -> Self {
        metrics.streams_open.get_or_create(&StreamLabel { stream }).inc();
        Open {
            metrics: metrics.clone(),
            stream,
            end: "closed",
        }
    }
}

impl Open {
    /// Why the stream ends, when not because the client went away.
    fn ended(&mut self, reason: &'static str) {
        self.end = reason;
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let stream = self.stream;
        self.metrics.streams_open.get_or_create(&StreamLabel { stream }).dec();
        self.metrics
            .stream_ends
            .get_or_create(&StreamEndLabel {
                stream,
                reason: self.end,
            })
            .inc();
    }
}

fn error_event(kind: &str, code: &str, message: &str) -> Event {
    Event::default()
        .event(kind)
        .data(json!({ "error_code": code, "message": message, "field": null }).to_string())
}

fn sse(state: &AppState, stream: impl Stream<Item = Event> + Send + 'static) -> Response {
    use futures::StreamExt;
    Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(state.keepalive).text("keep-alive"))
        .into_response()
}

/// The notifications of `scope` after `start`.
pub fn notifications(state: &AppState, scope: Scope, start: Start) -> Response {
    let label = match scope {
        Scope::Organization(_) => "notifications",
        Scope::Chat(..) => "chat_notifications",
    };
    let mut first = VecDeque::new();
    if start.unknown_position {
        first.push_back(error_event(
            "reset",
            "unknown_position",
            "Last-Event-ID names no position of this stream; it starts from now (reload the list)",
        ));
    }
    if start.truncated {
        first.push_back(error_event(
            "reset",
            "history_truncated",
            "some notifications after Last-Event-ID are no longer held; reload the list",
        ));
    }
    let mut cursor: Cursor = start.cursor;
    for note in &start.backlog {
        cursor.pass(note);
        first.push_back(note_event(&cursor, &note.json));
    }
    struct Feed {
        first: VecDeque<Event>,
        feed: tokio::sync::broadcast::Receiver<Arc<crate::tables::notifications::Note>>,
        cursor: Cursor,
        scope: Scope,
        shutdown: kafka_runtime::shutdown::Shutdown,
        open: Open,
        done: bool,
    }
    let feed = Feed {
        first,
        feed: start.feed,
        cursor,
        scope,
        shutdown: state.shutdown.clone(),
        open: Open::new(&state.metrics, label),
        done: false,
    };
    let stream = futures::stream::unfold(feed, |mut f| async move {
        if let Some(event) = f.first.pop_front() {
            return Some((event, f));
        }
        while !f.done {
            let received = tokio::select! {
                _ = f.shutdown.requested() => {
                    f.open.ended("shutdown");
                    return None;
                }
                received = f.feed.recv() => received,
            };
            match received {
                Ok(note) => {
                    if f.scope.includes(&note) && f.cursor.is_before(&note) {
                        f.cursor.pass(&note);
                        let event = note_event(&f.cursor, &note.json);
                        return Some((event, f));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    f.done = true;
                    f.open.ended("slow_consumer");
                    let message = format!(
                        "this client fell {missed} changes behind and is disconnected; reconnect with Last-Event-ID to resume without a gap"
                    );
                    return Some((error_event("error", "slow_consumer", &message), f));
                }
                Err(RecvError::Closed) => return None,
            }
        }
        None
    });
    sse(state, stream)
}

fn note_event(cursor: &Cursor, json: &str) -> Event {
    Event::default().event("notification").id(cursor.id()).data(json)
}

/// The organization's wins counter: its value now (unless `last_event_id` is that
/// value's id), then every change, and 0 at the organization's midnight.
pub fn wins(state: &AppState, organization: String, last_event_id: Option<String>) -> Response {
    struct Counter {
        state: AppState,
        organization: String,
        last_id: Option<String>,
        changes: tokio::sync::broadcast::Receiver<Arc<str>>,
        open: Open,
    }
    let counter = Counter {
        state: state.clone(),
        changes: state.tables.wins_changes(),
        organization,
        last_id: last_event_id,
        open: Open::new(&state.metrics, "wins"),
    };
    let stream = futures::stream::unfold(counter, |mut c| async move {
        loop {
            let Ok(view) = c.state.tables.wins(&c.organization) else {
                return None;
            };
            if c.last_id.as_deref() != Some(view.id.as_str()) {
                c.last_id = Some(view.id.clone());
                return Some((wins_event(&view), c));
            }
            let until_midnight = (next_midnight(&view.timezone, chrono::Utc::now()) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                + Duration::from_millis(10);
            tokio::select! {
                _ = c.state.shutdown.requested() => {
                    c.open.ended("shutdown");
                    return None;
                }
                _ = tokio::time::sleep(until_midnight) => {}
                changed = c.changes.recv() => match changed {
                    Ok(org) if *org != *c.organization => {}
                    // A counter is a value: a client that missed changes gets the latest.
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    sse(state, stream)
}

fn wins_event(view: &WinsView) -> Event {
    Event::default()
        .event("wins")
        .id(view.id.clone())
        .data(serde_json::to_string(view).unwrap_or_default())
}
