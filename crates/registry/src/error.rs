//! Registry errors.

use std::path::PathBuf;
use std::time::Duration;

use zoo_manifest::{NameError, UnsafeField};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Fetching or unpacking a source failed.
    #[error(transparent)]
    Source(#[from] zoo_sources::SourceError),
    /// A manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] zoo_manifest::ManifestError),
    /// The registry lock could not be taken.
    #[error(transparent)]
    Lock(#[from] zoo_fs::LockError),
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The licence policy (`ZOO_ALLOWED_LICENSES`) does not allow a license
    /// of the model.
    #[error(
        "model `{model}` has license {outside}, which the licence policy does not allow (`ZOO_ALLOWED_LICENSES={allowed}`); use a model under an allowed license, or add its license to `ZOO_ALLOWED_LICENSES`"
    )]
    LicenseNotAllowed {
        /// The model.
        model: String,
        /// Its licenses outside the policy, quoted and joined.
        outside: String,
        /// The policy, as set.
        allowed: String,
    },
    /// The network is needed but `ZOO_OFFLINE` forbids it.
    #[error("{what} needs the network, but offline mode is on: unset `ZOO_OFFLINE` to allow it")]
    Offline {
        /// What needed the network.
        what: String,
    },
    /// A remote source's model names a FiftyOne class zoo does not build
    /// natively; zoo runs such classes in the model host for built-in and
    /// custom-manifest models only.
    #[error(
        "model `{model}` of a remote source names FiftyOne's `{class}` ({}), which zoo runs in the Python model host only for built-in and custom-manifest (`ZOO_MANIFEST_PATHS`) models, not for a source's manifest: add the entry to a manifest of your own listed in `ZOO_MANIFEST_PATHS`, or run it with FiftyOne: `pip install fiftyone{}`, then `fiftyone zoo models apply {model} ...`",
        if packages.is_empty() { "no packages listed".to_owned() } else { format!("needs {}", packages.join(", ")) },
        packages.iter().map(|package| format!(" {package}")).collect::<String>()
    )]
    HostedClassNotWired {
        /// The model's name.
        model: String,
        /// The deployment config's `type`.
        class: String,
        /// The entry's `requirements.packages`.
        packages: Vec<String>,
    },
    /// A source holds no usable manifest.
    #[error("source `{source_url}` has no `manifest.json` with a `name`{}: a source must hold at least one", if skipped.is_empty() { String::new() } else { format!(" (skipped: {})", skipped.join("; ")) })]
    NoManifest {
        /// The source.
        source_url: String,
        /// Manifests found but skipped, and why.
        skipped: Vec<String>,
    },
    /// A manifest's `name` cannot be a folder in the zoo dir.
    #[error("manifest `{manifest}` of source `{source_url}` cannot be installed: {reason}")]
    UnsafeName {
        /// The source.
        source_url: String,
        /// The manifest's path inside the source.
        manifest: String,
        /// Why the name is refused.
        reason: String,
    },
    /// Another source already owns a name.
    #[error(
        "source name `{name}` is already used by `{owner}`: delete that source first, or register with `--overwrite` to replace it"
    )]
    NameTaken {
        /// The contested name.
        name: String,
        /// Who owns it (a source URL, or a folder).
        owner: String,
    },
    /// No registered source matches.
    #[error("no registered source matches `{identifier}`{}", if registered.is_empty() { ": none are registered".to_owned() } else { format!("; registered: {}", registered.join(", ")) })]
    NotRegistered {
        /// What the user gave.
        identifier: String,
        /// The registered sources.
        registered: Vec<String>,
    },
    /// No model has this name.
    #[error("no model named `{name}`{}: run `zoo models list` to see the models available", if suggestions.is_empty() { String::new() } else { format!(" (did you mean {}?)", suggestions.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")) })]
    ModelNotFound {
        /// The name asked for.
        name: String,
        /// Close names.
        suggestions: Vec<String>,
    },
    /// A hook failed.
    #[error("hook {hook} failed for model `{model}`: {message}{}", if stderr.is_empty() { String::new() } else { format!("; its stderr ends with:\n{stderr}") })]
    Hook {
        /// Which hook.
        hook: String,
        /// The model.
        model: String,
        /// What happened.
        message: String,
        /// The end of the hook's stderr.
        stderr: String,
    },
    /// A load hook returned something other than a deployment config.
    #[error(
        "load hook {hook} of model `{model}` must return a JSON config `{{\"type\": ..., \"config\": {{...}}}}`, but {message}"
    )]
    BadLoadConfig {
        /// Which hook.
        hook: String,
        /// The model.
        model: String,
        /// What it returned.
        message: String,
    },
    /// A hook would run for a source the user has not trusted.
    #[error(
        "model `{model}` is set up by code in source `{source_url}`, which is not trusted: review the source, then run `zoo models trust-source {source_url}` (or register it with `--trust`)"
    )]
    NotTrusted {
        /// The source.
        source_url: String,
        /// The model.
        model: String,
    },
    /// A model has neither a manager nor a hook.
    #[error(
        "model `{model}` has no `manager` in its manifest and its source ships no `{hook}` hook: it cannot be {action}"
    )]
    NoMethod {
        /// The model.
        model: String,
        /// The hook that was looked for.
        hook: String,
        /// `downloaded` or `loaded`.
        action: String,
    },
    /// A model is not downloaded.
    #[error("model `{name}` is not downloaded: run `zoo models download {name}`")]
    NotDownloaded {
        /// The model.
        name: String,
    },
    /// A source offers several models and none was named.
    #[error("source `{source_url}` offers several models ({}): name one with `--model-name`", models.join(", "))]
    AmbiguousModel {
        /// The source.
        source_url: String,
        /// Its models.
        models: Vec<String>,
    },
    /// A model name was given for something that is not a source URL.
    #[error(
        "a model name (`--model-name`) goes with a source URL, and `{name}` is a model name: drop the model name, or give the source's URL"
    )]
    ModelNameWithoutSource {
        /// What was given instead of a URL.
        name: String,
    },
    /// A model manager this version does not know.
    #[error("model `{model}` has an unusable `manager`: {message}")]
    BadManager {
        /// The model.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// The built-in manifest's named-weights table (`zoo_named_weights`)
    /// is malformed for a model.
    #[error(
        "model `{model}` has an unusable `zoo_named_weights` entry: {message}; regenerate the built-in manifest with `cargo xtask builtin-manifest`"
    )]
    BadNamedWeights {
        /// The model.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// The registry index is unreadable.
    #[error(
        "registry index `{path}` is corrupt ({message}): fix or delete it, then register the sources again"
    )]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A model's names cannot be paths (a manifest read without checks, or
    /// a model built in code).
    #[error("model `{model}` cannot be stored: {field}")]
    UnsafeModel {
        /// The model.
        model: String,
        /// The field at fault.
        field: Box<UnsafeField>,
    },
    /// A folder recorded in the registry index cannot be a path.
    #[error(
        "registry index entry of source `{source_url}` names the folder `{}`, which {problem}: fix or delete `sources-v1.json`, then register the sources again",
        zoo_manifest::escape(dir)
    )]
    UnsafeIndexDir {
        /// The source.
        source_url: String,
        /// The folder as recorded.
        dir: String,
        /// Why it is refused.
        problem: NameError,
    },
    /// A path zoo is about to write, delete, extract to or hand to a hook is
    /// not strictly inside the folder it belongs to (a symbolic link leads
    /// out, or the path is the folder itself).
    #[error(
        "refusing to {action} for `{model}`, because the path leaves the folder it belongs in (remove the symbolic link or file in the way, then retry)"
    )]
    Escapes {
        /// What zoo was about to do.
        action: String,
        /// The model (or source).
        model: String,
        /// Where and how the path leaves.
        #[source]
        source: Box<zoo_fs::ContainmentError>,
    },
    /// A built-in or custom-manifest model's file would be a source's folder
    /// in the zoo dir.
    #[error(
        "model `{model}` would be stored at `{path}`, which is the folder of source `{source_url}`: the model's file name must not be a source's folder; delete that source or drop the manifest that offers the model"
    )]
    CollidesWithSource {
        /// The model.
        model: String,
        /// The model's path.
        path: PathBuf,
        /// The source whose folder it is.
        source_url: String,
    },
    /// Several registered sources answer to what the user gave.
    #[error(
        "`{identifier}` could mean several sources ({}): give the identifier of the one you mean", candidates.iter().map(|candidate| format!("`{candidate}`")).collect::<Vec<_>>().join(", ")
    )]
    AmbiguousSource {
        /// What the user gave.
        identifier: String,
        /// What it could mean: registered sources' identifiers, and the
        /// source the text itself identifies when that is not registered.
        candidates: Vec<String>,
    },
    /// A model's Hugging Face repo could not be fetched.
    #[error(
        "model `{model}`: fetching the Hugging Face repo `{repo}` at `{revision}` failed (files fetched so far are kept and resumed by `zoo models download {model}`)"
    )]
    Hub {
        /// The model.
        model: String,
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// Why.
        #[source]
        source: Box<zoo_sources::HubError>,
    },
    /// Fetching the Hub repo a model's `name_or_path` kwarg names failed.
    #[error(
        "model `{model}`: fetching the Hugging Face repo `{repo}` at `{revision}`, which its `name_or_path` names, failed (files fetched so far are kept and resumed when the model is loaded again)"
    )]
    OtherHub {
        /// The model.
        model: String,
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// Why.
        #[source]
        source: Box<zoo_sources::HubError>,
    },
    /// A downloaded model archive could not be unpacked; it was removed.
    #[error(
        "model `{model}`: the downloaded archive `{archive}` could not be extracted, so it was removed: run `zoo models download {model}` to fetch it again (if it fails again, the archive at the model's URL is broken)"
    )]
    Extract {
        /// The model.
        model: String,
        /// The archive (removed).
        archive: PathBuf,
        /// Why extraction failed.
        #[source]
        source: Box<zoo_sources::SourceError>,
    },
    /// A hook ran longer than the hook timeout and was killed.
    #[error(
        "hook {hook} for model `{model}` was killed after {}s, the hook time limit: set `ZOO_HOOK_TIMEOUT` to a larger number of seconds to allow more{}", limit.as_secs_f64(), if stderr.is_empty() { String::new() } else { format!("; its stderr ends with:\n{stderr}") }
    )]
    HookTimeout {
        /// Which hook.
        hook: String,
        /// The model.
        model: String,
        /// The limit.
        limit: Duration,
        /// The end of the hook's stderr, if it could be read.
        stderr: String,
    },
}
