//! Settings every binary shares. Each binary flattens these into its own clap `Config`,
//! so `--help` lists them beside the binary's own, each with its environment variable.

use clap::{Args, ValueEnum};
use rdkafka::ClientConfig;
use schemas::topics::TopicNames;

use crate::error::{Error, Result};

/// Where the broker is and which topics this deployment uses.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated `host:port` pairs.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,

    /// Prefix put in front of every topic name, so that several deployments (or test
    /// runs) share one broker. ASCII letters, digits, '.', '_' and '-'.
    #[arg(long, env = "SALES_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
}

impl KafkaArgs {
    /// The topic names under this deployment's prefix; a bad prefix is a config error.
    pub fn topic_names(&self) -> Result<TopicNames> {
        TopicNames::new(self.topic_prefix.clone()).map_err(|e| Error::Config(e.to_string()))
    }

    /// librdkafka settings common to every client: where the broker is, and a bound on
    /// how long a request may wait, so that an unreachable broker shows up as an error
    /// rather than a hang.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id)
            .set("socket.timeout.ms", "10000")
            // librdkafka logs through the `log` crate, which `tracing` picks up.
            .set("log_level", "4");
        config
    }
}

/// How the process logs.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log format: human-readable `text`, or `json` lines for a log pipeline.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which log lines to keep, as a tracing filter (`info`, `warn,enricher=debug`...).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

/// The log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// This machine's host name, when it has one.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Settings of the transactional processing loop shared by the stateful stages.
#[derive(Debug, Clone, Args)]
pub struct ProcessingArgs {
    /// How often the open transaction (outputs, state changes and input offsets) is
    /// committed. This bounds end-to-end latency; shorter means more transactions.
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub commit_interval: std::time::Duration,

    /// Commit early once a transaction holds this many input records.
    #[arg(long, env = "COMMIT_MAX_RECORDS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub commit_max_records: u32,

    /// How long a task whose joined inputs (say, widget events and chat events) have
    /// records on one side only waits for the other before processing what it has.
    /// Waiting lets a backlog on both sides be processed in event-time order.
    #[arg(long, env = "MAX_TASK_IDLE", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub max_task_idle: std::time::Duration,

    /// A source input (widget events, chat events) read to the end of its partition and
    /// quiet this long takes the wall clock, minus the allowed lateness, as its watermark,
    /// so timers and expiry still happen (a day still closes) without new input. Never
    /// while records of the partition are still to be read.
    #[arg(long, env = "IDLE_ADVANCE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub idle_advance: std::time::Duration,

    /// How far behind the wall clock a quiet source's watermark stays: a record that
    /// arrives later than this behind its own time is late (processed at once, counted
    /// in `stream_late_records`).
    #[arg(long, env = "ALLOWED_LATENESS", default_value = "2s", value_parser = humantime::parse_duration)]
    pub allowed_lateness: std::time::Duration,

    /// Stable id of this worker, unique among the stage's replicas (default: the host
    /// name). A restarted worker with the same id takes its partitions back at once and
    /// fences its earlier incarnation; a worker that finds a live replica under its id
    /// refuses to start.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,

    /// Replicas of the changelog topics the stage creates (3 on a cluster; created with
    /// min.insync.replicas 2 then). A changelog found with fewer replicas stops the start,
    /// as a wrong partition count does.
    #[arg(long, env = "CHANGELOG_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub changelog_replication: i32,
}

impl ProcessingArgs {
    /// `--worker-id`, or the host name.
    pub fn worker_id(&self) -> String {
        self.worker_id
            .clone()
            .unwrap_or_else(|| host_name().unwrap_or_else(|| "worker-1".into()))
    }

    /// Rejects settings that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.commit_interval.is_zero() {
            return Err(Error::Config("--commit-interval must be greater than zero".into()));
        }
        if self.idle_advance.is_zero() {
            return Err(Error::Config("--idle-advance must be greater than zero".into()));
        }
        if let Some(id) = &self.worker_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(Error::Config(format!(
                "--worker-id {id:?} must be letters, digits, '.', '_' or '-'"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        processing: ProcessingArgs,
    }

    fn default_of(id: &str) -> String {
        use clap::CommandFactory;
        let command = Cli::command();
        let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
        arg.get_default_values()[0].to_string_lossy().into_owned()
    }

    // Read from the declared defaults, not a parse: the test suite itself runs with
    // KAFKA_BOOTSTRAP_SERVERS set, which a parse would pick up.
    #[test]
    fn defaults_point_at_the_local_broker_without_prefix() {
        assert_eq!(default_of("bootstrap_servers"), "127.0.0.1:9092");
        assert_eq!(default_of("topic_prefix"), "");
        assert_eq!(default_of("commit_interval"), "100ms");
    }

    #[test]
    fn a_bad_topic_prefix_is_a_configuration_error() {
        let cli = Cli::try_parse_from(["x", "--topic-prefix", "a b"]).unwrap();
        assert!(matches!(cli.kafka.topic_names(), Err(Error::Config(_))));
    }

    #[test]
    fn a_zero_commit_interval_is_refused() {
        let cli = Cli::try_parse_from(["x", "--commit-interval", "0s"]).unwrap();
        assert!(cli.processing.validate().is_err());
    }

    #[test]
    fn a_commit_interval_without_unit_is_refused_by_the_parser() {
        assert!(Cli::try_parse_from(["x", "--commit-interval", "100"]).is_err());
    }
}
