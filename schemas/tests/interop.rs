//! The fixtures must be readable by an Avro implementation that shares no code with ours,
//! given nothing but the .avsc files: otherwise a consumer in another language could not
//! read the topics even though every Rust test passes.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn another_avro_implementation_reads_every_fixture() {
    // Failing rather than skipping without an interpreter: a skipped interop check looks
    // exactly like a passing one in a test summary.
    let python = std::env::var_os("SALES_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "SALES_PYTHON is not set: run the tests with scripts/test.sh, or set SALES_PYTHON to the \
             interpreter scripts/python-env.sh prints (SALES_PYTHON=\"$(scripts/python-env.sh)\" cargo test)"
            )
        });
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fixtures = crate_dir.join("fixtures");
    let script = crate_dir.join("interop/check_fastavro.py");

    let output = Command::new(&python)
        .arg(&script)
        .arg(crate_dir.join("avro"))
        .arg(&fixtures)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {}: {e}",
                PathBuf::from(&python).display(),
                script.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fastavro check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    // The script could succeed while seeing fewer files than are committed (a wrong directory, a
    // glob that misses some), so the count it read is held to the count on disk.
    let on_disk = std::fs::read_dir(&fixtures)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", fixtures.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "avro"))
        .count();
    let read: usize = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("fastavro read ")?
                .strip_suffix(" fixtures")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no \"fastavro read N fixtures\" line in:\n{stdout}\n{stderr}"));
    assert!(on_disk > 0, "no .avro fixtures in {}", fixtures.display());
    assert_eq!(
        read,
        on_disk,
        "fastavro read {read} fixtures but {} holds {on_disk}:\n{stdout}",
        fixtures.display()
    );
}
