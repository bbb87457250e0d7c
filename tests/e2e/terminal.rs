//! What reaches the terminal from a manifest: control characters escaped,
//! no panic on huge cells, commands for the user quoted for a shell.

use serde_json::json;

use crate::util::Sandbox;

/// A sandbox whose extra manifest (`ZOO_MANIFEST_PATHS`) holds `models`.
fn with_manifest(models: serde_json::Value) -> Sandbox {
    let mut sandbox = Sandbox::new();
    let path = sandbox.dir.path().join("custom-manifest.json");
    fs_err::write(&path, json!({ "models": models }).to_string()).unwrap();
    sandbox
        .env
        .push(("ZOO_MANIFEST_PATHS".to_owned(), path.display().to_string()));
    sandbox
}

/// A 65,536-character name panicked in the table's `format!` width.
#[test]
fn list_with_a_65536_character_name_does_not_panic() {
    let name = "m".repeat(65_536);
    let sandbox = with_manifest(json!([
        {"base_name": name, "base_filename": "m.pt", "tags": ["t"]}
    ]));
    let run = sandbox.ok(&["models", "list"]);
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    let line = run
        .lines()
        .into_iter()
        .find(|line| line.starts_with("mmm"))
        .expect("the long name is listed");
    assert!(line.starts_with(&name), "{:.100}", line);
    assert!(line.contains("  t  "), "{:.100}", &line[65_536..]);
}

/// Tags with newlines and escape sequences printed lines of their own (a
/// fake model) and drove the terminal.
#[test]
fn list_escapes_control_characters_from_manifests() {
    let sandbox = with_manifest(json!([
        {"base_name": "honest", "base_filename": "h.pt",
         "tags": ["a\nfake-model  yes  x  builtin", "\u{1b}[2J\u{1b}[31mred"]}
    ]));
    let run = sandbox.ok(&["models", "list"]);
    let stdout = run.stdout();
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(
        !stdout.lines().any(|line| line.starts_with("fake-model")),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("honest"))
        .unwrap();
    assert!(
        line.contains(r"a\nfake-model  yes  x  builtin,\u{1b}[2J\u{1b}[31mred"),
        "{line}"
    );
    // Scripts get the real text, JSON-escaped.
    let listed = sandbox.ok(&["models", "list", "--json"]).json();
    let honest = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "honest")
        .unwrap();
    assert_eq!(honest["tags"][0], "a\nfake-model  yes  x  builtin");
}

/// The pip command `requirements --ensure` prints broke out of its quotes
/// when a requirement held a `'`.
#[test]
fn requirements_prints_a_pip_command_quoted_for_the_shell() {
    let evil = "zoo-nonexistent-pkg'; touch pwned; echo '";
    let sandbox = with_manifest(json!([
        {"base_name": "needs", "base_filename": "n.pt",
         "requirements": {"packages": [evil, "zoo-other-missing>=1.0"]}}
    ]));
    let run = sandbox.fails(&["models", "requirements", "needs", "--ensure"]);
    let stderr = run.stderr();
    let start = stderr
        .find("`python3 -m pip install")
        .expect("a pip command")
        + 1;
    let command = &stderr[start..start + stderr[start..].find('`').unwrap()];
    // A real shell reads back exactly the requirement strings.
    let words = command.strip_prefix("python3 -m pip install ").unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {words}"))
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{evil}\nzoo-other-missing>=1.0\n"),
        "{command}"
    );
    assert!(!sandbox.dir.path().join("pwned").exists());
}

/// `ZOO_LOCK_TIMEOUT=1e20` panicked; `-1` and `abc` were silently replaced
/// by 300 s.
#[test]
fn bad_lock_timeouts_are_clear_errors() {
    for value in ["1e20", "-1", "abc"] {
        let mut sandbox = Sandbox::new();
        sandbox
            .env
            .push(("ZOO_LOCK_TIMEOUT".to_owned(), value.to_owned()));
        let run = sandbox.fails(&["models", "list"]);
        let stderr = run.stderr();
        assert!(stderr.contains("ZOO_LOCK_TIMEOUT"), "{stderr}");
        assert!(stderr.contains(&format!("`{value}`")), "{stderr}");
    }
}
