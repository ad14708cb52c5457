//! Encode and decode throughput of the codec for a widget event and a daily report.
//!
//! `cargo bench -p schemas --bench codec`; criterion prints the time per record and the
//! throughput in records per second (`thrpt`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schemas::records::{DailySalesReport, WidgetEvent};
use schemas::samples::Sample;
use schemas::{Record, decode, encode};

fn bench_record<R: Record + Sample>(c: &mut Criterion, label: &str) {
    let record = R::sample();
    let bytes = encode(&record).expect("sample encodes");
    let mut group = c.benchmark_group(label);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&record)).expect("encodes")));
    group.bench_function("decode", |b| {
        b.iter(|| decode::<R>(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_record::<WidgetEvent>(c, "WidgetEvent");
    bench_record::<DailySalesReport>(c, "DailySalesReport");
}

criterion_group!(benches, codec);
criterion_main!(benches);
