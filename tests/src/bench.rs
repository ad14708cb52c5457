//! What the benchmark binaries share: percentiles, the kernel's clock ticks and CPU
//! times, a log's last lines.

use std::path::Path;
use std::process::Command;

/// The `p` quantile (0 to 1) of sorted samples, nearest rank; NaN without samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The last lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// utime + stime of a process (`self` for this one), in clock ticks.
pub fn process_ticks(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow its last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; the state (field 3) is first here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of the threads of process `pid` whose name starts with `prefix`, in
/// clock ticks (a JVM's `C2 CompilerThread0`, say; the kernel keeps 15 characters).
pub fn thread_ticks(pid: &str, prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat.split_once('(')?.1.rsplit_once(')')?.0;
            if !name.starts_with(prefix) {
                return None;
            }
            process_ticks(&format!("{pid}/task/{}", task.file_name().to_str()?))
        })
        .sum()
}

/// The machine's busy and total CPU time (clock ticks, all cores) and its core count.
pub fn machine_ticks() -> Option<(f64, f64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let all: Vec<f64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal; guest time is already in user.
    let total: f64 = all.iter().take(8).sum();
    let idle = all.get(3)? + all.get(4).unwrap_or(&0.0);
    let cores = lines.filter(|l| l.starts_with("cpu")).count();
    Some((total - idle, total, cores))
}
