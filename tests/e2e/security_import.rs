//! Close the new trust holes (issue #28), datasets half: every path and
//! byte from a folder, part file or label zoo did not write is hostile.
//! Each test is named after an attack that worked on the old code and
//! drives the `zoo` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zoo_test_support::TestServer;

use crate::apply::classifier_source;
use crate::util::Sandbox;

const MODEL: &str = "acme/tiny-classifier";

fn png(path: &Path) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 11, 90]))
        .save(path)
        .unwrap();
}

/// A FiftyOne dataset folder with `samples` and a schema of `fields`
/// (`(name, ftype, label class)`).
fn fiftyone_folder(dir: &Path, fields: &[(&str, &str, Option<&str>)], samples: Value) {
    fs_err::create_dir_all(dir).unwrap();
    let fields: Vec<Value> = fields
        .iter()
        .map(|(name, ftype, class)| {
            json!({"name": name, "ftype": format!("fiftyone.core.fields.{ftype}"),
                   "embedded_doc_type": class.map(|class| format!("fiftyone.core.labels.{class}"))})
        })
        .collect();
    fs_err::write(
        dir.join("metadata.json"),
        json!({"name": "x", "media_type": "image", "sample_fields": fields}).to_string(),
    )
    .unwrap();
    fs_err::write(
        dir.join("samples.json"),
        json!({ "samples": samples }).to_string(),
    )
    .unwrap();
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Waits for `child` at most `limit`; a child still running then is killed
/// and the test fails (the old code blocked forever on a FIFO).
fn finish_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`{what}` hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs zoo and expects it to fail within a minute, no panic.
fn fails_within(sandbox: &Sandbox, args: &[&str]) -> String {
    let child = sandbox
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish_within(child, Duration::from_secs(60), &args.join(" "));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "`{}` succeeded", args.join(" "));
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn label_fields(sandbox: &Sandbox, dataset: &str) -> Value {
    sandbox.ok(&["datasets", "info", dataset, "--json"]).json()["label_fields"].clone()
}

/// A folder `export` with one image, `data/a.png`.
fn folder_with_image(sandbox: &Sandbox) -> PathBuf {
    let folder = sandbox.dir.path().join("export");
    png(&folder.join("data/a.png"));
    folder
}

#[test]
fn field_named_an_absolute_path_cannot_make_export_write_outside_out() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    let escape = sandbox.dir.path().join("escape");
    let cases = [
        (
            s(&escape).to_owned(),
            json!({"_cls": "Segmentation", "mask_path": "data/a.png"}),
        ),
        (
            s(&escape).to_owned(),
            json!({"_cls": "Detections", "detections": [{"_cls": "Detection", "label": "x",
                   "bounding_box": [0, 0, 1, 1], "mask_path": "data/a.png"}]}),
        ),
        (
            "a/b".to_owned(),
            json!({"_cls": "Segmentation", "mask_path": "data/a.png"}),
        ),
    ];
    for (index, (name, label)) in cases.into_iter().enumerate() {
        let mut sample = serde_json::Map::new();
        sample.insert("filepath".into(), json!("data/a.png"));
        sample.insert(name.clone(), label);
        fiftyone_folder(&folder, &[], json!([sample]));
        let dataset = format!("fo{index}");
        sandbox.ok(&["datasets", "import", &dataset, s(&folder)]);
        // Not a label field: kept as FiftyOne's JSON, never a folder name.
        assert_eq!(label_fields(&sandbox, &dataset), json!({}));
        let out = sandbox.dir.path().join(format!("out{index}"));
        sandbox.ok(&[
            "datasets",
            "export",
            &dataset,
            s(&out),
            "--format",
            "fiftyone",
        ]);
        assert!(!out.join("fields").exists());
        let samples: Value =
            serde_json::from_slice(&fs_err::read(out.join("samples.json")).unwrap()).unwrap();
        assert!(samples["samples"][0][&name].is_object());
    }
    assert!(!escape.exists());
    assert!(!sandbox.dir.path().join("escape.detections").exists());
}

#[test]
fn absolute_filepath_cannot_exfiltrate_a_file_through_export() {
    let sandbox = Sandbox::new();
    let secret = sandbox.dir.path().join("home/secret.txt");
    fs_err::create_dir_all(secret.parent().unwrap()).unwrap();
    fs_err::write(&secret, "the user's secret").unwrap();
    let folder = folder_with_image(&sandbox);
    fiftyone_folder(&folder, &[], json!([{"filepath": s(&secret)}]));
    let stderr = sandbox
        .fails(&["datasets", "import", "fo", s(&folder)])
        .stderr();
    assert!(stderr.contains("secret.txt"), "{stderr}");
    assert!(stderr.contains("--allow-outside-paths"), "{stderr}");
    assert!(sandbox.run(&["datasets", "info", "fo"]).0.status.code() != Some(0));

    // FiftyOne's usual form, the user's own media: allowed when asked for.
    let media = sandbox.dir.path().join("media/b.png");
    png(&media);
    fiftyone_folder(&folder, &[], json!([{"filepath": s(&media)}]));
    sandbox.ok(&[
        "datasets",
        "import",
        "fo",
        s(&folder),
        "--allow-outside-paths",
    ]);
    let out = sandbox.dir.path().join("out");
    sandbox.ok(&["datasets", "export", "fo", s(&out), "--format", "fiftyone"]);
    assert_eq!(
        fs_err::read(out.join("data/b.png")).unwrap(),
        fs_err::read(&media).unwrap()
    );
}

#[test]
fn dotdot_filepath_cannot_exfiltrate_etc_passwd() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    fiftyone_folder(
        &folder,
        &[],
        json!([{"filepath": "../../../../../../../../etc/passwd"}]),
    );
    for extra in [None, Some("--allow-outside-paths")] {
        let mut args = vec!["datasets", "import", "fo", s(&folder)];
        args.extend(extra);
        let stderr = sandbox.fails(&args).stderr();
        assert!(stderr.contains("etc/passwd"), "{stderr}");
        assert!(stderr.contains(".."), "{stderr}");
    }
}

#[test]
fn segmentation_mask_path_cannot_exfiltrate_etc_passwd() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    for mask in ["/etc/passwd", "../../../../../../etc/passwd"] {
        fiftyone_folder(
            &folder,
            &[("seg", "EmbeddedDocumentField", Some("Segmentation"))],
            json!([{"filepath": "data/a.png", "seg": {"_cls": "Segmentation", "mask_path": mask}}]),
        );
        let stderr = sandbox
            .fails(&["datasets", "import", "fo", s(&folder)])
            .stderr();
        assert!(stderr.contains("mask_path"), "{stderr}");
        assert!(stderr.contains("etc/passwd"), "{stderr}");
    }
}

#[test]
fn relative_mask_path_is_read_from_the_imported_folder_not_the_current_directory() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    png(&folder.join("masks/m.png"));
    // A decoy where the old code looked: the current directory.
    let cwd = sandbox.dir.path().join("cwd");
    fs_err::create_dir_all(cwd.join("masks")).unwrap();
    fs_err::write(cwd.join("masks/m.png"), "decoy from the current directory").unwrap();
    fiftyone_folder(
        &folder,
        &[("seg", "EmbeddedDocumentField", Some("Segmentation"))],
        json!([{"filepath": "data/a.png", "seg": {"_cls": "Segmentation", "mask_path": "masks/m.png"}}]),
    );
    let run = |args: &[&str]| {
        let output = sandbox.command(args).current_dir(&cwd).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&["datasets", "import", "fo", s(&folder)]);
    let out = sandbox.dir.path().join("out");
    run(&["datasets", "export", "fo", s(&out), "--format", "fiftyone"]);
    assert_eq!(
        fs_err::read(out.join("fields/seg/m.png")).unwrap(),
        fs_err::read(folder.join("masks/m.png")).unwrap()
    );
}

#[test]
fn detection_without_id_keeps_its_mask_path_through_export() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    png(&folder.join("masks/m.png"));
    fiftyone_folder(
        &folder,
        &[],
        json!([{"filepath": "data/a.png", "dets": {"_cls": "Detections", "detections": [
            {"_cls": "Detection", "label": "cat", "bounding_box": [0.1, 0.1, 0.5, 0.5],
             "mask_path": "masks/m.png"}]}}]),
    );
    sandbox.ok(&["datasets", "import", "fo", s(&folder)]);
    let out = sandbox.dir.path().join("out");
    sandbox.ok(&["datasets", "export", "fo", s(&out), "--format", "fiftyone"]);
    let samples: Value =
        serde_json::from_slice(&fs_err::read(out.join("samples.json")).unwrap()).unwrap();
    let detection = &samples["samples"][0]["dets"]["detections"][0];
    assert_eq!(detection["mask_path"], "fields/dets.detections/m.png");
    assert!(detection["_id"]["$oid"].is_string(), "{detection}");
    assert!(out.join("fields/dets.detections/m.png").is_file());
}

/// `dataset` `pics` of 4 images, and a results folder whose field `f` has
/// one complete shard of one holding `lines`.
fn pics_and_part(sandbox: &Sandbox, lines: &[Value]) -> PathBuf {
    let pics = sandbox.dir.path().join("pics");
    for index in 0..4 {
        png(&pics.join(format!("a{index}.png")));
    }
    if sandbox.run(&["datasets", "info", "pics"]).0.status.code() != Some(0) {
        sandbox.ok(&["datasets", "create", "pics", s(&pics)]);
    }
    let results = sandbox.dir.path().join("results");
    let shard = results.join("f/shard-00000-of-00001");
    fs_err::create_dir_all(&shard).unwrap();
    let header = json!({"zoo_results": 1, "kind": "labels", "field": "f", "shard": 0, "shards": 1,
        "chunk": 0, "chunks": 1, "chunk_size": 10, "samples": lines.len(), "keys_sha256": "x"});
    let mut text = format!("{header}\n");
    for line in lines {
        text.push_str(&format!("{line}\n"));
    }
    fs_err::write(shard.join("part-000000.jsonl"), text).unwrap();
    fs_err::write(
        shard.join("done.json"),
        json!({"zoo_results": 1, "kind": "labels", "field": "f", "shard": 0, "shards": 1,
               "chunks": 1, "chunk_size": 10, "samples": lines.len()})
        .to_string(),
    )
    .unwrap();
    results
}

fn empty_label() -> Value {
    json!({"_id": {"$oid": "000000000000000000000000"}, "_cls": "Classification", "tags": []})
}

#[test]
fn merged_part_label_with_mask_path_cannot_exfiltrate_etc_passwd() {
    let sandbox = Sandbox::new();
    let results = pics_and_part(
        &sandbox,
        &[
            json!({"key": "a0.png", "labels": {"f": empty_label()}}),
            json!({"key": "a1.png", "labels": {"f": {"_cls": "Segmentation", "mask_path": "/etc/passwd"}}}),
        ],
    );
    let stderr = sandbox
        .fails(&["datasets", "merge-results", "pics", s(&results), "f"])
        .stderr();
    assert!(stderr.contains("mask_path"), "{stderr}");
    // All or nothing: the good line before it was not merged either.
    assert_eq!(label_fields(&sandbox, "pics"), json!({}));
}

#[test]
fn absolute_key_in_a_part_commits_nothing_before_failing() {
    let sandbox = Sandbox::new();
    let pics = sandbox.dir.path().join("pics");
    let absolute = fs_err::canonicalize(sandbox.dir.path())
        .unwrap()
        .join("pics/a1.png");
    let results = pics_and_part(
        &sandbox,
        &[
            json!({"key": "a0.png", "labels": {"f": empty_label()}}),
            json!({"key": s(&absolute), "labels": {"f": empty_label()}}),
        ],
    );
    assert!(pics.exists());
    let stderr = sandbox
        .fails(&["datasets", "merge-results", "pics", s(&results), "f"])
        .stderr();
    assert!(stderr.contains("a1.png"), "{stderr}");
    assert_eq!(label_fields(&sandbox, "pics"), json!({}));
    // A key naming no sample: refused before anything is written too.
    let results = pics_and_part(
        &sandbox,
        &[
            json!({"key": "a0.png", "labels": {"f": empty_label()}}),
            json!({"key": "elsewhere.png", "labels": {"f": empty_label()}}),
        ],
    );
    let stderr = sandbox
        .fails(&["datasets", "merge-results", "pics", s(&results), "f"])
        .stderr();
    assert!(stderr.contains("nothing was merged"), "{stderr}");
    assert_eq!(label_fields(&sandbox, "pics"), json!({}));
}

#[test]
fn done_json_claiming_zero_chunks_cannot_hide_a_part() {
    let sandbox = Sandbox::new();
    let results = pics_and_part(
        &sandbox,
        &[json!({"key": "a0.png", "labels": {"f": empty_label()}})],
    );
    fs_err::write(
        results.join("f/shard-00000-of-00001/done.json"),
        json!({"zoo_results": 1, "kind": "labels", "field": "f", "shard": 0, "shards": 1,
               "chunks": 0, "chunk_size": 10, "samples": 0})
        .to_string(),
    )
    .unwrap();
    let stderr = sandbox
        .fails(&["datasets", "merge-results", "pics", s(&results), "f"])
        .stderr();
    assert!(stderr.contains("done.json"), "{stderr}");
    assert!(stderr.contains("part 0 exists"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn fifo_samples_json_cannot_hang_import() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    fiftyone_folder(&folder, &[], json!([]));
    fs_err::remove_file(folder.join("samples.json")).unwrap();
    mkfifo(&folder.join("samples.json"));
    let stderr = fails_within(&sandbox, &["datasets", "import", "fo", s(&folder)]);
    assert!(stderr.contains("FIFO"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn fifo_done_json_or_part_cannot_hang_merge() {
    let sandbox = Sandbox::new();
    let results = pics_and_part(
        &sandbox,
        &[json!({"key": "a0.png", "labels": {"f": empty_label()}})],
    );
    let shard = results.join("f/shard-00000-of-00001");
    for name in ["done.json", "part-000000.jsonl"] {
        let saved = fs_err::read(shard.join(name)).unwrap();
        fs_err::remove_file(shard.join(name)).unwrap();
        mkfifo(&shard.join(name));
        let stderr = fails_within(
            &sandbox,
            &["datasets", "merge-results", "pics", s(&results), "f"],
        );
        assert!(stderr.contains("FIFO"), "{name}: {stderr}");
        fs_err::remove_file(shard.join(name)).unwrap();
        fs_err::write(shard.join(name), saved).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn samples_json_or_part_linked_to_dev_zero_cannot_exhaust_memory() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    fiftyone_folder(&folder, &[], json!([]));
    fs_err::remove_file(folder.join("samples.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", folder.join("samples.json")).unwrap();
    let stderr = fails_within(&sandbox, &["datasets", "import", "fo", s(&folder)]);
    assert!(stderr.contains("character device"), "{stderr}");

    let results = pics_and_part(
        &sandbox,
        &[json!({"key": "a0.png", "labels": {"f": empty_label()}})],
    );
    let part = results.join("f/shard-00000-of-00001/part-000000.jsonl");
    fs_err::remove_file(&part).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &part).unwrap();
    let stderr = fails_within(
        &sandbox,
        &["datasets", "merge-results", "pics", s(&results), "f"],
    );
    assert!(stderr.contains("character device"), "{stderr}");
}

#[test]
fn huge_shard_count_in_a_results_folder_cannot_make_merge_loop() {
    let sandbox = Sandbox::new();
    let results = pics_and_part(&sandbox, &[]);
    fs_err::remove_dir_all(results.join("f")).unwrap();
    fs_err::create_dir_all(results.join("f/shard-00000-of-99999999999999")).unwrap();
    let stderr = fails_within(
        &sandbox,
        &["datasets", "merge-results", "pics", s(&results), "f"],
    );
    assert!(stderr.contains("no shard results"), "{stderr}");
    // The largest count allowed: listed, reported in a few lines.
    fs_err::remove_dir_all(results.join("f")).unwrap();
    fs_err::create_dir_all(results.join("f/shard-00000-of-100000")).unwrap();
    let stderr = fails_within(
        &sandbox,
        &["datasets", "merge-results", "pics", s(&results), "f"],
    );
    assert!(stderr.contains("and 99980 more"), "{stderr}");
    assert!(stderr.lines().count() < 40, "{stderr}");
}

#[test]
fn shard_count_over_the_limit_is_refused() {
    let sandbox = Sandbox::new();
    for shard in ["0/1000000000000", "0/100001"] {
        let stderr = sandbox
            .fails(&["models", "apply", MODEL, "nowhere", "f", "--shard", shard])
            .stderr();
        assert!(stderr.contains("at most 100000 shards"), "{stderr}");
    }
}

/// A FiftyOne vector whose `.npy` header declares `bytes / 4` floats, then
/// `bytes` zeros, zlib-compressed: about a thousandth of `bytes`.
fn vector_bomb(bytes: usize) -> Value {
    use base64::Engine;
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(&zoo_model_core::npy_bytes("<f4", &[bytes / 4], &[]))
        .unwrap();
    let zeros = vec![0; 1 << 20];
    for _ in 0..bytes >> 20 {
        encoder.write_all(&zeros).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    json!({"$binary": {"base64": base64::engine::general_purpose::STANDARD.encode(compressed),
                       "subType": "00"}})
}

#[test]
fn vector_field_zlib_bomb_cannot_exhaust_memory() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    // 1 GiB per sample from about a megabyte of base64.
    let bomb = vector_bomb(1 << 30);
    fiftyone_folder(
        &folder,
        &[("emb", "VectorField", None)],
        json!([{"filepath": "data/a.png", "emb": bomb}]),
    );
    let stderr = sandbox
        .fails(&["datasets", "import", "fo", s(&folder)])
        .stderr();
    assert!(stderr.contains("over the limit"), "{stderr}");
    assert!(stderr.contains("`emb`"), "{stderr}");
}

fn vector(values: &[f32]) -> Value {
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    zoo_model_core::array_to_json("<f4", &[values.len()], &bytes)
}

#[test]
fn ragged_embeddings_cannot_make_an_unreadable_npy() {
    let sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    png(&folder.join("data/b.png"));
    fiftyone_folder(
        &folder,
        &[("emb", "VectorField", None)],
        json!([{"filepath": "data/a.png", "emb": vector(&[0.5; 8])},
               {"filepath": "data/b.png", "emb": vector(&[0.5; 25])}]),
    );
    sandbox.ok(&["datasets", "import", "fo", s(&folder)]);
    let npy = sandbox.dir.path().join("emb.npy");
    let stderr = sandbox
        .fails(&[
            "datasets",
            "export",
            "fo",
            s(&npy),
            "--format",
            "npy",
            "--field",
            "emb",
        ])
        .stderr();
    assert!(stderr.contains("b.png"), "{stderr}");
    assert!(stderr.contains("different lengths"), "{stderr}");
    assert!(!npy.exists());
}

#[test]
fn imported_absolute_filepaths_shard_to_every_sample_exactly_once() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    sandbox.ok(&["models", "download", MODEL]);
    let media = sandbox.dir.path().join("media");
    let samples: Vec<Value> = (0..12)
        .map(|index| {
            let path = media.join(format!("p{index:02}.png"));
            png(&path);
            json!({"filepath": s(&path)})
        })
        .collect();
    let folder = sandbox.dir.path().join("export");
    fiftyone_folder(&folder, &[], Value::Array(samples));
    sandbox.ok(&[
        "datasets",
        "import",
        "fo",
        s(&folder),
        "--allow-outside-paths",
    ]);
    let results = sandbox.dir.path().join("results");
    for shard in ["0/3", "1/3", "2/3"] {
        sandbox.ok(&[
            "models",
            "apply",
            MODEL,
            "fo",
            "pred",
            "--shard",
            shard,
            "--results",
            s(&results),
        ]);
    }
    let run = sandbox.ok(&["datasets", "merge-results", "fo", s(&results), "pred"]);
    assert!(
        run.stdout().contains("merged 12 result(s)"),
        "{}",
        run.stdout()
    );
    assert_eq!(label_fields(&sandbox, "fo")["pred"], 12);
}

/// `ulimit -v`: the address space a command may use, through util-linux's
/// `prlimit`, so an export that holds the whole dataset in memory aborts.
fn within_memory(sandbox: &Sandbox, bytes: u64, args: &[&str]) -> Output {
    let mut command = std::process::Command::new("prlimit");
    command.arg(format!("--as={bytes}")).arg("--");
    let zoo = sandbox.command(args);
    command.arg(zoo.get_program()).args(zoo.get_args());
    command.env_clear();
    for (key, value) in zoo.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command.output().unwrap()
}

#[test]
fn export_of_large_embeddings_streams_within_bounded_memory() {
    let sandbox = Sandbox::new();
    let folder = sandbox.dir.path().join("export");
    // 3,000 vectors of 4,096 floats: 48 MB of embeddings, about 130 MB of
    // JSON lines.
    let samples: Vec<Value> = (0..3000)
        .map(|index| {
            let values: Vec<f32> = (0..4096)
                .map(|position| ((index * 4096 + position) % 9973) as f32 / 9973.0)
                .collect();
            json!({"filepath": format!("data/p{index:04}.png"), "emb": vector(&values)})
        })
        .collect();
    fiftyone_folder(
        &folder,
        &[("emb", "VectorField", None)],
        Value::Array(samples),
    );
    sandbox.ok(&["datasets", "import", "big", s(&folder)]);
    // The old export held every sample as JSON values (over 1 GB here).
    let limit = 400 << 20;
    let jsonl = sandbox.dir.path().join("big.jsonl");
    let output = within_memory(&sandbox, limit, &["datasets", "export", "big", s(&jsonl)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = fs_err::read_to_string(&jsonl).unwrap();
    assert_eq!(text.lines().count(), 3000);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["emb"].as_array().unwrap().len(), 4096);
    let npy = sandbox.dir.path().join("big.npy");
    let output = within_memory(
        &sandbox,
        limit,
        &[
            "datasets",
            "export",
            "big",
            s(&npy),
            "--format",
            "npy",
            "--field",
            "emb",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(fs_err::metadata(&npy).unwrap().len(), 128 + 3000 * 4096 * 4);
}

#[test]
fn samples_json_over_the_import_cap_is_refused_naming_the_knob() {
    let mut sandbox = Sandbox::new();
    let folder = folder_with_image(&sandbox);
    fiftyone_folder(&folder, &[], json!([{"filepath": "data/a.png"}]));
    sandbox
        .env
        .push(("ZOO_MAX_IMPORT_BYTES".to_owned(), "16".to_owned()));
    let stderr = sandbox
        .fails(&["datasets", "import", "fo", s(&folder)])
        .stderr();
    assert!(stderr.contains("ZOO_MAX_IMPORT_BYTES"), "{stderr}");
    sandbox.env.clear();
    sandbox.ok(&["datasets", "import", "fo", s(&folder)]);
}
