//! Benchmark: zoo's safe extraction (`zoo_sources::extract`, the routine
//! registering an archive source and `extract_archive` models use) against
//! `unzip` and `tar` on the same 2,000-file zip and tar.gz, in one run.
//!
//! Run through `cargo xtask bench extract`. Prints medians and ratios.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zoo_sources::{ArchiveKind, ExtractLimits, extract};
use zoo_test_support::Archive;

/// 2,000 files in 40 folders, 0.5-32 KiB each, text-like (compressible
/// about as much as a source tree).
fn archive(files: usize) -> (Archive, u64) {
    let words = [
        "model", "weights", "manifest", "tensor", "layer", "conv", "batch", "image", "label",
        "zoo", "\n", "    ", "{", "}", "0.125", "resnet",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut archive = Archive::new();
    let mut total = 0;
    for index in 0..files {
        let size = 512 + (next() % (32 * 1024 - 512)) as usize;
        let mut contents = Vec::with_capacity(size + 16);
        while contents.len() < size {
            contents.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
            contents.push(b' ');
        }
        total += contents.len() as u64;
        archive = archive.file(
            &format!("repo/dir{:02}/file{index:04}.txt", index % 40),
            contents,
        );
    }
    (archive, total)
}

fn timed(run: impl FnOnce()) -> Duration {
    let started = Instant::now();
    run();
    started.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn count_files(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            count += count_files(&entry.path());
        } else {
            count += 1;
        }
    }
    count
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // args[1] is the zoo binary (every bench gets it); extraction is timed
    // in-process through the library routine the registry uses.
    let files: usize = args.get(2).map_or(2000, |n| n.parse().unwrap());
    let runs: usize = args.get(3).map_or(5, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (archive, bytes) = archive(files);
    let zip = dir.path().join("repo.zip");
    let tgz = dir.path().join("repo.tar.gz");
    fs_err::write(&zip, archive.to_zip()).unwrap();
    fs_err::write(&tgz, archive.to_tar_gz()).unwrap();
    println!(
        "extraction of {files} files ({:.1} MiB; zip {:.1} MiB, tar.gz {:.1} MiB), median of {runs} runs, interleaved, fresh folder each:",
        bytes as f64 / (1 << 20) as f64,
        fs_err::metadata(&zip).unwrap().len() as f64 / (1 << 20) as f64,
        fs_err::metadata(&tgz).unwrap().len() as f64 / (1 << 20) as f64,
    );
    let limits = ExtractLimits::default();
    let mut times: [Vec<Duration>; 4] = Default::default();
    for run in 0..runs {
        let out = |name: &str| dir.path().join(format!("{name}{run}"));
        let target = out("unzip");
        times[0].push(timed(|| {
            let status = Command::new("unzip")
                .args(["-q", "-o"])
                .arg(&zip)
                .arg("-d")
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
        }));
        assert_eq!(count_files(&target), files);
        let target = out("zoo-zip");
        times[1].push(timed(|| {
            extract(&zip, ArchiveKind::Zip, &target, &limits).unwrap();
        }));
        assert_eq!(count_files(&target), files);
        let target = out("tar");
        fs_err::create_dir_all(&target).unwrap();
        times[2].push(timed(|| {
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(&tgz)
                .arg("-C")
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
        }));
        assert_eq!(count_files(&target), files);
        let target = out("zoo-tgz");
        times[3].push(timed(|| {
            extract(&tgz, ArchiveKind::TarGz, &target, &limits).unwrap();
        }));
        assert_eq!(count_files(&target), files);
    }
    let [unzip, zoo_zip, tar, zoo_tgz] = times.map(|mut times| median(&mut times));
    let ms = |time: Duration| time.as_secs_f64() * 1000.0;
    println!("  unzip -q -o:          {:8.1} ms", ms(unzip));
    println!("  zoo, zip:             {:8.1} ms", ms(zoo_zip));
    println!("  tar -xzf:             {:8.1} ms", ms(tar));
    println!("  zoo, tar.gz:          {:8.1} ms", ms(zoo_tgz));
    println!(
        "  zoo / unzip speed:    {:8.3}",
        unzip.as_secs_f64() / zoo_zip.as_secs_f64()
    );
    println!(
        "  zoo / tar speed:      {:8.3}",
        tar.as_secs_f64() / zoo_tgz.as_secs_f64()
    );
}
