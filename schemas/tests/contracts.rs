//! The schema files are the truth: these tests hold the Rust types, the fixtures and
//! every schema version to them, without a broker.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::types::Value;
use schemas::codec::{self, NAMESPACE, SchemaVersion};
use schemas::records::*;
use schemas::samples::Sample;
use schemas::values::{DECIMAL_PRECISION, Money, Rate, Seconds};
use schemas::{Record, decode, encode, every_record};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn versions_of(full_name: &str) -> Vec<&'static SchemaVersion> {
    let mut versions: Vec<_> = codec::schema_versions().filter(|v| v.name == full_name).collect();
    versions.sort_by_key(|v| v.version);
    versions
}

fn current(full_name: &str) -> &'static SchemaVersion {
    codec::current_version(full_name).unwrap_or_else(|| panic!("no current schema for {full_name}"))
}

#[test]
fn every_schema_file_on_disk_is_compiled_in_and_nothing_else() {
    let mut on_disk = BTreeSet::new();
    for path in files_in(&crate_dir().join("avro"), "avsc") {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        on_disk.insert((format!("{NAMESPACE}.{name}"), None));
    }
    for path in files_in(&crate_dir().join("avro/history"), "avsc") {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let (name, version) = stem
            .rsplit_once(".v")
            .unwrap_or_else(|| panic!("{stem}: history files are Name.vN.avsc"));
        on_disk.insert((format!("{NAMESPACE}.{name}"), Some(version.parse::<u32>().unwrap())));
    }
    let compiled: BTreeSet<_> = codec::schema_versions()
        .map(|v| (v.name.clone(), if v.current { None } else { Some(v.version) }))
        .collect();
    assert_eq!(on_disk, compiled);
}

#[test]
fn every_record_type_has_a_current_schema_and_round_trips_its_sample() {
    macro_rules! check {
        ($($ty:ident),*) => {$(
            let sample = $ty::sample();
            let bytes = encode(&sample).unwrap_or_else(|e| panic!("{}: {e}", stringify!($ty)));
            assert_eq!(&bytes[..2], &[0xC3, 0x01]);
            assert_eq!(u64::from_le_bytes(bytes[2..10].try_into().unwrap()), current($ty::NAME).fingerprint);
            assert_eq!(decode::<$ty>(&bytes).unwrap(), sample, "{}", stringify!($ty));
        )*};
    }
    every_record!(check);
}

/// Differences between a serialized Rust value and the schema it must follow.
fn drift(value: &Value, schema: &Schema, names: &NamesRef<'_>, path: &str, problems: &mut Vec<String>) {
    let schema = match schema {
        Schema::Ref { name } => names[name],
        other => other,
    };
    match (value, schema) {
        (Value::Union(_, inner), _) => drift(inner, schema, names, path, problems),
        (Value::Null, Schema::Union(_)) => {
            problems.push(format!("{path}: the sample leaves this optional field unset"))
        }
        (_, Schema::Union(union)) => {
            let branch = union.variants().iter().find(|b| !matches!(b, Schema::Null)).unwrap();
            drift(value, branch, names, path, problems);
        }
        (Value::Record(fields), Schema::Record(record)) => {
            let in_type: BTreeSet<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            let in_schema: BTreeSet<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            for missing in in_schema.difference(&in_type) {
                problems.push(format!("{path}.{missing}: in the schema but not in the Rust type"));
            }
            for extra in in_type.difference(&in_schema) {
                problems.push(format!("{path}.{extra}: in the Rust type but not in the schema"));
            }
            for (name, field) in fields {
                if let Some(f) = record.fields.iter().find(|f| &f.name == name) {
                    drift(field, &f.schema, names, &format!("{path}.{name}"), problems);
                }
            }
        }
        (Value::Array(items), Schema::Array(array)) => {
            if items.is_empty() {
                problems.push(format!("{path}: the sample leaves this list empty"));
            }
            for (i, item) in items.iter().enumerate() {
                drift(item, &array.items, names, &format!("{path}[{i}]"), problems);
            }
        }
        (Value::String(symbol) | Value::Enum(_, symbol), Schema::Enum(e)) => {
            if !e.symbols.contains(symbol) {
                problems.push(format!("{path}: variant {symbol} is not a symbol of {}", e.name.name()));
            }
        }
        (Value::Bytes(_), Schema::Decimal(decimal)) => {
            // The bytes are an unscaled integer: read at another scale than the Rust type
            // writes, every amount would be off by powers of ten, silently.
            let scale = decimal_scale_of(path);
            if decimal.scale != scale as usize || decimal.precision != DECIMAL_PRECISION as usize {
                problems.push(format!(
                    "{path}: the schema's decimal has precision {} and scale {}, the Rust type writes precision {DECIMAL_PRECISION} and scale {scale}",
                    decimal.precision, decimal.scale
                ));
            }
        }
        (Value::Bytes(_), Schema::Bytes)
        | (Value::Long(_), Schema::TimestampMicros | Schema::Long)
        | (Value::Int(_), Schema::Int)
        | (Value::String(_), Schema::String)
        | (Value::Boolean(_), Schema::Boolean) => {}
        (value, schema) => problems.push(format!("{path}: Rust value {value:?} does not fit {schema:?}")),
    }
}

/// The scale of the Rust decimal type a field has. Serialized, a `Money` and a `Seconds`
/// are the same bytes, so the type is told by the field's name: durations in seconds are
/// named `*_seconds` and are `Seconds`; exchange rates are named `rate` and are `Rate`;
/// every other decimal is `Money`.
fn decimal_scale_of(path: &str) -> u32 {
    let field = path.rsplit('.').next().unwrap_or(path);
    let field = field.split('[').next().unwrap_or(field);
    if field.ends_with("_seconds") {
        Seconds::SCALE
    } else if field == "rate" {
        Rate::SCALE
    } else {
        Money::SCALE
    }
}

#[test]
fn no_rust_type_drifts_from_its_schema_file() {
    let mut problems = Vec::new();
    macro_rules! check {
        ($($ty:ident),*) => {$(
            let version = current($ty::NAME);
            let resolved = ResolvedSchema::try_from(version.schema).unwrap();
            let value = apache_avro::to_value($ty::sample()).unwrap();
            drift(&value, version.schema, resolved.get_names(), stringify!($ty), &mut problems);
        )*};
    }
    every_record!(check);
    assert!(
        problems.is_empty(),
        "types and schema files disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_drift_check_catches_a_field_the_schema_lacks() {
    #[derive(serde::Serialize)]
    struct SeenEventWithExtra {
        seen_at: i64,
        extra: String,
    }
    let version = current(SeenEvent::NAME);
    let resolved = ResolvedSchema::try_from(version.schema).unwrap();
    let value = apache_avro::to_value(SeenEventWithExtra {
        seen_at: 1,
        extra: "x".into(),
    })
    .unwrap();
    let mut problems = Vec::new();
    drift(&value, version.schema, resolved.get_names(), "SeenEvent", &mut problems);
    assert_eq!(problems, ["SeenEvent.extra: in the Rust type but not in the schema"]);
}

#[test]
fn the_drift_check_catches_a_decimal_of_another_scale() {
    let decimal = |scale: u32, precision: u32| serde_json::json!({ "type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale });
    let schema = Schema::parse(&serde_json::json!({
        "type": "record",
        "name": "Totals",
        "fields": [
            { "name": "revenue", "type": decimal(Seconds::SCALE, DECIMAL_PRECISION) },
            { "name": "average_time_to_order_seconds", "type": decimal(Money::SCALE, DECIMAL_PRECISION) },
            { "name": "total", "type": decimal(Money::SCALE, 20) },
            { "name": "tax", "type": decimal(Money::SCALE, DECIMAL_PRECISION) },
        ]
    }))
    .unwrap();
    let value = Value::Record(
        ["revenue", "average_time_to_order_seconds", "total", "tax"]
            .into_iter()
            .map(|name| (name.to_string(), Value::Bytes(vec![1])))
            .collect(),
    );
    let resolved = ResolvedSchema::try_from(&schema).unwrap();
    let mut problems = Vec::new();
    drift(&value, &schema, resolved.get_names(), "Totals", &mut problems);
    let fields: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(
        fields,
        ["Totals.revenue", "Totals.average_time_to_order_seconds", "Totals.total"],
        "{problems:#?}"
    );
}

fn fixture_path(version: &SchemaVersion) -> PathBuf {
    let short = version.name.strip_prefix(&format!("{NAMESPACE}.")).unwrap();
    crate_dir()
        .join("fixtures")
        .join(format!("{short}.v{}.avro", version.version))
}

/// The current sample projected onto an older schema: fields the old schema lacks are
/// dropped. Used once, to write an old version's fixture when it is introduced.
fn encode_with(version: &SchemaVersion, value: Value) -> Vec<u8> {
    let Value::Record(fields) = value else {
        panic!("not a record")
    };
    let Schema::Record(record) = version.schema else {
        panic!("not a record schema")
    };
    let kept = fields
        .into_iter()
        .filter(|(n, _)| record.fields.iter().any(|f| &f.name == n))
        .collect();
    let resolved = Value::Record(kept).resolve(version.schema).unwrap();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(version.schema)
        .build()
        .unwrap();
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&version.fingerprint.to_le_bytes());
    bytes.extend(writer.write_value_to_vec(resolved).unwrap());
    bytes
}

/// `SCHEMAS_WRITE_FIXTURES=1 cargo test -p schemas --test contracts` writes the fixture
/// of every schema version that has none; existing fixtures are never rewritten, since
/// they stand for what older writers put on the wire.
#[test]
fn every_schema_version_has_a_committed_fixture() {
    let write = std::env::var_os("SCHEMAS_WRITE_FIXTURES").is_some();
    let mut missing = Vec::new();
    macro_rules! check {
        ($($ty:ident),*) => {$(
            for version in versions_of($ty::NAME) {
                let path = fixture_path(version);
                if path.exists() {
                    continue;
                }
                if write {
                    let bytes = if version.current {
                        encode(&$ty::sample()).unwrap()
                    } else {
                        encode_with(version, apache_avro::to_value($ty::sample()).unwrap())
                    };
                    std::fs::write(&path, bytes).unwrap();
                } else {
                    missing.push(path.display().to_string());
                }
            }
        )*};
    }
    every_record!(check);
    assert!(
        missing.is_empty(),
        "fixtures missing (SCHEMAS_WRITE_FIXTURES=1 writes them): {missing:?}"
    );
}

#[test]
fn every_fixture_decodes_with_todays_schemas() {
    let fixtures = files_in(&crate_dir().join("fixtures"), "avro");
    assert!(!fixtures.is_empty());
    for path in &fixtures {
        let bytes = std::fs::read(path).unwrap();
        let decoded = codec::decode_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(decoded.value.is_object(), "{}", path.display());
    }
    // The current version's fixture is exactly today's sample.
    macro_rules! check {
        ($($ty:ident),*) => {$(
            let bytes = std::fs::read(fixture_path(current($ty::NAME))).unwrap();
            assert_eq!(decode::<$ty>(&bytes).unwrap(), $ty::sample(), "{}", stringify!($ty));
        )*};
    }
    every_record!(check);
}

#[test]
fn an_old_organization_settings_fixture_reads_with_the_new_fields_defaulted() {
    let v1 = versions_of(OrganizationSettings::NAME)
        .into_iter()
        .find(|v| v.version == 1)
        .unwrap();
    let settings: OrganizationSettings = decode(&std::fs::read(fixture_path(v1)).unwrap()).unwrap();
    assert_eq!(settings.organization_id, "org_8d2f");
    assert_eq!(settings.rate_limit_per_second, Some(150));
    assert_eq!((settings.rate_limit_burst, settings.updated_at), (None, None));
}

#[test]
fn every_schema_is_compatible_both_ways_with_its_earlier_versions() {
    let names: BTreeSet<String> = codec::schema_versions().map(|v| v.name.clone()).collect();
    for name in names {
        let now = current(&name);
        for old in versions_of(&name).into_iter().filter(|v| !v.current) {
            // Today's readers read what older writers wrote: new fields have defaults.
            let backward = SchemaCompatibility::can_read(old.schema, now.schema);
            assert!(
                matches!(backward, Ok(Compatibility::Full)),
                "{name} v{} -> current: {backward:?}",
                old.version
            );
            // Stages still on the older version read what today's writers write:
            // nothing they need was removed.
            let forward = SchemaCompatibility::can_read(now.schema, old.schema);
            assert!(
                matches!(forward, Ok(Compatibility::Full)),
                "current -> {name} v{}: {forward:?}",
                old.version
            );
        }
    }
}

/// Every named type in a schema JSON, by full name, with its JSON definition.
fn named_definitions(json: &serde_json::Value, namespace: &str, out: &mut Vec<(String, serde_json::Value)>) {
    match json {
        serde_json::Value::Object(object) => {
            let ns = object.get("namespace").and_then(|n| n.as_str()).unwrap_or(namespace);
            if let (Some(kind), Some(name)) = (object.get("type").and_then(|t| t.as_str()), object.get("name"))
                && matches!(kind, "record" | "enum")
            {
                out.push((format!("{ns}.{}", name.as_str().unwrap()), json.clone()));
            }
            for value in object.values() {
                named_definitions(value, ns, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| named_definitions(i, namespace, out)),
        _ => {}
    }
}

#[test]
fn a_named_type_defined_in_several_files_is_defined_the_same_everywhere() {
    let mut seen: BTreeMap<String, (serde_json::Value, String)> = BTreeMap::new();
    for version in codec::schema_versions().filter(|v| v.current) {
        let json: serde_json::Value = serde_json::from_str(version.json).unwrap();
        let mut definitions = Vec::new();
        named_definitions(&json, NAMESPACE, &mut definitions);
        for (name, definition) in definitions {
            match seen.get(&name) {
                Some((first, file)) => {
                    assert_eq!(first, &definition, "{name} differs between {file} and {}", version.name)
                }
                None => {
                    seen.insert(name, (definition, version.name.clone()));
                }
            }
        }
    }
}

fn check_docs(json: &serde_json::Value, path: &str, problems: &mut Vec<String>) {
    if let Some(object) = json.as_object() {
        if let Some(ns) = object.get("namespace")
            && ns != NAMESPACE
        {
            problems.push(format!("{path}: namespace {ns}, expected {NAMESPACE}"));
        }
        if object.get("type").and_then(|t| t.as_str()) == Some("record") {
            for field in object["fields"].as_array().unwrap() {
                let name = field["name"].as_str().unwrap();
                if field.get("doc").and_then(|d| d.as_str()).is_none_or(str::is_empty) {
                    problems.push(format!("{path}.{name}: no doc"));
                }
                let optional = field["type"]
                    .as_array()
                    .is_some_and(|u| u.first() == Some(&"null".into()));
                if optional && field.get("default") != Some(&serde_json::Value::Null) {
                    problems.push(format!("{path}.{name}: an optional field needs the default null"));
                }
                check_docs(&field["type"], &format!("{path}.{name}"), problems);
            }
        }
        for key in ["items", "values"] {
            if let Some(inner) = object.get(key) {
                check_docs(inner, path, problems);
            }
        }
    } else if let Some(union) = json.as_array() {
        union.iter().for_each(|branch| check_docs(branch, path, problems));
    }
}

#[test]
fn every_field_is_documented_and_every_type_is_in_one_namespace() {
    let mut problems = Vec::new();
    for version in codec::schema_versions() {
        let json: serde_json::Value = serde_json::from_str(version.json).unwrap();
        check_docs(&json, &format!("{} v{}", version.name, version.version), &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_v1_daily_sales_report_reads_with_no_cells() {
    let v1 = versions_of(DailySalesReport::NAME)
        .into_iter()
        .find(|v| v.version == 1)
        .unwrap();
    let report: DailySalesReport = decode(&std::fs::read(fixture_path(v1)).unwrap()).unwrap();
    assert_eq!(report.date, "2026-11-27");
    assert_eq!(report.all_sales, DailySalesReport::sample().all_sales);
    assert_eq!((report.cells.len(), report.teams_merged), (0, 0));
    let state_v1 = versions_of(ReportState::NAME)
        .into_iter()
        .find(|v| v.version == 1)
        .unwrap();
    let state: ReportState = decode(&std::fs::read(fixture_path(state_v1)).unwrap()).unwrap();
    assert!(state.cells.is_empty() && state.team_ids.is_empty());
}
