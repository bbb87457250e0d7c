//! A whole `manifest.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ManifestError;
use crate::file_name::RelativePath;
use crate::model::{ManifestModel, UnsafeField};

/// The largest `manifest.json` zoo reads: 64 MiB (the largest real manifest
/// known, FiftyOne's own, is under 1 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// A `manifest.json`: a named list of models.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The source's name, e.g. `voxel51/openai-clip` (required for sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the source came from; zoo sets it to the registered identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The models.
    #[serde(default)]
    pub models: Vec<ManifestModel>,
    /// Fields zoo does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Manifest {
    /// Reads and parses the manifest at `path`.
    /// A file over [`MAX_MANIFEST_BYTES`] is refused without being read
    /// whole: a source archive may hold a manifest of any size.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        use std::io::Read as _;
        let read_error = |source| ManifestError::Read {
            path: path.to_owned(),
            source,
        };
        let file = fs_err::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_owned(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        Self::from_slice(&bytes, path)
    }

    /// Parses manifest bytes; `origin` names them in errors.
    pub fn from_slice(bytes: &[u8], origin: impl AsRef<Path>) -> Result<Self, ManifestError> {
        let origin = origin.as_ref();
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let manifest: Self =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let json_path = err.path().to_string();
                let inner = err.into_inner();
                ManifestError::Parse {
                    path: origin.to_owned(),
                    json_path,
                    message: describe(&inner),
                }
            })?;
        deserializer.end().map_err(|err| ManifestError::Parse {
            path: origin.to_owned(),
            json_path: ".".to_owned(),
            message: describe(&err),
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    /// The manifest as pretty JSON, unknown fields included.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The folder, relative to the zoo dir, that this manifest's `name`
    /// installs into (`a/b` -> `a/b`), or why it cannot be a source.
    pub fn install_dir(&self) -> Result<RelativePath, UnsafeField> {
        let name = self.name.as_deref().unwrap_or_default();
        RelativePath::new(name).map_err(|problem| UnsafeField {
            field: "name",
            built_as: None,
            value: name.to_owned(),
            problem,
        })
    }

    /// Checks what later becomes paths: the `name` (when present) and every
    /// model's names ([`ManifestModel::files`]).
    fn validate(&self, origin: &Path) -> Result<(), ManifestError> {
        let unsafe_path = |json_path: String, field: UnsafeField| ManifestError::UnsafePath {
            path: origin.to_owned(),
            json_path,
            field: Box::new(field),
        };
        if self.name.is_some() {
            self.install_dir()
                .map_err(|field| unsafe_path("name".to_owned(), field))?;
        }
        for (index, model) in self.models.iter().enumerate() {
            if model.base_name.trim().is_empty() {
                return Err(ManifestError::Invalid {
                    path: origin.to_owned(),
                    json_path: format!("models[{index}].base_name"),
                    message: "`base_name` must not be empty".to_owned(),
                });
            }
            model
                .files()
                .map_err(|field| unsafe_path(format!("models[{index}].{}", field.field), field))?;
        }
        Ok(())
    }
}

fn describe(err: &serde_json::Error) -> String {
    let place = format!(" (line {}, column {})", err.line(), err.column());
    let message = err.to_string();
    // serde_json appends its own position; replace it with ours.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(head, _)| head)
        .to_owned();
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON: {message}{place}")
        }
        _ => format!("{message}{place}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_that_escape_are_refused() {
        let cases = [
            ("voxel51/openai-clip", true),
            ("@Burhan-Q/fiftyone-locate-anything", true),
            ("Traffic Sign Detection Models", true),
            ("../evil", false),
            ("a/../b", false),
            ("/abs", false),
            ("a//b", false),
            ("a/", false),
            ("", false),
            ("a\\b", false),
            ("sources-v1.json", false),
            (".registry.lock", false),
            (".tmp/x", false),
            (".locks", false),
        ];
        for (name, ok) in cases {
            let manifest = Manifest {
                name: Some(name.to_owned()),
                ..Manifest::default()
            };
            assert_eq!(manifest.install_dir().is_ok(), ok, "{name}");
            let text = serde_json::json!({"name": name, "models": []}).to_string();
            let read = Manifest::from_slice(text.as_bytes(), "m.json");
            assert_eq!(read.is_ok(), ok, "{name}");
            if !ok {
                let message = read.unwrap_err().to_string();
                assert!(message.contains("at `name`"), "{message}");
            }
        }
    }

    #[test]
    fn errors_name_the_json_path() {
        let err = Manifest::from_slice(
            br#"{"name": "x", "models": [{"base_name": "a"}, {"base_name": "b", "tags": "nope"}]}"#,
            "m.json",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("m.json"), "{message}");
        assert!(message.contains("models[1].tags"), "{message}");
        assert!(message.contains("expected a sequence"), "{message}");

        let err = Manifest::from_slice(br#"{"models": [{"version": "1"}]}"#, "m.json").unwrap_err();
        assert!(
            err.to_string().contains("missing field `base_name`"),
            "{err}"
        );
        assert!(err.to_string().contains("models[0]"), "{err}");

        let err = Manifest::from_slice(b"{\"models\": [", "m.json").unwrap_err();
        assert!(err.to_string().contains("malformed JSON"), "{err}");

        let err = Manifest::from_slice(
            br#"{"models": [{"base_name": "a", "base_filename": "../x.pt"}]}"#,
            "m.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("models[0].base_filename"), "{err}");
    }

    #[test]
    fn a_manifest_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let file = fs_err::File::create(&path).unwrap();
        // Sparse: the test writes nothing, the reader must not read it all.
        file.set_len(MAX_MANIFEST_BYTES * 64).unwrap();
        let message = Manifest::read(&path).unwrap_err().to_string();
        assert!(message.contains("manifest.json"), "{message}");
        assert!(message.contains("67108864"), "{message}");
    }

    #[test]
    fn unknown_fields_and_nulls_round_trip() {
        let text = br#"{"name": "n", "custom": {"k": [1, 2]}, "models": [
            {"base_name": "a", "version": null, "x-extra": true, "manager": {}}
        ]}"#;
        let manifest = Manifest::from_slice(text, "m.json").unwrap();
        assert_eq!(manifest.models[0].version, None);
        assert!(manifest.models[0].download_manager().is_none());
        let back: Value = serde_json::from_str(&manifest.to_json_pretty()).unwrap();
        assert_eq!(back["custom"]["k"][1], 2);
        assert_eq!(back["models"][0]["x-extra"], true);
    }
}
