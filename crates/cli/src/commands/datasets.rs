//! `zoo datasets ...`.

use anyhow::{Context, Result, bail};
use serde_json::json;
use zoo_datasets::{DatasetInfo, Datasets};

use crate::app::DatasetsCommand;
use crate::terminal::say;
use crate::{config, output};

fn info_json(info: &DatasetInfo) -> serde_json::Value {
    let mut value = list_json(info);
    value["provenance"] = json!(info.provenance);
    value
}

/// A dataset as `datasets list --json` shows it (no provenance).
fn list_json(info: &DatasetInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        // Lossy: a folder name need not be UTF-8, JSON must be.
        "root": info.root.to_string_lossy(),
        "samples": info.samples,
        "label_fields": info.label_fields,
        "embedding_fields": info.embedding_fields,
        "failures": info.failures,
    })
}

/// A field's provenance on one line: the model, where it came from, the
/// digests, how and when it ran.
fn provenance_text(provenance: &serde_json::Value) -> String {
    let text = |key: &str| provenance.get(key).and_then(serde_json::Value::as_str);
    let mut parts = vec![text("model").unwrap_or("?").to_owned()];
    if let Some(version) = text("version") {
        parts.push(format!("version {version}"));
    }
    parts.push(format!("from {}", text("source").unwrap_or("?")));
    if let Some(repo) = text("hub_repo") {
        parts.push(format!("repo {repo}"));
    }
    if let Some(commit) = text("commit") {
        parts.push(format!("commit {commit}"));
    }
    parts.push(format!(
        "weights sha256 {}",
        text("weights_sha256").unwrap_or("(none: the model's library fetches its own)")
    ));
    parts.push(format!(
        "config sha256 {}",
        text("config_sha256").unwrap_or("?")
    ));
    parts.push(format!(
        "{} on {} {}",
        text("runs").unwrap_or("?"),
        text("device").unwrap_or("?"),
        text("precision").unwrap_or("?")
    ));
    parts.push(format!(
        "zoo {} at {}",
        text("zoo_version").unwrap_or("?"),
        text("created_at").unwrap_or("?")
    ));
    parts.join(", ")
}

/// `zoo datasets info fiftyone:NAME`: FiftyOne's dataset, its samples and
/// its fields with their types.
fn fiftyone_info(dataset: &str, json: bool, out: &mut output::Printer) -> Result<()> {
    let name = zoo_fiftyone_db::dataset_name(dataset).unwrap_or(dataset);
    let context = || format!("`zoo datasets info {dataset}` failed");
    let fiftyone = zoo_fiftyone_db::FiftyOne::from_env().with_context(context)?;
    let opened = fiftyone.dataset(name).with_context(context)?;
    let samples = opened.len().with_context(context)?;
    let fields = opened.fields();
    if json {
        return out.json(&json!({
            "name": dataset,
            "database": fiftyone.connection().uri,
            "samples": samples,
            "fields": fields.iter().map(|(name, kind)| (name.clone(), json!(kind))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    out.line(&format!("name:     {dataset}"))?;
    out.line(&format!("database: {}", fiftyone.connection().uri))?;
    out.line(&format!("samples:  {samples}"))?;
    for (field, kind) in &fields {
        out.line(&format!("field     {field}: {kind}"))?;
    }
    Ok(())
}

/// `zoo datasets list --fiftyone`: FiftyOne's datasets, as zoo names them.
fn fiftyone_list(json: bool, out: &mut output::Printer) -> Result<()> {
    let context = || "listing FiftyOne's datasets failed";
    let all = zoo_fiftyone_db::FiftyOne::from_env()
        .with_context(context)?
        .list()
        .with_context(context)?;
    if json {
        return out.json(
            &all.iter()
                .map(|dataset| {
                    json!({
                        "name": format!("{}{}", zoo_fiftyone_db::PREFIX, dataset.name),
                        "samples": dataset.samples,
                        "media_type": dataset.media_type,
                    })
                })
                .collect(),
        );
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|dataset| {
            vec![
                format!("{}{}", zoo_fiftyone_db::PREFIX, dataset.name),
                dataset.samples.to_string(),
                dataset.media_type.clone(),
            ]
        })
        .collect();
    out.table(&["NAME", "SAMPLES", "MEDIA"], &rows)
}

pub(crate) fn run(command: DatasetsCommand) -> Result<()> {
    let dir = config::datasets_dir()?;
    let mut store = Datasets::open(&dir)
        .with_context(|| format!("opening the datasets in `{}` failed", dir.display()))?;
    let mut out = output::Printer::stdout();
    match command {
        DatasetsCommand::Create { name, dir } => {
            let context = || format!("creating dataset `{name}` from `{}` failed", dir.display());
            let info = match dir.to_str().filter(|dir| zoo_storage::is_object_url(dir)) {
                Some(url) => super::scale::create_from_url(&name, url),
                None => store.create(&name, &dir).map_err(Into::into),
            }
            .with_context(context)?;
            say!(
                "created dataset `{}` with {} samples",
                info.name,
                info.samples
            );
            Ok(())
        }
        DatasetsCommand::List {
            fiftyone: true,
            json,
        } => fiftyone_list(json, &mut out),
        DatasetsCommand::List { json, .. } => {
            let all = store.list().context("listing datasets failed")?;
            if json {
                return out.json(&all.iter().map(list_json).collect());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|info| {
                    let fields: Vec<&str> = info
                        .label_fields
                        .keys()
                        .chain(info.embedding_fields.keys())
                        .map(String::as_str)
                        .collect();
                    vec![
                        info.name.clone(),
                        info.samples.to_string(),
                        fields.join(","),
                        info.root.display().to_string(),
                    ]
                })
                .collect();
            out.table(&["NAME", "SAMPLES", "FIELDS", "ROOT"], &rows)
        }
        DatasetsCommand::Info { name, json } if zoo_fiftyone_db::dataset_name(&name).is_some() => {
            fiftyone_info(&name, json, &mut out)
        }
        DatasetsCommand::Info { name, json } => {
            let info = store
                .info(&name)
                .with_context(|| format!("`zoo datasets info {name}` failed"))?;
            if json {
                return out.json(&info_json(&info));
            }
            out.line(&format!("name:    {}", info.name))?;
            out.line(&format!("root:    {}", info.root.display()))?;
            out.line(&format!("samples: {}", info.samples))?;
            for (field, count) in &info.label_fields {
                out.line(&format!("labels     {}: {count}", field))?;
            }
            for (field, count) in &info.embedding_fields {
                out.line(&format!("embeddings {}: {count}", field))?;
            }
            for (field, count) in &info.failures {
                out.line(&format!("failures   {}: {count}", field))?;
            }
            for (field, provenance) in &info.provenance {
                out.line(&format!(
                    "made by    {field}: {}",
                    provenance_text(provenance)
                ))?;
            }
            Ok(())
        }
        DatasetsCommand::Delete { name } => {
            store
                .delete(&name)
                .with_context(|| format!("deleting dataset `{name}` failed"))?;
            say!("deleted dataset `{name}`");
            Ok(())
        }
        DatasetsCommand::Export {
            name,
            out: path,
            format,
            field,
        } => {
            let context = || format!("exporting dataset `{name}` to `{}` failed", path.display());
            match format.as_str() {
                "jsonl" => {
                    // Streamed into a temporary file beside OUT, renamed
                    // into place once whole.
                    let mut file = zoo_fs::AtomicFile::create(&path).with_context(context)?;
                    let count = store.export_jsonl(&name, &mut file).with_context(context)?;
                    file.commit().with_context(context)?;
                    say!("exported {count} samples to `{}`", path.display());
                }
                "fiftyone" => {
                    let count = store.export_fiftyone(&name, &path).with_context(context)?;
                    say!("exported {count} samples to `{}`", path.display());
                }
                "npy" => {
                    let Some(field) = field else {
                        bail!("`--format npy` exports an embeddings field: give it with `--field`");
                    };
                    let (rows, dim) = store
                        .export_embeddings_npy(&name, &field, &path)
                        .with_context(context)?;
                    say!("exported {rows} x {dim} embeddings to `{}`", path.display());
                }
                other => bail!("unknown export format `{other}`: use `jsonl`, `fiftyone` or `npy`"),
            }
            Ok(())
        }
        DatasetsCommand::MergeResults {
            dataset,
            location,
            field,
            allow_partial,
            json,
        } => super::scale::merge(&dataset, &location, &field, allow_partial, json),
        DatasetsCommand::Import {
            name,
            dir,
            format,
            allow_outside_paths,
        } => {
            let context = || format!("importing `{}` as dataset `{name}` failed", dir.display());
            let info = match format.as_str() {
                "fiftyone" => store
                    .import_fiftyone_with(&name, &dir, config::import_options(allow_outside_paths)?)
                    .with_context(context)?,
                "dir" => store.create(&name, &dir).with_context(context)?,
                other => bail!("unknown import format `{other}`: use `fiftyone` or `dir`"),
            };
            say!(
                "imported dataset `{}` with {} samples",
                info.name,
                info.samples
            );
            Ok(())
        }
    }
}
