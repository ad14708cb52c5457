//! The cells of a day's report (DESIGN.md section 7): one per (sale timing, team,
//! `handled_by`, currency) with orders that day, each with its orders, revenue, sum of
//! times to order and top 10 orders. Any filter that is a union of cells is answered
//! exactly from them ([`crate::query`]).
//!
//! **The bound.** A day keeps at most [`team_cap`] named teams: `TEAM_CURRENCY_BUDGET`
//! (100) divided by the day's number of currencies, at least 1 (20 teams at 5
//! currencies, 100 at 1). The kept teams are the smallest team ids of the day; every
//! other team's orders go to the `other_teams` cell of their (timing, `handled_by`,
//! currency), and the report counts the merged teams (`teams_merged`). A day thus holds
//! at most 2 timings × 3 `handled_by` × (named teams + no team + other teams) ×
//! currencies cells, each with at most [`TOP_ORDERS`] orders. Which teams are kept
//! depends only on the set of the day's teams and currencies, never on the order the
//! orders arrive in (the cap only shrinks as currencies arrive, and a team's rank only
//! grows as teams arrive), so every replay gives the same cells. Nothing is refused: an
//! order always lands in a cell.

use schemas::records::{AttributedOrder, CellOrder, HandledBy, SaleTiming, SalesCell};
use schemas::values::Money;

/// Orders each cell's top list keeps.
pub const TOP_ORDERS: usize = 10;

/// Named teams × currencies a day keeps before merging teams into `other_teams` cells.
pub const TEAM_CURRENCY_BUDGET: usize = 100;

/// Named teams a day with `currencies` currencies keeps.
pub fn team_cap(currencies: usize) -> usize {
    (TEAM_CURRENCY_BUDGET / currencies.max(1)).max(1)
}

/// The rank of a `handled_by` in the cells' order.
pub fn handled_by_rank(handled_by: HandledBy) -> u8 {
    match handled_by {
        HandledBy::AiOnly => 0,
        HandledBy::HumanOnly => 1,
        HandledBy::AiAndHuman => 2,
    }
}

/// Whether an AI agent took part: AI Agent Sales is `handled_by` in {`ai_only`,
/// `ai_and_human`}.
pub fn is_ai(handled_by: HandledBy) -> bool {
    matches!(handled_by, HandledBy::AiOnly | HandledBy::AiAndHuman)
}

/// The cells' order: timing, then no team, named teams by id, other teams; then
/// `handled_by`, then currency.
pub fn cell_key(cell: &SalesCell) -> (SaleTiming, bool, Option<&str>, u8, &str) {
    (
        cell.sale_timing,
        cell.other_teams,
        cell.team_id.as_deref(),
        handled_by_rank(cell.handled_by),
        cell.currency.as_str(),
    )
}

/// The order of top lists: the higher total first; on a tie the earlier order, then the
/// smaller order id.
pub fn top_order_cmp(a: &CellOrder, b: &CellOrder) -> std::cmp::Ordering {
    b.total
        .value()
        .cmp(&a.total.value())
        .then(a.placed_at.cmp(&b.placed_at))
        .then_with(|| a.order_id.cmp(&b.order_id))
}

fn add_money(a: Money, b: Money) -> Money {
    Money::new(a.value() + b.value()).unwrap_or(a)
}

/// Adds `from` into `into` (same timing, `handled_by` and currency).
fn merge(into: &mut SalesCell, from: SalesCell) {
    into.orders += from.orders;
    into.revenue = add_money(into.revenue, from.revenue);
    into.time_to_order_sum_micros = into
        .time_to_order_sum_micros
        .saturating_add(from.time_to_order_sum_micros);
    into.top_orders.extend(from.top_orders);
    into.top_orders.sort_by(top_order_cmp);
    into.top_orders.truncate(TOP_ORDERS);
}

/// The cell of (timing, team, `handled_by`, currency), created empty when missing.
fn cell_for<'a>(
    cells: &'a mut Vec<SalesCell>,
    sale_timing: SaleTiming,
    team_id: Option<String>,
    other_teams: bool,
    handled_by: HandledBy,
    currency: &str,
) -> &'a mut SalesCell {
    let index = match cells.iter().position(|c| {
        c.sale_timing == sale_timing
            && c.team_id == team_id
            && c.other_teams == other_teams
            && c.handled_by == handled_by
            && c.currency == currency
    }) {
        Some(index) => index,
        None => {
            cells.push(SalesCell {
                sale_timing,
                team_id,
                other_teams,
                handled_by,
                currency: currency.to_string(),
                orders: 0,
                revenue: Money::default(),
                time_to_order_sum_micros: 0,
                top_orders: Vec::new(),
            });
            cells.len() - 1
        }
    };
    &mut cells[index]
}

/// Distinct teams merged into `other_teams` cells, given the day's sorted `team_ids`.
pub fn teams_merged(cells: &[SalesCell], team_ids: &[String]) -> i32 {
    let currencies = distinct_currencies(cells);
    i32::try_from(team_ids.len().saturating_sub(team_cap(currencies))).unwrap_or(i32::MAX)
}

fn distinct_currencies(cells: &[SalesCell]) -> usize {
    let mut currencies: Vec<&str> = cells.iter().map(|c| c.currency.as_str()).collect();
    currencies.sort_unstable();
    currencies.dedup();
    currencies.len()
}

/// Adds an attributed order to its day's cells; `team_ids` is the day's sorted list of
/// distinct teams. Unattributed orders count nowhere.
pub fn add_order(cells: &mut Vec<SalesCell>, team_ids: &mut Vec<String>, order: &AttributedOrder) {
    let Some(attribution) = &order.attribution else {
        return;
    };
    if let Some(team) = &attribution.team_id
        && let Err(at) = team_ids.binary_search(team)
    {
        team_ids.insert(at, team.clone());
    }
    let mut currencies = distinct_currencies(cells);
    if !cells.iter().any(|c| c.currency == order.currency) {
        currencies += 1;
    }
    let kept = &team_ids[..team_ids.len().min(team_cap(currencies))];
    // Teams that fell out of the cap (a smaller team id or another currency arrived)
    // go to their other-teams cells.
    let (stay, demoted): (Vec<SalesCell>, Vec<SalesCell>) = std::mem::take(cells)
        .into_iter()
        .partition(|c| c.team_id.as_ref().is_none_or(|t| kept.binary_search(t).is_ok()));
    *cells = stay;
    for mut cell in demoted {
        let into = cell_for(
            cells,
            cell.sale_timing,
            None,
            true,
            cell.handled_by,
            &cell.currency.clone(),
        );
        cell.team_id = None;
        merge(into, cell);
    }
    let (team_id, other_teams) = match &attribution.team_id {
        Some(team) if kept.binary_search(team).is_err() => (None, true),
        team => (team.clone(), false),
    };
    let order_cell = SalesCell {
        sale_timing: attribution.sale_timing,
        team_id: team_id.clone(),
        other_teams,
        handled_by: attribution.handled_by,
        currency: order.currency.clone(),
        orders: 1,
        revenue: order.total,
        time_to_order_sum_micros: attribution.time_to_order_micros,
        top_orders: vec![CellOrder {
            order_id: order.order_id.clone(),
            order_number: order.order_number.clone(),
            total: order.total,
            placed_at: order.placed_at,
            time_to_order_micros: attribution.time_to_order_micros,
            chat_id: attribution.chat_id.clone(),
        }],
    };
    let into = cell_for(
        cells,
        attribution.sale_timing,
        team_id,
        other_teams,
        attribution.handled_by,
        &order.currency,
    );
    merge(into, order_cell);
    cells.sort_by(|a, b| cell_key(a).cmp(&cell_key(b)));
}

#[cfg(test)]
mod tests {
    use schemas::records::{Attribution, HandledBy};
    use schemas::values::Timestamp;

    use super::*;

    pub(crate) fn order(
        id: &str,
        total: i64,
        currency: &str,
        team: Option<&str>,
        handled_by: HandledBy,
    ) -> AttributedOrder {
        AttributedOrder {
            organization_id: "org".into(),
            customer_id: format!("c-{id}"),
            order_id: id.into(),
            order_number: format!("#{id}"),
            currency: currency.into(),
            total: Money::new(total.into()).unwrap(),
            placed_at: Timestamp(1_000),
            attribution: Some(Attribution {
                chat_id: format!("chat-{id}"),
                team_id: team.map(str::to_string),
                chat_started_at: Timestamp(0),
                chat_ended_at: None,
                agents: Vec::new(),
                handled_by,
                ai_agent_chat: is_ai(handled_by),
                sale_timing: SaleTiming::DuringChat,
                time_to_order_micros: 1_000,
            }),
        }
    }

    #[test]
    fn one_cell_per_timing_team_handled_by_and_currency() {
        let (mut cells, mut teams) = (Vec::new(), Vec::new());
        for o in [
            order("1", 10, "EUR", Some("a"), HandledBy::AiOnly),
            order("2", 5, "EUR", Some("a"), HandledBy::AiOnly),
            order("3", 7, "PLN", Some("a"), HandledBy::AiOnly),
            order("4", 7, "EUR", None, HandledBy::HumanOnly),
        ] {
            add_order(&mut cells, &mut teams, &o);
        }
        let shape: Vec<(Option<&str>, &str, i64)> = cells
            .iter()
            .map(|c| (c.team_id.as_deref(), c.currency.as_str(), c.orders))
            .collect();
        assert_eq!(shape, [(None, "EUR", 1), (Some("a"), "EUR", 2), (Some("a"), "PLN", 1)]);
        assert_eq!(cells[1].revenue.value(), 15.into());
        assert_eq!(cells[1].top_orders[0].order_id, "1");
    }

    #[test]
    fn teams_beyond_the_cap_merge_into_other_teams_whatever_the_arrival_order() {
        let mut orders: Vec<AttributedOrder> = (0..30)
            .map(|i| {
                order(
                    &format!("o{i}"),
                    i + 1,
                    ["EUR", "PLN", "USD", "JPY", "SEK"][i as usize % 5],
                    Some(&format!("t{i:02}")),
                    HandledBy::AiOnly,
                )
            })
            .collect();
        let build = |orders: &[AttributedOrder]| {
            let (mut cells, mut teams) = (Vec::new(), Vec::new());
            for o in orders {
                add_order(&mut cells, &mut teams, o);
            }
            (cells, teams)
        };
        let (cells, teams) = build(&orders);
        orders.reverse();
        assert_eq!(build(&orders), (cells.clone(), teams.clone()));
        assert_eq!(team_cap(5), 20);
        assert_eq!(teams_merged(&cells, &teams), 10);
        let named: std::collections::BTreeSet<&str> = cells.iter().filter_map(|c| c.team_id.as_deref()).collect();
        assert_eq!(named.len(), 20);
        assert!(named.contains("t00") && named.contains("t19") && !named.contains("t20"));
        let other: i64 = cells.iter().filter(|c| c.other_teams).map(|c| c.orders).sum();
        assert_eq!(other, 10);
        assert_eq!(cells.iter().map(|c| c.orders).sum::<i64>(), 30, "no order is lost");
    }

    /// The largest day the cap admits at 5 currencies: 20 teams, every (timing,
    /// handled_by) with 12 orders a cell, each cell's top list full. Its encoding stays
    /// far below Kafka's default 1 MB message limit.
    #[test]
    fn a_full_day_of_20_teams_and_5_currencies_encodes_well_under_a_megabyte() {
        use schemas::records::{DailySalesReport, SalesSection};
        let (mut cells, mut teams) = (Vec::new(), Vec::new());
        let mut n = 0;
        for team in 0..20 {
            for currency in ["EUR", "PLN", "USD", "JPY", "SEK"] {
                for handled_by in [HandledBy::AiOnly, HandledBy::HumanOnly, HandledBy::AiAndHuman] {
                    for after in [false, true] {
                        for _ in 0..12 {
                            n += 1;
                            let mut o = order(
                                &format!("{n:07}"),
                                100_000 + n,
                                currency,
                                Some(&format!("team-{team:02}")),
                                handled_by,
                            );
                            let a = o.attribution.as_mut().unwrap();
                            a.sale_timing = if after {
                                SaleTiming::AfterChat
                            } else {
                                SaleTiming::DuringChat
                            };
                            a.chat_id = format!("chat-{n:07}");
                            o.order_number = format!("#{n:07}");
                            add_order(&mut cells, &mut teams, &o);
                        }
                    }
                }
            }
        }
        assert_eq!(cells.len(), 600);
        assert_eq!(teams_merged(&cells, &teams), 0);
        let report = DailySalesReport {
            organization_id: "org_8d2f".into(),
            date: "2026-11-27".into(),
            timezone: "Europe/Warsaw".into(),
            revision: 1,
            published_at: Timestamp(0),
            all_sales: SalesSection { currencies: Vec::new() },
            ai_agent_sales: SalesSection { currencies: Vec::new() },
            cells,
            teams_merged: 0,
        };
        let bytes = schemas::encode(&report).unwrap().len();
        eprintln!("20 teams x 5 currencies, every cell full: {bytes} bytes of cells");
        assert!(bytes < 512 * 1024, "{bytes}");
    }
}
