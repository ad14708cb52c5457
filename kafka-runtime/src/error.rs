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
    /// A client of the worker cannot continue (librdkafka's fatal errors): the worker
    /// replaces its transactional producer (counted toward its give-up limit); a
    /// consumer's ends the worker, for the process to exit and be restarted.
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

    /// Whether the same call may succeed later rather than failing again for the same
    /// reason: the brokers cannot serve it for now (a broker down or timing out, a
    /// partition or coordinator without a leader yet, fewer in-sync replicas than
    /// `min.insync.replicas`, a consumer group member dropped while its coordinator was
    /// away and not joined again yet), which a cluster mends by itself.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } => {
                match source {
                    rdkafka::error::KafkaError::Transaction(e) if e.is_retriable() => true,
                    // An admin request's own error carries no code of rdkafka's mapping.
                    rdkafka::error::KafkaError::AdminOp(code) => is_unavailable(*code),
                    other => other.rdkafka_error_code().is_some_and(is_unavailable),
                }
            }
            Error::Config(_)
            | Error::Bind { .. }
            | Error::Telemetry(_)
            | Error::Task(_)
            | Error::Fenced { .. }
            | Error::Fatal { .. } => false,
        }
    }
}

/// Error codes of brokers that cannot serve a request for now, or of a group member that
/// has to join again (which the consumer does by itself).
fn is_unavailable(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        code,
        OperationTimedOut
            | RequestTimedOut
            | MessageTimedOut
            | BrokerTransportFailure
            | AllBrokersDown
            | BrokerNotAvailable
            | NetworkException
            | Resolve
            | LeaderNotAvailable
            | NotLeaderForPartition
            | PreferredLeaderNotAvailable
            | FencedLeaderEpoch
            | UnknownLeaderEpoch
            | NotController
            | NotCoordinator
            | CoordinatorNotAvailable
            | CoordinatorLoadInProgress
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | KafkaStorageError
            | ConcurrentTransactions
            | UnknownMemberId
            | IllegalGeneration
            | RebalanceInProgress
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn brokers_that_cannot_serve_for_now_are_retriable_and_bad_settings_are_not() {
        let retriable = |e: KafkaError| Error::kafka("x", e).is_retriable();
        assert!(retriable(KafkaError::MessageProduction(
            RDKafkaErrorCode::NotEnoughReplicas
        )));
        assert!(retriable(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)));
        assert!(retriable(KafkaError::GroupListFetch(
            RDKafkaErrorCode::CoordinatorLoadInProgress
        )));
        assert!(!retriable(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!retriable(KafkaError::AdminOp(
            RDKafkaErrorCode::InvalidReplicationFactor
        )));
        assert!(!Error::Config("bad".into()).is_retriable());
    }
}
