//! The followed topics as tables, in memory: restored from the beginning of each topic
//! at start (`/readyz` names the ones still loading) and kept current as records are
//! committed. Every replica holds everything, so replicas are interchangeable behind a
//! load balancer.
//!
//! - customer summaries (`sales.customer-orders`): the Avro bytes as written, decoded
//!   only when asked for, which keeps a summary at its encoded size;
//! - wins counters (`sales.wins`) with a change feed: [`wins`];
//! - daily reports (`sales.reports.daily`, the latest revision of each day) and exchange
//!   rates (`fx.rates.daily`), for the report query;
//! - each organization's and each chat's recent notifications (`inbox.notifications`)
//!   with a change feed: [`notifications`].

pub mod notifications;
pub mod wins;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use kafka_runtime::admin::ReadyCheck;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::follow::{Followed, Follower};
use kafka_runtime::shutdown::Shutdown;
use rules::fx::RateTable;
use schemas::records::{DailySalesReport, ExchangeRate, WinsCounter};
use schemas::topics::Topic;
use tokio::sync::broadcast;

use self::notifications::Notes;
use self::wins::WinsEntry;
use crate::metrics::ApiMetrics;

/// Bounds of what is kept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub chat_history: usize,
    pub org_history: usize,
    /// Changes a stream client may fall behind by.
    pub stream_buffer: usize,
}

/// Every table; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Tables {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    metrics: ApiMetrics,
    loaded: Loaded,
    /// `org:customer` to the latest `CustomerOrderSummary`, as encoded.
    summaries: RwLock<HashMap<Box<str>, Box<[u8]>>>,
    wins: RwLock<HashMap<String, WinsEntry>>,
    /// The organization whose counter changed.
    wins_changes: broadcast::Sender<Arc<str>>,
    /// Organization to date to its latest report.
    reports: RwLock<HashMap<String, BTreeMap<String, DailySalesReport>>>,
    rates: RwLock<Rates>,
    notes: Mutex<Notes>,
}

#[derive(Debug, Default)]
struct Loaded {
    summaries: AtomicBool,
    wins: AtomicBool,
    reports: AtomicBool,
    rates: AtomicBool,
    notifications: AtomicBool,
}

/// The latest rate of each `date:currency`, and the table built from them when first
/// needed after a change.
#[derive(Debug, Default)]
struct Rates {
    records: BTreeMap<Box<[u8]>, ExchangeRate>,
    table: Option<Arc<RateTable>>,
}

/// A table that is not loaded yet: the answer is 503, and `/readyz` says the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLoaded(pub &'static str);

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Tables {
    pub fn new(limits: Limits, metrics: ApiMetrics) -> Self {
        Tables {
            inner: Arc::new(Inner {
                metrics,
                loaded: Loaded::default(),
                summaries: RwLock::default(),
                wins: RwLock::default(),
                wins_changes: broadcast::channel(limits.stream_buffer).0,
                reports: RwLock::default(),
                rates: RwLock::default(),
                notes: Mutex::new(Notes::new(limits)),
            }),
        }
    }

    fn check(flag: &AtomicBool, name: &'static str) -> Result<(), NotLoaded> {
        if flag.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(NotLoaded(name))
        }
    }

    /// The encoded `CustomerOrderSummary` of a customer, if it has one.
    pub fn summary(&self, org: &str, customer: &str) -> Result<Option<Box<[u8]>>, NotLoaded> {
        Self::check(&self.inner.loaded.summaries, "customer-orders")?;
        Ok(read(&self.inner.summaries)
            .get(format!("{org}:{customer}").as_str())
            .cloned())
    }

    /// How many customer summaries are held.
    pub fn summary_count(&self) -> usize {
        read(&self.inner.summaries).len()
    }

    /// The organization's latest reports of the days `from..=to`, by date.
    pub fn reports(&self, org: &str, from: &str, to: &str) -> Result<Vec<DailySalesReport>, NotLoaded> {
        Self::check(&self.inner.loaded.reports, "reports")?;
        Ok(read(&self.inner.reports)
            .get(org)
            .map(|days| {
                days.range(from.to_string()..=to.to_string())
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The exchange rates, as one table.
    pub fn rates(&self) -> Result<Arc<RateTable>, NotLoaded> {
        Self::check(&self.inner.loaded.rates, "rates")?;
        if let Some(table) = &read(&self.inner.rates).table {
            return Ok(Arc::clone(table));
        }
        let mut rates = write(&self.inner.rates);
        let table = Arc::new(RateTable::from_records(rates.records.values()));
        rates.table = Some(Arc::clone(&table));
        Ok(table)
    }

    fn apply_summary(&self, record: Followed<'_>) -> Result<(), String> {
        let key = key_text(record.key)?;
        let mut summaries = write(&self.inner.summaries);
        match record.value {
            Some(value) => {
                summaries.insert(key.into(), value.into());
            }
            None => {
                summaries.remove(key);
            }
        }
        self.inner
            .metrics
            .table_records
            .get_or_create(&table_label("customer-orders"))
            .set(summaries.len() as i64);
        Ok(())
    }

    fn apply_report(&self, record: Followed<'_>) -> Result<(), String> {
        let key = key_text(record.key)?;
        let (org, date) = key.split_once(':').ok_or("key is not org:date")?;
        let mut reports = write(&self.inner.reports);
        match record.value {
            None => {
                if let Some(days) = reports.get_mut(org) {
                    days.remove(date);
                }
            }
            Some(value) => {
                let report: DailySalesReport = schemas::decode(value).map_err(|e| e.to_string())?;
                if report.organization_id != org || report.date != date {
                    return Err(format!(
                        "key {key:?} holds the report of {}:{}",
                        report.organization_id, report.date
                    ));
                }
                let days = reports.entry(org.to_string()).or_default();
                // Compaction keeps the last record of a key, which is the latest revision;
                // before it runs, an older revision never replaces a newer one.
                if days.get(date).is_none_or(|kept| kept.revision <= report.revision) {
                    days.insert(date.to_string(), report);
                }
            }
        }
        let count = reports.values().map(BTreeMap::len).sum::<usize>();
        self.inner
            .metrics
            .table_records
            .get_or_create(&table_label("reports"))
            .set(count as i64);
        Ok(())
    }

    fn apply_rate(&self, record: Followed<'_>) -> Result<(), String> {
        let key: Box<[u8]> = record.key.ok_or("record without a key")?.into();
        let mut rates = write(&self.inner.rates);
        match record.value {
            None => {
                rates.records.remove(&key);
            }
            Some(value) => {
                let rate: ExchangeRate = schemas::decode(value).map_err(|e| e.to_string())?;
                rates.records.insert(key, rate);
            }
        }
        rates.table = None;
        self.inner
            .metrics
            .table_records
            .get_or_create(&table_label("rates"))
            .set(rates.records.len() as i64);
        Ok(())
    }

    fn apply_wins(&self, record: Followed<'_>) -> Result<(), String> {
        let org = key_text(record.key)?;
        {
            let mut wins = write(&self.inner.wins);
            match record.value {
                None => {
                    wins.remove(org);
                }
                Some(value) => {
                    let counter: WinsCounter = schemas::decode(value).map_err(|e| e.to_string())?;
                    if counter.organization_id != org {
                        return Err(format!(
                            "key {org:?} holds the counter of {:?}",
                            counter.organization_id
                        ));
                    }
                    wins.insert(
                        org.to_string(),
                        WinsEntry::new(counter, record.partition, record.offset),
                    );
                }
            }
            self.inner
                .metrics
                .table_records
                .get_or_create(&table_label("wins"))
                .set(wins.len() as i64);
        }
        // Nobody listening is fine.
        let _ = self.inner.wins_changes.send(Arc::from(org));
        Ok(())
    }
}

fn key_text(key: Option<&[u8]>) -> Result<&str, String> {
    std::str::from_utf8(key.ok_or("record without a key")?).map_err(|_| "key is not UTF-8".to_string())
}

fn table_label(table: &'static str) -> crate::metrics::TableLabel {
    crate::metrics::TableLabel { table }
}

/// Applies the records of one topic to its table.
struct TableFollower {
    tables: Tables,
    topic: Topic,
}

impl Follower for TableFollower {
    fn apply(&mut self, record: Followed<'_>) {
        let applied = match self.topic {
            Topic::CustomerOrders => self.tables.apply_summary(record),
            Topic::Wins => self.tables.apply_wins(record),
            Topic::ReportsDaily => self.tables.apply_report(record),
            Topic::FxRatesDaily => self.tables.apply_rate(record),
            Topic::Notifications => self.tables.apply_notification(record),
            other => Err(format!("{other:?} is not a table of the API")),
        };
        if let Err(reason) = applied {
            self.tables.inner.metrics.skipped_records.inc();
            tracing::warn!(topic = ?self.topic, partition = record.partition, offset = record.offset, %reason, "record skipped");
        }
    }

    fn loaded(&mut self, partitions: usize) {
        let loaded = &self.tables.inner.loaded;
        let flag = match self.topic {
            Topic::CustomerOrders => &loaded.summaries,
            Topic::Wins => &loaded.wins,
            Topic::ReportsDaily => &loaded.reports,
            Topic::FxRatesDaily => &loaded.rates,
            _ => {
                self.tables.notes().set_partitions(partitions);
                &loaded.notifications
            }
        };
        flag.store(true, Ordering::Release);
        tracing::info!(topic = ?self.topic, "table loaded");
    }
}

/// Follows `topic` (named `name` in this deployment) into its table until shutdown.
pub async fn follow(
    kafka: &KafkaArgs,
    topic: Topic,
    name: &str,
    tables: Tables,
    ready: ReadyCheck,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut follower = TableFollower { tables, topic };
    let client = format!("api-{}", topic_client(topic));
    kafka_runtime::follow::follow(kafka, &client, name, ready, shutdown, &mut follower).await?;
    Ok(())
}

fn topic_client(topic: Topic) -> &'static str {
    match topic {
        Topic::CustomerOrders => "customer-orders",
        Topic::Wins => "wins",
        Topic::ReportsDaily => "reports",
        Topic::FxRatesDaily => "rates",
        _ => "notifications",
    }
}
