//! Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint, as the Avro
//! specification defines them.
//!
//! The fingerprint in every single-object header must be the one any Avro library
//! computes from the `.avsc` file, so it is computed here from the schema's JSON by the
//! specification's rules rather than taken from a library whose canonical form keeps
//! logical-type attributes (and so disagrees with the others for decimals and
//! timestamps).

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of a schema given as JSON, or why it is not a schema.
pub fn canonical_form(schema: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_canonical(schema, "", &mut out)?;
    Ok(out)
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn json_string(s: &str) -> String {
    // serde_json escapes only what JSON requires and keeps other characters as UTF-8,
    // which is the specification's [STRINGS] rule.
    Value::String(s.to_string()).to_string()
}

fn write_canonical(schema: &Value, namespace: &str, out: &mut String) -> Result<(), String> {
    match schema {
        // A primitive, or a reference to a named type: [FULLNAMES].
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => out.push_str(&json_string(name)),
        Value::String(name) => out.push_str(&json_string(&full_name(name, namespace))),
        // A union.
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(branch, namespace, out)?;
            }
            out.push(']');
        }
        Value::Object(object) => write_object(object, namespace, out)?,
        other => return Err(format!("not a schema: {other}")),
    }
    Ok(())
}

fn write_object(object: &Map<String, Value>, namespace: &str, out: &mut String) -> Result<(), String> {
    let kind = object.get("type").ok_or("a schema object without \"type\"")?;
    let Some(kind) = kind.as_str() else {
        // {"type": {...}} or {"type": [...]}: the wrapper adds nothing.
        return write_canonical(kind, namespace, out);
    };
    match kind {
        // [PRIMITIVES] and [STRIP]: {"type":"long","logicalType":...} is "long".
        k if PRIMITIVES.contains(&k) => out.push_str(&json_string(k)),
        "record" | "error" | "enum" | "fixed" => {
            let name = object
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a named type without a name")?;
            let enclosing = object.get("namespace").and_then(Value::as_str).unwrap_or(namespace);
            let full = full_name(name, enclosing);
            // Names inside a named type resolve against its own namespace.
            let inner_namespace = full.rsplit_once('.').map(|(ns, _)| ns).unwrap_or("");
            // [ORDER]: name, type, fields, symbols, items, values, size.
            out.push_str(&format!(
                "{{\"name\":{},\"type\":{}",
                json_string(&full),
                json_string(kind)
            ));
            match kind {
                "enum" => {
                    let symbols = object
                        .get("symbols")
                        .and_then(Value::as_array)
                        .ok_or("an enum without symbols")?;
                    let symbols: Vec<String> = symbols
                        .iter()
                        .map(|s| s.as_str().map(json_string).ok_or("a symbol that is not a string"))
                        .collect::<Result<_, _>>()?;
                    out.push_str(&format!(",\"symbols\":[{}]", symbols.join(",")));
                }
                "fixed" => {
                    let size = object
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or("a fixed without size")?;
                    out.push_str(&format!(",\"size\":{size}"));
                }
                _ => {
                    let fields = object
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or("a record without fields")?;
                    out.push_str(",\"fields\":[");
                    for (i, field) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let field_name = field
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or("a field without a name")?;
                        out.push_str(&format!("{{\"name\":{},\"type\":", json_string(field_name)));
                        write_canonical(field.get("type").ok_or("a field without a type")?, inner_namespace, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            write_canonical(object.get("items").ok_or("an array without items")?, namespace, out)?;
            out.push('}');
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            write_canonical(object.get("values").ok_or("a map without values")?, namespace, out)?;
            out.push('}');
        }
        // A reference written as {"type": "Name"}.
        name => out.push_str(&json_string(&full_name(name, namespace))),
    }
    Ok(())
}

/// The CRC-64-AVRO fingerprint of `bytes` (the specification's reference algorithm).
pub fn rabin(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::LazyLock<[u64; 256]> = std::sync::LazyLock::new(|| {
        let mut table = [0u64; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & 0u64.wrapping_sub(fp & 1));
            }
            *entry = fp;
        }
        table
    });
    bytes
        .iter()
        .fold(EMPTY, |fp, &b| (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize])
}

/// The fingerprint of a schema's JSON: Rabin of its Parsing Canonical Form.
pub fn fingerprint(schema: &Value) -> Result<u64, String> {
    canonical_form(schema).map(|form| rabin(form.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn primitives_match_the_specifications_test_vectors() {
        // From the Avro specification's fingerprint test vectors (CRC-64-AVRO).
        assert_eq!(fingerprint(&json!("int")).unwrap(), 0x7275_d51a_3f39_5c8f);
        assert_eq!(fingerprint(&json!("null")).unwrap(), 0x63dd_24e7_cc25_8f8a);
    }

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        let micros = json!({"type": "long", "logicalType": "timestamp-micros"});
        assert_eq!(canonical_form(&micros).unwrap(), r#""long""#);
        let decimal = json!({"type": "bytes", "logicalType": "decimal", "precision": 28, "scale": 4});
        assert_eq!(canonical_form(&decimal).unwrap(), r#""bytes""#);
    }

    #[test]
    fn names_are_full_docs_and_defaults_are_stripped_and_attributes_ordered() {
        let schema = json!({
            "type": "record", "namespace": "a.b", "name": "R", "doc": "gone",
            "fields": [
                {"name": "e", "doc": "gone", "default": null,
                 "type": ["null", {"type": "enum", "name": "E", "symbols": ["x", "y"]}]},
                {"name": "again", "type": "E"},
                {"name": "list", "type": {"type": "array", "items": "string"}, "default": []}
            ]
        });
        assert_eq!(
            canonical_form(&schema).unwrap(),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"e","type":["null",{"name":"a.b.E","type":"enum","symbols":["x","y"]}]},{"name":"again","type":"a.b.E"},{"name":"list","type":{"type":"array","items":"string"}}]}"#
        );
    }
}
