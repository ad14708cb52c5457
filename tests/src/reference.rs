//! The expected daily reports of a simulated trade, computed straight from the
//! simulator's own list of records by the plainest code that follows DESIGN.md section
//! 4: no code of the pipeline, every chat of the customer scanned for every order.

use std::collections::BTreeMap;

use chrono::TimeZone;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use schemas::records::{
    AgentKind, CellOrder, ChatEvent, ChatEventKind, CurrencyTotals, DailySalesReport, EventName, HandledBy, SaleTiming,
    SalesCell, SalesSection, TeamBreakdown, TimingBreakdown, TopOrder, WidgetEvent,
};
use schemas::values::{Money, Seconds, Timestamp};
use simulator::{Plan, Write};

const WINDOW: i64 = 30 * 24 * 3600 * 1_000_000;

/// An order as it counts in a report.
struct Counted {
    order: WidgetEvent,
    ai: bool,
    handled_by: HandledBy,
    timing: SaleTiming,
    team: Option<String>,
    chat_id: String,
    time_to_order: i64,
}

/// The attribution of an order by scanning all of the customer's chat events.
fn attribute(order: &WidgetEvent, chats: &[&ChatEvent]) -> Option<Counted> {
    let t = order.received_at.micros();
    let mut ids: Vec<&str> = chats.iter().map(|c| c.chat_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    let mut best: Option<(i64, &str)> = None;
    for id in ids {
        let of = |kind: ChatEventKind| chats.iter().filter(move |c| c.chat_id == id && c.kind == kind);
        let Some(start) = of(ChatEventKind::ChatStarted).map(|c| c.at.micros()).min() else {
            continue;
        };
        let end = of(ChatEventKind::ChatEnded).map(|c| c.at.micros()).min();
        let joined = of(ChatEventKind::AgentJoined).any(|c| c.at.micros() <= t);
        if joined && start <= t && end.is_none_or(|e| t <= e + WINDOW) && best.is_none_or(|b| (start, id) > b) {
            best = Some((start, id));
        }
    }
    let (start, id) = best?;
    let of = |kind: ChatEventKind| chats.iter().filter(move |c| c.chat_id == id && c.kind == kind);
    let started = of(ChatEventKind::ChatStarted).min_by_key(|c| c.at).expect("it started");
    let end = of(ChatEventKind::ChatEnded).map(|c| c.at.micros()).min();
    let ai = of(ChatEventKind::AgentJoined)
        .any(|c| c.at.micros() <= t && c.agent.as_ref().is_some_and(|a| a.kind == AgentKind::Ai));
    let human = of(ChatEventKind::AgentJoined)
        .any(|c| c.at.micros() <= t && c.agent.as_ref().is_some_and(|a| a.kind == AgentKind::Human));
    Some(Counted {
        order: order.clone(),
        ai,
        handled_by: match (ai, human) {
            (true, true) => HandledBy::AiAndHuman,
            (true, false) => HandledBy::AiOnly,
            _ => HandledBy::HumanOnly,
        },
        timing: if end.is_some_and(|e| t > e) {
            SaleTiming::AfterChat
        } else {
            SaleTiming::DuringChat
        },
        team: started.team_id.clone(),
        chat_id: id.to_string(),
        time_to_order: t - start,
    })
}

fn money(d: Decimal) -> Money {
    Money::new(d).unwrap()
}

fn section(orders: &[&Counted]) -> SalesSection {
    let mut currencies: BTreeMap<String, Vec<&Counted>> = BTreeMap::new();
    for o in orders {
        currencies
            .entry(o.order.order.as_ref().unwrap().currency.clone())
            .or_default()
            .push(o);
    }
    SalesSection {
        currencies: currencies
            .into_iter()
            .map(|(currency, list)| {
                let total = |o: &Counted| o.order.order.as_ref().unwrap().total_price.value();
                let sum = |list: &[&Counted]| money(list.iter().map(|o| total(o)).sum());
                let ttos: i64 = list.iter().map(|o| o.time_to_order).sum();
                let average = Decimal::from(ttos) / Decimal::from(list.len() as i64) / Decimal::from(1_000_000);
                let mut by_sale_timing = Vec::new();
                for timing in [SaleTiming::DuringChat, SaleTiming::AfterChat] {
                    let of: Vec<&Counted> = list.iter().copied().filter(|o| o.timing == timing).collect();
                    if !of.is_empty() {
                        by_sale_timing.push(TimingBreakdown {
                            sale_timing: timing,
                            orders: of.len() as i64,
                            revenue: sum(&of),
                        });
                    }
                }
                let mut teams: BTreeMap<Option<String>, Vec<&Counted>> = BTreeMap::new();
                for o in &list {
                    teams.entry(o.team.clone()).or_default().push(o);
                }
                let by_team = teams
                    .into_iter()
                    .map(|(team_id, of)| TeamBreakdown {
                        team_id,
                        orders: of.len() as i64,
                        revenue: sum(&of),
                    })
                    .collect();
                let mut top: Vec<&Counted> = list.clone();
                top.sort_by(|a, b| {
                    total(b)
                        .cmp(&total(a))
                        .then(a.order.received_at.cmp(&b.order.received_at))
                        .then_with(|| {
                            a.order
                                .order
                                .as_ref()
                                .unwrap()
                                .id
                                .cmp(&b.order.order.as_ref().unwrap().id)
                        })
                });
                CurrencyTotals {
                    currency,
                    orders: list.len() as i64,
                    revenue: sum(&list),
                    average_time_to_order_seconds: Some(Seconds::new(average.round_dp(6)).unwrap()),
                    by_sale_timing,
                    by_team,
                    top_orders: top
                        .iter()
                        .take(10)
                        .map(|o| {
                            let order = o.order.order.as_ref().unwrap();
                            TopOrder {
                                order_id: order.id.clone(),
                                order_number: order.order_number.clone(),
                                customer_id: o.order.customer_id.clone(),
                                total: order.total_price,
                                placed_at: o.order.received_at,
                                chat_id: Some(o.chat_id.clone()),
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// One cell per (timing, team, handled_by, currency): the simulator's shops have far
/// fewer teams than the cap, so no team is merged.
fn cells(orders: &[&Counted]) -> Vec<SalesCell> {
    let rank = |h: HandledBy| match h {
        HandledBy::AiOnly => 0,
        HandledBy::HumanOnly => 1,
        HandledBy::AiAndHuman => 2,
    };
    let mut groups: BTreeMap<(SaleTiming, Option<String>, u8, String), Vec<&Counted>> = BTreeMap::new();
    for o in orders {
        let currency = o.order.order.as_ref().unwrap().currency.clone();
        groups
            .entry((o.timing, o.team.clone(), rank(o.handled_by), currency))
            .or_default()
            .push(o);
    }
    groups
        .into_iter()
        .map(|((sale_timing, team_id, _, currency), mut list)| {
            let total = |o: &Counted| o.order.order.as_ref().unwrap().total_price.value();
            list.sort_by(|a, b| {
                total(b)
                    .cmp(&total(a))
                    .then(a.order.received_at.cmp(&b.order.received_at))
                    .then_with(|| {
                        let id = |o: &Counted| o.order.order.as_ref().unwrap().id.clone();
                        id(a).cmp(&id(b))
                    })
            });
            SalesCell {
                sale_timing,
                team_id,
                other_teams: false,
                handled_by: list[0].handled_by,
                currency,
                orders: list.len() as i64,
                revenue: money(list.iter().map(|o| total(o)).sum()),
                time_to_order_sum_micros: list.iter().map(|o| o.time_to_order).sum(),
                top_orders: list
                    .iter()
                    .take(10)
                    .map(|o| {
                        let order = o.order.order.as_ref().unwrap();
                        CellOrder {
                            order_id: order.id.clone(),
                            order_number: order.order_number.clone(),
                            total: order.total_price,
                            placed_at: o.order.received_at,
                            time_to_order_micros: o.time_to_order,
                            chat_id: o.chat_id.clone(),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The reports of every org-local day that closed (its end plus `grace_micros`) before
/// `closed_before`, from the plan's past trade, by `org:date`; revision 0 and
/// publication time 0 (they are not compared).
pub fn expected_reports(
    plan: &Plan,
    closed_before: Timestamp,
    grace_micros: i64,
) -> BTreeMap<String, DailySalesReport> {
    let writes: Vec<&Write> = plan.past.iter().chain(&plan.past_later).chain(&plan.today).collect();
    let chats: Vec<&ChatEvent> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Chat(c) => Some(c),
            Write::Widget(_) => None,
        })
        .collect();
    // Of all occurrences of each (organization, order id), the one received first counts
    // (on equal times, the smaller event id): the order in which the copies happen to be
    // written or read plays no part.
    let mut first: BTreeMap<(&str, &str), &WidgetEvent> = BTreeMap::new();
    for write in plan.past.iter().chain(&plan.past_later) {
        let Write::Widget(event) = write else { continue };
        if event.name != EventName::StoreOrderWasCreated {
            continue;
        }
        let id = (
            event.organization_id.as_str(),
            event.order.as_ref().unwrap().id.as_str(),
        );
        let earlier = |e: &WidgetEvent| (event.received_at, &event.event_id) < (e.received_at, &e.event_id);
        if first.get(&id).is_none_or(|kept| earlier(kept)) {
            first.insert(id, event);
        }
    }
    let mut days: BTreeMap<(String, chrono::NaiveDate), Vec<Counted>> = BTreeMap::new();
    for event in first.into_values() {
        let theirs: Vec<&ChatEvent> = chats
            .iter()
            .copied()
            .filter(|c| c.organization_id == event.organization_id && c.customer_id == event.customer_id)
            .collect();
        let Some(counted) = attribute(event, &theirs) else {
            continue;
        };
        let tz: Tz = plan
            .organizations
            .iter()
            .find(|o| o.organization_id == event.organization_id)
            .and_then(|o| o.timezone.parse().ok())
            .unwrap_or(Tz::UTC);
        let date = event.received_at.to_datetime().unwrap().with_timezone(&tz).date_naive();
        days.entry((event.organization_id.clone(), date))
            .or_default()
            .push(counted);
    }
    let mut reports = BTreeMap::new();
    for ((org, date), counted) in days {
        let tz: Tz = plan
            .organizations
            .iter()
            .find(|o| o.organization_id == org)
            .and_then(|o| o.timezone.parse().ok())
            .unwrap_or(Tz::UTC);
        let next = date.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap();
        let end = tz
            .from_local_datetime(&next)
            .earliest()
            .unwrap()
            .with_timezone(&chrono::Utc);
        if Timestamp::from_datetime(end).micros() + grace_micros >= closed_before.micros() {
            continue;
        }
        let all: Vec<&Counted> = counted.iter().collect();
        let ai: Vec<&Counted> = counted.iter().filter(|c| c.ai).collect();
        reports.insert(
            format!("{org}:{date}"),
            DailySalesReport {
                organization_id: org.clone(),
                date: date.to_string(),
                timezone: tz.name().to_string(),
                revision: 0,
                published_at: Timestamp(0),
                all_sales: section(&all),
                ai_agent_sales: section(&ai),
                cells: cells(&all),
                teams_merged: 0,
            },
        );
    }
    reports
}
