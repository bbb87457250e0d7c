//! `zoo models ...`.

use anyhow::{Context, Result};
use serde_json::json;
use zoo_manifest::{ErrorLevel, Filter, ZooModel};
use zoo_registry::{LoadPath, RegisterOutcome, RegisteredSource, Registry};
use zoo_sources::SourceId;

use crate::app::{ListArgs, ModelsCommand, RequirementsArgs};
use crate::progress::{Bar, Terminal};
use crate::terminal::{escape, say};
use crate::{config, output};

pub(crate) fn run(command: ModelsCommand, quiet: bool) -> Result<()> {
    let registry = config::registry()?;
    match command {
        ModelsCommand::List(args) => list(&registry, &args).context("listing models failed"),
        ModelsCommand::Info { name, json } => {
            info(&registry, &name, json).with_context(|| format!("`zoo models info {name}` failed"))
        }
        ModelsCommand::Download {
            name_or_url,
            model_name,
            overwrite,
            locked,
        } => download(
            &registry,
            &name_or_url,
            model_name.as_deref(),
            overwrite,
            locked,
            quiet,
        )
        .with_context(|| format!("downloading `{name_or_url}` failed")),
        ModelsCommand::Find { name } => {
            let path = registry
                .find_model(&name)
                .with_context(|| format!("finding model `{name}` failed"))?;
            output::Printer::stdout().line(&format!("{}", path.display()))?;
            Ok(())
        }
        ModelsCommand::Delete { name } => {
            let path = registry
                .delete_model(&name)
                .with_context(|| format!("deleting model `{name}` failed"))?;
            say!("deleted `{}`", path.display());
            Ok(())
        }
        ModelsCommand::Config { name, kwargs } => {
            let (_, config) = registry
                .deployment_config(&name, &crate::app::kwargs_map(&kwargs))
                .with_context(|| format!("loading the config of model `{name}` failed"))?;
            output::Printer::stdout().json(&serde_json::to_value(config)?)
        }
        ModelsCommand::Apply(_)
        | ModelsCommand::Embed(_)
        | ModelsCommand::EmbedText(_)
        | ModelsCommand::Verify { .. } => {
            unreachable!("dispatched with the model runtime")
        }
        ModelsCommand::Requirements(args) => requirements(&registry, &args)
            .with_context(|| format!("checking the requirements of `{}` failed", args.name)),
        ModelsCommand::ListSources { json } => {
            list_sources(&registry, json).context("listing sources failed")
        }
        ModelsCommand::RegisterSource {
            url,
            overwrite,
            trust,
        } => register(&registry, &url, overwrite, trust, quiet)
            .with_context(|| format!("registering source `{url}` failed")),
        ModelsCommand::DeleteSource { url } => {
            let deleted = registry
                .delete_source(&url)
                .with_context(|| format!("deleting source `{url}` failed"))?;
            say!("deleted source {}", describe_source(&deleted, &url));
            Ok(())
        }
        ModelsCommand::TrustSource { url, revoke } => {
            let source = registry
                .trust_source(&url, !revoke)
                .with_context(|| format!("changing trust of source `{url}` failed"))?;
            say!(
                "source {} is {}",
                describe_source(&source, &url),
                if source.trusted {
                    "trusted: its hooks may run"
                } else {
                    "not trusted"
                }
            );
            Ok(())
        }
    }
}

/// A source as `trust-source`/`delete-source` acted on it: its URL, the
/// identifier it was registered with, and the manifest name that selected
/// it when the user gave a name.
fn describe_source(source: &RegisteredSource, given: &str) -> String {
    let given = given.trim();
    let mut text = format!("`{}`", source.url);
    if source.identifier != source.url {
        text.push_str(&format!(" (registered as `{}`)", source.identifier));
    }
    let by_name = source.identifier != given
        && source.url != given
        && source
            .manifests
            .iter()
            .any(|manifest| manifest.name == given);
    if by_name {
        text.push_str(&format!(", selected by its manifest name `{given}`,"));
    }
    text
}

fn origin(model: &ZooModel) -> String {
    model.origin.to_string()
}

fn model_json(model: &ZooModel, downloaded: bool) -> serde_json::Value {
    json!({
        "downloaded": downloaded,
        "name": model.name(),
        "base_name": model.model.base_name,
        "version": model.model.version,
        "source": origin(model),
        "tags": model.model.tags(),
        "license": model.model.license,
        "author": model.model.author,
        "description": model.model.description,
    })
}

fn list(registry: &Registry, args: &ListArgs) -> Result<()> {
    let view = registry.zoo()?;
    let filter = Filter {
        tags: args
            .tags
            .iter()
            .map(|tag| tag.trim().to_owned())
            .filter(|tag| !tag.is_empty())
            .collect(),
        source: args.source.as_deref().map(|source| {
            source
                .parse::<SourceId>()
                .map_or_else(|_| source.trim().to_owned(), |id| id.normalized())
        }),
        licenses: args.license.clone(),
    };
    // One stat per model, and none for a plain `--names-only`.
    let check = args.downloaded_only || !args.names_only;
    let models: Vec<(&ZooModel, bool)> = view
        .zoo
        .filter(&filter)
        .map(|model| (model, check && registry.downloaded_path(model).is_some()))
        .filter(|(_, downloaded)| !args.downloaded_only || *downloaded)
        .collect();
    let mut out = output::Printer::stdout();
    if args.json {
        return out.json(
            &models
                .iter()
                .map(|(model, downloaded)| model_json(model, *downloaded))
                .collect(),
        );
    }
    if args.names_only {
        for (model, _) in models {
            out.line(&model.name())?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|(model, downloaded)| {
            vec![
                model.name(),
                if *downloaded { "yes" } else { "-" }.to_owned(),
                model.model.tags().join(","),
                origin(model),
            ]
        })
        .collect();
    out.table(&["NAME", "DOWNLOADED", "TAGS", "SOURCE"], &rows)
}

fn info(registry: &Registry, name: &str, json: bool) -> Result<()> {
    let model = registry.model(name)?;
    let mut out = output::Printer::stdout();
    let entry = serde_json::to_value(&model.model)?;
    let path = registry.model_path(&model)?;
    let downloaded = registry.downloaded_path(&model);
    let weights = weights_summary(&model)?;
    let runs_in = registry.load_path(&model);
    // What the model host needs for a model zoo does not build: FiftyOne's
    // class and the entry's packages.
    let hosted = matches!(
        runs_in,
        LoadPath::FiftyOneClass | LoadPath::FiftyOneTensorFlow
    );
    let python_class = model
        .model
        .default_deployment_config_dict
        .as_ref()
        .and_then(|config| config.kind.clone())
        .filter(|_| hosted);
    let python_packages: Option<Vec<String>> = hosted.then(|| {
        model
            .model
            .requirements
            .as_ref()
            .map(|requirements| requirements.packages_for(false))
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect()
    });
    // A Hugging Face repo: its id, the revision asked and, once downloaded,
    // the commit fetched.
    let hugging_face = registry.hub_repo(&model).map(|(repo, revision)| {
        let commit = registry
            .hub_snapshot(&model)
            .map(|snapshot| snapshot.commit);
        json!({"repo": repo, "revision": revision, "commit": commit})
    });
    if json {
        return out.json(&json!({
            "name": model.name(),
            "hugging_face": hugging_face,
            "source": origin(&model),
            "model_path": path,
            "downloaded": downloaded.is_some(),
            "weights": weights,
            "runs_in": runs_in.as_str(),
            "python_class": python_class,
            "python_packages": python_packages,
            "manifest": entry,
        }));
    }
    out.line(&format!("name:       {}", model.name()))?;
    out.line(&format!("source:     {}", origin(&model)))?;
    out.line(&format!("model path: {}", path.display()))?;
    out.line(&format!(
        "downloaded: {}",
        if downloaded.is_some() { "yes" } else { "no" }
    ))?;
    out.line(&format!("runs in:    {}", runs_in.as_str()))?;
    if let Some(class) = &python_class {
        out.line(&format!("python class: {}", class))?;
    }
    if let Some(packages) = &python_packages {
        out.line(&format!(
            "python packages: {}",
            list_or_none(&packages.iter().map(String::as_str).collect::<Vec<_>>())
        ))?;
    }
    if let Some(hub) = &hugging_face {
        let text = |key: &str| hub[key].as_str().map(escape).unwrap_or_default();
        let commit = hub["commit"]
            .as_str()
            .map(|commit| format!(", commit {}", escape(commit)))
            .unwrap_or_default();
        out.line(&format!(
            "hugging face: {} at {}{commit}",
            text("repo"),
            text("revision")
        ))?;
    }
    let text = |key: &str| weights[key].as_str().map(escape);
    if let Some(url) = text("manifest_url") {
        out.line(&format!("manifest url: {url}"))?;
    }
    if let (Some(url), Some(resolved)) = (text("named_weights_url"), text("resolved")) {
        out.line(&format!("named weights url: {url} ({resolved})"))?;
    }
    if let Some(url) = text("runs") {
        out.line(&format!("runs:       {url}"))?;
    }
    out.json(&entry)?;
    Ok(())
}

/// The weights URLs of a model: the manifest's `manager.config.url`, the
/// named weights torchvision resolves `entrypoint_args.weights` to (built-in
/// models), and which of the two zoo downloads and runs.
fn weights_summary(model: &ZooModel) -> Result<serde_json::Value> {
    let manifest_url = model
        .model
        .download_manager()
        .and_then(|manager| manager.config.get("url"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let named = zoo_registry::named_weights(model)?;
    let runs = named
        .as_ref()
        .map(|named| named.url.clone())
        .or_else(|| manifest_url.clone());
    Ok(json!({
        "manifest_url": manifest_url,
        "named_weights": named.as_ref().map(|named| named.weights.clone()),
        "resolved": named.as_ref().map(|named| named.resolved.clone()),
        "named_weights_url": named.as_ref().map(|named| named.url.clone()),
        "sha256_prefix": named.as_ref().and_then(|named| named.sha256_prefix.clone()),
        "runs": runs,
    }))
}

/// `requirements NAME [-p] [-i] [-e] [--error-level N]`, as FiftyOne's
/// `ModelZooRequirementsCommand.execute` runs them: print (also when neither
/// `--install` nor `--ensure` is given), then install, then ensure.
fn requirements(registry: &Registry, args: &RequirementsArgs) -> Result<()> {
    let model = registry.model(&args.name)?;
    let level = error_level(args.error_level)?;
    if args.print || (!args.install && !args.ensure) {
        print_requirements(&model, args.json)?;
    }
    if args.install {
        zoo::requirements::install_requirements(
            &config::python(),
            &model,
            level,
            &Terminal::new(true),
        )?;
    }
    if args.ensure {
        ensure_requirements(&model, level, args.json)?;
    }
    Ok(())
}

/// FiftyOne's error levels: 0 = fail, 1 = warn, 2 = ignore.
pub(crate) fn error_level(number: u8) -> Result<ErrorLevel> {
    ErrorLevel::from_number(number).context("error level must be 0, 1 or 2")
}

fn print_requirements(model: &ZooModel, json: bool) -> Result<()> {
    let requirements = model.model.requirements.clone().unwrap_or_default();
    let mut out = output::Printer::stdout();
    if json {
        return out.json(&serde_json::to_value(&requirements)?);
    }
    out.line(&format!(
        "packages: {}",
        list_or_none(&requirements.packages_for(false))
    ))?;
    out.line(&format!("cpu support: {}", requirements.supports(false)))?;
    out.line(&format!("gpu support: {}", requirements.supports(true)))?;
    if let Some(gpu) = &requirements.gpu
        && let Some(packages) = &gpu.packages
    {
        out.line(&format!("gpu packages: {}", packages.join(", ")))?;
    }
    Ok(())
}

/// Checks the model's requirements (FiftyOne's
/// `ensure_zoo_model_requirements`): missing Python packages and device
/// support, reported at `level`; with `json`, the check is printed too.
fn ensure_requirements(model: &ZooModel, level: ErrorLevel, json: bool) -> Result<()> {
    let python = config::python();
    let check = zoo::requirements::check_requirements(&python, model);
    let mut out = output::Printer::stdout();
    if json {
        out.json(&json!({
            "satisfied": check.is_satisfied(),
            "missing_packages": check.missing_packages,
            "unsupported_device": check.unsupported_device,
        }))?;
    } else if check.is_satisfied() {
        out.line(&format!("requirements of `{}` are satisfied", model.name()))?;
    }
    let terminal = Terminal::new(true);
    Ok(zoo::requirements::enforce_requirements(
        &python, model, &check, level, &terminal,
    )?)
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn list_sources(registry: &Registry, json: bool) -> Result<()> {
    let sources = registry.sources()?;
    let mut out = output::Printer::stdout();
    if json {
        return out.json(&serde_json::to_value(&sources)?);
    }
    let rows: Vec<Vec<String>> = sources
        .iter()
        .map(|source| {
            vec![
                source.url.clone(),
                source
                    .manifests
                    .iter()
                    .map(|manifest| manifest.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                source
                    .commit
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |sha| sha.chars().take(7).collect()),
                if source.trusted { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    out.table(&["URL", "NAMES", "COMMIT", "TRUSTED"], &rows)
}

fn download(
    registry: &Registry,
    name_or_url: &str,
    model_name: Option<&str>,
    overwrite: bool,
    locked: bool,
    quiet: bool,
) -> Result<()> {
    let downloaded = registry.download(name_or_url, model_name, overwrite, &Bar::new(quiet))?;
    if locked {
        let terminal = Terminal::new(quiet);
        let zoo = config::zoo(&zoo::NoRuntime, &terminal)?;
        let lock = zoo::Locked::read(&zoo.config().lockfile)?;
        zoo.check_locked(&lock, &downloaded)?;
    }
    if downloaded.fetched {
        say!(
            "downloaded `{}` to `{}`",
            downloaded.name(),
            downloaded.path.display()
        );
    } else if fs_err::symlink_metadata(&downloaded.path).is_err() {
        say!(
            "model `{}` has nothing for zoo to download: FiftyOne's class for it fetches its own weights when it loads",
            downloaded.name()
        );
    } else {
        say!(
            "model `{}` is already downloaded at `{}`",
            downloaded.name(),
            downloaded.path.display()
        );
    }
    Ok(())
}

fn register(
    registry: &Registry,
    url: &str,
    overwrite: bool,
    trust: bool,
    quiet: bool,
) -> Result<()> {
    let bar = Bar::new(quiet);
    match registry.register_source(url, overwrite, trust, &bar)? {
        RegisterOutcome::AlreadyRegistered(source) => {
            if trust && !source.trusted {
                registry.trust_source(&source.url, true)?;
            }
            say!(
                "source `{}` is already registered (use `--overwrite` to fetch it again)",
                source.url
            );
        }
        RegisterOutcome::Registered { source, skipped } => {
            for message in skipped {
                say!("warning: skipped manifest {message}");
            }
            let names: Vec<&str> = source
                .manifests
                .iter()
                .map(|manifest| manifest.name.as_str())
                .collect();
            say!(
                "registered source `{}`{}: {}",
                source.url,
                source
                    .commit
                    .as_deref()
                    .map(|sha| format!(" at {}", sha.chars().take(7).collect::<String>()))
                    .unwrap_or_default(),
                names.join(", ")
            );
        }
    }
    Ok(())
}
