//! The reporter as an application of the exactly-once runtime.
//!
//! A task per partition of `sales.orders.attributed` (keyed `org`): each attributed
//! order is added to its organization's org-local day (timezone from the organization's
//! settings) and to the wins counter, which is published at once to `sales.wins`. A
//! timer at the day's end plus the grace period publishes the day's report to
//! `sales.reports.daily` (keyed `org:date`); orders for a day already published
//! republish it with the next revision, gathered for the revision delay (event time)
//! so that a backlog of late orders makes one revision.

use std::sync::Arc;
use std::time::Duration;

use accounts::settings::Organizations;
use kafka_runtime::task::{Application, Decoded, Record, Reject, StoreSpec, Task, TaskContext, encode};
use kafka_runtime::value_cache::ValueCache;
use schemas::keys;
use schemas::records::{AttributedOrder, DailySalesReport, ReportState, SeenEvent, WinsCounter};
use schemas::topics::{Topic, TopicNames};
use schemas::values::{Timestamp, duration_micros};

use crate::metrics::ReporterMetrics;
use crate::rollup;

/// An organization's days (`org:date` → `ReportState`).
pub const DAYS: &str = "days";
/// An organization's wins counter (`org` → `WinsCounter`).
pub const WINS: &str = "wins";
/// Published days with late orders waiting to be published again (`org:date` →
/// `SeenEvent`, when the first of them came).
pub const REVISIONS: &str = "revisions";

/// The reporter's time spans, in event time.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    /// How long after a day ends its report is published.
    pub grace: Duration,
    /// How long after a day ends it is kept for late orders (and revisions).
    pub retention: Duration,
    /// How long late orders for a published day are gathered before it is published
    /// again: a backlog of them makes one revision, not one each.
    pub revision_delay: Duration,
}

#[derive(Debug)]
struct Shared {
    input: String,
    reports: String,
    wins: String,
    grace: i64,
    retention: i64,
    revision_delay: i64,
    organizations: Organizations,
    metrics: ReporterMetrics,
}

/// The reporter application; `id` is its consumer group.
#[derive(Debug, Clone)]
pub struct Reporter {
    id: String,
    shared: Arc<Shared>,
}

impl Reporter {
    pub fn new(
        id: impl Into<String>,
        topics: &TopicNames,
        periods: Periods,
        organizations: Organizations,
        metrics: ReporterMetrics,
    ) -> Self {
        Reporter {
            id: id.into(),
            shared: Arc::new(Shared {
                input: topics.name(Topic::OrdersAttributed),
                reports: topics.name(Topic::ReportsDaily),
                wins: topics.name(Topic::Wins),
                grace: duration_micros(periods.grace),
                retention: duration_micros(periods.retention),
                revision_delay: duration_micros(periods.revision_delay),
                organizations,
                metrics,
            }),
        }
    }
}

impl Application for Reporter {
    fn id(&self) -> &str {
        &self.id
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.shared.input.clone()]
    }

    /// Every attributor task writes to every partition: a day closes when all of them
    /// have passed it.
    fn written_inputs(&self) -> Vec<String> {
        vec![self.shared.input.clone()]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        StoreSpec::key_value(&[DAYS, WINS, REVISIONS])
    }

    fn create_task(&self, _partition: i32) -> Box<dyn Task> {
        Box::new(ReporterTask {
            shared: Arc::clone(&self.shared),
            days: ValueCache::new(DAYS, DAYS_CACHED),
        })
    }

    /// Each order decoded once, with its time: `placed_at`.
    fn decode(&self, record: &Record<'_>) -> Result<Decoded, Reject> {
        let order: AttributedOrder = record.decode()?;
        let at = order.placed_at;
        Ok(Decoded::new(order, Some(at)))
    }
}

struct ReporterTask {
    shared: Arc<Shared>,
    /// The days last written, decoded and written behind: every order of a day changes
    /// it, and it is encoded once a commit.
    days: ValueCache<ReportState>,
}

/// Days kept decoded per task at most besides those changed since the last commit (an
/// organization's days being filled at once are a few; a backlog's are in time order).
const DAYS_CACHED: usize = 256;

impl Task for ReporterTask {
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>, decoded: Decoded) -> Result<(), Reject> {
        let order: AttributedOrder = decoded
            .take()
            .ok_or_else(|| Reject("the record was not decoded".into()))?;
        record.expect_key(&order.organization_id)?;
        if order.attribution.is_none() {
            self.shared.metrics.unattributed.inc();
            return Ok(());
        }
        let settings = self.shared.organizations.get(&order.organization_id);
        let tz = rollup::timezone(settings.as_ref().map(|s| s.timezone.as_str()));
        let (date, day_end) = rollup::local_day(order.placed_at, tz);
        let kept_until = day_end.after(self.shared.retention);
        if kept_until < ctx.watermark() {
            self.shared.metrics.too_late.inc();
            tracing::warn!(organization = %order.organization_id, order = %order.order_id, %date, "an order for a day no longer kept; not counted");
            return Ok(());
        }

        let key = keys::org_date(&order.organization_id, &date.to_string());
        let mut day: ReportState = self
            .days
            .take(ctx, key.as_bytes())?
            .unwrap_or_else(|| rollup::new_day(&order.organization_id, date, tz));
        rollup::add_order(&mut day, &order);
        if day.published_revision.is_some() {
            // The day was already published: publish it again, corrected, once the late
            // orders that come with this one are in too.
            if ctx.store(REVISIONS).get(key.as_bytes()).is_none() {
                let since = encode(&SeenEvent {
                    seen_at: ctx.watermark(),
                })?;
                ctx.store(REVISIONS).put(key.as_bytes(), since);
                ctx.schedule(ctx.watermark().after(self.shared.revision_delay), key.as_bytes());
            }
        } else {
            let publish_at = day_end.after(self.shared.grace);
            ctx.schedule(publish_at, key.as_bytes());
        }
        self.days.put(key.as_bytes(), day, Some(kept_until));

        let org = order.organization_id.as_bytes();
        let counter: Option<WinsCounter> = ctx.load(WINS, org)?;
        if let Some(counter) = rollup::add_win(counter, &order.organization_id, date, tz, order.placed_at) {
            let bytes = encode(&counter)?;
            ctx.store(WINS).put(org, bytes.clone());
            ctx.emit(&self.shared.wins, Some(org), Some(&bytes));
        }
        Ok(())
    }

    fn settle(&mut self, kept: bool) {
        self.days.settle(kept);
    }

    fn flush(&mut self, ctx: &mut TaskContext<'_>) -> Result<(), Reject> {
        self.days.flush(ctx)
    }

    /// A day closed: publish its report; or late orders for a published day were
    /// gathered: publish it again with the next revision.
    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, _at: Timestamp, tag: &[u8]) {
        let result = (|| -> Result<(), Reject> {
            let Some(mut day) = self.days.take(ctx, tag)? else {
                return Ok(());
            };
            let revision = day.published_revision.is_some();
            if revision {
                if ctx.store(REVISIONS).get(tag).is_none() {
                    return Ok(());
                }
                ctx.store(REVISIONS).delete(tag);
                self.shared.metrics.revisions.inc();
            } else {
                self.shared.metrics.reports.inc();
            }
            let report = rollup::publish(&mut day, ctx.watermark());
            let key = String::from_utf8_lossy(tag).into_owned();
            self.emit_report(ctx, &key, &report)?;
            // Kept as long as before: until its end plus the retention.
            let date = chrono::NaiveDate::parse_from_str(&day.date, "%Y-%m-%d")
                .map_err(|e| Reject(format!("a day with a bad date {:?}: {e}", day.date)))?;
            let day_end = rollup::day_end(date, rollup::timezone(Some(&day.timezone)));
            let kept_until = day_end.after(self.shared.retention);
            self.days.put(tag, day, Some(kept_until));
            Ok(())
        })();
        if let Err(Reject(reason)) = result {
            tracing::error!(%reason, day = %String::from_utf8_lossy(tag), "a day's report could not be published");
        }
    }
}

impl ReporterTask {
    fn emit_report(&self, ctx: &mut TaskContext<'_>, key: &str, report: &DailySalesReport) -> Result<(), Reject> {
        let bytes = encode(report)?;
        ctx.emit(&self.shared.reports, Some(key.as_bytes()), Some(&bytes));
        tracing::info!(day = %key, revision = report.revision, "daily report published");
        Ok(())
    }
}
