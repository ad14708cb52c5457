//! The report query over the cells of daily reports equals a brute-force computation
//! over the attributed orders themselves, for random orders, teams, currencies, filters
//! and rate tables (days without rates included).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rules::cells;
use rules::fx::{RateTable, round_to_minor_unit};
use rules::query::{Query, TeamFilter, answer};
use rust_decimal::{Decimal, RoundingStrategy};
use schemas::records::{AttributedOrder, Attribution, DailySalesReport, HandledBy, SaleTiming, SalesSection};
use schemas::values::{Money, Timestamp};

const CURRENCIES: [&str; 5] = ["EUR", "PLN", "USD", "JPY", "KWD"];
const TEAMS: [Option<&str>; 4] = [None, Some("t-a"), Some("t-b"), Some("t-c")];
const DAYS: u32 = 6;

fn date(day: u32) -> String {
    format!("2026-11-{:02}", day + 1)
}

#[derive(Debug, Clone)]
struct O {
    day: u32,
    order: AttributedOrder,
}

fn order_strategy() -> impl Strategy<Value = O> {
    (
        0..DAYS,
        0..CURRENCIES.len(),
        0..TEAMS.len(),
        0..3u8,
        any::<bool>(),
        1i64..5_000_000,
        0i64..10_000_000_000,
        0i64..86_400_000_000,
    )
        .prop_map(|(day, currency, team, handled, after, cents, tto, at)| {
            let handled_by = [HandledBy::AiOnly, HandledBy::HumanOnly, HandledBy::AiAndHuman][handled as usize];
            O {
                day,
                order: AttributedOrder {
                    organization_id: "org".into(),
                    customer_id: "c".into(),
                    order_id: String::new(),
                    order_number: String::new(),
                    currency: CURRENCIES[currency].into(),
                    total: Money::new(Decimal::new(cents, 2)).unwrap(),
                    placed_at: Timestamp(1_795_000_000_000_000 + i64::from(day) * 86_400_000_000 + at),
                    attribution: Some(Attribution {
                        chat_id: format!("chat-{at}"),
                        team_id: TEAMS[team].map(str::to_string),
                        chat_started_at: Timestamp(0),
                        chat_ended_at: None,
                        agents: Vec::new(),
                        handled_by,
                        ai_agent_chat: cells::is_ai(handled_by),
                        sale_timing: if after {
                            SaleTiming::AfterChat
                        } else {
                            SaleTiming::DuringChat
                        },
                        time_to_order_micros: tto,
                    }),
                },
            }
        })
}

/// Rates of base EUR: for each day and non-EUR currency, maybe a rate.
fn rates_strategy() -> impl Strategy<Value = Vec<(u32, &'static str, Decimal)>> {
    proptest::collection::vec(
        (0..DAYS, 1..CURRENCIES.len(), 1i64..2_000_000).prop_map(|(d, c, r)| (d, CURRENCIES[c], Decimal::new(r, 4))),
        0..20,
    )
}

fn query_strategy() -> impl Strategy<Value = Query> {
    (
        0..DAYS,
        0..DAYS,
        proptest::option::of(0..CURRENCIES.len()),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec(0..TEAMS.len(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(a, b, currency, timing, teams, ai)| Query {
            organization_id: "org".into(),
            from: date(a.min(b)),
            to: date(a.max(b)),
            currency: currency.map(|c| CURRENCIES[c].to_string()),
            timing: timing.map(|after| {
                if after {
                    SaleTiming::AfterChat
                } else {
                    SaleTiming::DuringChat
                }
            }),
            teams: teams
                .into_iter()
                .map(|t| match TEAMS[t] {
                    Some(id) => TeamFilter::Team(id.into()),
                    None => TeamFilter::NoTeam,
                })
                .collect(),
            ai,
        })
}

/// The plainest lookup: the latest day on or before `day` with both rates.
fn brute_convert(rates: &[(u32, &str, Decimal)], amount: Decimal, from: &str, to: &str, day: u32) -> Option<Decimal> {
    if from == to {
        return Some(amount);
    }
    let rate = |c: &str, d: u32| -> Option<Decimal> {
        if c == "EUR" {
            return Some(Decimal::ONE);
        }
        // The last one written for a (day, currency) wins, as in a compacted topic.
        rates
            .iter()
            .rev()
            .find(|(rd, rc, _)| *rd == d && *rc == c)
            .map(|(_, _, r)| *r)
    };
    (0..=day)
        .rev()
        .find_map(|d| Some((rate(from, d)?, rate(to, d)?)))
        .map(|(rf, rt)| amount * rt / rf)
}

fn round(amount: Decimal, currency: &str) -> Decimal {
    let mut r = amount.round_dp_with_strategy(rules::fx::minor_unit(currency), RoundingStrategy::MidpointNearestEven);
    r.rescale(rules::fx::minor_unit(currency));
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_query_over_cells_equals_brute_force_over_the_orders(
        mut orders in proptest::collection::vec(order_strategy(), 0..60),
        rates in rates_strategy(),
        query in query_strategy(),
    ) {
        for (i, o) in orders.iter_mut().enumerate() {
            o.order.order_id = format!("o{i:03}");
            o.order.order_number = format!("#{i}");
        }
        // The reporter's side: each day's cells.
        let mut days: BTreeMap<u32, (Vec<_>, Vec<String>)> = BTreeMap::new();
        for o in &orders {
            let (c, t) = days.entry(o.day).or_default();
            cells::add_order(c, t, &o.order);
        }
        let reports: Vec<DailySalesReport> = days
            .into_iter()
            .map(|(day, (cells, team_ids))| DailySalesReport {
                organization_id: "org".into(),
                date: date(day),
                timezone: "UTC".into(),
                revision: 1,
                published_at: Timestamp(0),
                all_sales: SalesSection { currencies: Vec::new() },
                ai_agent_sales: SalesSection { currencies: Vec::new() },
                teams_merged: cells::teams_merged(&cells, &team_ids),
                cells,
            })
            .collect();
        let mut table = RateTable::new();
        for (d, c, r) in &rates {
            table.insert(&date(*d), "EUR", c, *r);
        }
        let got = answer(&query, &reports, &table);

        // Brute force over the orders.
        let selected: Vec<&O> = orders
            .iter()
            .filter(|o| {
                let a = o.order.attribution.as_ref().unwrap();
                date(o.day) >= query.from
                    && date(o.day) <= query.to
                    && query.timing.is_none_or(|t| t == a.sale_timing)
                    && (!query.ai || a.ai_agent_chat)
                    && (query.teams.is_empty()
                        || query.teams.iter().any(|f| match f {
                            TeamFilter::Team(id) => a.team_id.as_deref() == Some(id),
                            TeamFilter::NoTeam => a.team_id.is_none(),
                            TeamFilter::Other => false,
                        }))
            })
            .collect();
        prop_assert_eq!(got.totals.orders, selected.len() as i64);
        let mut per_currency: BTreeMap<&str, (i64, Decimal)> = BTreeMap::new();
        for o in &selected {
            let e = per_currency.entry(&o.order.currency).or_default();
            e.0 += 1;
            e.1 += o.order.total.value();
        }
        let got_revenue: Vec<(&str, i64, Decimal)> =
            got.totals.revenue.iter().map(|r| (r.currency.as_str(), r.orders, r.revenue)).collect();
        let want_revenue: Vec<(&str, i64, Decimal)> =
            per_currency.iter().map(|(c, (n, r))| (*c, *n, *r)).collect();
        prop_assert_eq!(got_revenue, want_revenue);
        let tto: i128 = selected.iter().map(|o| i128::from(o.order.attribution.as_ref().unwrap().time_to_order_micros)).sum();
        let want_average = (!selected.is_empty()).then(|| {
            (Decimal::from_i128_with_scale(tto, 0) / Decimal::from(selected.len() as i64) / Decimal::from(1_000_000)).round_dp(6)
        });
        prop_assert_eq!(got.totals.average_time_to_order_seconds, want_average);

        // Per day, and converted: each day's sum per currency at that day's rates.
        let mut by_day: BTreeMap<u32, Vec<&O>> = BTreeMap::new();
        for o in &selected {
            by_day.entry(o.day).or_default().push(o);
        }
        prop_assert_eq!(got.days.iter().map(|d| d.date.clone()).collect::<Vec<_>>(),
            by_day.keys().map(|d| date(*d)).collect::<Vec<_>>());
        if let Some(x) = &query.currency {
            let mut range_total = Decimal::ZERO;
            let mut range_missing = std::collections::BTreeSet::new();
            for (day, list) in &by_day {
                let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
                for o in list {
                    *sums.entry(&o.order.currency).or_default() += o.order.total.value();
                }
                let mut total = Decimal::ZERO;
                let mut missing = Vec::new();
                for (c, amount) in sums {
                    match brute_convert(&rates, amount, c, x, *day) {
                        Some(v) => total += v,
                        None => missing.push(c.to_string()),
                    }
                }
                let got_day = got.days.iter().find(|d| d.date == date(*day)).unwrap();
                let converted = got_day.totals.converted.as_ref().unwrap();
                prop_assert_eq!(converted.revenue, round(total, x));
                prop_assert_eq!(&converted.not_converted, &missing);
                range_total += total;
                range_missing.extend(missing);
            }
            let converted = got.totals.converted.as_ref().unwrap();
            prop_assert_eq!(converted.revenue, round(range_total, x));
            prop_assert_eq!(&converted.not_converted, &range_missing.into_iter().collect::<Vec<_>>());

            // Top 10 by converted value; orders without a rate after them.
            let mut ranked: Vec<(Option<Decimal>, &O)> = selected
                .iter()
                .map(|o| (brute_convert(&rates, o.order.total.value(), &o.order.currency, x, o.day), *o))
                .collect();
            ranked.sort_by(|a, b| {
                let tie = |a: &O, b: &O| {
                    b.order.total.value().cmp(&a.order.total.value())
                        .then(a.order.placed_at.cmp(&b.order.placed_at))
                        .then(a.order.order_id.cmp(&b.order.order_id))
                };
                match (a.0, b.0) {
                    (Some(p), Some(q)) => q.cmp(&p).then_with(|| tie(a.1, b.1)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.1.order.currency.cmp(&b.1.order.currency).then_with(|| tie(a.1, b.1)),
                }
            });
            let want: Vec<(String, Option<Decimal>)> = ranked
                .iter()
                .take(10)
                .map(|(v, o)| (o.order.order_id.clone(), v.map(|v| round_to_minor_unit(v, x))))
                .collect();
            let have: Vec<(String, Option<Decimal>)> =
                got.top_orders.iter().map(|o| (o.order_id.clone(), o.converted_total)).collect();
            prop_assert_eq!(have, want);
        } else {
            prop_assert!(got.totals.converted.is_none());
            let mut want = Vec::new();
            for c in per_currency.keys() {
                let mut of: Vec<&&O> = selected.iter().filter(|o| o.order.currency == *c).collect();
                of.sort_by(|a, b| b.order.total.value().cmp(&a.order.total.value())
                    .then(a.order.placed_at.cmp(&b.order.placed_at))
                    .then(a.order.order_id.cmp(&b.order.order_id)));
                want.extend(of.iter().take(10).map(|o| o.order.order_id.clone()));
            }
            let have: Vec<String> = got.top_orders.iter().map(|o| o.order_id.clone()).collect();
            prop_assert_eq!(have, want);
        }
    }
}
