//! `salesctl report --org ORG --from DATE --to DATE [--json]`: an organization's daily
//! reports, the latest revision of each day, as a readable table or as JSON.

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
use schemas::records::{CurrencyTotals, DailySalesReport, SalesSection};
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
}

/// Reads `sales.reports.daily` to its end and returns the latest revision of each of
/// the organization's days in `[from, to]`, by date.
pub async fn load(kafka: &KafkaArgs, args: &ReportArgs) -> anyhow::Result<Vec<DailySalesReport>> {
    schemas::validation::organization_id("--org", &args.org).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(args.from <= args.to, "--from {} is after --to {}", args.from, args.to);
    let topic = kafka.topic_names()?.name(Topic::ReportsDaily);
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
    let mut latest: BTreeMap<NaiveDate, DailySalesReport> = BTreeMap::new();
    let prefix = format!("{}:", args.org);
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
        let Some(date) = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix(&prefix))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if date < args.from || date > args.to {
            continue;
        }
        match message.payload().map(schemas::decode::<DailySalesReport>) {
            Some(Ok(report)) => {
                if latest.get(&date).is_none_or(|kept| kept.revision <= report.revision) {
                    latest.insert(date, report);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(offset = message.offset(), error = %e, "a report that does not decode skipped")
            }
            // A tombstone: the day was removed.
            None => {
                latest.remove(&date);
            }
        }
    }
    Ok(latest.into_values().collect())
}

pub async fn run(kafka: &KafkaArgs, args: &ReportArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let reports = load(kafka, args).await?;
    if args.json {
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
