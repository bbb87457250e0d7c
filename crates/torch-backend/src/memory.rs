//! How much memory the machine (or the container's cgroup) has left, so
//! that `--workers auto` does not start model copies that cannot fit.

/// A model copy beyond the first runs only when the memory available is
/// at least this many times its weights: its own parameters, the
/// activations of its batches, and room for everything else.
const HEADROOM: u64 = 3;

/// Of `wanted` copies of a model whose weights take `weights_bytes`, how
/// many to run with `available` bytes of memory left after the first was
/// loaded (`None`: unknown, all of them): at least one, and one more for
/// each [`HEADROOM`] times the weights that is available.
pub(crate) fn copies_that_fit(wanted: usize, weights_bytes: u64, available: Option<u64>) -> usize {
    let wanted = wanted.max(1);
    match available {
        Some(available) if weights_bytes > 0 => {
            let extra = available / weights_bytes.saturating_mul(HEADROOM);
            wanted.min(1 + usize::try_from(extra).unwrap_or(usize::MAX))
        }
        _ => wanted,
    }
}

/// The bytes of memory available now: the kernel's `MemAvailable`, or what
/// is left under this process's cgroup (v2) limit when that is less;
/// `None` when neither can be read.
pub(crate) fn available_bytes() -> Option<u64> {
    let machine = fs_err::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_available(&text));
    let cgroup = cgroup_dir().and_then(|dir| {
        let limit = fs_err::read_to_string(dir.join("memory.max")).ok()?;
        let current = fs_err::read_to_string(dir.join("memory.current")).ok()?;
        cgroup_left(&limit, &current)
    });
    match (machine, cgroup) {
        (Some(machine), Some(cgroup)) => Some(machine.min(cgroup)),
        (machine, cgroup) => machine.or(cgroup),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// This process's cgroup v2 directory (`0::/path` in `/proc/self/cgroup`).
fn cgroup_dir() -> Option<std::path::PathBuf> {
    let text = fs_err::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// What a cgroup's `memory.max` leaves above `memory.current`; `None` when
/// there is no limit (`max`) or the files do not parse.
fn cgroup_left(limit: &str, current: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    Some(limit.saturating_sub(current))
}

#[cfg(test)]
mod tests {
    use super::{cgroup_left, copies_that_fit, mem_available};

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_second_copy_needs_three_times_its_weights_available() {
        // DINOv2 ViT-g (4.5 GB) on a machine with 18 GB left: two copies;
        // with 9.5 GB left: one.
        let giant = 4_520_000_000;
        assert_eq!(copies_that_fit(2, giant, Some(18 * GIB)), 2);
        assert_eq!(copies_that_fit(2, giant, Some(9 * GIB + GIB / 2)), 1);
        // The line: three times the weights.
        assert_eq!(copies_that_fit(2, giant, Some(3 * giant)), 2);
        assert_eq!(copies_that_fit(2, giant, Some(3 * giant - 1)), 1);
        // A ResNet-18 (47 MB) fits twice almost anywhere.
        assert_eq!(copies_that_fit(2, 46_830_571, Some(GIB)), 2);
        // Unknown memory or weights: as many as wanted; never none.
        assert_eq!(copies_that_fit(2, giant, None), 2);
        assert_eq!(copies_that_fit(2, 0, Some(0)), 2);
        assert_eq!(copies_that_fit(0, giant, Some(0)), 1);
        assert_eq!(copies_that_fit(4, GIB, Some(7 * GIB)), 3);
    }

    #[test]
    fn meminfo_and_cgroup_files_are_read() {
        let meminfo = "MemTotal:       24589520 kB\nMemFree:         1000000 kB\nMemAvailable:   18000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(18_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(cgroup_left("max\n", "123\n"), None);
        assert_eq!(cgroup_left("8589934592\n", "2147483648\n"), Some(6 * GIB));
        assert_eq!(cgroup_left("100\n", "200\n"), Some(0));
    }
}
