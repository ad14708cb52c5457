//! Errors of the shared runtime.

use std::net::SocketAddr;

/// What can go wrong in the shared plumbing. Messages name what failed; the cause is
/// the error's `source`, so a report that prints the chain shows each part once. Each variant says whether retrying can
/// help: a broker that does not answer may come back, a bad setting will not.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; fix the configuration and start again.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The admin listener could not bind its address.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A call to the broker failed.
    #[error("{context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Logging could not be set up.
    #[error("cannot set up logging: {0}")]
    Telemetry(String),
    /// A background task died (panicked or was cancelled), or a part of the worker
    /// stopped in a way that leaves nothing to retry.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The transactional producer was fenced: the coordinator ended a transaction that
    /// outlived `transaction.timeout.ms` (a stalled process), or a newer incarnation with
    /// the same transactional id started. Its open transaction is gone; a new producer
    /// and a restore from the last commit carry on.
    #[error("{context}: the producer was fenced")]
    Fenced {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A client of the worker cannot continue (librdkafka's fatal errors); the process
    /// should exit and be restarted.
    #[error("{context}: the client cannot continue")]
    Fatal {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    /// Whether the same call may succeed later (a broker timing out, a transport error)
    /// rather than failing again for the same reason.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } => source.rdkafka_error_code().is_some_and(|code| {
                use rdkafka::types::RDKafkaErrorCode::*;
                matches!(
                    code,
                    OperationTimedOut
                        | RequestTimedOut
                        | BrokerTransportFailure
                        | AllBrokersDown
                        | BrokerNotAvailable
                        | NotCoordinator
                        | LeaderNotAvailable
                )
            }),
            Error::Config(_)
            | Error::Bind { .. }
            | Error::Telemetry(_)
            | Error::Task(_)
            | Error::Fenced { .. }
            | Error::Fatal { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
