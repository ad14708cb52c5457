//! `salesctl fx import FILE` and `salesctl fx put`: exchange rates to `fx.rates.daily`
//! (compacted, key `date:currency`, value `ExchangeRate`).
//!
//! `import` reads the European Central Bank's reference-rate CSV layout (its historical
//! file `eurofxref-hist.csv`): a header `Date,USD,JPY,...`, then one line a day, the
//! date as `YYYY-MM-DD` and one rate per currency (units per 1 EUR), `N/A` (or empty)
//! for a missing rate, possibly a trailing empty column. A bad line is refused with its
//! line number and nothing is written.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use kafka_runtime::config::KafkaArgs;
use rdkafka::producer::FutureRecord;
use rust_decimal::Decimal;
use schemas::records::ExchangeRate;
use schemas::topics::Topic;
use schemas::values::Rate;

#[derive(Debug, Subcommand)]
pub enum FxCommand {
    /// Import a reference-rate CSV file in the European Central Bank's layout
    /// (Date,USD,JPY,...; rates per 1 EUR; N/A for a missing rate).
    Import(ImportArgs),
    /// Write one rate: 1 BASE = RATE CURRENCY on DATE.
    Put(PutArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// The base currency of the file's rates.
    #[arg(long, default_value = "EUR")]
    pub base: String,
    /// The `source` written with each rate (default: ecb:<file name>).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The day, YYYY-MM-DD.
    #[arg(long)]
    pub date: NaiveDate,
    /// The base currency (ISO 4217).
    #[arg(long)]
    pub base: String,
    /// The quoted currency (ISO 4217).
    #[arg(long)]
    pub currency: String,
    /// Units of CURRENCY per 1 BASE, a decimal.
    #[arg(long)]
    pub rate: String,
    /// The `source` written with the rate.
    #[arg(long, default_value = "manual")]
    pub source: String,
}

fn currency_code(text: &str) -> Option<String> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())).then(|| text.to_string())
}

/// A positive decimal rate that the `ExchangeRate` schema carries exactly.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let value = Decimal::from_str(text.trim()).map_err(|_| format!("{text:?} is not a decimal rate"))?;
    if value <= Decimal::ZERO {
        return Err(format!("rate {text} is not positive"));
    }
    Rate::new(value).map_err(|e| format!("rate {text}: {e}"))
}

/// The rates of an ECB-layout CSV file: (date, currency, rate), by line.
pub fn parse_ecb_csv(text: &str) -> Result<Vec<(NaiveDate, String, Rate)>, String> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, header) = lines.next().ok_or("the file is empty")?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns.first().map(|c| c.trim_start_matches('\u{feff}')) != Some("Date") {
        return Err(format!("line 1: the header must start with Date, found {header:?}"));
    }
    let mut currencies = Vec::new();
    for (i, column) in columns.iter().enumerate().skip(1) {
        if column.is_empty() && i == columns.len() - 1 {
            break; // the trailing empty column
        }
        currencies.push(currency_code(column).ok_or_else(|| format!("line 1: {column:?} is not a currency code"))?);
    }
    let mut rates = Vec::new();
    for (number, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let date = NaiveDate::parse_from_str(fields[0], "%Y-%m-%d")
            .map_err(|_| format!("line {number}: {:?} is not a date YYYY-MM-DD", fields[0]))?;
        let values = &fields[1..];
        let trailing_empty = values.len() == currencies.len() + 1 && values.last() == Some(&"");
        if values.len() != currencies.len() && !trailing_empty {
            return Err(format!(
                "line {number}: {} rates for {} currencies",
                values.len(),
                currencies.len()
            ));
        }
        for (currency, value) in currencies.iter().zip(values) {
            if value.is_empty() || *value == "N/A" {
                continue;
            }
            let rate = parse_rate(value).map_err(|e| format!("line {number}, {currency}: {e}"))?;
            rates.push((date, currency.clone(), rate));
        }
    }
    Ok(rates)
}

/// Writes rates to `fx.rates.daily`, all enqueued at once, then waits for each.
async fn write(kafka: &KafkaArgs, records: &[ExchangeRate]) -> anyhow::Result<()> {
    let topic = kafka.topic_names()?.name(Topic::FxRatesDaily);
    let producer = crate::write::producer(kafka, "salesctl-fx")?;
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let key = schemas::keys::date_currency(&record.date, &record.currency);
        let value = schemas::encode(record)?;
        loop {
            match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&value)) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err((e, _)) => return Err(e).with_context(|| format!("cannot write to {topic}")),
            }
        }
    }
    for delivery in pending {
        delivery
            .await
            .context("the producer went away")?
            .map_err(|(e, _)| e)
            .with_context(|| format!("cannot write to {topic} at {}", kafka.bootstrap_servers))?;
    }
    Ok(())
}

pub async fn run(kafka: &KafkaArgs, command: FxCommand, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    match command {
        FxCommand::Import(args) => {
            let base = currency_code(&args.base).context("--base is not an ISO 4217 code")?;
            let text =
                std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
            let rates = parse_ecb_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
            let source = args.source.clone().unwrap_or_else(|| {
                format!(
                    "ecb:{}",
                    args.file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                )
            });
            let records: Vec<ExchangeRate> = rates
                .iter()
                .filter(|(_, currency, _)| *currency != base)
                .map(|(date, currency, rate)| ExchangeRate {
                    date: date.to_string(),
                    base_currency: base.clone(),
                    currency: currency.clone(),
                    rate: *rate,
                    source: source.clone(),
                })
                .collect();
            write(kafka, &records).await?;
            let days: std::collections::BTreeSet<NaiveDate> = rates.iter().map(|(d, ..)| *d).collect();
            writeln!(
                out,
                "imported {} rates of {} days ({} to {}) from {}",
                records.len(),
                days.len(),
                days.first().map(ToString::to_string).unwrap_or_default(),
                days.last().map(ToString::to_string).unwrap_or_default(),
                args.file.display()
            )?;
        }
        FxCommand::Put(args) => {
            let base = currency_code(&args.base).context("--base is not an ISO 4217 code")?;
            let currency = currency_code(&args.currency).context("--currency is not an ISO 4217 code")?;
            anyhow::ensure!(base != currency, "--base and --currency are the same");
            let rate = parse_rate(&args.rate).map_err(|e| anyhow::anyhow!("--rate: {e}"))?;
            let record = ExchangeRate {
                date: args.date.to_string(),
                base_currency: base,
                currency,
                rate,
                source: args.source,
            };
            write(kafka, std::slice::from_ref(&record)).await?;
            writeln!(
                out,
                "{}: 1 {} = {} {}",
                record.date, record.base_currency, record.rate, record.currency
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ecb_layout_reads_with_n_a_and_a_trailing_column() {
        let text = "Date,USD,JPY,PLN,\n2026-11-27,1.0500,160.12,N/A,\n2026-11-26,1.0480,159.90,4.2200,\n";
        let rates = parse_ecb_csv(text).unwrap();
        let shown: Vec<String> = rates.iter().map(|(d, c, r)| format!("{d} {c} {r}")).collect();
        assert_eq!(
            shown,
            [
                "2026-11-27 USD 1.0500",
                "2026-11-27 JPY 160.12",
                "2026-11-26 USD 1.0480",
                "2026-11-26 JPY 159.90",
                "2026-11-26 PLN 4.2200"
            ]
        );
    }

    #[test]
    fn a_file_without_the_trailing_column_reads_too() {
        let rates = parse_ecb_csv("Date,USD\r\n2026-11-27,1.05\r\n").unwrap();
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].2.value().to_string(), "1.05");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let bad = [
            ("Date,USD,\n2026-11-27,1.05,\n27/11/2026,1.05,\n", "line 3:"),
            ("Date,USD,\n2026-11-27,abc,\n", "line 2, USD:"),
            ("Date,USD,\n2026-11-27,-1,\n", "line 2, USD: rate -1 is not positive"),
            ("Date,USD,JPY\n2026-11-27,1.05\n", "line 2: 1 rates for 2 currencies"),
            ("Day,USD\n", "line 1:"),
            ("Date,usd\n", "line 1:"),
        ];
        for (text, want) in bad {
            let error = parse_ecb_csv(text).unwrap_err();
            assert!(error.starts_with(want), "{text:?}: {error}");
        }
    }
}

#[cfg(test)]
mod sample_file {
    #[test]
    fn the_shipped_sample_parses_and_covers_every_demo_currency() {
        let text = include_str!("../data/eurofxref-sample.csv");
        let rates = super::parse_ecb_csv(text).unwrap();
        for currency in ["USD", "JPY", "PLN"] {
            assert!(
                rates.iter().filter(|(_, c, _)| c == currency).count() > 500,
                "{currency}"
            );
        }
    }
}
