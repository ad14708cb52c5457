//! What the benchmark binaries share: percentiles, the kernel's clock ticks and CPU
//! times, a log's last lines.

use std::path::{Path, PathBuf};
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

/// The folder of the stage binaries a benchmark runs: `dir`, or by default the
/// benchmark's own folder; fails naming the first of `stages` missing there and the
/// `build` command that makes them.
pub fn stage_binaries(dir: Option<&Path>, stages: &[&str], build: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("this program has no folder")?
            .to_path_buf(),
    };
    for stage in stages {
        anyhow::ensure!(
            dir.join(stage).is_file(),
            "no {stage} binary in {}; build the stages first: {build}",
            dir.display()
        );
    }
    Ok(dir)
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

/// A line of `/proc/<pid>/status` in bytes (`VmHWM:`, the peak resident memory, or
/// `VmRSS:`); `None` once the process is gone.
pub fn status_bytes(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The machine's load average over the last minute, as `/proc/loadavg` says it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The pids of the Kafka brokers running on this machine (none when the broker is
/// elsewhere).
pub fn local_brokers() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == b"kafka.Kafka"))
        })
        .collect()
}

/// A stateless stage of the exactly-once runtime that forwards every record of `input`
/// unchanged to `output`: what the runtime itself costs (transactions, offsets, the
/// consume and produce loop), the yardstick of a stage's records per second.
#[derive(Debug)]
pub struct PassThrough {
    pub id: String,
    pub input: String,
    pub output: String,
}

impl kafka_runtime::task::Application for PassThrough {
    fn id(&self) -> &str {
        &self.id
    }
    fn inputs(&self) -> Vec<String> {
        vec![self.input.clone()]
    }
    fn create_task(&self, _partition: i32) -> Box<dyn kafka_runtime::task::Task> {
        Box::new(Forward(self.output.clone()))
    }
}

struct Forward(String);

impl kafka_runtime::task::Task for Forward {
    fn process(
        &mut self,
        ctx: &mut kafka_runtime::task::TaskContext<'_>,
        record: &kafka_runtime::task::Record<'_>,
        _decoded: kafka_runtime::task::Decoded,
    ) -> Result<(), kafka_runtime::task::Reject> {
        ctx.emit(&self.0, record.key, record.value);
        Ok(())
    }
}
