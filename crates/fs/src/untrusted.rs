//! Reading files zoo did not write: regular files only, within a byte cap.
//!
//! A dataset folder, a results folder or a label names files whose kind and
//! size a stranger chose. A FIFO would block a read forever, a link to
//! `/dev/zero` would never end, and a huge file would be read into memory
//! whole. [`open_untrusted`] checks what the path leads to before opening
//! it (no device is ever opened), opens it non-blocking (a FIFO swapped in
//! meanwhile never blocks) and checks the opened file again;
//! [`read_untrusted`] then reads at most its cap.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Why a file zoo did not write could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UntrustedError {
    /// The file could not be opened or read.
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The path leads to something other than a regular file.
    #[error(
        "`{}` is not a regular file but {kind}: zoo reads only regular files from folders it did not write",
        path.display()
    )]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is (`a FIFO`, `a character device`, ...).
        kind: &'static str,
    },
    /// The file is larger than its cap.
    #[error("`{}` is {size} bytes or more, over the limit of {limit} bytes for this kind of file", path.display())]
    TooBig {
        /// The file.
        path: PathBuf,
        /// Its size (at least this, when it grew while being read).
        size: u64,
        /// The cap.
        limit: u64,
    },
}

impl UntrustedError {
    /// Whether the file does not exist (a dangling link included).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// What a file that is not a regular file is, for messages.
pub fn file_kind(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// Opens `path` for reading when it (links followed) is a regular file, and
/// returns it with its size.
///
/// The path is checked with `stat` before opening, so a device or FIFO is
/// never opened; it is opened with `O_NONBLOCK`, so a FIFO swapped in after
/// the check does not block; and the opened file is checked again with
/// `fstat`.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// assert!(zoo_fs::open_untrusted(dir.path()).is_err());
/// ```
pub fn open_untrusted(path: &Path) -> Result<(fs_err::File, u64), UntrustedError> {
    let io_error = |source| UntrustedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = path.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(UntrustedError::NotRegular {
            path: path.to_path_buf(),
            kind: file_kind(metadata.file_type()),
        });
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(UntrustedError::NotRegular {
            path: path.to_path_buf(),
            kind: file_kind(metadata.file_type()),
        });
    }
    Ok((fs_err::File::from_parts(file, path), metadata.len()))
}

/// Reads the whole of `path`, a regular file ([`open_untrusted`]) of at most
/// `limit` bytes; a larger file (or one that grows past the cap while it is
/// read) is refused after reading at most `limit + 1` bytes.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("samples.json");
/// fs_err::write(&path, b"{}").unwrap();
/// assert_eq!(zoo_fs::read_untrusted(&path, 2).unwrap(), b"{}");
/// assert!(zoo_fs::read_untrusted(&path, 1).is_err());
/// ```
pub fn read_untrusted(path: &Path, limit: u64) -> Result<Vec<u8>, UntrustedError> {
    let (file, size) = open_untrusted(path)?;
    let too_big = |size| UntrustedError::TooBig {
        path: path.to_path_buf(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_big(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| UntrustedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// At most the first `len` bytes of `path`, a regular file
/// ([`open_untrusted`]).
pub fn read_untrusted_prefix(path: &Path, len: u64) -> Result<Vec<u8>, UntrustedError> {
    let (file, _) = open_untrusted(path)?;
    let mut bytes = Vec::new();
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(|source| UntrustedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        fs_err::write(&file, b"12345").unwrap();
        assert_eq!(read_untrusted(&file, 5).unwrap(), b"12345");
        assert!(matches!(
            read_untrusted(&file, 4),
            Err(UntrustedError::TooBig {
                size: 5,
                limit: 4,
                ..
            })
        ));
        assert_eq!(read_untrusted_prefix(&file, 2).unwrap(), b"12");
        assert!(matches!(
            read_untrusted(dir.path(), 10),
            Err(UntrustedError::NotRegular {
                kind: "a folder",
                ..
            })
        ));
        assert!(
            read_untrusted(&dir.path().join("missing"), 10)
                .unwrap_err()
                .is_not_found()
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("zero.json");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            assert!(matches!(
                read_untrusted(&link, 10),
                Err(UntrustedError::NotRegular {
                    kind: "a character device",
                    ..
                })
            ));
        }
    }
}
