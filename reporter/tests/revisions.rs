//! The reporter's day closing and revisions, run by the runtime's broker-free task
//! driver: a day is published once the watermark passes its end plus the grace; late
//! orders for it are gathered for the revision delay and make one revision; an order
//! for a day no longer kept is not counted.

use std::time::Duration;

use accounts::settings::Organizations;
use kafka_runtime::driver::TaskDriver;
use reporter::app::{Periods, REVISIONS, Reporter};
use reporter::metrics::ReporterMetrics;
use schemas::records::{AttributedOrder, DailySalesReport, WinsCounter};
use schemas::samples::Sample;
use schemas::topics::{Topic, TopicNames};
use schemas::values::Timestamp;

const HOUR: i64 = 3_600_000_000;
/// 2026-11-27T00:00:00Z: the start of the day under test (the organization has no
/// settings, so its days are UTC days).
const DAY_START: Timestamp = Timestamp(1_795_737_600_000_000);
const DAY_END: Timestamp = Timestamp(DAY_START.0 + 24 * HOUR);

struct Setup {
    driver: TaskDriver,
    input: String,
    reports: String,
    wins: String,
}

fn setup() -> Setup {
    let topics = TopicNames::new("t.").unwrap();
    let periods = Periods {
        grace: Duration::from_secs(3600),
        retention: Duration::from_secs(7 * 86_400),
        revision_delay: Duration::from_secs(600),
    };
    let app = Reporter::new(
        "reporter",
        &topics,
        periods,
        Organizations::default(),
        ReporterMetrics::default(),
    );
    Setup {
        driver: TaskDriver::new(app, 0),
        input: topics.name(Topic::OrdersAttributed),
        reports: topics.name(Topic::ReportsDaily),
        wins: topics.name(Topic::Wins),
    }
}

fn order(id: &str, at: Timestamp) -> AttributedOrder {
    let mut order = AttributedOrder::sample();
    order.order_id = id.into();
    order.order_number = format!("#{id}");
    order.placed_at = at;
    order
}

impl Setup {
    fn pipe(&mut self, order: &AttributedOrder) {
        let value = schemas::encode(order).unwrap();
        let input = self.input.clone();
        self.driver
            .pipe(&input, order.organization_id.as_bytes(), &value)
            .unwrap();
    }

    fn advance(&mut self, to: Timestamp) {
        let input = self.input.clone();
        self.driver.advance(&input, to);
    }

    fn reports(&mut self) -> Vec<DailySalesReport> {
        let reports = self.reports.clone();
        self.driver
            .take_outputs_to(&reports)
            .iter()
            .map(|o| schemas::decode(o.value.as_deref().unwrap()).unwrap())
            .collect()
    }

    fn orders_in(report: &DailySalesReport) -> i64 {
        report.all_sales.currencies.iter().map(|c| c.orders).sum()
    }
}

#[test]
fn a_day_is_published_once_the_watermark_passes_its_end_and_the_grace() {
    let mut s = setup();
    s.pipe(&order("1", Timestamp(DAY_START.0 + 10 * HOUR)));
    s.pipe(&order("2", Timestamp(DAY_START.0 + 11 * HOUR)));
    let wins = s.driver.take_outputs_to(&s.wins.clone());
    assert_eq!(wins.len(), 2, "the wins counter goes out with every order");
    let last: WinsCounter = schemas::decode(wins[1].value.as_deref().unwrap()).unwrap();
    assert_eq!((last.date.as_str(), last.wins), ("2026-11-27", 2));

    s.advance(DAY_END);
    assert!(s.reports().is_empty(), "the grace has not passed yet");
    s.advance(Timestamp(DAY_END.0 + HOUR));
    let reports = s.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].date, "2026-11-27");
    assert_eq!(reports[0].revision, 1);
    assert_eq!(Setup::orders_in(&reports[0]), 2);
}

#[test]
fn late_orders_for_a_published_day_make_one_revision_after_the_delay() {
    let mut s = setup();
    s.pipe(&order("1", Timestamp(DAY_START.0 + 10 * HOUR)));
    let closed = Timestamp(DAY_END.0 + 2 * HOUR);
    s.advance(closed);
    assert_eq!(s.reports()[0].revision, 1);

    // Two late orders for the published day, within the revision delay of each other.
    s.pipe(&order("2", Timestamp(DAY_START.0 + 12 * HOUR)));
    s.advance(Timestamp(closed.0 + 5 * 60_000_000));
    s.pipe(&order("3", Timestamp(DAY_START.0 + 13 * HOUR)));
    assert!(s.reports().is_empty(), "late orders are gathered first");
    assert_eq!(s.driver.store(REVISIONS).len(), 1);

    // A restart while the revision waits loses nothing.
    s.driver.restart();
    s.advance(Timestamp(closed.0 + 10 * 60_000_000));
    let reports = s.reports();
    assert_eq!(reports.len(), 1, "one revision for both late orders");
    assert_eq!(reports[0].revision, 2);
    assert_eq!(Setup::orders_in(&reports[0]), 3);
    assert_eq!(s.driver.store(REVISIONS).len(), 0);
}

#[test]
fn an_order_for_a_day_no_longer_kept_is_not_counted() {
    let mut s = setup();
    s.pipe(&order("1", Timestamp(DAY_START.0 + 10 * HOUR)));
    s.advance(Timestamp(DAY_END.0 + 8 * 24 * HOUR));
    assert_eq!(s.reports().len(), 1);
    s.driver.take_outputs();

    s.pipe(&order("2", Timestamp(DAY_START.0 + 12 * HOUR)));
    s.advance(Timestamp(DAY_END.0 + 9 * 24 * HOUR));
    assert!(
        s.driver.take_outputs().is_empty(),
        "past the retention: no revision, no win"
    );
}
