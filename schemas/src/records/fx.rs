//! `fx.rates.daily`: exchange rates as data, written by `salesctl fx`.

use serde::{Deserialize, Serialize};

use crate::values::Rate;

/// A reference rate of one day: 1 `base_currency` is `rate` units of `currency`
/// (the European Central Bank's reference rates have base EUR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct ExchangeRate {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub base_currency: String,
    pub currency: String,
    pub rate: Rate,
    pub source: String,
}
