//! Property tests: whatever strings a manifest holds, reading it never
//! panics, and it is either refused with an error naming the field, or every
//! path built from it is a plain name strictly inside its folder.

use std::path::{Component, Path};

use proptest::prelude::*;
use zoo_manifest::{FileName, Manifest, RelativePath};

/// Pieces attackers use: traversal, separators, zoo's own names, controls.
fn adversarial() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "..",
        ".",
        "/",
        "\\",
        "\0",
        "\n",
        "\u{7f}",
        "\u{202e}",
        "",
        " ",
        "@",
        "-v",
        "a",
        "1.0",
        "manifest.json",
        "sources-v1.json",
        "sources-v7.json",
        ".registry.lock",
        ".tmp",
        ".locks",
        "__init__.py",
        "download_model",
        "load_model",
        ".partial",
        ".zip",
        ".tar.gz",
        "x.zip",
        "MANIFEST.JSON",
        "é",
        "C:",
        "~",
    ]);
    prop::collection::vec(pieces, 0..6).prop_map(|parts| parts.concat())
}

/// Any string: adversarial pieces, or arbitrary unicode.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![adversarial(), any::<String>(), "[a-z./@-]{0,12}"]
}

fn check_name(name: &str) {
    let path = Path::new("/zoo/source").join(name);
    let relative = path.strip_prefix("/zoo/source").unwrap();
    let components: Vec<Component<'_>> = relative.components().collect();
    assert_eq!(components.len(), 1, "{name:?} is not one name");
    assert!(matches!(components[0], Component::Normal(_)), "{name:?}");
    assert!(!name.starts_with('.'), "{name:?} is hidden");
    assert!(FileName::new(name).is_ok(), "{name:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hostile_models_are_refused_or_stay_inside(
        base_name in hostile(),
        version in proptest::option::of(hostile()),
        base_filename in proptest::option::of(hostile()),
        extract in any::<bool>(),
    ) {
        let model = serde_json::json!({
            "base_name": base_name,
            "version": version,
            "base_filename": base_filename,
            "manager": {"config": {"url": "http://127.0.0.1/x", "extract_archive": extract}},
        });
        let text = serde_json::json!({"name": "acme/models", "models": [model]}).to_string();
        match Manifest::from_slice(text.as_bytes(), "m.json") {
            Err(err) => {
                let message = err.to_string();
                prop_assert!(message.contains("models[0]"), "{}", message);
                let named = ["base_name", "version", "base_filename"]
                    .iter()
                    .any(|field| message.contains(&format!("`{field}`")));
                prop_assert!(named, "{}", message);
                prop_assert!(!message.contains('\0'), "{}", message);
            }
            Ok(manifest) => {
                let files = manifest.models[0].files().unwrap();
                for name in files.names() {
                    check_name(name.as_str());
                }
                if let Some(folder) = &files.archive_folder {
                    prop_assert_ne!(folder, &files.file);
                }
            }
        }
    }

    #[test]
    fn hostile_source_names_are_refused_or_stay_inside(name in hostile()) {
        let text = serde_json::json!({"name": name, "models": []}).to_string();
        match Manifest::from_slice(text.as_bytes(), "m.json") {
            Err(err) => prop_assert!(err.to_string().contains("at `name`"), "{}", err),
            Ok(manifest) => {
                let dir = manifest.install_dir().unwrap();
                prop_assert_eq!(dir.to_string(), name.clone());
                for part in dir.components() {
                    check_name(part.as_str());
                }
                let joined = dir.join_to(Path::new("/zoo"));
                prop_assert!(joined.starts_with("/zoo") && joined != Path::new("/zoo"));
                prop_assert_eq!(
                    joined.strip_prefix("/zoo").unwrap().components().count(),
                    dir.components().len()
                );
            }
        }
    }

    #[test]
    fn relative_paths_round_trip_or_are_refused(text in hostile()) {
        if let Ok(path) = RelativePath::new(&text) {
            prop_assert_eq!(path.to_string(), text);
        }
    }
}

#[test]
fn the_findings_are_refused_with_field_and_value() {
    let cases = [
        (
            r#"{"base_name": "m", "base_filename": "m.pt", "version": "/../../../../tmp/x"}"#,
            "models[0].version",
            "/../../../../tmp/x",
        ),
        (
            r#"{"base_name": "m", "version": "1/.."}"#,
            "models[0].version",
            "1/..",
        ),
        (r#"{"base_name": ".."}"#, "models[0].base_name", ".."),
        (r#"{"base_name": "x/.."}"#, "models[0].base_name", "x/.."),
        (
            r#"{"base_name": "slash/"}"#,
            "models[0].base_name",
            "slash/",
        ),
        (
            r#"{"base_name": "m", "base_filename": "manifest.json"}"#,
            "models[0].base_filename",
            "manifest.json",
        ),
        (
            r#"{"base_name": "m", "base_filename": "a\u0000b"}"#,
            "models[0].base_filename",
            "a\\0b",
        ),
    ];
    for (model, json_path, shown) in cases {
        let text = format!(r#"{{"name": "acme/models", "models": [{model}]}}"#);
        let message = Manifest::from_slice(text.as_bytes(), "m.json")
            .unwrap_err()
            .to_string();
        assert!(message.contains(&format!("at `{json_path}`")), "{message}");
        assert!(message.contains(&format!("`{shown}`")), "{message}");
        assert!(!message.contains('\0'), "{message}");
    }
}
