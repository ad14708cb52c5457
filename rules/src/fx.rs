//! Currency conversion (DESIGN.md section 7), implemented once.
//!
//! A day's amount in currency C is converted to X with the rates of that day, or of the
//! latest earlier day that has both rates, never a later one; through the base currency
//! when neither C nor X is the base (`amount × rate(B→X) / rate(B→C)`). Everything is a
//! decimal (28 significant digits); the result is rounded once, half to even, to X's
//! ISO 4217 minor unit ([`minor_unit`]), by the caller once it has summed what it shows.
//! A currency with no rate on or before the day is not converted: the answer names it,
//! never drops it or counts it 1:1.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use schemas::records::ExchangeRate;

/// ISO 4217 minor units of the currencies that do not have 2.
const MINOR_UNITS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// The ISO 4217 minor unit of `currency`: 0 for JPY, 3 for KWD, 2 for USD, EUR, PLN
/// and every currency not in the table.
pub fn minor_unit(currency: &str) -> u32 {
    MINOR_UNITS
        .iter()
        .find(|(code, _)| *code == currency)
        .map_or(2, |(_, unit)| *unit)
}

/// An exact amount as shown: without the zeros beyond its currency's minor unit that
/// the records' fixed scale adds (`420.5000` USD is `420.50`, `1200.0000` JPY `1200`),
/// never rounded (`0.1250` USD stays `0.125`).
pub fn shown(amount: Decimal, currency: &str) -> Decimal {
    let mut trimmed = amount.normalize();
    let minor = minor_unit(currency);
    if trimmed.scale() < minor {
        trimmed.rescale(minor);
    }
    trimmed
}

/// `amount` rounded half to even to `currency`'s minor unit.
pub fn round_to_minor_unit(amount: Decimal, currency: &str) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(minor_unit(currency), RoundingStrategy::MidpointNearestEven);
    rounded.rescale(minor_unit(currency));
    rounded
}

/// Daily rates: per base currency and quoted currency, the rate (units of the quoted
/// currency per 1 base) by day. Days are `YYYY-MM-DD` text, which sorts as dates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateTable {
    rates: BTreeMap<(String, String), BTreeMap<String, Decimal>>,
}

impl RateTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one rate: 1 `base` = `rate` `currency` on `date`. A rate that is
    /// not positive is ignored.
    pub fn insert(&mut self, date: &str, base: &str, currency: &str, rate: Decimal) {
        if rate <= Decimal::ZERO || base == currency {
            return;
        }
        self.rates
            .entry((base.to_string(), currency.to_string()))
            .or_default()
            .insert(date.to_string(), rate);
    }

    /// The table of `fx.rates.daily` records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a ExchangeRate>) -> Self {
        let mut table = Self::new();
        for r in records {
            table.insert(&r.date, &r.base_currency, &r.currency, r.rate.value());
        }
        table
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    fn bases(&self) -> Vec<&str> {
        let mut bases: Vec<&str> = self.rates.keys().map(|(b, _)| b.as_str()).collect();
        bases.dedup();
        bases
    }

    /// Rate of `currency` per 1 `base` on exactly `date` (1 when they are the same).
    fn rate_on(&self, base: &str, currency: &str, date: &str) -> Option<Decimal> {
        if base == currency {
            return Some(Decimal::ONE);
        }
        self.rates
            .get(&(base.to_string(), currency.to_string()))?
            .get(date)
            .copied()
    }

    /// The days, latest first, on or before `date` on which `base` has a rate for
    /// `currency` (every day when `currency` is the base: `None`).
    fn days_with(&self, base: &str, currency: &str, date: &str) -> Option<Vec<&str>> {
        if base == currency {
            return None;
        }
        Some(
            self.rates
                .get(&(base.to_string(), currency.to_string()))
                .map(|days| days.range(..=date.to_string()).rev().map(|(d, _)| d.as_str()).collect())
                .unwrap_or_default(),
        )
    }

    /// `amount` in `from` on `date` converted to `to`, not rounded; `None` when there is
    /// no rate on or before `date` (or the result overflows).
    pub fn convert(&self, amount: Decimal, from: &str, to: &str, date: &str) -> Option<Decimal> {
        if from == to {
            return Some(amount);
        }
        let (base_from, base_to) = self.base_rates(from, to, date)?;
        // Multiply first, divide last: one division, at 28 significant digits.
        amount.checked_mul(base_to)?.checked_div(base_from)
    }

    /// The two base rates (of `from`, of `to`) of the latest day on or before `date`
    /// that has both, through the base whose day is latest.
    fn base_rates(&self, from: &str, to: &str, date: &str) -> Option<(Decimal, Decimal)> {
        let mut best: Option<(&str, Decimal, Decimal)> = None;
        for base in self.bases() {
            let candidates = match (self.days_with(base, from, date), self.days_with(base, to, date)) {
                (None, None) => continue,
                (Some(days), None) | (None, Some(days)) => days,
                (Some(a), Some(b)) => a
                    .into_iter()
                    .filter(|d| b.binary_search_by(|x| d.cmp(x)).is_ok())
                    .collect(),
            };
            let Some(day) = candidates.first().copied() else {
                continue;
            };
            let (Some(rate_from), Some(rate_to)) = (self.rate_on(base, from, day), self.rate_on(base, to, day)) else {
                continue;
            };
            if best.is_none_or(|(d, ..)| day > d) {
                best = Some((day, rate_from, rate_to));
            }
        }
        best.map(|(_, f, t)| (f, t))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn an_amount_is_shown_with_its_currencys_digits_and_never_rounded() {
        let shown = |amount: &str, currency: &str| shown(d(amount), currency).to_string();
        assert_eq!(shown("420.5000", "USD"), "420.50");
        assert_eq!(shown("1200.0000", "JPY"), "1200");
        assert_eq!(shown("0.1250", "USD"), "0.125");
        assert_eq!(shown("7.0000", "KWD"), "7.000");
        assert_eq!(shown("-3.1000", "EUR"), "-3.10");
        assert_eq!(shown("0.0000", "USD"), "0.00");
    }

    fn ecb() -> RateTable {
        let mut t = RateTable::new();
        // Friday 2026-11-27; the ECB publishes nothing on the weekend.
        t.insert("2026-11-27", "EUR", "PLN", d("4.2000"));
        t.insert("2026-11-27", "EUR", "USD", d("1.0500"));
        t.insert("2026-11-27", "EUR", "JPY", d("160.00"));
        t.insert("2026-11-27", "EUR", "KWD", d("0.3200"));
        // Monday: PLN and USD only.
        t.insert("2026-11-30", "EUR", "PLN", d("4.3000"));
        t.insert("2026-11-30", "EUR", "USD", d("1.1000"));
        t
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!((minor_unit("JPY"), minor_unit("USD"), minor_unit("KWD")), (0, 2, 3));
        assert_eq!(minor_unit("EUR"), 2);
        assert_eq!(round_to_minor_unit(d("1234.5"), "JPY"), d("1234"), "half to even");
        assert_eq!(round_to_minor_unit(d("1235.5"), "JPY"), d("1236"), "half to even");
        assert_eq!(round_to_minor_unit(d("0.1235"), "KWD"), d("0.124"));
        assert_eq!(round_to_minor_unit(d("0.1225"), "KWD"), d("0.122"));
        assert_eq!(round_to_minor_unit(d("2.675"), "USD"), d("2.68"));
        assert_eq!(round_to_minor_unit(d("2.665"), "USD"), d("2.66"));
        assert_eq!(round_to_minor_unit(d("-2.665"), "USD"), d("-2.66"));
        assert_eq!(round_to_minor_unit(d("3"), "KWD").to_string(), "3.000");
    }

    #[test]
    fn a_day_uses_its_own_rates_and_goes_through_the_base() {
        let t = ecb();
        assert_eq!(t.convert(d("42"), "PLN", "EUR", "2026-11-27"), Some(d("10")));
        assert_eq!(t.convert(d("10"), "EUR", "PLN", "2026-11-30"), Some(d("43")));
        // PLN → USD through EUR: 4.2 PLN = 1 EUR = 1.05 USD.
        assert_eq!(t.convert(d("4.2"), "PLN", "USD", "2026-11-27"), Some(d("1.05")));
        assert_eq!(
            round_to_minor_unit(t.convert(d("1"), "USD", "JPY", "2026-11-27").unwrap(), "JPY"),
            d("152")
        );
    }

    #[test]
    fn a_weekend_uses_the_friday_rates_never_mondays() {
        let t = ecb();
        for day in ["2026-11-28", "2026-11-29"] {
            assert_eq!(t.convert(d("42"), "PLN", "EUR", day), Some(d("10")), "{day}");
        }
        assert_eq!(t.convert(d("43"), "PLN", "EUR", "2026-12-01"), Some(d("10")));
    }

    #[test]
    fn the_latest_day_with_both_rates_is_used() {
        let t = ecb();
        // Monday has PLN but no JPY: Friday has both.
        assert_eq!(t.convert(d("4.2"), "PLN", "JPY", "2026-11-30"), Some(d("160")));
    }

    #[test]
    fn a_missing_rate_is_not_converted_never_one_to_one() {
        let t = ecb();
        assert_eq!(t.convert(d("10"), "SEK", "EUR", "2026-11-27"), None);
        // Before the first rate of the table.
        assert_eq!(t.convert(d("10"), "PLN", "EUR", "2026-11-26"), None);
        assert_eq!(t.convert(d("10"), "EUR", "EUR", "2020-01-01"), Some(d("10")));
        assert_eq!(RateTable::new().convert(d("10"), "PLN", "EUR", "2026-11-27"), None);
    }
}
