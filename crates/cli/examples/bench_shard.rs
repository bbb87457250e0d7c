//! Benchmark of scale-out (issue 16): 4 shards as separate `zoo` processes
//! with 1 libtorch thread each against one process with every thread, on
//! the same images (throughput ratio); listing many files into a dataset;
//! merging as many labels from part files, with the merge's peak memory at
//! a quarter and at the full count (flat memory means the two are close).
//! Run through `cargo xtask bench shard`.
//!
//! Environment: `ZOO_BENCH_N` (images for the throughput pair, default
//! 256), `ZOO_BENCH_LIST_N` (files listed and labels merged, default
//! 1,000,000).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;
use untrained::UNTRAINED;
use zoo_datasets::Shard;
use zoo_test_support::TestServer;

#[path = "common/untrained.rs"]
mod untrained;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Noisy 320x240 JPEGs (quality 90).
fn pictures(dir: &Path, count: usize) {
    fs_err::create_dir_all(dir).unwrap();
    for index in 0..count {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (index as u64 * 1_000_003);
        let image = image::RgbImage::from_fn(320, 240, |x, y| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 24) as u32;
            image::Rgb([
                ((x + index as u32) % 256) as u8,
                ((y * 2 + noise) % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        image.save(dir.join(format!("img_{index:05}.jpg"))).unwrap();
    }
}

/// Runs `child` to its end and returns its wall time and its peak resident
/// memory (`VmHWM`, read from `/proc` while it runs).
fn watch(mut child: Child) -> (f64, u64) {
    let started = Instant::now();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = fs_err::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "a benchmarked command failed");
            return (started.elapsed().as_secs_f64(), peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `count` empty `.jpg` files in folders of 1000: listing reads names only.
fn empty_files(dir: &Path, count: usize) {
    for index in 0..count {
        let folder = dir.join(format!("d{:04}", index / 1000));
        if index % 1000 == 0 {
            fs_err::create_dir_all(&folder).unwrap();
        }
        fs_err::File::create(folder.join(format!("f{index:07}.jpg"))).unwrap();
    }
}

/// Part files as 4 shards with chunks of 1000 would write them, with one
/// classification per file of [`empty_files`] (or of its first `count`).
fn part_files(location: &Path, field: &str, count: usize) {
    let shards = 4;
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); shards];
    for index in 0..count {
        let key = format!("d{:04}/f{index:07}.jpg", index / 1000);
        keys[Shard::index_of(key.as_bytes(), shards as u64) as usize].push(key);
    }
    for (shard, mut keys) in keys.into_iter().enumerate() {
        keys.sort();
        let dir = location
            .join(field)
            .join(format!("shard-{shard:05}-of-{shards:05}"));
        fs_err::create_dir_all(&dir).unwrap();
        let chunks = keys.len().div_ceil(1000);
        for (chunk, group) in keys.chunks(1000).enumerate() {
            let mut file = std::io::BufWriter::new(
                fs_err::File::create(dir.join(format!("part-{chunk:06}.jsonl"))).unwrap(),
            );
            let header = json!({"zoo_results": 1, "kind": "labels", "field": field, "shard": shard,
                "shards": shards, "chunk": chunk, "chunks": chunks, "chunk_size": 1000,
                "samples": group.len(), "keys_sha256": ""});
            writeln!(file, "{header}").unwrap();
            for (position, key) in group.iter().enumerate() {
                let label = json!({"_cls": "Classification", "label": format!("class{}", position % 1000),
                    "confidence": 0.5 + (position % 7) as f64 / 100.0, "logits": null});
                writeln!(file, "{}", json!({"key": key, "labels": {field: label}})).unwrap();
            }
        }
        let done = json!({"zoo_results": 1, "kind": "labels", "field": field, "shard": shard,
            "shards": shards, "chunks": chunks, "chunk_size": 1000, "samples": keys.len()});
        fs_err::write(dir.join("done.json"), done.to_string()).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let count = env_number("ZOO_BENCH_N", 256);
    let list_count = env_number("ZOO_BENCH_LIST_N", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    // Seeded weights cannot match the built-in entry's sha256 prefix: the
    // same entry under another name downloads them from loopback.
    let server = TestServer::start();
    let manifest = untrained::untrained_resnet18_manifest(dir.path(), &server);
    let env = [
        (
            "ZOO_MODEL_ZOO_DIR",
            dir.path().join("zoo").display().to_string(),
        ),
        (
            "ZOO_DATASETS_DIR",
            dir.path().join("datasets").display().to_string(),
        ),
        ("ZOO_MANIFEST_PATHS", manifest.display().to_string()),
    ];
    let zoo_command = |args: &[&str]| {
        let mut command = Command::new(zoo);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdout(std::process::Stdio::null());
        command
    };
    let ok = |args: &[&str]| {
        let (_, _) = watch(zoo_command(args).spawn().unwrap());
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!("shard benchmark: {cores} cores");

    // Throughput: one process with every thread against 4 shards x 1 thread.
    let pics = dir.path().join("pics");
    pictures(&pics, count);
    let pics_text = pics.to_str().unwrap();
    ok(&["models", "download", UNTRAINED, "--quiet"]);
    ok(&["datasets", "create", "pics", pics_text]);
    let model = UNTRAINED;
    let (whole, _) = watch(
        zoo_command(&["models", "apply", model, "pics", "whole", "--quiet"])
            .spawn()
            .unwrap(),
    );
    let results = format!("file://{}", dir.path().join("results").display());
    let started = Instant::now();
    let shards: Vec<Child> = (0..4)
        .map(|index| {
            let shard = format!("{index}/4");
            let mut command = zoo_command(&[
                "models",
                "apply",
                model,
                pics_text,
                "sharded",
                "--quiet",
                "--workers",
                "1",
                "--shard",
                &shard,
                "--results",
                &results,
            ]);
            command.env("OMP_NUM_THREADS", "1").env(
                "ZOO_DATASETS_DIR",
                dir.path().join(format!("shard-{index}")),
            );
            command.spawn().unwrap()
        })
        .collect();
    for child in shards {
        watch(child);
    }
    let sharded = started.elapsed().as_secs_f64();
    ok(&[
        "datasets",
        "merge-results",
        "pics",
        &results,
        "sharded",
        "--quiet",
    ]);
    println!(
        "apply resnet18 (untrained), {count} JPEGs 320x240: 1 process {:.1} img/s ({whole:.1} s); 4 shards x 1 thread {:.1} img/s ({sharded:.1} s); ratio {:.2} (target >= 0.9)",
        count as f64 / whole,
        count as f64 / sharded,
        whole / sharded
    );

    // Listing many files into a dataset.
    let big = dir.path().join("big");
    let made = Instant::now();
    empty_files(&big, list_count);
    let made = made.elapsed().as_secs_f64();
    let (listed, list_peak) = watch(
        zoo_command(&["datasets", "create", "big", big.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    println!(
        "datasets create: {list_count} files listed in {listed:.1} s ({:.0} files/s, peak RSS {} MiB; making the files took {made:.1} s) (target < 60 s)",
        list_count as f64 / listed,
        list_peak >> 20
    );

    // Merging labels: a quarter, then all (memory should not grow with it).
    let mut merged = Vec::new();
    for (field, part) in [("quarter", list_count / 4), ("all", list_count)] {
        let location = dir.path().join(format!("merge-{field}"));
        part_files(&location, field, part);
        let (seconds, peak) = watch(
            zoo_command(&[
                "datasets",
                "merge-results",
                "big",
                location.to_str().unwrap(),
                field,
                "--json",
            ])
            .spawn()
            .unwrap(),
        );
        println!(
            "merge-results: {part} labels in {seconds:.1} s ({:.0} labels/s), peak RSS {} MiB",
            part as f64 / seconds,
            peak >> 20
        );
        merged.push((part, seconds, peak));
    }
    let (all, seconds, peak) = merged[1];
    println!(
        "{}",
        json!({"cores": cores, "apply_images": count, "one_process_seconds": whole, "four_shards_seconds": sharded,
               "throughput_ratio": whole / sharded, "list_files": list_count, "list_seconds": listed,
               "merge_labels": all, "merge_seconds": seconds, "merge_peak_rss_bytes": peak,
               "merge_quarter_peak_rss_bytes": merged[0].2})
    );
}
