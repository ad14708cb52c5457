//! The daily rollup (DESIGN.md section 4) as plain functions: an order's org-local day,
//! the running totals of a day, the report they make, and the wins counter.

use chrono::{Days, NaiveDate, TimeZone};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use schemas::records::{
    AttributedOrder, CurrencyTotals, DailySalesReport, ReportState, SalesSection, SectionState, TeamBreakdown,
    TimingBreakdown, TopOrder, WinsCounter,
};
use schemas::values::{Money, Seconds, Timestamp};

/// Orders each currency's top list keeps.
pub const TOP_ORDERS: usize = 10;

/// An organization's timezone, UTC when it has none or an unknown one.
pub fn timezone(name: Option<&str>) -> Tz {
    name.and_then(|n| n.parse::<Tz>().ok()).unwrap_or(Tz::UTC)
}

/// The first instant of `date` in `tz`. A day whose midnight does not exist (a
/// daylight-saving jump at midnight) starts at the first local time that does.
pub fn start_of(date: NaiveDate, tz: Tz) -> Timestamp {
    let mut local = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..48 {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return Timestamp::from_datetime(at.with_timezone(&chrono::Utc));
        }
        local += chrono::Duration::minutes(30);
    }
    Timestamp::from_datetime(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

/// The org-local day of an instant: its date and the instant the day ends (the next
/// day's first instant; 23, 24 or 25 hours after its start).
pub fn local_day(at: Timestamp, tz: Tz) -> (NaiveDate, Timestamp) {
    let utc = at.to_datetime().unwrap_or_default();
    let date = utc.with_timezone(&tz).date_naive();
    (date, day_end(date, tz))
}

/// The instant `date` ends in `tz`: the next day's first instant.
pub fn day_end(date: NaiveDate, tz: Tz) -> Timestamp {
    start_of(date.checked_add_days(Days::new(1)).unwrap_or(date), tz)
}

fn money(value: Decimal) -> Money {
    Money::new(value).unwrap_or_default()
}

/// A fresh day.
pub fn new_day(organization_id: &str, date: NaiveDate, tz: Tz) -> ReportState {
    ReportState {
        organization_id: organization_id.to_string(),
        date: date.to_string(),
        timezone: tz.name().to_string(),
        published_revision: None,
        sections: Vec::new(),
        cells: Vec::new(),
        team_ids: Vec::new(),
    }
}

/// Adds an attributed order to its day: to All Sales, and to AI Agent Sales when an AI
/// agent took part in its chat, and to its cell (`rules::cells`). Unattributed orders
/// count nowhere.
pub fn add_order(day: &mut ReportState, order: &AttributedOrder) {
    let Some(attribution) = &order.attribution else {
        return;
    };
    rules::cells::add_order(&mut day.cells, &mut day.team_ids, order);
    let sections: &[bool] = if attribution.ai_agent_chat {
        &[false, true]
    } else {
        &[false]
    };
    for ai_agent_only in sections {
        let index = match day
            .sections
            .iter()
            .position(|s| s.ai_agent_only == *ai_agent_only && s.currency == order.currency)
        {
            Some(index) => index,
            None => {
                day.sections.push(SectionState {
                    ai_agent_only: *ai_agent_only,
                    currency: order.currency.clone(),
                    orders: 0,
                    revenue: Money::default(),
                    time_to_order_sum_micros: 0,
                    time_to_order_count: 0,
                    by_sale_timing: Vec::new(),
                    by_team: Vec::new(),
                    top_orders: Vec::new(),
                });
                day.sections.len() - 1
            }
        };
        let section = &mut day.sections[index];
        let total = order.total.value();
        section.orders += 1;
        section.revenue = money(section.revenue.value() + total);
        section.time_to_order_sum_micros = section
            .time_to_order_sum_micros
            .saturating_add(attribution.time_to_order_micros);
        section.time_to_order_count += 1;
        match section
            .by_sale_timing
            .iter_mut()
            .find(|t| t.sale_timing == attribution.sale_timing)
        {
            Some(t) => {
                t.orders += 1;
                t.revenue = money(t.revenue.value() + total);
            }
            None => {
                section.by_sale_timing.push(TimingBreakdown {
                    sale_timing: attribution.sale_timing,
                    orders: 1,
                    revenue: order.total,
                });
                section.by_sale_timing.sort_by_key(|t| t.sale_timing);
            }
        }
        match section.by_team.iter_mut().find(|t| t.team_id == attribution.team_id) {
            Some(t) => {
                t.orders += 1;
                t.revenue = money(t.revenue.value() + total);
            }
            None => {
                section.by_team.push(TeamBreakdown {
                    team_id: attribution.team_id.clone(),
                    orders: 1,
                    revenue: order.total,
                });
                section.by_team.sort_by(|a, b| a.team_id.cmp(&b.team_id));
            }
        }
        section.top_orders.push(TopOrder {
            order_id: order.order_id.clone(),
            order_number: order.order_number.clone(),
            customer_id: order.customer_id.clone(),
            total: order.total,
            placed_at: order.placed_at,
            chat_id: Some(attribution.chat_id.clone()),
        });
        // Highest total first; on a tie the earlier order, then the order id.
        section.top_orders.sort_by(|a, b| {
            b.total
                .value()
                .cmp(&a.total.value())
                .then(a.placed_at.cmp(&b.placed_at))
                .then(a.order_id.cmp(&b.order_id))
        });
        section.top_orders.truncate(TOP_ORDERS);
    }
    day.sections
        .sort_by(|a, b| (a.ai_agent_only, &a.currency).cmp(&(b.ai_agent_only, &b.currency)));
}

/// The average time to order in seconds, to the microsecond (half to even).
pub fn average_seconds(sum_micros: i64, count: i64) -> Option<Seconds> {
    if count <= 0 {
        return None;
    }
    let seconds = Decimal::from(sum_micros) / Decimal::from(count) / Decimal::from(1_000_000);
    Seconds::new(seconds.round_dp(6)).ok()
}

fn section(day: &ReportState, ai_agent_only: bool) -> SalesSection {
    SalesSection {
        currencies: day
            .sections
            .iter()
            .filter(|s| s.ai_agent_only == ai_agent_only)
            .map(|s| CurrencyTotals {
                currency: s.currency.clone(),
                orders: s.orders,
                revenue: s.revenue,
                average_time_to_order_seconds: average_seconds(s.time_to_order_sum_micros, s.time_to_order_count),
                by_sale_timing: s.by_sale_timing.clone(),
                by_team: s.by_team.clone(),
                top_orders: s.top_orders.clone(),
            })
            .collect(),
    }
}

/// The day's report as the next revision (1 for the first publication), and marks the
/// day published at that revision.
pub fn publish(day: &mut ReportState, published_at: Timestamp) -> DailySalesReport {
    let revision = day.published_revision.map_or(1, |r| r + 1);
    day.published_revision = Some(revision);
    DailySalesReport {
        organization_id: day.organization_id.clone(),
        date: day.date.clone(),
        timezone: day.timezone.clone(),
        revision,
        published_at,
        all_sales: section(day, false),
        ai_agent_sales: section(day, true),
        cells: day.cells.clone(),
        teams_merged: rules::cells::teams_merged(&day.cells, &day.team_ids),
    }
}

/// The wins counter after an attributed order placed on `date`: one more win on the
/// counter's day, the first win of a later day, or `None` for an order of an earlier
/// day (it is not a win of the current day; its day's report counts it).
pub fn add_win(
    counter: Option<WinsCounter>,
    organization_id: &str,
    date: NaiveDate,
    tz: Tz,
    at: Timestamp,
) -> Option<WinsCounter> {
    let date_text = date.to_string();
    match counter {
        Some(mut counter) if counter.date == date_text => {
            counter.wins += 1;
            counter.updated_at = counter.updated_at.max(at);
            Some(counter)
        }
        Some(counter) if counter.date > date_text => None,
        _ => Some(WinsCounter {
            organization_id: organization_id.to_string(),
            date: date_text,
            timezone: tz.name().to_string(),
            wins: 1,
            updated_at: at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::NaiveDateTime;
    use schemas::records::{Agent, AgentKind, Attribution, HandledBy, SaleTiming};

    use super::*;

    fn at_local(tz: Tz, text: &str) -> Timestamp {
        let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        Timestamp::from_datetime(
            tz.from_local_datetime(&local)
                .earliest()
                .unwrap()
                .with_timezone(&chrono::Utc),
        )
    }

    fn order(id: &str, total: &str, currency: &str, ai: bool, time_to_order_seconds: i64) -> AttributedOrder {
        AttributedOrder {
            organization_id: "org".into(),
            customer_id: format!("cust-{id}"),
            order_id: id.into(),
            order_number: format!("#{id}"),
            currency: currency.into(),
            total: Money::new(Decimal::from_str(total).unwrap()).unwrap(),
            placed_at: Timestamp(1_800_000_000_000_000),
            attribution: Some(Attribution {
                chat_id: format!("chat-{id}"),
                team_id: Some("sales".into()),
                chat_started_at: Timestamp(0),
                chat_ended_at: None,
                agents: vec![Agent {
                    id: "a".into(),
                    kind: if ai { AgentKind::Ai } else { AgentKind::Human },
                }],
                handled_by: if ai { HandledBy::AiOnly } else { HandledBy::HumanOnly },
                ai_agent_chat: ai,
                sale_timing: SaleTiming::DuringChat,
                time_to_order_micros: time_to_order_seconds * 1_000_000,
            }),
        }
    }

    fn day() -> ReportState {
        new_day("org", NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(), Tz::UTC)
    }

    #[test]
    fn currencies_are_never_mixed_and_ai_orders_count_in_both_sections() {
        let mut d = day();
        for o in [
            order("1", "100.10", "USD", false, 60),
            order("2", "50", "EUR", true, 120),
            order("3", "0.90", "USD", true, 30),
        ] {
            add_order(&mut d, &o);
        }
        let report = publish(&mut d, Timestamp(0));
        let all: Vec<(String, i64, String)> = report
            .all_sales
            .currencies
            .iter()
            .map(|c| (c.currency.clone(), c.orders, c.revenue.value().normalize().to_string()))
            .collect();
        assert_eq!(all, [("EUR".into(), 1, "50".into()), ("USD".into(), 2, "101".into())]);
        let ai: Vec<(String, i64)> = report
            .ai_agent_sales
            .currencies
            .iter()
            .map(|c| (c.currency.clone(), c.orders))
            .collect();
        assert_eq!(ai, [("EUR".into(), 1), ("USD".into(), 1)]);
    }

    #[test]
    fn the_average_time_to_order_is_exact_to_the_microsecond() {
        let mut d = day();
        for (id, seconds) in [("1", 10), ("2", 20), ("3", 21)] {
            add_order(&mut d, &order(id, "1", "USD", false, seconds));
        }
        let report = publish(&mut d, Timestamp(0));
        let average = report.all_sales.currencies[0].average_time_to_order_seconds.unwrap();
        assert_eq!(average.value(), Decimal::from_str("17.000000").unwrap());
        assert_eq!(
            average_seconds(10, 3).unwrap().value(),
            Decimal::from_str("0.000003").unwrap()
        );
        assert_eq!(average_seconds(0, 0), None);
    }

    #[test]
    fn unattributed_orders_count_nowhere() {
        let mut d = day();
        let mut o = order("1", "5", "USD", false, 1);
        o.attribution = None;
        add_order(&mut d, &o);
        assert!(d.sections.is_empty());
    }

    #[test]
    fn the_top_orders_keep_ten_highest_and_ties_go_to_the_earlier_order() {
        let mut d = day();
        for i in 0..12 {
            let mut o = order(&format!("o{i:02}"), if i < 2 { "5" } else { "1" }, "USD", false, 1);
            o.placed_at = Timestamp(1_000 - i);
            add_order(&mut d, &o);
        }
        let top = &d.sections[0].top_orders;
        assert_eq!(top.len(), TOP_ORDERS);
        assert_eq!(top[0].order_id, "o01", "equal totals: the earlier order first");
        assert_eq!(top[1].order_id, "o00");
        assert_eq!(top[2].order_id, "o11");
    }

    #[test]
    fn a_daylight_saving_day_has_23_or_25_hours() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let (date, end) = local_day(at_local(ny, "2026-03-08 12:00:00"), ny);
        assert_eq!(date, spring);
        assert_eq!(end.micros() - start_of(spring, ny).micros(), 23 * 3600 * 1_000_000);
        let autumn = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let (_, end) = local_day(at_local(ny, "2026-11-01 12:00:00"), ny);
        assert_eq!(end.micros() - start_of(autumn, ny).micros(), 25 * 3600 * 1_000_000);
    }

    #[test]
    fn the_last_microsecond_of_a_day_and_the_next_midnight_fall_on_two_days() {
        let warsaw: Tz = "Europe/Warsaw".parse().unwrap();
        let last = at_local(warsaw, "2026-11-27 23:59:59.999999");
        let (date, end) = local_day(last, warsaw);
        assert_eq!(date.to_string(), "2026-11-27");
        assert_eq!(end.micros(), last.micros() + 1);
        let (next, _) = local_day(Timestamp(last.micros() + 1), warsaw);
        assert_eq!(next.to_string(), "2026-11-28");
        // The same instant is still the 27th in UTC (22:59:59.999999Z): the organization's
        // own calendar decides.
        assert_eq!(
            local_day(Timestamp(last.micros() + 1), Tz::UTC).0.to_string(),
            "2026-11-27"
        );
    }

    #[test]
    fn a_late_order_republishes_its_day_as_revision_2() {
        let mut d = day();
        add_order(&mut d, &order("1", "10", "USD", false, 1));
        let first = publish(&mut d, Timestamp(1));
        assert_eq!((first.revision, first.all_sales.currencies[0].orders), (1, 1));
        add_order(&mut d, &order("2", "15", "USD", false, 1));
        let second = publish(&mut d, Timestamp(2));
        assert_eq!((second.revision, second.all_sales.currencies[0].orders), (2, 2));
        assert_eq!(second.all_sales.currencies[0].revenue.value(), Decimal::from(25));
    }

    #[test]
    fn wins_count_up_on_a_day_and_start_again_at_one_on_the_next() {
        let date = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let w = add_win(None, "org", date(27), Tz::UTC, Timestamp(1)).unwrap();
        let w = add_win(Some(w), "org", date(27), Tz::UTC, Timestamp(2)).unwrap();
        assert_eq!(w.wins, 2);
        assert_eq!(add_win(Some(w.clone()), "org", date(26), Tz::UTC, Timestamp(3)), None);
        let next = add_win(Some(w), "org", date(28), Tz::UTC, Timestamp(4)).unwrap();
        assert_eq!((next.date.as_str(), next.wins), ("2026-11-28", 1));
    }

    #[test]
    fn an_unknown_timezone_is_utc() {
        assert_eq!(timezone(Some("Mars/Olympus")), Tz::UTC);
        assert_eq!(timezone(None), Tz::UTC);
        assert_eq!(timezone(Some("Asia/Tokyo")).name(), "Asia/Tokyo");
    }
}
