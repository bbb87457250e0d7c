//! Benchmark: download throughput of `zoo models download` against `curl`
//! on the same file from the same loopback server, in one run.
//!
//! Run through `cargo xtask bench download`. Prints medians and the ratio.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use zoo_test_support::TestServer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = args
        .get(1)
        .expect("usage: bench_download <path to zoo> [MiB] [runs]");
    let mib: usize = args.get(2).map_or(512, |n| n.parse().unwrap());
    let runs: usize = args.get(3).map_or(3, |n| n.parse().unwrap());
    let size = mib << 20;
    let content: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
    let server = TestServer::start();
    server.file("/big.bin", content);
    let url = server.url("/big.bin");

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let entry = serde_json::json!({"models": [{
        "base_name": "bench/big",
        "base_filename": "big.bin",
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": url}}
    }]});
    fs_err::write(&manifest, entry.to_string()).unwrap();
    let zoo_dir = dir.path().join("zoo");
    let curl_out = dir.path().join("curl.bin");

    let mut curl_times = Vec::new();
    let mut zoo_times = Vec::new();
    for _ in 0..runs {
        let _ = fs_err::remove_file(&curl_out);
        let started = Instant::now();
        let status = Command::new("curl")
            .args(["-s", "-f", "-o"])
            .arg(&curl_out)
            .arg(&url)
            .status()
            .unwrap();
        curl_times.push(started.elapsed());
        assert!(status.success());
        assert_eq!(fs_err::metadata(&curl_out).unwrap().len() as usize, size);
        let _ = fs_err::remove_file(&curl_out);

        let started = Instant::now();
        let output = Command::new(zoo)
            .args(["models", "download", "bench/big", "--overwrite", "--quiet"])
            .env("ZOO_MODEL_ZOO_DIR", &zoo_dir)
            .env("ZOO_MANIFEST_PATHS", &manifest)
            .output()
            .unwrap();
        zoo_times.push(started.elapsed());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            fs_err::metadata(zoo_dir.join("big.bin")).unwrap().len() as usize,
            size
        );
    }
    let curl = median(&mut curl_times);
    let zoo = median(&mut zoo_times);
    let rate = |time: Duration| mib as f64 / time.as_secs_f64();
    println!("download of {mib} MiB from a loopback server, median of {runs} runs, interleaved:");
    println!(
        "  curl -s -o FILE URL:                 {:8.1} MiB/s ({:.2} s)",
        rate(curl),
        curl.as_secs_f64()
    );
    println!(
        "  zoo models download (fsync+rename):  {:8.1} MiB/s ({:.2} s)",
        rate(zoo),
        zoo.as_secs_f64()
    );
    println!(
        "  zoo / curl throughput ratio:         {:8.3}",
        rate(zoo) / rate(curl)
    );
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
