//! The command-line grammar.

use clap::{Args, Parser, Subcommand};
use zoo::Workers;
use zoo_datasets::Shard;

/// A Rust model zoo compatible with FiftyOne's.
#[derive(Debug, Parser)]
#[command(name = "zoo", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// Print no progress bars.
    #[arg(long, short = 'q', global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Work with zoo models and their sources.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Work with datasets: the images models run on, and their labels.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Pin models into a lock (`ZOO_LOCKFILE`, else `./zoo.lock`): each
    /// model's files with sha256, its source's commit and files, its
    /// config's digest, a hosted model's Python packages; `--locked` runs
    /// refuse anything that differs.
    Lock {
        /// The models to lock (each downloaded first if it is not); none:
        /// every downloaded model. Models already in the lock stay.
        models: Vec<String>,
        /// Start a new lock instead of adding to the existing one.
        #[arg(long)]
        fresh: bool,
        /// Also run each named model on zoo's probe pictures and record its
        /// outputs, for `zoo models verify`.
        #[arg(long)]
        with_golden: bool,
        /// The tolerance golden outputs are compared within.
        #[arg(long, default_value_t = zoo::DEFAULT_TOLERANCE, requires = "with_golden")]
        tolerance: f64,
        /// Print the lock's models as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bundle models for a machine with no network, and install bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Show what this build of zoo can use: libtorch, CUDA, threads.
    System {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Write one archive (tar + zstd) holding the models' lock, their
    /// sources and their files; the same inputs give the same bytes.
    Create {
        /// The bundle to write (`models.tar.zst`).
        out: std::path::PathBuf,
        /// The models (each downloaded first if it is not).
        #[arg(required = true)]
        models: Vec<String>,
        /// Also bundle the wheels of the Python packages the hosted models
        /// pin, with their dependencies (`pip download` by `ZOO_PYTHON`);
        /// `bundle install` installs them into its `ZOO_PYTHON` offline.
        #[arg(long)]
        with_python: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a bundle, offline: every file is checked against its lock
    /// before anything is installed; its sources are registered untrusted;
    /// its lock is added to `ZOO_LOCKFILE` (else `./zoo.lock`); then each
    /// model with golden outputs is verified.
    Install {
        /// The bundle.
        bundle: std::path::PathBuf,
        /// Skip running the models with golden outputs in the bundle's lock
        /// on the probe pictures (`zoo models verify`).
        #[arg(long)]
        no_verify: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// List the models on offer (built-in, custom manifests, sources).
    List(ListArgs),
    /// Show everything known about a model.
    Info {
        /// `name` (latest version) or `name@version`.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download a model (by name, or from a source URL, registering it).
    Download {
        /// A model name, or the URL of a source to take the model from.
        name_or_url: String,
        /// With a URL: which of the source's models.
        #[arg(long, short = 'n')]
        model_name: Option<String>,
        /// Download again even if it is downloaded.
        #[arg(long, short = 'o')]
        overwrite: bool,
        /// Refuse the model unless it is what the lock (`ZOO_LOCKFILE`,
        /// else `./zoo.lock`) pins, naming the first difference.
        #[arg(long)]
        locked: bool,
    },
    /// Print the path of a downloaded model.
    Find {
        /// `name` or `name@version`.
        name: String,
    },
    /// Delete a downloaded model's files.
    Delete {
        /// `name` or `name@version`.
        name: String,
    },
    /// Print the deployment config a model is built from (running its
    /// source's load hook when it has no `default_deployment_config_dict`).
    Config {
        /// `name` or `name@version`.
        name: String,
        /// A keyword argument for the model's `load_model` (and a config
        /// override), as FiftyOne's `load_zoo_model(name, **kwargs)`;
        /// repeatable; VALUE is JSON when it parses, else a string.
        #[arg(long = "kwargs", short = 'k', value_name = "KEY=VALUE", value_parser = parse_kwarg)]
        kwargs: Vec<(String, serde_json::Value)>,
    },
    /// Apply a model to a dataset (or a folder of images), storing labels.
    Apply(Box<ApplyArgs>),
    /// Compute embeddings for a dataset (or a folder of images).
    Embed(EmbedArgs),
    /// Embed text prompts with a model that embeds text (CLIP): one JSON
    /// line per prompt, `{"prompt": ..., "embedding": [...]}`, in the space
    /// of its image embeddings.
    EmbedText(EmbedTextArgs),
    /// Run a model on zoo's probe pictures and compare its outputs with the
    /// golden ones in the lock (`zoo lock --with-golden`); fails, naming the
    /// worst difference, when one is outside the tolerance.
    Verify {
        /// `name` or `name@version`.
        name: String,
        /// Compare within this tolerance instead of the lock's (a number
        /// `g` and `a` agree when `|g - a| <= t * max(1, |g|)`).
        #[arg(long)]
        tolerance: Option<f64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print or check a model's requirements.
    Requirements(RequirementsArgs),
    /// List the registered sources.
    ListSources {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Register a source: a GitHub repo (`user/repo[/ref]`, a GitHub URL) or an archive URL.
    RegisterSource {
        /// The source identifier.
        url: String,
        /// Replace the source (and any source using the same names).
        #[arg(long, short = 'o')]
        overwrite: bool,
        /// Trust the source: allow its download/load hooks to run.
        #[arg(long)]
        trust: bool,
    },
    /// Delete a source, its files and every model downloaded into it.
    DeleteSource {
        /// The source identifier (any spelling), or its manifest name.
        url: String,
    },
    /// Allow a registered source's hooks to run (or forbid it again).
    TrustSource {
        /// The source identifier (any spelling), or its manifest name.
        url: String,
        /// Withdraw trust instead.
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print only the names.
    #[arg(long, short = 'n')]
    pub(crate) names_only: bool,
    /// Only models that are downloaded.
    #[arg(long, short = 'd')]
    pub(crate) downloaded_only: bool,
    /// Only models that carry all of these tags (`-t classification
    /// resnet`, as FiftyOne's argparse takes them, or `-t a,b`).
    #[arg(long, short = 't', num_args = 1.., value_delimiter = ',')]
    pub(crate) tags: Vec<String>,
    /// Only models from this source.
    #[arg(long, short = 's')]
    pub(crate) source: Option<String>,
    /// Only models under one of these licenses (`-l MIT Apache-2.0`, or
    /// comma-separated).
    #[arg(long, short = 'l', num_args = 1.., value_delimiter = ',')]
    pub(crate) license: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RequirementsArgs {
    /// `name` or `name@version`.
    pub(crate) name: String,
    /// Print the requirements (the default when neither `--install` nor
    /// `--ensure` is given).
    #[arg(long, short = 'p')]
    pub(crate) print: bool,
    /// Install the Python packages with `ZOO_PYTHON -m pip install`.
    #[arg(long, short = 'i')]
    pub(crate) install: bool,
    /// Check that the requirements are met.
    #[arg(long, short = 'e')]
    pub(crate) ensure: bool,
    /// With `--install`/`--ensure`: 0 = a failure is an error, 1 = a
    /// warning, 2 = ignore.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) error_level: u8,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// A model name, or a source URL (with `--model-name`).
    pub(crate) name_or_url: String,
    /// A dataset name, a folder of images (its dataset is created or
    /// reused), an object-store URL, or `fiftyone:NAME` (FiftyOne's own
    /// dataset NAME, in FiftyOne's database).
    pub(crate) dataset: String,
    /// The field predictions are stored in.
    pub(crate) label_field: String,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Images per batch.
    #[arg(long, short = 'b', default_value_t = 16)]
    pub(crate) batch_size: usize,
    /// Drop predictions below this confidence.
    #[arg(long, short = 't')]
    pub(crate) confidence_thresh: Option<f64>,
    /// Store logits on the labels.
    #[arg(long, short = 'l')]
    pub(crate) store_logits: bool,
    /// Redo every sample, not only those without a result.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// The label field holding each sample's prompt, for models that read
    /// one (FiftyOne's `prompt_field`: boxes for ViTPose, boxes or points
    /// for SAM).
    #[arg(long, value_name = "FIELD")]
    pub(crate) prompt_field: Option<String>,
    /// Stop at the first unreadable image or failed sample (default: record
    /// it and go on).
    #[arg(long)]
    pub(crate) stop_on_failure: bool,
    /// Decode the next batch while the model runs (`on`), or in turn with it
    /// (`off`); `auto` pipelines only when there are more cores than
    /// libtorch's threads, since otherwise decoding steals the model's CPU.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub(crate) pipeline: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EmbedArgs {
    /// A model name, or a source URL (with `--model-name`).
    pub(crate) name_or_url: String,
    /// A dataset name, a folder of images, an object-store URL, or
    /// `fiftyone:NAME` (FiftyOne's own dataset NAME).
    pub(crate) dataset: String,
    /// The field embeddings are stored in.
    pub(crate) embeddings_field: String,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Images per batch.
    #[arg(long, short = 'b', default_value_t = 16)]
    pub(crate) batch_size: usize,
    /// Redo every sample.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EmbedTextArgs {
    /// A model name, or a source URL (with `--model-name`).
    pub(crate) name_or_url: String,
    /// The prompts to embed.
    #[arg(required = true)]
    pub(crate) prompts: Vec<String>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
}

/// How `apply` and `embed` pick and run the model.
#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    /// With a URL: which of the source's models.
    #[arg(long, short = 'n')]
    pub(crate) model_name: Option<String>,
    /// Copies of the model run side by side, each decoding its own batches
    /// on its own thread (`auto`: what the model prefers; the torch backend
    /// runs 2 on a CPU with 2 or more libtorch threads, splitting them).
    #[arg(long, default_value = "auto", value_parser = parse_workers)]
    pub(crate) workers: Workers,
    /// Install the model's Python requirements (`ZOO_PYTHON -m pip
    /// install`) before running it, as FiftyOne's `--install` does.
    #[arg(long, short = 'i')]
    pub(crate) install: bool,
    /// Check the model's requirements before running it: 0 = unmet is an
    /// error, 1 = a warning, 2 = ignore. Without it (and without
    /// `--install`) nothing is checked: zoo runs its models natively.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) error_level: Option<u8>,
    /// Zero-shot classes (CLIP), comma-separated: the config's `classes`,
    /// as `load_zoo_model(name, classes=[...])` sets them in FiftyOne.
    #[arg(long, value_delimiter = ',')]
    pub(crate) classes: Option<Vec<String>>,
    /// A keyword argument for the model's `load_model` (and a config
    /// override), as FiftyOne's `load_zoo_model(name, **kwargs)`;
    /// repeatable; VALUE is JSON when it parses, else a string.
    #[arg(long = "kwargs", short = 'k', value_name = "KEY=VALUE", value_parser = parse_kwarg)]
    pub(crate) kwargs: Vec<(String, serde_json::Value)>,
    /// Refuse the model unless it is what the lock (`ZOO_LOCKFILE`, else
    /// `./zoo.lock`) pins: files, source, config, Python packages.
    #[arg(long)]
    pub(crate) locked: bool,
}

/// `-k KEY=VALUE`: VALUE as JSON when it parses (`3`, `true`,
/// `["a","b"]`), else as a string (`resnet`).
pub(crate) fn parse_kwarg(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    let key = key.trim();
    let is_identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !is_identifier {
        return Err(format!(
            "`{key}` is not a Python keyword argument name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// The kwargs as one JSON object; a later KEY replaces an earlier one.
pub(crate) fn kwargs_map(
    kwargs: &[(String, serde_json::Value)],
) -> serde_json::Map<String, serde_json::Value> {
    kwargs.iter().cloned().collect()
}

fn parse_workers(text: &str) -> Result<Workers, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
pub(crate) enum DatasetsCommand {
    /// Index the images under DIR (recursively) as dataset NAME.
    Create {
        /// The dataset name.
        name: String,
        /// The folder of images.
        dir: std::path::PathBuf,
    },
    /// List the datasets.
    List {
        /// List FiftyOne's datasets (in FiftyOne's database, as
        /// `fiftyone:NAME`) instead of zoo's.
        #[arg(long)]
        fiftyone: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a dataset's samples and its fields' counts.
    Info {
        /// The dataset name, or `fiftyone:NAME` (FiftyOne's own dataset:
        /// its samples and its fields' types).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a dataset (its labels and embeddings; never the images).
    Delete {
        /// The dataset name.
        name: String,
    },
    /// Export a dataset.
    Export {
        /// The dataset name.
        name: String,
        /// The output: a file (jsonl, npy) or a folder (fiftyone).
        out: std::path::PathBuf,
        /// `jsonl`, `fiftyone` (FiftyOne's dataset folder), or `npy` (an
        /// embeddings field, with `--field`).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// With `--format npy`: the embeddings field.
        #[arg(long)]
        field: Option<String>,
    },
    /// Fold the part files of sharded runs (`--results`) into a field.
    MergeResults {
        /// The dataset name, or its folder.
        dataset: String,
        /// Where the shards wrote their results (a folder or `file://` URL).
        location: String,
        /// The field the shards computed (and the one filled here).
        field: String,
        /// Merge what is there even when shards are missing or incomplete.
        #[arg(long)]
        allow_partial: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a dataset: FiftyOne's dataset folder (labels kept), or a
    /// folder of images.
    Import {
        /// The new dataset's name.
        name: String,
        /// The folder.
        dir: std::path::PathBuf,
        /// `fiftyone` (what FiftyOne's `dataset.export(DIR,
        /// dataset_type=fo.types.FiftyOneDataset)` writes) or `dir` (the
        /// images under DIR, as `zoo datasets create`).
        #[arg(long, default_value = "fiftyone")]
        format: String,
        /// Accept `filepath`s and `mask_path`s outside DIR (absolute paths
        /// to your own media, as FiftyOne writes them without
        /// `export_media`); without it, a dataset may name only files
        /// inside DIR. `export` then copies those files too.
        #[arg(long)]
        allow_outside_paths: bool,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kwargs_values_are_json_when_they_parse_else_strings() {
        let cases = [
            ("classes=[\"a\", \"b\"]", Ok(("classes", json!(["a", "b"])))),
            ("scale=2.5", Ok(("scale", json!(2.5)))),
            ("flag=true", Ok(("flag", json!(true)))),
            ("none=null", Ok(("none", json!(null)))),
            ("name=resnet", Ok(("name", json!("resnet")))),
            ("text=a=b", Ok(("text", json!("a=b")))),
            ("empty=", Ok(("empty", json!("")))),
            ("_private=1", Ok(("_private", json!(1)))),
            ("no-equals", Err("is not KEY=VALUE")),
            ("=3", Err("is not a Python keyword argument name")),
            ("9lives=1", Err("is not a Python keyword argument name")),
            ("bad-key=1", Err("is not a Python keyword argument name")),
        ];
        for (text, expected) in cases {
            match (parse_kwarg(text), expected) {
                (Ok((key, value)), Ok((want_key, want_value))) => {
                    assert_eq!((key.as_str(), value), (want_key, want_value), "{text}");
                }
                (Err(error), Err(want)) => assert!(error.contains(want), "{text}: {error}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        let map = kwargs_map(&[("a".into(), json!(1)), ("a".into(), json!(2))]);
        assert_eq!(map["a"], 2, "a later KEY wins");
    }
}

/// `--shard`, `--results` and `--tags` of `apply` and `embed`.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// Run only shard K of N (`K/N`, 0 <= K < N): the samples whose stable
    /// key (path relative to the dataset's root) hashes to K. A Kubernetes
    /// Indexed Job passes `$(JOB_COMPLETION_INDEX)/N`.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub(crate) shard: Option<Shard>,
    /// Write the results as part files under LOCATION (a folder, a
    /// `file://` URL, or `s3://`, `gs://`, `az://` bucket/prefix) instead
    /// of into the dataset; merge them with `zoo datasets merge-results`. A
    /// retried shard skips the chunks it wrote.
    #[arg(long, value_name = "LOCATION")]
    pub(crate) results: Option<String>,
    /// Only the samples with one of these tags (comma-separated), as
    /// FiftyOne's `match_tags`: for a FiftyOne dataset (`fiftyone:NAME`).
    #[arg(long, value_name = "TAG,...", value_delimiter = ',')]
    pub(crate) tags: Vec<String>,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).map_err(|error| error.to_string())
}
