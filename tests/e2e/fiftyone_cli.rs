//! Every example command line of FiftyOne 1.22.1's `fiftyone zoo models`
//! (the `Examples::` of each command in `fiftyone/core/cli.py`) and every
//! form FiftyOne's CLI documents, run through `zoo` with the placeholders
//! filled from the seeds (`tests/corpus`, served by a fake GitHub) and from
//! a runnable TorchScript model served on loopback (issue 12).

use std::path::Path;

use zoo_test_support::{Archive, FakeGitHub, RepoSpec, TestServer};

use crate::apply::classifier_source;
use crate::util::{Sandbox, corpus};

/// A `python` stand-in that records its arguments and prints nothing (so
/// no package counts as installed), for `--install` and `--ensure`.
fn fake_python(dir: &Path) -> (String, std::path::PathBuf) {
    let log = dir.join("python.log");
    let script = dir.join("python");
    fs_err::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 0\n", log.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (script.display().to_string(), log)
}

fn pictures(dir: &Path) {
    fs_err::create_dir_all(dir).unwrap();
    for (index, (w, h)) in [(64u32, 48u32), (300, 120)].into_iter().enumerate() {
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 3) as u8, (x ^ y) as u8])
        });
        image.save(dir.join(format!("p{index}.png"))).unwrap();
    }
}

fn names(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The seeds' first models, with what `-t` and `-l` select them by.
struct Seed {
    identifier: String,
    name: String,
    tags: Vec<String>,
    license: Option<String>,
}

fn seeds(github: &FakeGitHub) -> Vec<Seed> {
    corpus()
        .into_iter()
        .map(|(stem, text)| {
            let (owner, repo) = stem.split_once("__").unwrap();
            let repo = repo.replace("__", "-");
            github.add_repo(
                RepoSpec::new(owner, &repo)
                    .git_ref("main", Archive::new().file("manifest.json", text.clone())),
            );
            let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
            let model = &manifest["models"][0];
            Seed {
                identifier: format!("https://github.com/{owner}/{repo}"),
                name: model["base_name"].as_str().unwrap().to_owned(),
                tags: model["tags"]
                    .as_array()
                    .map(|tags| {
                        tags.iter()
                            .map(|tag| tag.as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                license: model["license"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// `fiftyone zoo models list|find|info|requirements|download|apply|embed|
/// delete|list-sources|register-source|delete-source`, each example as
/// FiftyOne documents it, then the space-separated `-t`/`-l` values that
/// argparse's `nargs="+"` takes (`-t classification resnet`), which zoo
/// refused before.
#[test]
fn every_fiftyone_example_command_line_runs_through_zoo() {
    let github = FakeGitHub::start();
    // A source model named exactly like a built-in is shadowed by it
    // (merging skips the later one, as FiftyOne's does); one whose file is
    // named like a built-in's is not (a source's files live in its folder).
    let builtin: Vec<String> = zoo_registry::builtin_manifest()
        .models
        .iter()
        .map(|model| model.name())
        .collect();
    let seeds: Vec<_> = seeds(&github)
        .into_iter()
        .filter(|seed| !builtin.contains(&seed.name))
        .collect();
    let server = TestServer::start();
    let archive_source = classifier_source(&server);
    // The same runnable model, also as a GitHub repo.
    github.add_repo(RepoSpec::new("acme", "tiny-zoo").git_ref(
        "main",
        Archive::new().file(
            "manifest.json",
            serde_json::json!({"name": "acme/tiny-gh", "models": [{
                "base_name": "acme/tiny-gh-classifier",
                "base_filename": "tiny-gh.pt",
                "license": "MIT",
                "tags": ["classification", "embeddings", "torch"],
                "manager": {"type": "fiftyone.core.models.ModelManager",
                    "config": {"url": server.url("/weights/tiny.pt")}},
                "default_deployment_config_dict": {"type": "fiftyone.utils.torch.TorchImageModel", "config": {
                    "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor", "classes": ["red", "green", "blue"], "image_min_dim": 224, "image_max_dim": 2048,
                    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                    "embeddings_layer": "embed", "device": "cpu"
                }}
            }]})
            .to_string(),
        ),
    ));
    let mut sandbox = Sandbox::with_github(&github.api_url());
    let (python, log) = fake_python(sandbox.dir.path());
    sandbox.env.push(("ZOO_PYTHON".into(), python));
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);

    // register-source https://github.com/<user>/<repo> | <url>
    for seed in &seeds {
        sandbox.ok(&["models", "register-source", &seed.identifier]);
    }
    sandbox.ok(&["models", "register-source", &archive_source]);

    // list, --names-only, --downloaded-only, --tags, --source, --license
    let all = names(&sandbox.ok(&["models", "list", "--json"]).json());
    assert!(all.iter().any(|name| name == "acme/tiny-classifier"));
    let table = sandbox.ok(&["models", "list"]).stdout();
    assert!(table.contains("acme/tiny-classifier"), "{table}");
    let listed = sandbox.ok(&["models", "list", "--names-only"]).lines();
    assert_eq!(listed.len(), all.len());
    sandbox.ok(&["models", "list", "--downloaded-only"]);
    for seed in &seeds {
        let tagged = names(
            &sandbox
                .ok(&["models", "list", "--tags", &seed.tags[0], "--json"])
                .json(),
        );
        assert!(tagged.contains(&seed.name), "{} by tag", seed.name);
        let from = names(
            &sandbox
                .ok(&["models", "list", "--source", &seed.identifier, "--json"])
                .json(),
        );
        assert!(from.contains(&seed.name), "{} by source", seed.name);
        if let Some(license) = &seed.license
            && !license.contains(',')
        {
            let licensed = names(
                &sandbox
                    .ok(&["models", "list", "--license", license, "--json"])
                    .json(),
            );
            assert!(licensed.contains(&seed.name), "{} by license", seed.name);
        }
        // nargs="+": several tags after one flag, every one required.
        if seed.tags.len() >= 2 {
            let both = names(
                &sandbox
                    .ok(&[
                        "models",
                        "list",
                        "-t",
                        &seed.tags[0],
                        &seed.tags[1],
                        "--json",
                    ])
                    .json(),
            );
            assert!(both.contains(&seed.name), "{} by two tags", seed.name);
            let comma = names(
                &sandbox
                    .ok(&[
                        "models",
                        "list",
                        "--tags",
                        &format!("{},{}", seed.tags[0], seed.tags[1]),
                        "--json",
                    ])
                    .json(),
            );
            assert_eq!(both, comma, "space- and comma-separated tags agree");
        }
    }
    // FiftyOne's own documented example: `-t classification resnet`, built-in models.
    let resnets = names(
        &sandbox
            .ok(&["models", "list", "-t", "classification", "resnet", "--json"])
            .json(),
    );
    assert!(resnets.contains(&"resnet50-imagenet-torch".to_owned()));
    assert!(
        resnets.iter().all(|name| name.contains("resnet")),
        "{resnets:?}"
    );
    // -l with several licenses: any of them.
    let licensed = names(
        &sandbox
            .ok(&["models", "list", "-l", "MIT", "BSD 2-Clause", "--json"])
            .json(),
    );
    // FiftyOne 1.22.1 lists SqueezeNet 1.0 as `squeezenet-imagenet-torch@1.0`.
    assert!(
        licensed.iter().any(|name| name.starts_with("squeezenet")),
        "{licensed:?}"
    );
    // The MIT-licensed CLIP: the built-in, which shadows the source's.
    assert!(licensed.contains(&"clip-vit-base32-torch".to_owned()));

    // info, requirements --print | --install | --ensure
    let name = "resnet18-imagenet-torch";
    sandbox.ok(&["models", "info", name]);
    let printed = sandbox
        .ok(&["models", "requirements", name, "--print"])
        .stdout();
    assert!(printed.contains("torch"), "{printed}");
    assert_eq!(
        sandbox.ok(&["models", "requirements", name, "-p"]).stdout(),
        printed
    );
    sandbox.ok(&["models", "requirements", name, "--install"]);
    let pip = fs_err::read_to_string(&log).unwrap();
    assert!(pip.contains("-m pip install torch torchvision"), "{pip}");
    // The stand-in reports nothing installed: unmet at level 0, a warning
    // at level 1.
    let unmet = sandbox
        .fails(&["models", "requirements", name, "--ensure"])
        .stderr();
    assert!(unmet.contains("missing Python packages"), "{unmet}");
    let warned = sandbox
        .ok(&["models", "requirements", name, "-e", "--error-level", "1"])
        .stderr();
    assert!(warned.contains("warning"), "{warned}");

    // download <name> | https://github.com/<user>/<repo> --model-name | <url> --model-name
    sandbox.ok(&["models", "download", "acme/tiny-classifier"]);
    sandbox.ok(&[
        "models",
        "download",
        "https://github.com/acme/tiny-zoo",
        "--model-name",
        "acme/tiny-gh-classifier",
    ]);
    sandbox.ok(&[
        "models",
        "download",
        &archive_source,
        "--model-name",
        "acme/tiny-classifier",
    ]);
    // find <name>
    let found = sandbox
        .ok(&["models", "find", "acme/tiny-classifier"])
        .stdout();
    assert!(Path::new(found.trim()).is_file(), "{found}");
    let downloaded = names(
        &sandbox
            .ok(&["models", "list", "--downloaded-only", "--json"])
            .json(),
    );
    assert!(downloaded.contains(&"acme/tiny-classifier".to_owned()));

    // apply <model-name> <dataset-name> <label-field>, the remote forms,
    // and the customised one (plus -i/--install and --error-level).
    sandbox.ok(&["models", "apply", "acme/tiny-classifier", "pics", "a"]);
    sandbox.ok(&[
        "models",
        "apply",
        "https://github.com/acme/tiny-zoo",
        "pics",
        "b",
        "--model-name",
        "acme/tiny-gh-classifier",
    ]);
    sandbox.ok(&[
        "models",
        "apply",
        &archive_source,
        "pics",
        "c",
        "--model-name",
        "acme/tiny-classifier",
    ]);
    sandbox.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "pics",
        "d",
        "--confidence-thresh",
        "0.7",
        "--store-logits",
        "--batch-size",
        "32",
    ]);
    sandbox.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "pics",
        "e",
        "-t",
        "0.1",
        "-l",
        "-b",
        "2",
        "-i",
        "--error-level",
        "0",
    ]);
    // embed <model-name> <dataset-name> <embeddings-field>, remote forms.
    sandbox.ok(&["models", "embed", "acme/tiny-classifier", "pics", "v"]);
    sandbox.ok(&[
        "models",
        "embed",
        "https://github.com/acme/tiny-zoo",
        "pics",
        "w",
        "--model-name",
        "acme/tiny-gh-classifier",
    ]);
    sandbox.ok(&[
        "models",
        "embed",
        &archive_source,
        "pics",
        "x",
        "--model-name",
        "acme/tiny-classifier",
        "-b",
        "1",
        "-i",
        "--error-level",
        "2",
    ]);
    let info = sandbox.ok(&["datasets", "info", "pics", "--json"]).json();
    for field in ["a", "b", "c", "d", "e"] {
        assert_eq!(info["label_fields"][field], 2, "{field}: {info}");
    }

    // delete <name>, list-sources, delete-source <github url> | <url>
    sandbox.ok(&["models", "delete", "acme/tiny-classifier"]);
    sandbox.fails(&["models", "find", "acme/tiny-classifier"]);
    let sources = sandbox.ok(&["models", "list-sources", "--json"]).json();
    assert_eq!(sources.as_array().unwrap().len(), seeds.len() + 2);
    sandbox.ok(&["models", "list-sources"]);
    sandbox.ok(&[
        "models",
        "delete-source",
        "https://github.com/acme/tiny-zoo",
    ]);
    sandbox.ok(&["models", "delete-source", &archive_source]);
    for seed in &seeds {
        sandbox.ok(&["models", "delete-source", &seed.identifier]);
    }
    let sources = sandbox.ok(&["models", "list-sources", "--json"]).json();
    assert_eq!(sources.as_array().unwrap().len(), 0);
}

/// `apply -t 0.99` on a classifier: FiftyOne 1.22.1 hands the threshold to
/// `TorchImageModel`'s config, so an image below it gets an empty
/// `Classification` (`{"_cls": "Classification", ...}` with no label), not
/// a missing field.
#[test]
fn apply_below_the_threshold_stores_an_empty_classification() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics);
    sandbox.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        pics.to_str().unwrap(),
        "pred",
        "-t",
        "0.99",
        "-l",
    ]);
    let out = sandbox.dir.path().join("out.jsonl");
    let dataset = sandbox.ok(&["datasets", "list", "--json"]).json()[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    sandbox.ok(&["datasets", "export", &dataset, out.to_str().unwrap()]);
    let lines = fs_err::read_to_string(&out).unwrap();
    let mut seen = 0;
    for line in lines.lines() {
        let sample: serde_json::Value = serde_json::from_str(line).unwrap();
        let label = &sample["pred"];
        assert_eq!(label["_cls"], "Classification", "{line}");
        assert!(
            label.get("label").is_none_or(serde_json::Value::is_null),
            "{line}"
        );
        assert!(
            label.get("logits").is_none_or(serde_json::Value::is_null),
            "{line}"
        );
        seen += 1;
    }
    assert_eq!(seen, 2);
}

/// `requirements --install` passes a manifest's packages to pip as
/// arguments: a hostile "package" such as `--index-url=...` would be read
/// as one of pip's options. It is refused, and pip never runs.
#[test]
fn install_refuses_a_requirement_that_pip_would_read_as_an_option() {
    let mut sandbox = Sandbox::new();
    let manifest = sandbox.dir.path().join("custom-manifest.json");
    fs_err::write(
        &manifest,
        serde_json::json!({"models": [{"base_name": "needs", "base_filename": "n.pt",
            "requirements": {"packages": ["torch", "--index-url=http://127.0.0.1:9/evil"]}}]})
        .to_string(),
    )
    .unwrap();
    sandbox
        .env
        .push(("ZOO_MANIFEST_PATHS".into(), manifest.display().to_string()));
    let (python, log) = fake_python(sandbox.dir.path());
    sandbox.env.push(("ZOO_PYTHON".into(), python));
    let error = sandbox
        .fails(&["models", "requirements", "needs", "--install"])
        .stderr();
    assert!(error.contains("--index-url"), "{error}");
    assert!(error.contains("option"), "{error}");
    assert!(!log.exists(), "pip ran");
}
