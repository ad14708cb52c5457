#!/usr/bin/env python3
"""Reads every committed fixture with fastavro, using nothing but the .avsc files.

The Rust codec and its fixtures could agree with each other and still disagree with the Avro
specification; a second, independent implementation is what catches that. Each fixture
`<Name>.v<N>.avro` is one record in single-object encoding written with version N of the schema.
For each one this checks that:

  * it starts with the single-object marker C3 01;
  * the next 8 bytes are the CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form,
    as fastavro computes it (so any other Avro library can find the writer schema by it);
  * the body decodes with the writer schema resolved to the current (reader) schema, and with the
    writer schema alone, each consuming the whole body;
  * re-encoding the writer-only decoding gives back exactly the body bytes. Avro binary encoding
    is deterministic, so this proves every field (decimals and timestamps included) was read as the
    value that was written, not merely as something that parses.

Usage: check_fastavro.py [SCHEMA_DIR [FIXTURE_DIR]]
The directories default to ../avro and ../fixtures next to this script. Prints one line per
fixture, then "fastavro read N fixtures" and exits 0, or exits 1 naming every failure.
"""

import io
import json
import re
import sys
from pathlib import Path

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
FIXTURE_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_]+)\.v(?P<version>[1-9][0-9]*)\.avro$")
HISTORY_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_]+)\.v(?P<version>[1-9][0-9]*)\.avsc$")

# fastavro returns CRC-64-AVRO as the hex of the fingerprint's 8 bytes in little-endian order, which
# is already the order single-object encoding puts on the wire, so the header bytes are compared with
# bytes.fromhex(...) as they are, without reversing. Checked against the specification: its reference
# algorithm gives the 64-bit number 0x7275d51a3f395c8f for the schema "int", and fastavro returns
# "8f5c393f1ad57572" for it, i.e. that number's little-endian bytes. Asserted at start-up so that a
# fastavro release changing its output order fails here, not as a confusing mismatch on every fixture.
INT_FINGERPRINT = 0x7275D51A3F395C8F


def parse_file(path):
    # Each .avsc file is self-contained and several define the same named types (e.g. the
    # history and current versions of a record), so every file gets its own name table;
    # sharing one would make the second definition of a name an error or silently reuse the first.
    with open(path, encoding="utf-8") as f:
        return parse_schema(json.load(f), named_schemas={})


def crc64_avro_bytes(parsed_schema):
    hex_digest = fingerprint(to_parsing_canonical_form(parsed_schema), "CRC-64-AVRO")
    return bytes.fromhex(hex_digest)


def schema_files(schema_dir):
    """Full record name -> {version: path}, current version included."""
    versions = {}
    for path in sorted((schema_dir / "history").glob("*.avsc")):
        m = HISTORY_NAME.match(path.name)
        if not m:
            raise SystemExit(f"{path}: history files must be named <Name>.v<N>.avsc")
        versions.setdefault(m["name"], {})[int(m["version"])] = path
    current = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        name = path.stem
        history = versions.setdefault(name, {})
        # The current version comes after the newest one kept in history.
        version = max(history, default=0) + 1
        history[version] = path
        current[name] = path
    return versions, current


def decode_whole(body, writer, reader):
    buf = io.BytesIO(body)
    record = schemaless_reader(buf, writer, reader)
    if buf.tell() != len(body):
        raise ValueError(f"decoding stopped at byte {buf.tell()} of a {len(body)}-byte body")
    return record


def check_fixture(path, versions, current, schema_dir):
    """Returns (description, problems) for one fixture."""
    m = FIXTURE_NAME.match(path.name)
    if not m:
        return "", ["fixture files must be named <Name>.v<N>.avro"]
    name, version = m["name"], int(m["version"])
    if name not in current:
        return "", [f"no current schema {name}.avsc"]
    writer_path = versions[name].get(version)
    if writer_path is None:
        return "", [f"no schema for {name} version {version} (known: {sorted(versions[name])})"]
    reader_path = current[name]
    description = f"writer {writer_path.relative_to(schema_dir)}, reader {reader_path.relative_to(schema_dir)}"

    writer = parse_file(writer_path)
    reader = parse_file(reader_path)
    data = path.read_bytes()
    problems = []

    if len(data) < HEADER_LEN:
        return description, [f"only {len(data)} bytes, shorter than the {HEADER_LEN}-byte header"]
    if data[:2] != MARKER:
        problems.append(f"marker is {data[:2].hex()}, expected c301")
    expected_fp = crc64_avro_bytes(writer)
    if data[2:HEADER_LEN] != expected_fp:
        problems.append(
            f"fingerprint bytes are {data[2:HEADER_LEN].hex()}, but CRC-64-AVRO of the writer schema's "
            f"Parsing Canonical Form is {expected_fp.hex()} (canonical form: {to_parsing_canonical_form(writer)})"
        )
    body = data[HEADER_LEN:]

    try:
        resolved = decode_whole(body, writer, reader)
    except Exception as e:  # any decoding error is a finding, reported with the others
        problems.append(f"decoding with writer resolved to reader failed: {type(e).__name__}: {e}")
        resolved = None

    try:
        as_written = decode_whole(body, writer, None)
    except Exception as e:
        problems.append(f"decoding with the writer schema alone failed: {type(e).__name__}: {e}")
        return description, problems

    out = io.BytesIO()
    try:
        schemaless_writer(out, writer, as_written)
    except Exception as e:
        problems.append(f"re-encoding the decoded record failed: {type(e).__name__}: {e}")
    else:
        again = out.getvalue()
        if again != body:
            at = next((i for i, (a, b) in enumerate(zip(again, body)) if a != b), min(len(again), len(body)))
            problems.append(
                f"re-encoded body differs from the fixture's at byte {at} "
                f"({len(again)} vs {len(body)} bytes): a field was not read as it was written"
            )

    # Resolution must only add the reader's new fields (with their defaults); every field both
    # versions share has to come through unchanged.
    if resolved is not None:
        for field in reader["fields"]:
            key = field["name"]
            if key in as_written:
                if resolved.get(key) != as_written[key]:
                    problems.append(f"field {key} changed in resolution: {as_written[key]!r} -> {resolved.get(key)!r}")
            elif "default" in field and resolved.get(key) != field["default"]:
                problems.append(f"new field {key} is {resolved.get(key)!r}, not its default {field['default']!r}")

    return f"{description}, {len(body)} body bytes", problems


def main(argv):
    here = Path(__file__).resolve().parent
    if len(argv) > 3:
        raise SystemExit(__doc__)
    schema_dir = Path(argv[1]) if len(argv) > 1 else here.parent / "avro"
    fixture_dir = Path(argv[2]) if len(argv) > 2 else here.parent / "fixtures"

    int_fp = fingerprint('"int"', "CRC-64-AVRO")
    if bytes.fromhex(int_fp) != INT_FINGERPRINT.to_bytes(8, "little"):
        raise SystemExit(f"fastavro's CRC-64-AVRO of \"int\" is {int_fp}; expected the little-endian bytes of "
                         f"{INT_FINGERPRINT:#018x}: its byte order changed and this script must follow")

    versions, current = schema_files(schema_dir)
    fixtures = sorted(fixture_dir.glob("*.avro"))
    if not fixtures:
        print(f"FAIL: no .avro fixtures in {fixture_dir}", file=sys.stderr)
        return 1

    failed = []
    for path in fixtures:
        try:
            description, problems = check_fixture(path, versions, current, schema_dir)
        except Exception as e:  # e.g. a schema file fastavro rejects
            description, problems = "", [f"{type(e).__name__}: {e}"]
        if problems:
            failed.append(path.name)
            print(f"FAIL {path.name}" + (f" ({description})" if description else ""))
            for problem in problems:
                print(f"     - {problem}")
        else:
            print(f"ok   {path.name} ({description})")

    if failed:
        print(f"FAIL: fastavro could not confirm {len(failed)} of {len(fixtures)} fixtures: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    print(f"fastavro read {len(fixtures)} fixtures")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
