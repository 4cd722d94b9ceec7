//! In-process prediction cost: one request's work (validate, transform, score,
//! contributions) and bulk scoring of 100k validated passengers.
//!
//! cargo bench --bench predict

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark or example stops at its first failure

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use titanic::feature_store::ingest;
use titanic::feature_store::{Passenger, RawPassenger};
use titanic::ml::dataset::TrainingSet;
use titanic::ml::{FeatureServiceRef, Model, TrainParams, train};

fn model() -> (Model, Vec<Passenger>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/titanic/train.csv");
    let records = ingest::read_all(&path, ingest::DEFAULT_MAX_RECORD_BYTES).expect("train.csv");
    let set = TrainingSet::from_records(&records);
    let params = TrainParams {
        folds: 5,
        repeats: 1,
        seed: 42,
        alpha: 1.0,
        alpha_grid: Vec::new(),
        max_iterations: 1000,
    };
    let service = FeatureServiceRef {
        name: "titanic_survival".to_owned(),
        version: 1,
    };
    let artifact = train::train(&set, &params, service, 0, "bench").expect("training");
    let model = Model::from_artifact("bench", artifact).expect("model");
    (model, set.passengers)
}

fn raw() -> RawPassenger {
    RawPassenger {
        passenger_id: None,
        pclass: Some(3),
        sex: Some("male".into()),
        age: Some(22.0),
        sibsp: Some(1),
        parch: Some(0),
        fare: Some(7.25),
        embarked: Some("S".into()),
        name: Some("Braund, Mr. Owen Harris".into()),
        ticket: Some("A/5 21171".into()),
        cabin: None,
    }
}

fn benches(c: &mut Criterion) {
    let (model, passengers) = model();

    let mut group = c.benchmark_group("single");
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate_transform_score_contributions", |b| {
        b.iter_batched(
            raw,
            |r| {
                let p = r.validate().expect("valid");
                black_box(model.predict(black_box(&p)))
            },
            BatchSize::SmallInput,
        )
    });
    let one = raw().validate().expect("valid");
    group.bench_function("transform_score_contributions", |b| {
        b.iter(|| black_box(model.predict(black_box(&one))))
    });
    group.finish();

    let rows: Vec<Passenger> = passengers.iter().cycle().take(100_000).cloned().collect();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.sample_size(20);
    group.bench_function("score_100k", |b| {
        b.iter(|| {
            let mut survivors = 0u32;
            for p in &rows {
                survivors += u32::from(model.predict(p).survived());
            }
            black_box(survivors)
        })
    });
    group.finish();
}

criterion_group!(predict, benches);
criterion_main!(predict);
