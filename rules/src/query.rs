//! The report query (DESIGN.md section 7), shared by `salesctl report` and the API:
//! an organization's days, a filter that is a union of cells, optionally one display
//! currency. Input: the latest revision of each day's `DailySalesReport` and the rates.
//!
//! Totals per currency are exact sums of cells. With a display currency, each day's
//! amount in each currency is converted with [`RateTable::convert`] (that day's rates or
//! the latest earlier day's), summed unrounded, and rounded once to the display
//! currency's minor unit where it is shown (each day, the range, each top order).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use schemas::records::{CellOrder, DailySalesReport, SaleTiming, SalesCell};
use schemas::values::Timestamp;
use serde::Serialize;

use crate::cells::{TOP_ORDERS, is_ai, top_order_cmp};
use crate::fx::{RateTable, round_to_minor_unit, shown};

/// A team a filter asks for: a named team, chats without a team, or the teams merged
/// beyond a day's cap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TeamFilter {
    Team(String),
    NoTeam,
    Other,
}

impl TeamFilter {
    /// A team as a filter names it: `none` (chats without a team), `other` (teams merged
    /// beyond a day's cap) or a team id.
    pub fn parse(text: &str) -> Self {
        match text {
            "none" => TeamFilter::NoTeam,
            "other" => TeamFilter::Other,
            id => TeamFilter::Team(id.to_string()),
        }
    }
}

/// A sale timing as a filter names it.
pub fn parse_timing(text: &str) -> Result<SaleTiming, String> {
    match text {
        "during_chat" => Ok(SaleTiming::DuringChat),
        "after_chat" => Ok(SaleTiming::AfterChat),
        other => Err(format!("{other:?} is not a sale timing (during_chat or after_chat)")),
    }
}

/// A display currency: three upper-case letters (ISO 4217).
pub fn check_currency(code: &str) -> Result<(), String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("{code:?} is not an ISO 4217 currency code"))
    }
}

/// What to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub organization_id: String,
    /// First and last org-local day, `YYYY-MM-DD`, both included.
    pub from: String,
    pub to: String,
    pub currency: Option<String>,
    pub timing: Option<SaleTiming>,
    /// Empty: every team.
    pub teams: Vec<TeamFilter>,
    /// AI Agent Sales (`handled_by` in {`ai_only`, `ai_and_human`}) instead of All Sales.
    pub ai: bool,
}

impl Query {
    /// Whether a cell is in the filter.
    pub fn selects(&self, cell: &SalesCell) -> bool {
        self.timing.is_none_or(|t| t == cell.sale_timing)
            && (!self.ai || is_ai(cell.handled_by))
            && (self.teams.is_empty()
                || self.teams.iter().any(|f| match f {
                    TeamFilter::Team(id) => !cell.other_teams && cell.team_id.as_deref() == Some(id),
                    TeamFilter::NoTeam => !cell.other_teams && cell.team_id.is_none(),
                    TeamFilter::Other => cell.other_teams,
                }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub orders: i64,
    pub revenue: Decimal,
}

/// Revenue in the display currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Converted {
    pub currency: String,
    /// Rounded once, half to even, to the currency's minor unit; excludes `not_converted`.
    pub revenue: Decimal,
    /// Currencies with orders but no rate on or before their day: not in `revenue`.
    pub not_converted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub orders: i64,
    /// Per currency, by currency code.
    pub revenue: Vec<CurrencyRevenue>,
    pub converted: Option<Converted>,
    /// Seconds to the microsecond (half to even); `None` without orders.
    pub average_time_to_order_seconds: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayTotals {
    pub date: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeOrder {
    pub date: String,
    pub order_id: String,
    pub order_number: String,
    pub currency: String,
    pub total: Decimal,
    /// In the display currency, rounded to its minor unit; `None` without a rate.
    pub converted_total: Option<Decimal>,
    pub placed_at: Timestamp,
    pub time_to_order_micros: i64,
    pub chat_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub organization_id: String,
    pub from: String,
    pub to: String,
    pub display_currency: Option<String>,
    pub totals: Totals,
    /// Days with orders in the filter, by date.
    pub days: Vec<DayTotals>,
    /// With a display currency: the 10 largest by converted value (orders without a
    /// rate after them); without: the 10 largest of each currency.
    pub top_orders: Vec<RangeOrder>,
    /// Every currency with orders in the range (whatever the filter).
    pub currencies: Vec<String>,
    /// Days whose report has no cells (written before v2): not counted.
    pub days_without_cells: Vec<String>,
    /// Days where teams beyond the cap were merged (a team filter may miss them).
    pub days_with_merged_teams: Vec<String>,
}

/// Running sums of a set of cells.
#[derive(Default)]
struct Sums {
    orders: i64,
    time_to_order_micros: i128,
    revenue: BTreeMap<String, (i64, Decimal)>,
    /// Unrounded converted revenue, and currencies without a rate.
    converted: Decimal,
    not_converted: BTreeSet<String>,
}

impl Sums {
    fn totals(&self, display: Option<&str>) -> Totals {
        Totals {
            orders: self.orders,
            revenue: self
                .revenue
                .iter()
                .map(|(currency, (orders, revenue))| CurrencyRevenue {
                    currency: currency.clone(),
                    orders: *orders,
                    revenue: shown(*revenue, currency),
                })
                .collect(),
            converted: display.map(|currency| Converted {
                currency: currency.to_string(),
                revenue: round_to_minor_unit(self.converted, currency),
                not_converted: self.not_converted.iter().cloned().collect(),
            }),
            average_time_to_order_seconds: average_seconds(self.time_to_order_micros, self.orders),
        }
    }
}

/// Seconds to the microsecond, half to even.
pub fn average_seconds(sum_micros: i128, count: i64) -> Option<Decimal> {
    if count <= 0 {
        return None;
    }
    let sum = Decimal::from_i128_with_scale(sum_micros, 0);
    Some((sum / Decimal::from(count) / Decimal::from(1_000_000)).round_dp(6))
}

/// Answers `query` from the latest revision of each day's report (any order; other
/// organizations and days outside the range are ignored) and the rates.
pub fn answer(query: &Query, reports: &[DailySalesReport], rates: &RateTable) -> Answer {
    let display = query.currency.as_deref();
    let mut reports: Vec<&DailySalesReport> = reports
        .iter()
        .filter(|r| r.organization_id == query.organization_id && r.date >= query.from && r.date <= query.to)
        .collect();
    reports.sort_by(|a, b| a.date.cmp(&b.date));
    let mut range = Sums::default();
    let mut days = Vec::new();
    let mut currencies = BTreeSet::new();
    let mut days_without_cells = Vec::new();
    let mut days_with_merged_teams = Vec::new();
    // Candidates for the top list: (converted value if any, date, order, currency).
    let mut candidates: Vec<(Option<Decimal>, &str, &CellOrder, &str)> = Vec::new();
    for report in reports {
        let has_orders = !report.all_sales.currencies.is_empty();
        if report.cells.is_empty() && has_orders {
            days_without_cells.push(report.date.clone());
        }
        if report.teams_merged > 0 {
            days_with_merged_teams.push(report.date.clone());
        }
        currencies.extend(report.cells.iter().map(|c| c.currency.clone()));
        let mut day = Sums::default();
        let mut revenue: BTreeMap<&str, Decimal> = BTreeMap::new();
        for cell in report.cells.iter().filter(|c| query.selects(c)) {
            day.orders += cell.orders;
            day.time_to_order_micros += i128::from(cell.time_to_order_sum_micros);
            let entry = day.revenue.entry(cell.currency.clone()).or_default();
            entry.0 += cell.orders;
            entry.1 += cell.revenue.value();
            *revenue.entry(&cell.currency).or_default() += cell.revenue.value();
            for order in &cell.top_orders {
                let converted =
                    display.and_then(|x| rates.convert(order.total.value(), &cell.currency, x, &report.date));
                candidates.push((converted, &report.date, order, &cell.currency));
            }
        }
        if day.orders == 0 {
            continue;
        }
        if let Some(x) = display {
            for (currency, amount) in &revenue {
                match rates.convert(*amount, currency, x, &report.date) {
                    Some(value) => day.converted += value,
                    None => {
                        day.not_converted.insert(currency.to_string());
                    }
                }
            }
        }
        range.orders += day.orders;
        range.time_to_order_micros += day.time_to_order_micros;
        for (currency, (orders, revenue)) in &day.revenue {
            let entry = range.revenue.entry(currency.clone()).or_default();
            entry.0 += orders;
            entry.1 += revenue;
        }
        range.converted += day.converted;
        range.not_converted.extend(day.not_converted.iter().cloned());
        days.push(DayTotals {
            date: report.date.clone(),
            totals: day.totals(display),
        });
    }
    let range_order = |(converted, date, order, currency): &(Option<Decimal>, &str, &CellOrder, &str)| RangeOrder {
        date: date.to_string(),
        order_id: order.order_id.clone(),
        order_number: order.order_number.clone(),
        currency: currency.to_string(),
        total: shown(order.total.value(), currency),
        converted_total: converted.zip(display).map(|(v, x)| round_to_minor_unit(v, x)),
        placed_at: order.placed_at,
        time_to_order_micros: order.time_to_order_micros,
        chat_id: order.chat_id.clone(),
    };
    let top_orders = if display.is_some() {
        // Converted first, by exact converted value; then the rest by their own total.
        candidates.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => y.cmp(&x).then_with(|| top_order_cmp(a.2, b.2)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.3.cmp(b.3).then_with(|| top_order_cmp(a.2, b.2)),
        });
        candidates.iter().take(TOP_ORDERS).map(range_order).collect()
    } else {
        candidates.sort_by(|a, b| a.3.cmp(b.3).then_with(|| top_order_cmp(a.2, b.2)));
        let mut per_currency: BTreeMap<&str, usize> = BTreeMap::new();
        candidates
            .iter()
            .filter(|c| {
                let n = per_currency.entry(c.3).or_default();
                *n += 1;
                *n <= TOP_ORDERS
            })
            .map(range_order)
            .collect()
    };
    Answer {
        organization_id: query.organization_id.clone(),
        from: query.from.clone(),
        to: query.to.clone(),
        display_currency: query.currency.clone(),
        totals: range.totals(display),
        days,
        top_orders,
        currencies: currencies.into_iter().collect(),
        days_without_cells,
        days_with_merged_teams,
    }
}
