//! Comparing directory trees before and after an operation.

use std::path::Path;

/// Every file and folder under `root`, sorted, files with their sizes
/// (`dir/`, `dir/file (12 bytes)`). Lock files (`*.lock`) are left out, and
/// so is the staging folder `.tmp` itself, though not what it holds: an
/// operation that failed cleanly leaves the same snapshot, whatever locks
/// it took. A missing `root` is an empty tree.
///
/// # Panics
///
/// When `root` cannot be read (a broken test machine).
pub fn dir_snapshot(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if !root.exists() {
        return names;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).expect("readable test directory") {
            let entry = entry.expect("readable directory entry");
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            if relative.ends_with(".lock") {
                continue;
            }
            if entry.file_type().expect("file type").is_dir() {
                stack.push(path);
                if relative != ".tmp" {
                    names.push(format!("{relative}/"));
                }
            } else {
                let size = entry.metadata().expect("file metadata").len();
                names.push(format!("{relative} ({size} bytes)"));
            }
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_list_sizes_and_skip_locks_and_staging() {
        let dir = tempfile_dir();
        fs_err::create_dir_all(dir.join(".tmp/inner")).unwrap();
        fs_err::write(dir.join(".tmp/inner/x"), b"abc").unwrap();
        fs_err::write(dir.join("a.lock"), b"").unwrap();
        fs_err::write(dir.join("file"), b"12345").unwrap();
        assert_eq!(
            dir_snapshot(&dir),
            vec![".tmp/inner/", ".tmp/inner/x (3 bytes)", "file (5 bytes)"]
        );
        assert!(dir_snapshot(&dir.join("missing")).is_empty());
        fs_err::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("zoo-snapshot-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        dir
    }
}
