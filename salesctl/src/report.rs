//! `salesctl report --org ORG --from DATE --to DATE [--json]`: an organization's daily
//! reports, the latest revision of each day, as a readable table or as JSON.
//!
//! With any of `--currency`, `--timing`, `--team`, `--ai`, `--by-day`, `--format`, the
//! report query of `rules::query` over the days' cells and the rates of
//! `fx.rates.daily` instead: one set of totals (converted to `--currency` at each
//! day's rate), optionally by day, and the top orders, as a table, JSON or CSV.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::topic_admin::assign_whole_topic;
use kafka_runtime::worker::QuietEof;
use rdkafka::Offset;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rules::fx::RateTable;
use rules::query::{Answer, Query, TeamFilter};
use schemas::records::{CurrencyTotals, DailySalesReport, ExchangeRate, SaleTiming, SalesSection};
use schemas::topics::Topic;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The organization.
    #[arg(long)]
    pub org: String,
    /// The first org-local day, YYYY-MM-DD.
    #[arg(long)]
    pub from: NaiveDate,
    /// The last org-local day, YYYY-MM-DD (included).
    #[arg(long)]
    pub to: NaiveDate,
    /// One JSON object a line (a report each) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Show revenue in this currency too (ISO 4217), converted at each day's rate from
    /// fx.rates.daily (or the latest earlier day's).
    #[arg(long)]
    pub currency: Option<String>,
    /// Only orders of this sale timing: during_chat or after_chat.
    #[arg(long, value_parser = ["during_chat", "after_chat"])]
    pub timing: Option<String>,
    /// Only orders of this team (repeatable; `none`: chats without a team, `other`:
    /// teams merged beyond a day's cap).
    #[arg(long)]
    pub team: Vec<String>,
    /// AI Agent Sales (orders of chats an AI agent took part in) instead of All Sales.
    #[arg(long)]
    pub ai: bool,
    /// One line per day.
    #[arg(long)]
    pub by_day: bool,
    /// Output of the query: table, json or csv.
    #[arg(long, value_parser = ["table", "json", "csv"])]
    pub format: Option<String>,
}

impl ReportArgs {
    /// Whether the query is asked for (any of its flags), not the daily reports as kept.
    pub fn is_query(&self) -> bool {
        self.currency.is_some()
            || self.timing.is_some()
            || !self.team.is_empty()
            || self.ai
            || self.by_day
            || self.format.is_some()
    }

    /// The query the flags ask.
    pub fn query(&self) -> anyhow::Result<Query> {
        if let Some(c) = &self.currency {
            rules::query::check_currency(c).map_err(|e| anyhow::anyhow!("--currency {e}"))?;
        }
        Ok(Query {
            organization_id: self.org.clone(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            currency: self.currency.clone(),
            timing: self
                .timing
                .as_deref()
                .map(rules::query::parse_timing)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--timing {e}"))?,
            teams: self.team.iter().map(|t| TeamFilter::parse(t)).collect(),
            ai: self.ai,
        })
    }
}

/// Reads `sales.reports.daily` to its end and returns the latest revision of each of
/// the organization's days in `[from, to]`, by date.
pub async fn load(kafka: &KafkaArgs, args: &ReportArgs) -> anyhow::Result<Vec<DailySalesReport>> {
    schemas::validation::organization_id("--org", &args.org).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(args.from <= args.to, "--from {} is after --to {}", args.from, args.to);
    let mut latest: BTreeMap<NaiveDate, DailySalesReport> = BTreeMap::new();
    let prefix = format!("{}:", args.org);
    read_to_end(kafka, Topic::ReportsDaily, |key, payload, offset| {
        let Some(date) = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix(&prefix))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            return;
        };
        if date < args.from || date > args.to {
            return;
        }
        match payload.map(schemas::decode::<DailySalesReport>) {
            Some(Ok(report)) => {
                if latest.get(&date).is_none_or(|kept| kept.revision <= report.revision) {
                    latest.insert(date, report);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(offset, error = %e, "a report that does not decode skipped")
            }
            // A tombstone: the day was removed.
            None => {
                latest.remove(&date);
            }
        }
    })
    .await?;
    Ok(latest.into_values().collect())
}

/// Reads `fx.rates.daily` to its end: the latest rate of each `date:currency`.
pub async fn load_rates(kafka: &KafkaArgs) -> anyhow::Result<RateTable> {
    let mut latest: BTreeMap<Vec<u8>, ExchangeRate> = BTreeMap::new();
    read_to_end(kafka, Topic::FxRatesDaily, |key, payload, offset| {
        let key = key.unwrap_or_default().to_vec();
        match payload.map(schemas::decode::<ExchangeRate>) {
            Some(Ok(rate)) => {
                latest.insert(key, rate);
            }
            Some(Err(e)) => tracing::warn!(offset, error = %e, "a rate that does not decode skipped"),
            None => {
                latest.remove(&key);
            }
        }
    })
    .await?;
    Ok(RateTable::from_records(latest.values()))
}

/// Reads a topic from its beginning to its end (`read_committed`), handing each
/// record's key, value and offset to `handle`.
async fn read_to_end(
    kafka: &KafkaArgs,
    which: Topic,
    mut handle: impl FnMut(Option<&[u8]>, Option<&[u8]>, i64),
) -> anyhow::Result<()> {
    let topic = kafka.topic_names()?.name(which);
    let consumer: StreamConsumer<QuietEof> = kafka
        .client_config("salesctl-report")
        // Assigned, never joined or committed: it cannot disturb any stage.
        .set("group.id", "salesctl-report")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof)
        .context("cannot create the consumer")?;
    let partitions = assign_whole_topic(&consumer, &topic, Offset::Beginning)?;
    let mut at_end = vec![false; partitions];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !at_end.iter().all(|e| *e) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic} could not be read to its end in 60 s"
        );
        let message = match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Err(_) => continue,
            Ok(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(flag) = usize::try_from(partition).ok().and_then(|p| at_end.get_mut(p)) {
                    *flag = true;
                }
                continue;
            }
            Ok(Err(e)) => return Err(e).with_context(|| format!("cannot read {topic}")),
            Ok(Ok(message)) => message,
        };
        if let Some(flag) = usize::try_from(message.partition())
            .ok()
            .and_then(|p| at_end.get_mut(p))
        {
            *flag = false;
        }
        handle(message.key(), message.payload(), message.offset());
    }
    Ok(())
}

pub async fn run(kafka: &KafkaArgs, args: &ReportArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let reports = load(kafka, args).await?;
    if args.is_query() {
        let query = args.query()?;
        let rates = if query.currency.is_some() {
            load_rates(kafka).await?
        } else {
            RateTable::new()
        };
        let answer = rules::query::answer(&query, &reports, &rates);
        match args.format.as_deref() {
            Some("json") => writeln!(out, "{}", serde_json::to_string(&answer)?)?,
            Some("csv") => render_csv(&answer, args.by_day, out)?,
            _ => render_answer(&answer, &query, args.by_day, out)?,
        }
    } else if args.json {
        for report in &reports {
            writeln!(out, "{}", serde_json::to_string(report)?)?;
        }
    } else if reports.is_empty() {
        writeln!(
            out,
            "no reports for {} from {} to {} (a day is published once it has closed, and only with attributed orders)",
            args.org, args.from, args.to
        )?;
    } else {
        for report in &reports {
            render(report, out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A duration in seconds as `1d 02:03:04.5`.
fn duration_text(seconds: rust_decimal::Decimal) -> String {
    use rust_decimal::prelude::ToPrimitive;
    let total = seconds.to_f64().unwrap_or(0.0);
    let whole = total.trunc() as i64;
    let (days, rest) = (whole / 86_400, whole % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    if days > 0 { format!("{days}d {clock}") } else { clock }
}

fn render_section(name: &str, section: &SalesSection, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "  {name}")?;
    if section.currencies.is_empty() {
        return writeln!(out, "    no orders");
    }
    writeln!(
        out,
        "    {:<8} {:>7} {:>16} {:>22}",
        "currency", "orders", "revenue", "avg time to order"
    )?;
    for c in &section.currencies {
        let average = c.average_time_to_order_seconds.map_or("-".to_string(), |s| {
            format!("{} ({} s)", duration_text(s.value()), s.value().normalize())
        });
        writeln!(
            out,
            "    {:<8} {:>7} {:>16} {:>22}",
            c.currency,
            c.orders,
            c.revenue.value().round_dp(2),
            average
        )?;
    }
    for c in &section.currencies {
        render_breakdowns(c, out)?;
    }
    Ok(())
}

fn render_breakdowns(c: &CurrencyTotals, out: &mut impl Write) -> std::io::Result<()> {
    let timing: Vec<String> = c
        .by_sale_timing
        .iter()
        .map(|t| {
            let name = serde_json::to_value(t.sale_timing)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{name} {} / {}", t.orders, t.revenue.value().round_dp(2))
        })
        .collect();
    writeln!(out, "    {} by sale timing: {}", c.currency, timing.join(", "))?;
    let teams: Vec<String> = c
        .by_team
        .iter()
        .map(|t| {
            format!(
                "{} {} / {}",
                t.team_id.as_deref().unwrap_or("(no team)"),
                t.orders,
                t.revenue.value().round_dp(2)
            )
        })
        .collect();
    writeln!(out, "    {} by team: {}", c.currency, teams.join(", "))?;
    let top: Vec<String> = c
        .top_orders
        .iter()
        .map(|o| format!("{} {}", o.order_number, o.total.value().round_dp(2)))
        .collect();
    writeln!(out, "    {} top orders: {}", c.currency, top.join(", "))
}

/// One day's report as two tables.
pub fn render(report: &DailySalesReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}  {}  ({}, revision {}, published at {})",
        report.organization_id, report.date, report.timezone, report.revision, report.published_at
    )?;
    render_section("All Sales", &report.all_sales, out)?;
    render_section("AI Agent Sales", &report.ai_agent_sales, out)?;
    writeln!(out)
}

fn seconds_text(seconds: Option<rust_decimal::Decimal>) -> String {
    seconds.map_or("-".to_string(), |s| {
        format!("{} ({} s)", duration_text(s), s.normalize())
    })
}

/// Revenue as shown: the converted amount (and what was not converted), or each
/// currency's.
fn revenue_text(totals: &rules::query::Totals) -> String {
    let each: Vec<String> = totals
        .revenue
        .iter()
        .map(|r| format!("{} {}", r.revenue.round_dp(4).normalize(), r.currency))
        .collect();
    match &totals.converted {
        Some(c) if c.not_converted.is_empty() => format!("{} {}", c.revenue, c.currency),
        Some(c) => format!(
            "{} {} (not converted, no rate: {})",
            c.revenue,
            c.currency,
            c.not_converted.join(", ")
        ),
        None if each.is_empty() => "0".to_string(),
        None => each.join(" + "),
    }
}

/// The query's answer as the product shows it: totals, the days, the top orders.
pub fn render_answer(answer: &Answer, query: &Query, by_day: bool, out: &mut impl Write) -> std::io::Result<()> {
    let mut filters = Vec::new();
    if let Some(t) = query.timing {
        filters.push(
            if t == SaleTiming::DuringChat {
                "during chat"
            } else {
                "after chat"
            }
            .to_string(),
        );
    }
    if !query.teams.is_empty() {
        let teams: Vec<String> = query
            .teams
            .iter()
            .map(|t| match t {
                TeamFilter::Team(id) => id.clone(),
                TeamFilter::NoTeam => "(no team)".into(),
                TeamFilter::Other => "(other teams)".into(),
            })
            .collect();
        filters.push(format!("teams {}", teams.join(", ")));
    }
    writeln!(
        out,
        "{}  {}  {} to {}{}{}",
        answer.organization_id,
        if query.ai { "AI Agent Sales" } else { "All Sales" },
        answer.from,
        answer.to,
        answer
            .display_currency
            .as_ref()
            .map(|c| format!(", in {c}"))
            .unwrap_or_default(),
        if filters.is_empty() {
            String::new()
        } else {
            format!(", {}", filters.join(", "))
        }
    )?;
    let t = &answer.totals;
    writeln!(
        out,
        "  total: {} orders, {}, average time to order {}",
        t.orders,
        revenue_text(t),
        seconds_text(t.average_time_to_order_seconds)
    )?;
    if t.converted.is_some() && !t.revenue.is_empty() {
        let each: Vec<String> = t
            .revenue
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({} orders)",
                    r.revenue.round_dp(4).normalize(),
                    r.currency,
                    r.orders
                )
            })
            .collect();
        writeln!(out, "  by currency: {}", each.join(", "))?;
    }
    if by_day {
        writeln!(
            out,
            "  {:<10} {:>7} {:>28} {:>32}",
            "day", "orders", "revenue", "avg time to order"
        )?;
        for day in &answer.days {
            writeln!(
                out,
                "  {:<10} {:>7} {:>28} {:>32}",
                day.date,
                day.totals.orders,
                revenue_text(&day.totals),
                seconds_text(day.totals.average_time_to_order_seconds)
            )?;
        }
    }
    writeln!(out, "  top orders:")?;
    writeln!(
        out,
        "  {:<12} {:>24} {:>16} {:<10}",
        "order", "value", "time to order", "day"
    )?;
    for o in &answer.top_orders {
        let value = match (o.converted_total, &answer.display_currency) {
            (Some(v), Some(c)) => format!("{v} {c}"),
            _ => format!("{} {}", o.total.round_dp(4).normalize(), o.currency),
        };
        let tto = rust_decimal::Decimal::new(o.time_to_order_micros, 6);
        writeln!(
            out,
            "  {:<12} {:>24} {:>16} {:<10}",
            o.order_number,
            value,
            duration_text(tto),
            o.date
        )?;
    }
    for (what, days) in [
        (
            "days without cells (reports older than v2, not counted)",
            &answer.days_without_cells,
        ),
        ("days with teams merged beyond the cap", &answer.days_with_merged_teams),
    ] {
        if !days.is_empty() {
            writeln!(out, "  {what}: {}", days.join(", "))?;
        }
    }
    writeln!(out, "  currencies in the range: {}", answer.currencies.join(", "))
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The totals as CSV: `date,orders,revenue,currency,average_time_to_order_seconds,
/// not_converted`; with a display currency one row per day (`--by-day`) and a `total`
/// row, without one a row per day and currency.
pub fn render_csv(answer: &Answer, by_day: bool, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "date,orders,revenue,currency,average_time_to_order_seconds,not_converted"
    )?;
    let mut rows: Vec<(&str, &rules::query::Totals)> = Vec::new();
    if by_day {
        rows.extend(answer.days.iter().map(|d| (d.date.as_str(), &d.totals)));
    }
    rows.push(("total", &answer.totals));
    for (date, totals) in rows {
        let average = totals
            .average_time_to_order_seconds
            .map(|s| s.to_string())
            .unwrap_or_default();
        match &totals.converted {
            Some(c) => writeln!(
                out,
                "{},{},{},{},{},{}",
                csv_field(date),
                totals.orders,
                c.revenue,
                c.currency,
                average,
                csv_field(&c.not_converted.join(" "))
            )?,
            None => {
                for r in &totals.revenue {
                    writeln!(
                        out,
                        "{},{},{},{},{},",
                        csv_field(date),
                        r.orders,
                        r.revenue.normalize(),
                        r.currency,
                        average
                    )?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use schemas::samples::Sample;

    use super::*;

    #[test]
    fn a_report_renders_both_sections_with_their_totals() {
        let mut report = DailySalesReport::sample();
        report.ai_agent_sales.currencies.clear();
        let mut text = Vec::new();
        render(&report, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("All Sales"), "{text}");
        assert!(text.contains("AI Agent Sales\n    no orders"), "{text}");
        let usd = &report.all_sales.currencies[0];
        assert!(text.contains(&usd.currency), "{text}");
        assert!(text.contains(&format!("revision {}", report.revision)), "{text}");
    }

    #[test]
    fn durations_read_as_days_and_clock_time() {
        use std::str::FromStr;
        let d = |s: &str| rust_decimal::Decimal::from_str(s).unwrap();
        assert_eq!(duration_text(d("75.5")), "00:01:15");
        assert_eq!(duration_text(d("93784")), "1d 02:03:04");
    }
}
