//! The value types behind Avro's logical types: exact decimals (`decimal`, bytes) and
//! instants (`timestamp-micros`). Records use these instead of floats or bare integers,
//! so money stays exact and times stay typed from the wire to the report.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Total significant digits of every decimal in the schemas.
pub const DECIMAL_PRECISION: u32 = 28;

/// An exact decimal carried as an Avro `decimal` (bytes) with `SCALE` fraction digits.
///
/// The Avro encoding is the big-endian two's-complement of the unscaled value, in as
/// few bytes as the value needs (as Java's `BigInteger.toByteArray` writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ScaledDecimal<const SCALE: u32>(pub Decimal);

/// Money: scale 4 covers the minor units of every ISO 4217 currency (at most 4, the
/// Chilean Unidad de Fomento), precision 28 covers any realistic total.
pub type Money = ScaledDecimal<4>;

/// Seconds with microsecond precision (average time to order).
pub type Seconds = ScaledDecimal<6>;

/// An exchange rate: scale 10 holds every published reference rate exactly (the
/// European Central Bank's have at most 6 significant digits).
pub type Rate = ScaledDecimal<10>;

/// Why a decimal cannot be carried by a schema's decimal type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{value} has more than {scale} decimal places")]
    TooPrecise { value: Decimal, scale: u32 },
    #[error("{value} has more than {DECIMAL_PRECISION} significant digits")]
    TooLarge { value: Decimal },
    #[error("decimal bytes are empty or longer than 16 bytes")]
    BadBytes,
}

impl<const SCALE: u32> ScaledDecimal<SCALE> {
    /// Fraction digits of this type, which its schemas' `decimal` must declare.
    pub const SCALE: u32 = SCALE;

    /// Checks that `value` fits this decimal type exactly (no rounding, ever).
    pub fn new(value: Decimal) -> Result<Self, DecimalError> {
        Self(value).unscaled().map(|_| Self(value))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }

    /// The unscaled integer at `SCALE` (149.99 at scale 4 is 1_499_900).
    pub fn unscaled(&self) -> Result<i128, DecimalError> {
        // Already at the scale (as every decimal read from Avro, and sums of them): the
        // mantissa is the answer, without normalizing and rescaling.
        let rescaled = if self.0.scale() == SCALE {
            self.0
        } else {
            let normalized = self.0.normalize();
            if normalized.scale() > SCALE {
                return Err(DecimalError::TooPrecise {
                    value: self.0,
                    scale: SCALE,
                });
            }
            let mut rescaled = normalized;
            rescaled.rescale(SCALE);
            rescaled
        };
        // rescale stops at a lower scale when the mantissa would outgrow 96 bits; that
        // mantissa read at SCALE would be a different number, and at SCALE the value
        // needs more than 28 digits anyway.
        let unscaled = rescaled.mantissa();
        if rescaled.scale() != SCALE || unscaled.unsigned_abs() >= 10u128.pow(DECIMAL_PRECISION) {
            return Err(DecimalError::TooLarge { value: self.0 });
        }
        Ok(unscaled)
    }

    /// The Avro bytes of this decimal.
    pub fn to_avro_bytes(&self) -> Result<Vec<u8>, DecimalError> {
        let bytes = self.unscaled()?.to_be_bytes();
        // Drop leading bytes that only repeat the sign.
        let mut start = 0;
        while start + 1 < bytes.len() {
            let (byte, next_high_bit) = (bytes[start], bytes[start + 1] & 0x80);
            if (byte == 0x00 && next_high_bit == 0) || (byte == 0xFF && next_high_bit != 0) {
                start += 1;
            } else {
                break;
            }
        }
        Ok(bytes[start..].to_vec())
    }

    /// Reads Avro decimal bytes; malformed or oversized bytes are an error, not a panic.
    pub fn from_avro_bytes(bytes: &[u8]) -> Result<Self, DecimalError> {
        decimal_from_avro_bytes(bytes, SCALE).map(Self)
    }
}

/// The decimal that Avro decimal bytes (two's-complement unscaled value) stand for at
/// `scale`, refusing more than [`DECIMAL_PRECISION`] digits.
pub(crate) fn decimal_from_avro_bytes(bytes: &[u8], scale: u32) -> Result<Decimal, DecimalError> {
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(DecimalError::BadBytes);
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(wide);
    if unscaled.unsigned_abs() >= 10u128.pow(DECIMAL_PRECISION) {
        return Err(DecimalError::BadBytes);
    }
    Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|_| DecimalError::BadBytes)
}

impl<const SCALE: u32> fmt::Display for ScaledDecimal<SCALE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<const SCALE: u32> From<ScaledDecimal<SCALE>> for Decimal {
    fn from(value: ScaledDecimal<SCALE>) -> Decimal {
        value.0
    }
}

impl<const SCALE: u32> Serialize for ScaledDecimal<SCALE> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_avro_bytes().map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, const SCALE: u32> Deserialize<'de> for ScaledDecimal<SCALE> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor<const SCALE: u32>;
        impl<const SCALE: u32> Visitor<'_> for BytesVisitor<SCALE> {
            type Value = ScaledDecimal<SCALE>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "Avro decimal bytes (scale {SCALE})")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
                ScaledDecimal::from_avro_bytes(bytes).map_err(E::custom)
            }
        }
        deserializer.deserialize_bytes(BytesVisitor::<SCALE>)
    }
}

/// An instant, carried as Avro `timestamp-micros`: microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// A duration in whole microseconds (saturating), as event-time arithmetic uses them.
pub fn duration_micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Timestamp {
    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// This instant plus `micros` (saturating).
    pub fn after(&self, micros: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn micros(&self) -> i64 {
        self.0
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Timestamp(at.timestamp_micros())
    }

    /// The instant as a date-time, when it is within chrono's range.
    pub fn to_datetime(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(at) => write!(f, "{}", at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            None => write!(f, "{}us", self.0),
        }
    }
}

/// Lists of random records stay short: records nest lists three deep, and proptest's
/// default of up to 100 elements a level makes cases of millions of values.
#[cfg(any(test, feature = "arbitrary"))]
pub fn small_vec<T: proptest::arbitrary::Arbitrary>() -> impl proptest::strategy::Strategy<Value = Vec<T>> {
    proptest::collection::vec(proptest::arbitrary::any::<T>(), 0..4)
}

#[cfg(any(test, feature = "arbitrary"))]
mod arbitrary {
    use proptest::prelude::*;

    use super::*;

    impl<const SCALE: u32> Arbitrary for ScaledDecimal<SCALE> {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;

        fn arbitrary_with(_: ()) -> Self::Strategy {
            let max = 10i128.pow(DECIMAL_PRECISION) - 1;
            prop_oneof![
                // Everyday amounts, and the extremes the type admits.
                (-1_000_000_000i128..1_000_000_000i128),
                (-max..=max),
            ]
            .prop_map(|unscaled| ScaledDecimal(Decimal::from_i128_with_scale(unscaled, SCALE)))
            .boxed()
        }
    }

    impl Arbitrary for Timestamp {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;

        fn arbitrary_with(_: ()) -> Self::Strategy {
            any::<i64>().prop_map(Timestamp).boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn money(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap()).unwrap()
    }

    #[test]
    fn money_is_the_minimal_twos_complement_of_its_unscaled_value() {
        // 149.99 at scale 4 is 1_499_900 = 0x16_E2_FC.
        assert_eq!(money("149.99").to_avro_bytes().unwrap(), [0x16, 0xE2, 0xFC]);
        assert_eq!(money("0").to_avro_bytes().unwrap(), [0x00]);
        // 0.0128 is 128: needs a leading zero byte to stay positive.
        assert_eq!(money("0.0128").to_avro_bytes().unwrap(), [0x00, 0x80]);
        assert_eq!(money("-0.0001").to_avro_bytes().unwrap(), [0xFF]);
        assert_eq!(money("-0.0129").to_avro_bytes().unwrap(), [0xFF, 0x7F]);
    }

    #[test]
    fn decimal_bytes_round_trip() {
        for s in [
            "0",
            "1",
            "-1",
            "149.99",
            "0.0001",
            "-99999999999999999999999.9999",
            "99999999999999999999999.9999",
        ] {
            let m = money(s);
            assert_eq!(Money::from_avro_bytes(&m.to_avro_bytes().unwrap()).unwrap(), m, "{s}");
        }
    }

    #[test]
    fn more_fraction_digits_than_the_scale_are_refused_not_rounded() {
        assert!(matches!(
            Money::new(Decimal::from_str("0.00001").unwrap()),
            Err(DecimalError::TooPrecise { .. })
        ));
        // Trailing zeros are not precision.
        assert!(Money::new(Decimal::from_str("1.500000").unwrap()).is_ok());
    }

    #[test]
    fn more_than_28_digits_are_refused() {
        assert!(matches!(
            Money::new(Decimal::from_str("1000000000000000000000000").unwrap()),
            Err(DecimalError::TooLarge { .. })
        ));
    }

    #[test]
    fn values_whose_scaled_mantissa_outgrows_96_bits_are_refused_not_rescaled_less() {
        // At scale 4 these need 29 digits, beyond what a 96-bit mantissa holds, so a
        // rescale would stop short of scale 4.
        for s in ["8000000000000000000000000", "9000000000000000000000000.5"] {
            let value = Decimal::from_str(s).unwrap();
            assert!(matches!(Money::new(value), Err(DecimalError::TooLarge { .. })), "{s}");
            assert!(
                matches!(
                    ScaledDecimal::<4>(value).to_avro_bytes(),
                    Err(DecimalError::TooLarge { .. })
                ),
                "{s}"
            );
        }
        // 28 digits at scale 4 fit, and keep their value through the bytes.
        for s in ["999999999999999999999999.9999", "792281625142643375935439.5033"] {
            let m = money(s);
            assert_eq!(m.unscaled().unwrap().to_string(), s.replace('.', ""));
            assert_eq!(Money::from_avro_bytes(&m.to_avro_bytes().unwrap()).unwrap(), m, "{s}");
        }
        let seconds = Seconds::new(Decimal::from_str("9999999999999999999999.999999").unwrap()).unwrap();
        assert_eq!(
            Seconds::from_avro_bytes(&seconds.to_avro_bytes().unwrap()).unwrap(),
            seconds
        );
        assert!(matches!(
            Seconds::new(Decimal::from_str("80000000000000000000000").unwrap()),
            Err(DecimalError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_decimal_bytes_are_an_error() {
        assert_eq!(Money::from_avro_bytes(&[]), Err(DecimalError::BadBytes));
        assert_eq!(Money::from_avro_bytes(&[1; 17]), Err(DecimalError::BadBytes));
        assert_eq!(Money::from_avro_bytes(&[0x7F; 16]), Err(DecimalError::BadBytes));
    }

    #[test]
    fn timestamps_print_as_rfc3339_in_utc() {
        assert_eq!(
            Timestamp(1_700_000_000_123_456).to_string(),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
