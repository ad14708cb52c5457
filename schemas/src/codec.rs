//! The one codec of the pipeline: Avro single-object encoding.
//!
//! A value on the wire is `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin)
//! fingerprint of the writer's schema, then the Avro binary body. Any Avro library can
//! read it with the `.avsc` files alone. Decoding finds the writer schema by its
//! fingerprint among every schema version kept in `schemas/avro/` (current) and
//! `schemas/avro/history/` (earlier versions), and resolves it against the current
//! schema of the same record, so old records stay readable after a schema evolves.
//!
//! Bad bytes (short, wrong marker, unknown fingerprint, garbage body) are an error
//! value, never a panic.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::NamesRef;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::records::Record;

/// The two marker bytes that open every single-object encoded value.
pub const MARKER: [u8; 2] = [0xC3, 0x01];
/// Marker plus fingerprint.
pub const HEADER_LEN: usize = 10;
/// The most a decoder may allocate for one value; Kafka records are far smaller, so
/// garbage that claims a huge array fails fast instead of exhausting memory.
const MAX_ALLOCATION: usize = 16 << 20;

/// Every schema file, with its record name and version. The current version of a
/// record is the highest; a test checks this list against the files on disk.
const SCHEMA_FILES: &[(&str, u32, &str)] = &[
    (
        "OrganizationSettings",
        1,
        include_str!("../avro/history/OrganizationSettings.v1.avsc"),
    ),
    (
        "OrganizationSettings",
        2,
        include_str!("../avro/history/OrganizationSettings.v2.avsc"),
    ),
    (
        "OrganizationSettings",
        3,
        include_str!("../avro/OrganizationSettings.avsc"),
    ),
    ("WidgetEvent", 1, include_str!("../avro/history/WidgetEvent.v1.avsc")),
    ("WidgetEvent", 2, include_str!("../avro/WidgetEvent.avsc")),
    ("ChatEvent", 1, include_str!("../avro/ChatEvent.avsc")),
    ("EnrichedOrder", 1, include_str!("../avro/EnrichedOrder.avsc")),
    ("AgentNotification", 1, include_str!("../avro/AgentNotification.avsc")),
    (
        "CustomerOrderSummary",
        1,
        include_str!("../avro/CustomerOrderSummary.avsc"),
    ),
    ("AttributedOrder", 1, include_str!("../avro/AttributedOrder.avsc")),
    ("WinsCounter", 1, include_str!("../avro/WinsCounter.avsc")),
    (
        "DailySalesReport",
        1,
        include_str!("../avro/history/DailySalesReport.v1.avsc"),
    ),
    ("DailySalesReport", 2, include_str!("../avro/DailySalesReport.avsc")),
    ("DeadLetter", 1, include_str!("../avro/DeadLetter.avsc")),
    ("CustomerChats", 1, include_str!("../avro/CustomerChats.avsc")),
    ("CartState", 1, include_str!("../avro/CartState.avsc")),
    ("SeenOrder", 1, include_str!("../avro/SeenOrder.avsc")),
    ("SeenEvent", 1, include_str!("../avro/SeenEvent.avsc")),
    ("PendingOrder", 1, include_str!("../avro/PendingOrder.avsc")),
    ("ReportState", 1, include_str!("../avro/history/ReportState.v1.avsc")),
    ("ReportState", 2, include_str!("../avro/ReportState.avsc")),
    ("ExchangeRate", 1, include_str!("../avro/ExchangeRate.avsc")),
];

/// The Avro namespace of every record.
pub const NAMESPACE: &str = "sales.pipeline";

/// Why bytes could not be decoded, or a record encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("value is {0} bytes, shorter than the 10-byte single-object header")]
    TooShort(usize),
    #[error("value does not start with the Avro single-object marker C3 01 (found {0:02X} {1:02X})")]
    BadMarker(u8, u8),
    #[error("unknown writer schema fingerprint {0:016x}")]
    UnknownFingerprint(u64),
    #[error("expected a {expected} but the value is a {found}")]
    WrongRecord { expected: &'static str, found: String },
    #[error("malformed {record} body: {reason}")]
    Body { record: String, reason: String },
    #[error("{0} trailing bytes after the {1} body")]
    TrailingBytes(usize, String),
    #[error("cannot encode {record}: {reason}")]
    Encode { record: &'static str, reason: String },
    #[error("no schema for record {0}")]
    UnknownRecord(String),
}

/// One schema version.
pub struct SchemaVersion {
    /// Full name, `sales.pipeline.WidgetEvent`.
    pub name: String,
    pub version: u32,
    pub fingerprint: u64,
    pub schema: &'static Schema,
    pub json: &'static str,
    /// Whether this is the record's current version.
    pub current: bool,
    /// Reads a value as this version wrote it.
    reader: GenericDatumReader<'static>,
    /// For the current version: reads a value straight into its Rust record, without
    /// apache-avro's value tree (several times faster; the stages decode every record).
    direct: Option<serde_avro_fast::Schema>,
    /// For an older version, the current version's schema the value is resolved into.
    resolve_into: Option<&'static Schema>,
    /// The current version's named types, for walking decoded values.
    reader_names: &'static NamesRef<'static>,
}

impl std::fmt::Debug for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaVersion")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

struct Registry {
    by_fingerprint: HashMap<u64, SchemaVersion>,
    /// Full name to the current version's fingerprint and writer.
    current: HashMap<String, (u64, GenericDatumWriter<'static>)>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    Registry::load().unwrap_or_else(|e| panic!("the schema files compiled into this binary are invalid: {e}"))
});

impl Registry {
    /// Parses every schema file. The files are compiled in and checked by the tests, so
    /// a failure here is a build defect, reported by panicking at first use.
    fn load() -> Result<Self, String> {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
        // Parsed schemas live for the whole process: the readers and writers borrow them.
        let parsed: Vec<(String, u32, &'static Schema, &'static str)> = SCHEMA_FILES
            .iter()
            .map(|(name, version, json)| {
                let schema = Schema::parse_str(json).map_err(|e| format!("{name} v{version}: {e}"))?;
                let full = format!("{NAMESPACE}.{name}");
                match schema.name() {
                    Some(n) if n.fullname(None) == full => {}
                    other => return Err(format!("{name} v{version}: the file defines {other:?}, not {full}")),
                }
                Ok((full, *version, &*Box::leak(Box::new(schema)), *json))
            })
            .collect::<Result<_, String>>()?;
        let latest = |full: &str| parsed.iter().filter(|(n, ..)| n == full).map(|(_, v, ..)| *v).max();

        let mut by_fingerprint = HashMap::new();
        let mut current = HashMap::new();
        for (full, version, schema, json) in &parsed {
            let schema_json: serde_json::Value =
                serde_json::from_str(json).map_err(|e| format!("{full} v{version}: {e}"))?;
            let fingerprint =
                crate::fingerprint::fingerprint(&schema_json).map_err(|e| format!("{full} v{version}: {e}"))?;
            let is_current = latest(full) == Some(*version);
            let reader_schema = parsed
                .iter()
                .find(|(n, v, ..)| n == full && Some(*v) == latest(full))
                .map(|(_, _, s, _)| *s)
                .ok_or_else(|| format!("{full}: no current version"))?;
            let reader_names: &'static NamesRef<'static> = Box::leak(Box::new(
                apache_avro::schema::ResolvedSchema::try_from(reader_schema)
                    .map_err(|e| format!("{full}: {e}"))?
                    .get_names()
                    .clone(),
            ));
            // The current version is read as it was written; older ones are resolved
            // into it (`read_value`).
            let reader = GenericDatumReader::builder(schema)
                .human_readable(false)
                .build()
                .map_err(|e| format!("{full} v{version}: {e}"))?;
            if is_current {
                let writer = GenericDatumWriter::builder(schema)
                    .human_readable(false)
                    .build()
                    .map_err(|e| format!("{full} v{version}: {e}"))?;
                current.insert(full.clone(), (fingerprint, writer));
            }
            let direct = if is_current {
                Some(direct_schema(&schema_json).map_err(|e| format!("{full} v{version} for direct reading: {e}"))?)
            } else {
                None
            };
            let entry = SchemaVersion {
                name: full.clone(),
                version: *version,
                fingerprint,
                schema,
                json,
                current: is_current,
                reader,
                direct,
                resolve_into: (!is_current).then_some(reader_schema),
                reader_names,
            };
            if let Some(clash) = by_fingerprint.insert(fingerprint, entry) {
                return Err(format!(
                    "{full} v{version} has the same fingerprint as {} v{}",
                    clash.name, clash.version
                ));
            }
        }
        Ok(Registry {
            by_fingerprint,
            current,
        })
    }
}

/// The schema the direct reader reads a current value with: the same, except that a
/// decimal is read as the plain bytes it is written as. The records' decimal types read
/// those bytes themselves ([`crate::values::ScaledDecimal`]); as a decimal the reader
/// would hand each one over as text, to be parsed again.
fn direct_schema(schema: &serde_json::Value) -> Result<serde_avro_fast::Schema, String> {
    fn plain_decimals(node: &mut serde_json::Value) {
        match node {
            serde_json::Value::Object(fields) => {
                let decimal = fields.get("logicalType").and_then(|t| t.as_str()) == Some("decimal")
                    && fields.get("type").and_then(|t| t.as_str()) == Some("bytes");
                if decimal {
                    for attribute in ["logicalType", "precision", "scale"] {
                        fields.remove(attribute);
                    }
                }
                fields.values_mut().for_each(plain_decimals);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(plain_decimals),
            _ => {}
        }
    }
    let mut schema = schema.clone();
    plain_decimals(&mut schema);
    schema
        .to_string()
        .parse::<serde_avro_fast::Schema>()
        .map_err(|e| e.to_string())
}

/// Every schema version known to this binary.
pub fn schema_versions() -> impl Iterator<Item = &'static SchemaVersion> {
    REGISTRY.by_fingerprint.values()
}

/// The schema version a fingerprint names.
pub fn schema_version(fingerprint: u64) -> Option<&'static SchemaVersion> {
    REGISTRY.by_fingerprint.get(&fingerprint)
}

/// The current schema version of a record.
pub fn current_version(full_name: &str) -> Option<&'static SchemaVersion> {
    REGISTRY
        .current
        .get(full_name)
        .and_then(|(fingerprint, _)| schema_version(*fingerprint))
}

/// Encodes a record with its current schema.
pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, CodecError> {
    let (fingerprint, writer) = REGISTRY
        .current
        .get(R::NAME)
        .ok_or_else(|| CodecError::UnknownRecord(R::NAME.to_string()))?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    writer.write_ser(&mut out, record).map_err(|e| CodecError::Encode {
        record: R::NAME,
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Splits the header off and finds the writer schema.
pub fn writer_schema(bytes: &[u8]) -> Result<(&'static SchemaVersion, &[u8]), CodecError> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(CodecError::TooShort(bytes.len()));
    };
    if header[..2] != MARKER {
        return Err(CodecError::BadMarker(header[0], header[1]));
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&header[2..]);
    let fingerprint = u64::from_le_bytes(fingerprint);
    let version = schema_version(fingerprint).ok_or(CodecError::UnknownFingerprint(fingerprint))?;
    Ok((version, body))
}

/// Reads the body into an Avro value of the record's current schema.
fn read_value(version: &SchemaVersion, body: &[u8]) -> Result<Value, CodecError> {
    let malformed = |e: apache_avro::Error| CodecError::Body {
        record: version.name.clone(),
        reason: e.to_string(),
    };
    let mut cursor = Cursor::new(body);
    let mut value = version.reader.read_value(&mut cursor).map_err(malformed)?;
    let rest = body.len() - usize::try_from(cursor.position()).unwrap_or(body.len());
    if rest > 0 {
        return Err(CodecError::TrailingBytes(rest, version.name.clone()));
    }
    if let Some(current) = version.resolve_into {
        widen_decimals(&mut value);
        value = value
            .resolve_with_names(current, version.reader_names)
            .map_err(malformed)?;
    }
    Ok(value)
}

/// Bytes every decimal is widened to before resolution: enough for 38 digits, and what
/// [`crate::values`] reads at most.
const WIDE_DECIMAL_BYTES: usize = 16;

/// Avro writes a `bytes` decimal in as few bytes as its value needs (149.9900 in 3),
/// but apache-avro's resolution refuses a decimal whose byte length could not hold the
/// schema's whole precision, so no older version of a record with an amount would
/// resolve. Sign-extending each one to [`WIDE_DECIMAL_BYTES`] keeps the number and
/// passes that check.
fn widen_decimals(value: &mut Value) {
    match value {
        Value::Decimal(decimal) => {
            if let Ok(bytes) = Vec::<u8>::try_from(&*decimal)
                && bytes.len() < WIDE_DECIMAL_BYTES
            {
                let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                    0xFF
                } else {
                    0x00
                };
                let mut wide = vec![fill; WIDE_DECIMAL_BYTES - bytes.len()];
                wide.extend_from_slice(&bytes);
                *decimal = apache_avro::Decimal::from(wide);
            }
        }
        Value::Record(fields) => fields.iter_mut().for_each(|(_, field)| widen_decimals(field)),
        Value::Union(_, inner) => widen_decimals(inner),
        Value::Array(items) => items.iter_mut().for_each(widen_decimals),
        Value::Map(entries) => entries.values_mut().for_each(widen_decimals),
        _ => {}
    }
}

/// The writer schema of a value that must be an `R`, and its body.
fn writer_schema_of<R: Record>(bytes: &[u8]) -> Result<(&'static SchemaVersion, &[u8]), CodecError> {
    let (version, body) = writer_schema(bytes)?;
    if version.name != R::NAME {
        return Err(CodecError::WrongRecord {
            expected: R::NAME,
            found: version.name.clone(),
        });
    }
    Ok((version, body))
}

/// Decodes a record written with any known version of its schema.
pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, CodecError> {
    let (version, body) = writer_schema_of::<R>(bytes)?;
    match &version.direct {
        Some(schema) => read_direct(version, schema, body),
        None => decode_through_value(version, body),
    }
}

/// Reads a value of the current schema straight into `R`.
fn read_direct<R: Record>(
    version: &SchemaVersion,
    schema: &serde_avro_fast::Schema,
    body: &[u8],
) -> Result<R, CodecError> {
    use std::io::BufRead;
    let malformed = |reason: String| CodecError::Body {
        record: version.name.clone(),
        reason,
    };
    let mut state = serde_avro_fast::de::DeserializerState::from_slice(body, schema);
    let record = R::deserialize(state.deserializer()).map_err(|e| malformed(e.to_string()))?;
    let rest = state.into_reader().fill_buf().map_or(0, |rest| rest.len());
    if rest > 0 {
        return Err(CodecError::TrailingBytes(rest, version.name.clone()));
    }
    Ok(record)
}

/// Reads a value through apache-avro's value tree, resolving an older version into the
/// current one.
fn decode_through_value<R: Record>(version: &SchemaVersion, body: &[u8]) -> Result<R, CodecError> {
    let value = read_value(version, body)?;
    apache_avro::from_value::<R>(&value).map_err(|e| CodecError::Body {
        record: version.name.clone(),
        reason: e.to_string(),
    })
}

/// [`decode`] through apache-avro's value tree whatever the writer's version: the
/// reference the direct reading is checked against.
pub fn decode_via_value<R: Record>(bytes: &[u8]) -> Result<R, CodecError> {
    let (version, body) = writer_schema_of::<R>(bytes)?;
    decode_through_value(version, body)
}

/// A value decoded without knowing its type in advance, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedJson {
    /// Full name of the record.
    pub record: String,
    /// The schema version it was written with.
    pub version: u32,
    pub fingerprint: u64,
    /// The value in the record's current schema: decimals as strings, timestamps as
    /// RFC 3339 strings, bytes as lowercase hex, enums as their symbols.
    pub value: serde_json::Value,
}

/// Decodes any record by its fingerprint into JSON (used by `salesctl tail`).
pub fn decode_json(bytes: &[u8]) -> Result<DecodedJson, CodecError> {
    let (version, body) = writer_schema(bytes)?;
    let value = read_value(version, body)?;
    let current = current_version(&version.name).ok_or_else(|| CodecError::UnknownRecord(version.name.clone()))?;
    let value = to_json(&value, current.schema, version.reader_names).map_err(|reason| CodecError::Body {
        record: version.name.clone(),
        reason,
    })?;
    Ok(DecodedJson {
        record: version.name.clone(),
        version: version.version,
        fingerprint: version.fingerprint,
        value,
    })
}

fn to_json(value: &Value, schema: &Schema, names: &NamesRef<'_>) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    let schema = match schema {
        Schema::Ref { name } => *names
            .get(name)
            .ok_or_else(|| format!("unresolved schema reference {name:?}"))?,
        other => other,
    };
    Ok(match (value, schema) {
        (Value::Union(index, inner), Schema::Union(union)) => {
            let branch = usize::try_from(*index)
                .ok()
                .and_then(|i| union.variants().get(i))
                .ok_or_else(|| format!("union branch {index} out of range"))?;
            to_json(inner, branch, names)?
        }
        (Value::Record(fields), Schema::Record(record)) => {
            let mut object = serde_json::Map::new();
            for (field_schema, (name, field)) in record.fields.iter().zip(fields) {
                object.insert(name.clone(), to_json(field, &field_schema.schema, names)?);
            }
            J::Object(object)
        }
        (Value::Array(items), Schema::Array(array)) => J::Array(
            items
                .iter()
                .map(|item| to_json(item, &array.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(entries), Schema::Map(map)) => J::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v, &map.types, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        (Value::Decimal(decimal), Schema::Decimal(decimal_schema)) => {
            let bytes: Vec<u8> = decimal.try_into().map_err(|e: apache_avro::Error| e.to_string())?;
            J::String(decimal_string(&bytes, decimal_schema.scale)?)
        }
        (Value::TimestampMicros(micros), _) => J::String(crate::values::Timestamp(*micros).to_string()),
        (Value::Enum(_, symbol), _) => J::String(symbol.clone()),
        (Value::String(s), _) => J::String(s.clone()),
        (Value::Bytes(bytes), _) => J::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        (Value::Boolean(b), _) => J::Bool(*b),
        (Value::Int(i), _) => J::from(*i),
        (Value::Long(l), _) => J::from(*l),
        (Value::Float(f), _) => J::from(f64::from(*f)),
        (Value::Double(d), _) => J::from(*d),
        (Value::Null, _) => J::Null,
        (other, schema) => return Err(format!("value {other:?} does not fit schema {schema:?}")),
    })
}

/// The decimal a two's-complement unscaled value and a scale stand for, as text.
fn decimal_string(bytes: &[u8], scale: usize) -> Result<String, String> {
    let scale = u32::try_from(scale).map_err(|_| "decimal scale too large".to_string())?;
    crate::values::decimal_from_avro_bytes(bytes, scale)
        .map(|d| d.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::every_record;
    use crate::records::*;
    use crate::samples::Sample;

    #[test]
    fn an_older_widget_event_with_amounts_reads_exactly_and_unverified() {
        // Written by WidgetEvent v1, before identity_verified; its amounts are decimals
        // of a few bytes, which resolution must take as they are.
        let old = include_bytes!("../fixtures/WidgetEvent.v1.avro");
        assert_eq!(writer_schema(old).unwrap().0.version, 1);
        let event: WidgetEvent = decode(old).unwrap();
        let sample = WidgetEvent::sample();
        assert_eq!(event.order, sample.order);
        assert_eq!(event.cart_lines, sample.cart_lines);
        assert!(!event.identity_verified);
        let json = decode_json(old).unwrap().value;
        assert_eq!(json["order"]["total_price"], "149.9900");
        assert_eq!(json["identity_verified"], false);
    }

    #[test]
    fn older_organization_settings_read_with_identity_off() {
        for old in [
            &include_bytes!("../fixtures/OrganizationSettings.v1.avro")[..],
            &include_bytes!("../fixtures/OrganizationSettings.v2.avro")[..],
        ] {
            let settings: OrganizationSettings = decode(old).unwrap();
            assert_eq!(settings.organization_id, "org_8d2f");
            assert_eq!(settings.identity_mode, IdentityMode::Off);
            assert_eq!(
                (settings.identity_key_id, settings.identity_previous_key_id),
                (None, None)
            );
        }
    }

    #[test]
    fn widening_keeps_the_number_of_a_negative_decimal() {
        let mut value = Value::Decimal(apache_avro::Decimal::from([0xFF, 0x38]));
        widen_decimals(&mut value);
        let Value::Decimal(decimal) = value else { panic!() };
        let bytes = Vec::<u8>::try_from(&decimal).unwrap();
        assert_eq!(bytes.len(), WIDE_DECIMAL_BYTES);
        assert_eq!(i128::from_be_bytes(bytes.try_into().unwrap()), -200);
    }

    #[test]
    fn a_short_buffer_is_an_error() {
        assert_eq!(decode::<WidgetEvent>(&[0xC3, 0x01, 0, 0]), Err(CodecError::TooShort(4)));
        assert_eq!(decode_json(&[]), Err(CodecError::TooShort(0)));
    }

    #[test]
    fn a_missing_marker_is_an_error() {
        let mut bytes = encode(&WidgetEvent::sample()).unwrap();
        bytes[0] = b'{';
        assert_eq!(decode::<WidgetEvent>(&bytes), Err(CodecError::BadMarker(b'{', 0x01)));
    }

    #[test]
    fn an_unknown_fingerprint_is_an_error_naming_it() {
        let mut bytes = encode(&WidgetEvent::sample()).unwrap();
        bytes[2..10].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
        let err = decode::<WidgetEvent>(&bytes).unwrap_err();
        assert_eq!(err, CodecError::UnknownFingerprint(0x0123_4567_89ab_cdef));
        assert!(err.to_string().contains("0123456789abcdef"));
    }

    #[test]
    fn a_record_of_another_type_is_an_error() {
        let bytes = encode(&ChatEvent::sample()).unwrap();
        assert!(matches!(
            decode::<WidgetEvent>(&bytes),
            Err(CodecError::WrongRecord { .. })
        ));
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let bytes = encode(&WidgetEvent::sample()).unwrap();
        for cut in HEADER_LEN..bytes.len() {
            assert!(decode::<WidgetEvent>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&SeenEvent::sample()).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<SeenEvent>(&bytes),
            Err(CodecError::TrailingBytes(1, _))
        ));
    }

    #[test]
    fn an_amount_too_precise_for_its_schema_does_not_encode() {
        let mut event = WidgetEvent::sample();
        if let Some(order) = event.order.as_mut() {
            order.total_price = crate::values::ScaledDecimal(rust_decimal::Decimal::new(1, 6));
        }
        assert!(matches!(encode(&event), Err(CodecError::Encode { .. })));
    }

    #[test]
    fn json_shows_decimals_as_text_and_times_as_rfc3339() {
        let decoded = decode_json(&encode(&WidgetEvent::sample()).unwrap()).unwrap();
        assert_eq!(decoded.record, "sales.pipeline.WidgetEvent");
        assert_eq!(decoded.value["order"]["total_price"], "149.9900");
        assert_eq!(decoded.value["received_at"], "2026-11-27T10:15:30.123456Z");
        assert_eq!(decoded.value["name"], "store_order_was_created");
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    macro_rules! round_trips {
        ($($ty:ident),*) => {
            proptest! {
                #![proptest_config(config())]
                $(
                    #[test]
                    #[allow(non_snake_case)]
                    fn $ty(record in any::<$ty>()) {
                        let bytes = encode(&record).unwrap();
                        prop_assert_eq!(decode::<$ty>(&bytes).unwrap(), record.clone());
                        prop_assert_eq!(decode_via_value::<$ty>(&bytes).unwrap(), record);
                        prop_assert!(decode_json(&bytes).is_ok());
                    }
                )*
            }
        };
    }

    mod random_records_round_trip {
        use super::*;
        every_record!(round_trips);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..config() })]

        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_json(&bytes);
            let _ = decode::<WidgetEvent>(&bytes);
        }

        #[test]
        fn random_bodies_behind_a_known_header_never_panic(
            which in 0usize..64,
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let versions: Vec<_> = schema_versions().collect();
            let version = versions[which % versions.len()];
            let mut bytes = MARKER.to_vec();
            bytes.extend_from_slice(&version.fingerprint.to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = decode_json(&bytes);
        }

        #[test]
        fn flipping_bytes_of_a_valid_record_never_panics(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode(&DailySalesReport::sample()).unwrap();
            for (index, value) in flips {
                let i = HEADER_LEN + index.index(bytes.len() - HEADER_LEN);
                bytes[i] = value;
            }
            let _ = decode::<DailySalesReport>(&bytes);
            let _ = decode_json(&bytes);
        }
    }
}
