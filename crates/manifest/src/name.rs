//! Versioned model names and filenames, as FiftyOne forms them.

/// Splits `path` like Python's `os.path.splitext`: the extension starts at
/// the last `.` of the final component, unless every dot before it leads the
/// component (`.bashrc` has no extension).
pub fn split_extension(path: &str) -> (&str, &str) {
    let name_start = path.rfind('/').map_or(0, |slash| slash + 1);
    let name = &path[name_start..];
    let Some(dot) = name.rfind('.') else {
        return (path, "");
    };
    if name[..dot].chars().all(|character| character == '.') {
        return (path, "");
    }
    path.split_at(name_start + dot)
}

/// `base_name` with `@version` put before its extension (`foo.bar` + `1.0`
/// -> `foo@1.0.bar`); `base_name` itself without a version.
pub fn versioned_name(base_name: &str, version: Option<&str>) -> String {
    match version {
        None => base_name.to_owned(),
        Some(version) => {
            let (root, extension) = split_extension(base_name);
            format!("{root}@{version}{extension}")
        }
    }
}

/// `base_filename` with `-v<version>` put before its extension (`model.pt` +
/// `2` -> `model-v2.pt`); `base_filename` itself without a version.
pub fn versioned_filename(base_filename: &str, version: Option<&str>) -> String {
    match version {
        None => base_filename.to_owned(),
        Some(version) => {
            let (root, extension) = split_extension(base_filename);
            format!("{root}-v{version}{extension}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_extension_matches_python() {
        let cases = [
            ("foo.bar", ("foo", ".bar")),
            ("foo", ("foo", "")),
            (".bashrc", (".bashrc", "")),
            ("..a", ("..a", "")),
            ("a.b.c", ("a.b", ".c")),
            ("dir.d/file", ("dir.d/file", "")),
            ("Qwen/Qwen2.5-VL", ("Qwen/Qwen2", ".5-VL")),
            ("model.tar.gz", ("model.tar", ".gz")),
        ];
        for (input, expected) in cases {
            assert_eq!(split_extension(input), expected, "{input}");
        }
    }

    #[test]
    fn versioned_names_and_filenames() {
        assert_eq!(versioned_name("foo.bar", Some("1.0")), "foo@1.0.bar");
        assert_eq!(versioned_name("user/model", Some("2")), "user/model@2");
        assert_eq!(versioned_name("user/model", None), "user/model");
        assert_eq!(versioned_filename("model.pt", Some("2")), "model-v2.pt");
        assert_eq!(versioned_filename("weights", Some("1.1")), "weights-v1.1");
        assert_eq!(versioned_filename("model.pt", None), "model.pt");
    }
}
