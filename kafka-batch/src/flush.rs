//! A producer's flush that waits on librdkafka's own count of undelivered records.
//!
//! The rdkafka crate's `flush` calls `rd_kafka_flush` with no wait, then polls the
//! delivery reports for up to 100 ms at a time; when the producer's own polling thread
//! has taken the last report, that poll sleeps out its 100 ms. `rd_kafka_flush` with a
//! timeout, on a producer whose reports are events (as the rdkafka crate sets up), waits
//! on librdkafka's condition variable until every record is delivered and reported, and
//! while it waits the producer sends what it holds without lingering (`linger.ms`).

use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::producer::{Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// Sends every record `producer` holds at once and waits, at most `timeout`, until each
/// is acknowledged and its delivery report served (by the producer's polling thread).
/// `Err` with the error code when some are still undelivered at the timeout.
pub fn flush<C: ProducerContext>(producer: &impl Producer<C>, timeout: Duration) -> Result<(), RDKafkaErrorCode> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client pointer is valid while `producer` lives; `rd_kafka_flush` is
    // thread-safe and only reads the producer's counters and wakes its threads.
    let code = unsafe { rdsys::rd_kafka_flush(producer.client().native_ptr(), millis) };
    match RDKafkaErrorCode::from(code) {
        RDKafkaErrorCode::NoError => Ok(()),
        other => Err(other),
    }
}
