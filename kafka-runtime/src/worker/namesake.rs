//! A worker id shared by two live replicas: said at start, instead of the two fencing
//! each other in a loop (static membership lets the newcomer take the old one's place,
//! and a supervisor restarting the old one would do the same to the newcomer).
//!
//! Each worker's consumer names itself `<group>-<worker id>@<host name>#<pid>`. At start
//! the group's members are looked up. A member with this worker id whose process on this
//! host is gone (a predecessor killed with SIGKILL) is ignored, so a restart takes its
//! place at once. Any other is waited for up to the session timeout: one that stopped
//! heartbeating (dead elsewhere, or frozen) leaves the group by then, and the newcomer
//! fences it; one that stays is a live replica, and the newcomer refuses to start.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::KafkaArgs;
use crate::error::{Error, Result};

/// The consumer's client id: `<group>-<worker id>@<host name>#<pid>`.
pub(crate) fn client_id(group: &str, worker_id: &str) -> String {
    format!(
        "{}@{}#{}",
        member_prefix(group, worker_id),
        host_name(),
        std::process::id()
    )
}

fn member_prefix(group: &str, worker_id: &str) -> String {
    format!("{group}-{worker_id}")
}

fn host_name() -> String {
    crate::config::host_name().unwrap_or_default()
}

/// The host name and pid of a member named by [`client_id`] with this prefix.
fn parse(client_id: &str, prefix: &str) -> Option<(String, u32)> {
    let rest = client_id.strip_prefix(prefix)?.strip_prefix('@')?;
    let (host, pid) = rest.rsplit_once('#')?;
    Some((host.to_string(), pid.parse().ok()?))
}

/// Whether process `pid` of this host runs the same program as this one.
fn alive_here(pid: u32) -> bool {
    let comm = |path: String| std::fs::read_to_string(path).ok();
    match (comm(format!("/proc/{pid}/comm")), comm("/proc/self/comm".into())) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}

/// Fails with the reason when a live replica of `group` already uses `worker_id`.
pub(crate) fn refuse_a_live_namesake(
    kafka: &KafkaArgs,
    group: &str,
    worker_id: &str,
    session_timeout: Duration,
) -> Result<()> {
    let lookup = lookup(kafka, group, worker_id)?;
    let deadline = Instant::now() + session_timeout + Duration::from_secs(2);
    let mut told = false;
    loop {
        let Some(place) = live_namesake(&lookup, group, worker_id)? else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "WORKER_ID {worker_id:?} is in use by a live worker of {group} on {place}; give each replica its own WORKER_ID"
            )));
        }
        if !told {
            tracing::warn!(worker = worker_id, %place, "a worker with this id is in the group; waiting up to the session timeout for it to leave");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Where another live process holds `worker_id` in `group` right now (a successor that
/// took this worker's place while it was frozen), if one does.
pub(crate) fn successor(kafka: &KafkaArgs, group: &str, worker_id: &str) -> Result<Option<String>> {
    live_namesake(&lookup(kafka, group, worker_id)?, group, worker_id)
}

fn lookup(kafka: &KafkaArgs, group: &str, worker_id: &str) -> Result<BaseConsumer> {
    kafka
        .client_config(&format!("{group}-{worker_id}-lookup"))
        .create()
        .map_err(|e| Error::kafka("cannot create the group lookup", e))
}

/// A member of `group` with `worker_id` other than this process (or a dead predecessor
/// on this host): where it runs.
fn live_namesake(lookup: &BaseConsumer, group: &str, worker_id: &str) -> Result<Option<String>> {
    let prefix = member_prefix(group, worker_id);
    let (here, me) = (host_name(), std::process::id());
    let groups = lookup
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map_err(|e| Error::kafka("cannot look up the consumer group", e))?;
    let mut live = None;
    for member in groups.groups().iter().flat_map(|g| g.members()) {
        let Some((host, pid)) = parse(member.client_id(), &prefix) else {
            continue;
        };
        let gone = host == here && (pid == me || !alive_here(pid));
        if !gone {
            live = Some(if host == here {
                format!("this host (pid {pid})")
            } else {
                format!("host {host}")
            });
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_name_gives_its_host_and_pid() {
        let id = client_id("t.sales-enricher", "w1");
        let (host, pid) = parse(&id, "t.sales-enricher-w1").unwrap();
        assert_eq!((host, pid), (host_name(), std::process::id()));
        assert_eq!(parse(&id, "t.sales-enricher-w"), None, "another worker id");
        assert_eq!(
            parse("t.sales-enricher-w1", "t.sales-enricher-w1"),
            None,
            "an older name"
        );
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(alive_here(std::process::id()));
        assert!(!alive_here(u32::MAX));
    }
}
