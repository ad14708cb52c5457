//! The wins counter as agents see it: the wins of the organization's current day. The
//! reporter writes a counter when a win lands; a new day shows 0 from its midnight (in
//! the organization's timezone) until its first win, so a counter of yesterday is read
//! as 0 today.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use schemas::records::WinsCounter;
use serde::Serialize;
use tokio::sync::broadcast;

use super::{NotLoaded, Tables, read};

/// The latest counter of an organization and where it was read.
#[derive(Debug, Clone)]
pub struct WinsEntry {
    counter: WinsCounter,
    position: String,
}

impl WinsEntry {
    pub(super) fn new(counter: WinsCounter, partition: i32, offset: i64) -> Self {
        WinsEntry {
            counter,
            position: format!("{partition}.{offset}"),
        }
    }
}

/// What `GET …/wins` answers and the wins stream sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WinsView {
    pub organization_id: String,
    /// The organization's current day.
    pub date: String,
    pub timezone: String,
    pub wins: i64,
    /// When the counter last changed, RFC 3339; `null` before the day's first win.
    pub updated_at: Option<String>,
    /// The event id of this value: the counter's position and the day, so a stream
    /// resumed with it sends nothing until the value changes.
    #[serde(skip)]
    pub id: String,
}

/// The timezone of a counter, UTC when it names none this build knows.
fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

/// The counter as seen at `now`: its wins on its own day, 0 on a later one.
pub fn view(organization_id: &str, entry: Option<&WinsEntry>, fallback_zone: &str, now: DateTime<Utc>) -> WinsView {
    let timezone = entry.map_or(fallback_zone, |e| e.counter.timezone.as_str()).to_string();
    let today = now.with_timezone(&zone(&timezone)).date_naive().to_string();
    let position = entry.map_or("none", |e| e.position.as_str());
    let id = format!("{position}.{today}");
    match entry {
        Some(e) if e.counter.date >= today => WinsView {
            organization_id: organization_id.to_string(),
            date: e.counter.date.clone(),
            timezone,
            wins: e.counter.wins,
            updated_at: e
                .counter
                .updated_at
                .to_datetime()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            id,
        },
        _ => WinsView {
            organization_id: organization_id.to_string(),
            date: today,
            timezone,
            wins: 0,
            updated_at: None,
            id,
        },
    }
}

/// The next midnight of `timezone` after `now`, when a counter drops to 0.
pub fn next_midnight(timezone: &str, now: DateTime<Utc>) -> DateTime<Utc> {
    let tz = zone(timezone);
    let today: NaiveDate = now.with_timezone(&tz).date_naive();
    let mut day = today;
    loop {
        day = day.succ_opt().unwrap_or(day);
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        // A midnight skipped by a clock change: the day starts at its first hour that exists.
        let local = (0..4).find_map(|h| tz.from_local_datetime(&(start + chrono::Duration::hours(h))).earliest());
        if let Some(at) = local {
            return at.with_timezone(&Utc);
        }
    }
}

impl Tables {
    /// The organization's counter as seen now.
    pub fn wins(&self, org: &str) -> Result<WinsView, NotLoaded> {
        Self::check(&self.inner.loaded.wins, "wins")?;
        let wins = read(&self.inner.wins);
        Ok(view(org, wins.get(org), "UTC", Utc::now()))
    }

    /// Organizations whose counter changes from now on.
    pub fn wins_changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.inner.wins_changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use schemas::samples::Sample;
    use schemas::values::Timestamp;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn entry(date: &str, wins: i64) -> WinsEntry {
        let mut counter = WinsCounter::sample();
        counter.date = date.into();
        counter.timezone = "Europe/Warsaw".into();
        counter.wins = wins;
        counter.updated_at = Timestamp::from_datetime(at("2026-12-01T10:00:00Z"));
        WinsEntry::new(counter, 2, 41)
    }

    #[test]
    fn todays_counter_is_shown_and_yesterdays_reads_as_zero() {
        let e = entry("2026-12-01", 7);
        let same_day = view("org_a", Some(&e), "UTC", at("2026-12-01T22:59:00Z"));
        assert_eq!((same_day.date.as_str(), same_day.wins), ("2026-12-01", 7));
        // 23:00 UTC is midnight in Warsaw (UTC+1 in December).
        let next_day = view("org_a", Some(&e), "UTC", at("2026-12-01T23:00:00Z"));
        assert_eq!(
            (next_day.date.as_str(), next_day.wins, next_day.updated_at),
            ("2026-12-02", 0, None)
        );
        assert_ne!(same_day.id, next_day.id, "a new day is a new value");
    }

    #[test]
    fn an_organization_without_a_counter_has_zero_wins_today() {
        let v = view("org_b", None, "UTC", at("2026-12-01T12:00:00Z"));
        assert_eq!(
            (v.date.as_str(), v.wins, v.id.as_str()),
            ("2026-12-01", 0, "none.2026-12-01")
        );
    }

    #[test]
    fn midnight_is_the_organizations_own() {
        assert_eq!(
            next_midnight("Europe/Warsaw", at("2026-12-01T12:00:00Z")),
            at("2026-12-01T23:00:00Z")
        );
        assert_eq!(
            next_midnight("Asia/Tokyo", at("2026-12-01T12:00:00Z")),
            at("2026-12-01T15:00:00Z")
        );
        assert_eq!(
            next_midnight("nowhere", at("2026-12-01T12:00:00Z")),
            at("2026-12-02T00:00:00Z")
        );
        // Santiago skips midnight when summer time starts (2026-09-06).
        let after = next_midnight("America/Santiago", at("2026-09-05T12:00:00Z"));
        assert_eq!(after, at("2026-09-06T04:00:00Z"));
    }
}
