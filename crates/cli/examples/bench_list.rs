//! Benchmark: wall time of a cold `zoo models list --names-only` process with
//! no sources and with N registered sources of 5 models each.
//!
//! Sources are served by a loopback fake GitHub and registered through the
//! registry library, then the release `zoo` binary is timed, median of runs.
//! Run through `cargo xtask bench list`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zoo_registry::{Registry, RegistryConfig};
use zoo_sources::NoProgress;
use zoo_test_support::{Archive, FakeGitHub, RepoSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = args
        .get(1)
        .expect("usage: bench_list <path to zoo> [sources] [runs]");
    let sources: usize = args.get(2).map_or(1000, |n| n.parse().unwrap());
    let runs: usize = args.get(3).map_or(21, |n| n.parse().unwrap());

    // Every listing also holds the built-in models.
    let builtin = zoo_registry::builtin_manifest().models.len();
    let empty = tempfile::tempdir().unwrap();
    let empty_time = time_list(zoo, empty.path(), runs, builtin);

    let github = FakeGitHub::start();
    let full = tempfile::tempdir().unwrap();
    let registry = Registry::new(RegistryConfig {
        github_api_url: github.api_url(),
        ..RegistryConfig::new(full.path())
    });
    let started = Instant::now();
    for index in 0..sources {
        let models: Vec<serde_json::Value> = (0..5)
            .map(|model| {
                serde_json::json!({
                    "base_name": format!("bench{index}/model{model}"),
                    "base_filename": format!("source{index}-model{model}.pt"),
                    "version": "1.0",
                    "tags": ["classification", "torch"],
                    "license": "MIT",
                    "description": "a benchmark model",
                })
            })
            .collect();
        let manifest =
            serde_json::json!({"name": format!("bench/source{index}"), "models": models});
        github.add_repo(RepoSpec::new("bench", &format!("source{index}")).git_ref(
            "main",
            Archive::new().file("manifest.json", manifest.to_string()),
        ));
        registry
            .register_source(&format!("bench/source{index}"), false, false, &NoProgress)
            .unwrap();
    }
    let register_time = started.elapsed();
    let full_time = time_list(zoo, full.path(), runs, builtin + sources * 5);

    println!("zoo models list --names-only, cold process, median of {runs} runs:");
    println!(
        "  0 sources ({builtin} built-in models): {:8.2} ms",
        ms(empty_time)
    );
    println!(
        "  {sources} sources x 5 models:       {:8.2} ms",
        ms(full_time)
    );
    println!(
        "  (registering {sources} sources in-process over loopback took {:.2} s, {:.2} ms each)",
        register_time.as_secs_f64(),
        ms(register_time) / sources as f64
    );
}

fn time_list(zoo: &str, root: &Path, runs: usize, expected: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let output = Command::new(zoo)
                .args(["models", "list", "--names-only"])
                .env("ZOO_MODEL_ZOO_DIR", root)
                .output()
                .unwrap();
            let elapsed = started.elapsed();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(
                output.stdout.iter().filter(|byte| **byte == b'\n').count(),
                expected
            );
            elapsed
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
