//! One partition's queue of a librdkafka consumer, read a batch at a time.
//!
//! The rdkafka crate reads a partition queue one message per call: a queue lock, a clock
//! read, an event and a reference-counted handle for every record. A restore reads
//! millions of records and does nothing with most of them but copy their key and value,
//! so that per-record cost was a fifth of its time. `rd_kafka_consume_batch_queue` takes
//! up to a whole batch under one lock; this crate wraps it, and the few C calls around it
//! (the queue split off the consumer, its non-empty callback, a message's key, value and
//! headers), behind a safe interface.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_void};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

/// What a non-empty callback runs.
type Callback = Box<dyn Fn() + Send + Sync>;

/// The queue of one partition of a consumer's assignment, split off the consumer's own
/// queue: the partition's records, and its errors and end-of-partition events, come only
/// here. It keeps the consumer alive, which must outlive it.
pub struct PartitionBatches<C: ConsumerContext + 'static> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// Boxed twice: the C side keeps a thin pointer to the boxed closure.
    nonempty: Option<Box<Callback>>,
    _consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka's queues are thread-safe; the handle is only an owning pointer.
unsafe impl<C: ConsumerContext> Send for PartitionBatches<C> {}

impl<C: ConsumerContext> fmt::Debug for PartitionBatches<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionBatches")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext> PartitionBatches<C> {
    /// Splits the queue of `topic` [`partition`] off `consumer`, which must have that
    /// partition assigned. Split it before the consumer is polled: a record fetched
    /// before goes to the consumer's own queue. `None` if the partition is not assigned.
    pub fn split(consumer: &Arc<BaseConsumer<C>>, topic: &str, partition: i32) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives; the topic is a
        // NUL-terminated string that outlives the call.
        let queue =
            unsafe { rdsys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), partition) };
        let queue = NonNull::new(queue)?;
        // SAFETY: a valid queue; forwarding to nothing stops it feeding the consumer's.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), ptr::null_mut()) };
        Some(PartitionBatches {
            queue,
            nonempty: None,
            _consumer: Arc::clone(consumer),
        })
    }

    /// Runs `f` (on a librdkafka thread) whenever the queue turns non-empty.
    pub fn on_nonempty(&mut self, f: impl Fn() + Send + Sync + 'static) {
        unsafe extern "C" fn ring(_: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
            // SAFETY: `opaque` is the boxed callback, alive until the callback is
            // disabled (replaced or dropped below).
            let f = unsafe { &*(opaque as *const Callback) };
            f();
        }
        let f: Box<Callback> = Box::new(Box::new(f));
        // SAFETY: a valid queue; the opaque pointer stays valid while it is enabled,
        // since the box is kept in `self` and the callback is disabled before it drops.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                self.queue.as_ptr(),
                Some(ring),
                &*f as *const Callback as *mut c_void,
            )
        };
        self.nonempty = Some(f);
    }

    /// Takes what the queue holds now, at most `max` events, without waiting, and hands
    /// each to `f`. Returns how many were taken.
    pub fn drain(&self, max: usize, mut f: impl FnMut(Event<'_>)) -> usize {
        let mut batch: Vec<*mut rdsys::rd_kafka_message_t> = Vec::with_capacity(max);
        // SAFETY: the buffer has room for `max` pointers; librdkafka writes `n` of them.
        let n = unsafe { rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, batch.as_mut_ptr(), max) };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: the first `n` elements were written.
        unsafe { batch.set_len(n) };
        // Owned from here: each is destroyed when dropped, even if `f` panics.
        let batch: Vec<Owned> = batch.into_iter().filter_map(NonNull::new).map(Owned).collect();
        for message in &batch {
            f(message.event());
        }
        n
    }
}

impl<C: ConsumerContext> Drop for PartitionBatches<C> {
    fn drop(&mut self) {
        // SAFETY: a valid queue; the callback is disabled before its box drops, and the
        // queue is destroyed before the consumer, which `self` keeps alive until after.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// A message taken from the queue, destroyed when dropped.
struct Owned(NonNull<rdsys::rd_kafka_message_t>);

impl Owned {
    fn event(&self) -> Event<'_> {
        // SAFETY: a message librdkafka handed over, alive until `self` drops.
        let message = unsafe { self.0.as_ref() };
        if message.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Event::Record(Record { message })
        } else if message.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
            Event::End
        } else {
            Event::Error(message.err.into())
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: each message taken from the queue is destroyed exactly once.
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) };
    }
}

/// What a partition queue holds.
#[derive(Debug)]
pub enum Event<'a> {
    Record(Record<'a>),
    /// The end of the partition as it is now (with `read_committed`, its last stable
    /// offset); requires `enable.partition.eof`.
    End,
    /// A failure reading the partition.
    Error(RDKafkaErrorCode),
}

/// A record read from the partition, borrowed for the callback.
pub struct Record<'a> {
    message: &'a rdsys::rd_kafka_message_t,
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

impl<'a> Record<'a> {
    pub fn offset(&self) -> i64 {
        self.message.offset
    }

    /// The key; `None` when the record has none.
    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka's key pointer and length describe the message's key bytes.
        unsafe { bytes(self.message.key, self.message.key_len) }
    }

    /// The value; `None` for a tombstone.
    pub fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the key.
        unsafe { bytes(self.message.payload, self.message.len) }
    }

    /// The last header named `name`: `None` if there is none, `Some(None)` if it has
    /// no value.
    pub fn header(&self, name: &CStr) -> Option<Option<&'a [u8]>> {
        let mut headers = ptr::null_mut();
        // SAFETY: a valid message; the headers stay owned by it.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.message, &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return None;
        }
        let (mut value, mut size) = (ptr::null(), 0usize);
        // SAFETY: valid headers of the message and a NUL-terminated name.
        let found = unsafe { rdsys::rd_kafka_header_get_last(headers, name.as_ptr(), &mut value, &mut size) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // SAFETY: the header's value bytes, owned by the message.
        Some(unsafe { bytes(value.cast_mut(), size) })
    }
}

/// The bytes at `data`, or `None` for a null pointer.
///
/// # Safety
/// `data` is null or points at `len` bytes that outlive `'a`.
unsafe fn bytes<'a>(data: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        None
    } else {
        // SAFETY: as the caller promises.
        Some(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
    }
}
