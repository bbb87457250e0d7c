//! Sharded runs' part files and merging them.

use zoo_datasets::{
    Datasets, MergePlan, ResultsKind, ResultsLocation, Shard, ShardResults, ShardState,
};
use zoo_model_core::{EmbedOutcome, Label, Outcome};

use crate::images;

fn outcome(sample_id: i64) -> Outcome {
    if sample_id % 5 == 0 {
        return Outcome::Failed {
            sample_id,
            error: format!("bad {sample_id}"),
        };
    }
    Outcome::Labels {
        sample_id,
        fields: vec![(
            "pred".to_owned(),
            Some(Label::Classification {
                label: format!("class{}", sample_id % 3),
                confidence: Some(0.1 * (sample_id % 7) as f64 + 1e-9),
                logits: None,
            }),
        )],
    }
}

/// Runs shard `shard` of dataset `pics` into `location`, stopping after
/// `limit` samples (a killed attempt) when given; returns the chunks it
/// wrote and kept, or `None` when it was stopped.
fn run_shard(
    store: &Datasets,
    location: &ResultsLocation,
    shard: Shard,
    limit: Option<usize>,
) -> Option<(usize, usize)> {
    let samples = store.shard_samples("pics", shard).unwrap();
    let mut results = ShardResults::open(
        location,
        "pred",
        ResultsKind::Labels,
        shard,
        3,
        samples,
        false,
    )
    .unwrap();
    let todo = results.todo().to_vec();
    for (done, sample) in todo.iter().enumerate() {
        if limit == Some(done) {
            return None;
        }
        results.record_labels(&[outcome(sample.id)]).unwrap();
    }
    let summary = results.finish().unwrap();
    Some((summary.written, summary.skipped))
}

#[test]
fn shards_retried_and_merged_twice_equal_a_direct_write() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("pics"), 20);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &dir.path().join("pics")).unwrap();
    store.create("direct", &dir.path().join("pics")).unwrap();
    let location =
        ResultsLocation::parse(&format!("file://{}", dir.path().join("results").display()))
            .unwrap();

    // Every sample is in exactly one of the 3 shards.
    let mut seen = 0;
    for index in 0..3 {
        seen += store
            .shard_samples("pics", Shard::new(index, 3).unwrap())
            .unwrap()
            .len();
    }
    assert_eq!(seen, 21);

    // Shard 1 is stopped midway, then merging fails to find it complete.
    let shard = Shard::new(1, 3).unwrap();
    let size = store.shard_samples("pics", shard).unwrap().len();
    assert!(size >= 4, "{size}");
    assert_eq!(run_shard(&store, &location, shard, Some(size - 1)), None);
    run_shard(&store, &location, Shard::new(0, 3).unwrap(), None).unwrap();
    let plan = MergePlan::scan(&location, "pred").unwrap();
    assert_eq!(plan.count, 3);
    assert!(matches!(plan.shards[&1], ShardState::Incomplete { .. }));
    assert_eq!(plan.shards[&2], ShardState::Missing);

    // The retry keeps the chunks of 3 the first attempt finished.
    let (written, skipped) = run_shard(&store, &location, shard, None).unwrap();
    assert_eq!(skipped, (size - 1) / 3);
    assert_eq!(written, size.div_ceil(3) - skipped);
    run_shard(&store, &location, Shard::new(2, 3).unwrap(), None).unwrap();
    // A finished shard run again writes nothing.
    assert_eq!(
        run_shard(&store, &location, Shard::new(2, 3).unwrap(), None).map(|(written, _)| written),
        Some(0)
    );

    let plan = MergePlan::scan(&location, "pred").unwrap();
    assert!(plan.unfinished().is_empty(), "{plan:?}");
    let summary = store.merge_results("pics", &plan, "pred", false).unwrap();
    assert_eq!(summary.records, 21);
    assert_eq!(summary.unknown, 0);
    let first = store.samples_json("pics").unwrap();
    store.merge_results("pics", &plan, "pred", false).unwrap();
    assert_eq!(store.samples_json("pics").unwrap(), first);

    // The same outcomes written directly give the same dataset.
    let pending = store.pending("direct", "pred", false).unwrap();
    let outcomes: Vec<Outcome> = pending
        .iter()
        .map(|sample| outcome(sample.id - 21))
        .collect();
    // Sample ids of `direct` follow those of `pics` in the same order.
    store
        .write_labels(
            &store.pin("direct").unwrap(),
            "pred",
            &outcomes_for(&pending, &outcomes),
        )
        .unwrap();
    // Every write gives its labels fresh ObjectIds (as FiftyOne does):
    // the two datasets agree on everything else.
    let direct = store.samples_json("direct").unwrap();
    let json = |rows: Vec<serde_json::Map<String, serde_json::Value>>| {
        without_ids(serde_json::Value::Array(
            rows.into_iter().map(serde_json::Value::Object).collect(),
        ))
    };
    assert_eq!(json(direct), json(first));
    assert_eq!(
        store.info("pics").unwrap().failures,
        store.info("direct").unwrap().failures
    );
}

fn outcomes_for(pending: &[zoo_model_core::Sample], outcomes: &[Outcome]) -> Vec<Outcome> {
    pending
        .iter()
        .zip(outcomes)
        .map(|(sample, outcome)| match outcome {
            Outcome::Labels { fields, .. } => Outcome::Labels {
                sample_id: sample.id,
                fields: fields.clone(),
            },
            Outcome::Failed { error, .. } => Outcome::Failed {
                sample_id: sample.id,
                error: error.clone(),
            },
        })
        .collect()
}

#[test]
fn embeddings_round_trip_through_parts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("pics"), 6);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &dir.path().join("pics")).unwrap();
    let location = ResultsLocation::parse(dir.path().join("out").to_str().unwrap()).unwrap();
    let samples = store.shard_samples("pics", Shard::ALL).unwrap();
    let mut results = ShardResults::open(
        &location,
        "emb",
        ResultsKind::Embeddings,
        Shard::ALL,
        4,
        samples,
        false,
    )
    .unwrap();
    let vector = |id: i64| vec![1.0 / 3.0 + id as f32, f32::MIN_POSITIVE, -0.0, 1e-38];
    let outcomes: Vec<EmbedOutcome> = results
        .todo()
        .iter()
        .map(|sample| EmbedOutcome::Vector {
            sample_id: sample.id,
            values: vector(sample.id),
        })
        .collect();
    results.record_embeddings(&outcomes).unwrap();
    results.finish().unwrap();
    let plan = MergePlan::scan(&location, "emb").unwrap();
    store.merge_results("pics", &plan, "emb", false).unwrap();
    let npy = dir.path().join("emb.npy");
    let (rows, dim) = store.export_embeddings_npy("pics", "emb", &npy).unwrap();
    assert_eq!((rows, dim), (7, 4));
    let bytes = fs_err::read(&npy).unwrap();
    let data = &bytes[bytes.len() - 7 * 4 * 4..];
    for (row, id) in (1..=7).enumerate() {
        for (column, value) in vector(id).iter().enumerate() {
            let at = (row * 4 + column) * 4;
            assert_eq!(&data[at..at + 4], &value.to_le_bytes(), "row {row}");
        }
    }
}

/// `value` without its `_id`s.
fn without_ids(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(key, _)| key != "_id")
                .map(|(key, value)| (key, without_ids(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_ids).collect()),
        other => other,
    }
}
