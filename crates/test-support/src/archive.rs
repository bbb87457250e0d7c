//! In-memory zip, tar and tar.gz archives, hostile ones included.

use std::io::{Cursor, Write};

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file; `mode` is the Unix permission bits.
    File {
        /// The member name, written verbatim (may be hostile).
        name: String,
        /// The file contents.
        contents: Vec<u8>,
        /// Unix permission bits.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// The member name, written verbatim.
        name: String,
    },
    /// A symbolic link to `target`.
    Symlink {
        /// The member name.
        name: String,
        /// What the link points at, written verbatim.
        target: String,
    },
    /// A hard link to `target` (tar only; zip has none).
    Hardlink {
        /// The member name.
        name: String,
        /// The member it links to.
        target: String,
    },
}

/// An archive under construction; names are written exactly as given, so
/// tests can build the hostile archives extraction must refuse.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: Vec<Entry>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file with mode `0o644`.
    pub fn file(self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.file_with_mode(name, contents, 0o644)
    }

    /// Adds a file with the given Unix mode.
    pub fn file_with_mode(mut self, name: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push(Entry::File {
            name: name.to_owned(),
            contents: contents.into(),
            mode,
        });
        self
    }

    /// Adds a directory.
    pub fn dir(mut self, name: &str) -> Self {
        self.entries.push(Entry::Dir {
            name: name.to_owned(),
        });
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            name: name.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    /// Adds a hard link (tar only).
    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.entries.push(Entry::Hardlink {
            name: name.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    /// The entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The archive as a zip file.
    ///
    /// # Panics
    ///
    /// On a hard link (zip cannot hold one) or a zip writer failure; see
    /// [`Archive::try_to_zip`] for names the zip writer may refuse.
    pub fn to_zip(&self) -> Vec<u8> {
        self.try_to_zip().expect("zip archive")
    }

    /// The archive as a zip file, or why the zip writer refused it (a
    /// repeated name, a hard link): for generated, hostile entry lists.
    pub fn try_to_zip(&self) -> Result<Vec<u8>, String> {
        use zip::write::SimpleFileOptions;
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let failed = |what: &str, name: &str, err: &dyn std::fmt::Display| {
            format!("zip {what} `{name}`: {err}")
        };
        for entry in &self.entries {
            match entry {
                Entry::File {
                    name,
                    contents,
                    mode,
                } => {
                    writer
                        .start_file(name.as_str(), options.unix_permissions(*mode))
                        .map_err(|err| failed("file", name, &err))?;
                    writer
                        .write_all(contents)
                        .map_err(|err| failed("write", name, &err))?;
                }
                Entry::Dir { name } => writer
                    .add_directory(name.as_str(), options)
                    .map_err(|err| failed("directory", name, &err))?,
                Entry::Symlink { name, target } => writer
                    .add_symlink(name.as_str(), target.as_str(), options)
                    .map_err(|err| failed("symlink", name, &err))?,
                Entry::Hardlink { name, .. } => {
                    return Err(format!("zip archives cannot hold hard links (`{name}`)"));
                }
            }
        }
        writer
            .finish()
            .map(Cursor::into_inner)
            .map_err(|err| format!("zip finish: {err}"))
    }

    /// The archive as an uncompressed tar file.
    ///
    /// # Panics
    ///
    /// On a name or link target of 100 bytes or more (kept simple on
    /// purpose).
    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            let (name, data): (&str, &[u8]) = match entry {
                Entry::File {
                    name,
                    contents,
                    mode,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(contents.len() as u64);
                    (name, contents)
                }
                Entry::Dir { name } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    (name, &[])
                }
                Entry::Symlink { name, target } | Entry::Hardlink { name, target } => {
                    let kind = if matches!(entry, Entry::Symlink { .. }) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    header.set_entry_type(kind);
                    header.set_mode(0o777);
                    header.set_size(0);
                    write_raw(&mut header.as_old_mut().linkname, target);
                    (name, &[])
                }
            };
            // Written raw: `Header::set_path` refuses `..`, and hostile names
            // are the point of some tests.
            write_raw(&mut header.as_old_mut().name, name);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            builder.append(&header, data).expect("tar append");
        }
        builder.into_inner().expect("tar finish")
    }

    /// The archive as a gzip-compressed tar file.
    pub fn to_tar_gz(&self) -> Vec<u8> {
        gzip(&self.to_tar())
    }
}

/// Gzip-compresses `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip write");
    encoder.finish().expect("gzip finish")
}

fn write_raw(field: &mut [u8], value: &str) {
    let bytes = value.as_bytes();
    assert!(bytes.len() < field.len(), "tar name too long: {value}");
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_keeps_hostile_names_verbatim() {
        let tar = Archive::new()
            .file("../escape.txt", "x")
            .symlink("link", "/etc/passwd")
            .to_tar();
        let mut archive = tar::Archive::new(Cursor::new(tar));
        let names: Vec<(String, Option<String>)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (
                    entry.path().unwrap().display().to_string(),
                    entry
                        .link_name()
                        .unwrap()
                        .map(|target| target.display().to_string()),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("../escape.txt".to_owned(), None),
                ("link".to_owned(), Some("/etc/passwd".to_owned()))
            ]
        );
    }

    #[test]
    fn zip_round_trips_files_and_modes() {
        let zip = Archive::new()
            .dir("top/")
            .file_with_mode("top/run.sh", "#!/bin/sh\n", 0o755)
            .to_zip();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 2);
        let file = archive.by_name("top/run.sh").unwrap();
        assert_eq!(file.unix_mode().map(|mode| mode & 0o777), Some(0o755));
    }
}
