//! Loading a model as FiftyOne's `load_zoo_model` does: resolve, refuse
//! what cannot run, download, check or install requirements, then build it
//! natively (the runtime's factory) or in the Python model host.

use std::path::Path;

use serde_json::{Map, Value, json};
use zoo_manifest::{DeploymentConfig, ErrorLevel, ZooModel};
use zoo_model_core::{Model, ModelError, ModelSpec, SystemInfo};
use zoo_python_host::{HostSpec, HostedModel, Loaded};
use zoo_registry::{LoadPath, LoadPlan, OtherRepo};

use crate::Zoo;
use crate::error::{Context, Error, ErrorKind, Result, bail};
use crate::provenance::Provenance;
use crate::requirements::{self, packages_of};

/// How many copies of a model run side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// What the model prefers ([`Model::workers`]); for a hosted model,
    /// one host, or one per GPU when it runs on a GPU.
    #[default]
    Auto,
    /// This many copies (at least 1).
    Count(usize),
}

impl std::str::FromStr for Workers {
    type Err = String;

    /// `auto` or a count of at least 1.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            _ => match text.parse::<usize>() {
                Ok(count) if count >= 1 => Ok(Self::Count(count)),
                _ => Err(format!("`{text}` is not `auto` or a count of at least 1")),
            },
        }
    }
}

/// A model the runtime built, with what built it.
struct NativeModel {
    spec: ModelSpec,
    first: Box<dyn Model>,
    provenance: Provenance,
}

/// What became of a repo named by kwargs ([`Zoo::load_other_repo`]).
enum OtherLoad {
    /// Built natively.
    Native(Box<LoadedModel>),
    /// Not an architecture zoo builds: the fetched folder, for FiftyOne's
    /// class.
    Hosted(std::path::PathBuf),
}

/// FiftyOne's `load_zoo_model(name, **kwargs)` options.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// With a source URL: which of its models.
    pub model_name: Option<String>,
    /// Copies of the model.
    pub workers: Workers,
    /// Install the model's Python requirements first (`install_requirements`).
    pub install: bool,
    /// Check the requirements at this level first (`error_level`); `None`
    /// checks nothing (zoo runs its models natively).
    pub error_level: Option<ErrorLevel>,
    /// `load_model`'s keyword arguments and config overrides.
    pub kwargs: Map<String, Value>,
    /// `--locked`: refuse the model unless it is what this lock pins.
    pub locked: Option<crate::Locked>,
}

impl LoadOptions {
    /// Sets a keyword argument (a config override such as `classes`).
    pub fn kwarg(mut self, key: &str, value: Value) -> Self {
        self.kwargs.insert(key.to_owned(), value);
        self
    }

    /// Zero-shot classes (CLIP): the config's `classes`.
    pub fn classes<S: AsRef<str>>(self, classes: &[S]) -> Self {
        let classes: Vec<&str> = classes.iter().map(AsRef::as_ref).collect();
        self.kwarg("classes", json!(classes))
    }

    /// Runs `count` copies.
    pub fn workers(mut self, workers: Workers) -> Self {
        self.workers = workers;
        self
    }
}

/// A loaded model: one or more copies, native or in model hosts.
pub struct LoadedModel {
    name: String,
    /// One copy per worker.
    pub(crate) models: Vec<Box<dyn Model>>,
    /// A hosted model with `ragged_batches`: one image per call, as
    /// FiftyOne's `apply_model` ignores the batch size for it.
    one_image_per_call: bool,
    /// The model runs in model hosts (its own processes, its own threads).
    hosted: bool,
    /// Which model this is, recorded with every field it writes.
    pub(crate) provenance: Provenance,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("copies", &self.models.len())
            .field("hosted", &self.hosted)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// The model's name in the registry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many copies run side by side.
    pub fn copies(&self) -> usize {
        self.models.len()
    }

    /// Whether it runs in the Python model host.
    pub fn is_hosted(&self) -> bool {
        self.hosted
    }

    /// Which model this is (weights and config digests, source and commit,
    /// device): what each field it writes records.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Whether it takes one image per call (a hosted model with
    /// `ragged_batches`).
    pub fn one_image_per_call(&self) -> bool {
        self.one_image_per_call
    }

    /// The first copy, to call directly.
    pub fn model_mut(&mut self) -> &mut dyn Model {
        // `load_model` builds at least one copy.
        &mut *self.models[0]
    }

    /// The copies as the engine takes them.
    pub(crate) fn copies_mut(&mut self) -> Vec<&mut dyn Model> {
        self.models
            .iter_mut()
            .map(|model| &mut **model as &mut dyn Model)
            .collect()
    }

    /// Text embeddings of `prompts` (FiftyOne's `embed_prompts`), one per
    /// prompt, in order.
    pub fn embed_prompts(&mut self, prompts: &[String]) -> Result<Vec<Vec<f32>>> {
        let name = self.name.clone();
        let model = self.model_mut();
        if !model.can_embed_prompts() {
            bail!(
                Model,
                "model `{name}` does not embed text prompts; use a model that does, such as `clip-vit-base32-torch`"
            );
        }
        model
            .embed_prompts(prompts)
            .with_context(|| format!("embedding prompts with `{name}` failed"))
    }
}

impl Zoo<'_> {
    /// Loads `name_or_url` (a model name, `name@version`, or a source URL
    /// with [`LoadOptions::model_name`]) as FiftyOne's `load_zoo_model`:
    /// `options.workers` copies of it. A config runs natively through the
    /// runtime; a trusted source's Python `load_model`, or a FiftyOne class
    /// zoo does not build, runs in the model host.
    pub fn load_model(&self, name_or_url: &str, options: &LoadOptions) -> Result<LoadedModel> {
        self.load(name_or_url, options)
            .with_context(|| format!("loading model `{name_or_url}` failed"))
    }

    fn load(&self, name_or_url: &str, options: &LoadOptions) -> Result<LoadedModel> {
        let registry = self.registry();
        // A model zoo cannot run is refused before anything is downloaded
        // (a URL names no model until its source is registered): a remote
        // source's entry naming a FiftyOne class, or one whose FiftyOne
        // class needs packages `python` lacks (unless `install`).
        let found = registry
            .model(options.model_name.as_deref().unwrap_or(name_or_url))
            .ok();
        if let Some(found) = &found {
            zoo_registry::check_native(found)?;
            if !options.install {
                self.check_fiftyone_class_packages(found)?;
            }
        }
        let mut kwargs = options.kwargs.clone();
        let mut overrides = kwargs.clone();
        if self.config().cudnn_benchmark {
            overrides.insert("cudnn_benchmark".into(), Value::Bool(true));
        }
        // Kwargs naming another Hub repo (`-k name_or_path=...`): that repo
        // is all that is fetched when zoo builds it (no lock pins it, so
        // not under `--locked`).
        let mut other_hosted = None;
        if options.locked.is_none()
            && let Some(found) = &found
            && let Some(other) = registry.other_repo(found, &overrides)
        {
            self.prepare_requirements(found, options)?;
            match self.load_other_repo(found, &other, options.workers)? {
                OtherLoad::Native(loaded) => return Ok(*loaded),
                // FiftyOne's class loads the folder zoo fetched and checked;
                // the entry's own files are not needed.
                OtherLoad::Hosted(dir) => {
                    let dir = Value::String(dir.to_string_lossy().into_owned());
                    kwargs.insert("name_or_path".to_owned(), dir.clone());
                    overrides.insert("name_or_path".to_owned(), dir);
                    other_hosted = Some(zoo_registry::Downloaded {
                        path: registry.model_path(found)?,
                        model: found.clone(),
                        fetched: false,
                    });
                }
            }
        }
        let downloaded = match other_hosted {
            Some(downloaded) => downloaded,
            None => {
                let downloaded = registry.download(
                    name_or_url,
                    options.model_name.as_deref(),
                    false,
                    self.observer().downloads(),
                )?;
                self.prepare_requirements(&downloaded.model, options)?;
                downloaded
            }
        };
        let name = downloaded.name();
        // After any install: what runs is what the lock pins.
        if let Some(locked) = &options.locked {
            self.check_locked(locked, &downloaded)?;
        }
        // The model is resolved once: no second pass over every manifest.
        let config = match registry.load_plan(&downloaded.model, &overrides)? {
            LoadPlan::Config(config) => config,
            LoadPlan::Python(plan) => {
                let hosts = HostPlan::new(
                    options.workers,
                    &self.runtime().system_info(),
                    self.config().visible_gpus.clone(),
                );
                let fiftyone_class = plan.fiftyone_class.clone();
                let mut kwargs = kwargs;
                kwargs.extend(plan.kwargs);
                let spec = HostSpec {
                    python: plan.python,
                    init: plan.init,
                    model_name: plan.model_name,
                    model_path: plan.model_path,
                    kwargs,
                    load_timeout: plan.timeout,
                    batch_timeout: plan.timeout,
                    threads: None,
                    gpu: None,
                };
                let loaded = zoo_python_host::load(&hosts.spec(&spec, 0)).with_context(|| {
                    match &fiftyone_class {
                        Some(class) => format!(
                            "building `{name}` with FiftyOne's `{class}` in the model host (`{}`) failed; it needs fiftyone and {} (`zoo models requirements {name} --install`, or `-i`)",
                            spec.python,
                            packages_of(&downloaded.model).join(", ")
                        ),
                        None => format!("loading `{name}` in the model host failed"),
                    }
                })?;
                match loaded {
                    Loaded::Config(value) => {
                        registry.config_from_hook(&downloaded.model, value, &overrides)?
                    }
                    Loaded::Model(first) => {
                        let deployment = downloaded
                            .model
                            .model
                            .default_deployment_config_dict
                            .as_ref();
                        let mut config = deployment
                            .map(|deployment| deployment.config.clone())
                            .unwrap_or_default();
                        config.extend(spec.kwargs.clone());
                        let config = json!({
                            "type": deployment.and_then(|deployment| deployment.kind.clone()),
                            "config": config,
                        });
                        let provenance = Provenance::of(
                            registry,
                            &downloaded.model,
                            &downloaded.path,
                            &config,
                            Some(first.info().device.as_deref()),
                            &self.runtime().system_info(),
                        )?;
                        return hosted(&spec, &hosts, name, first, provenance);
                    }
                }
            }
            _ => bail!(Model, "zoo cannot build model `{name}` this way"),
        };
        let first = self.build_native(&name, &downloaded.model, &config, &downloaded.path)?;
        self.native_copies(name, first, options.workers)
    }

    /// Builds `config` natively with the files at `path` (one copy) and
    /// records its provenance. The factory's error comes back as is inside
    /// `Ok(Err(..))`, so a caller can tell "zoo does not build this" apart.
    fn build_native(
        &self,
        name: &str,
        model: &ZooModel,
        config: &DeploymentConfig,
        path: &Path,
    ) -> Result<std::result::Result<NativeModel, ModelError>> {
        let Some(kind) = config.kind.clone() else {
            bail!(Model, "the deployment config of `{name}` has no `type`");
        };
        let provenance = Provenance::of(
            self.registry(),
            model,
            path,
            &json!({"type": &kind, "config": &config.config}),
            None,
            &self.runtime().system_info(),
        )?;
        let spec = ModelSpec {
            kind,
            config: config.config.clone(),
            model_path: Some(path.to_path_buf()),
        };
        Ok(self
            .runtime()
            .factory()
            .build(&spec)
            .map(|first| NativeModel {
                spec,
                first,
                provenance,
            }))
    }

    /// The natively built model and as many more copies as `workers` asks.
    fn native_copies(
        &self,
        name: String,
        built: std::result::Result<NativeModel, ModelError>,
        workers: Workers,
    ) -> Result<LoadedModel> {
        let failed = |name: &str| format!("building model `{name}` failed");
        let NativeModel {
            spec,
            first,
            provenance,
        } = built.map_err(Error::from).with_context(|| failed(&name))?;
        let count = match workers {
            Workers::Auto => first.workers().max(1),
            Workers::Count(count) => count.max(1),
        };
        let factory = self.runtime().factory();
        let mut models = vec![first];
        for _ in 1..count {
            models.push(
                factory
                    .build(&spec)
                    .map_err(Error::from)
                    .with_context(|| failed(&name))?,
            );
        }
        Ok(LoadedModel {
            name,
            models,
            one_image_per_call: false,
            hosted: false,
            provenance,
        })
    }

    /// FiftyOne's `load_zoo_model(install_requirements=, error_level=)`.
    fn prepare_requirements(&self, model: &ZooModel, options: &LoadOptions) -> Result<()> {
        let python = &self.config().python;
        if options.install {
            requirements::install_requirements(
                python,
                model,
                options.error_level.unwrap_or(ErrorLevel::Fail),
                self.observer(),
            )?;
        } else if let Some(level) = options.error_level {
            let check = requirements::check_requirements(python, model);
            requirements::enforce_requirements(python, model, &check, level, self.observer())?;
        }
        Ok(())
    }

    /// A transformers entry whose kwargs name another Hub repo (`-k
    /// name_or_path=facebook/convnext-tiny-224` on
    /// `classification-transformer-torch`): the repo is fetched into the zoo
    /// dir and built natively when zoo builds its architecture; when it
    /// does not, FiftyOne's class runs it in the model host, from the
    /// fetched folder.
    fn load_other_repo(
        &self,
        model: &ZooModel,
        other: &OtherRepo,
        workers: Workers,
    ) -> Result<OtherLoad> {
        let registry = self.registry();
        let name = model.name();
        let dir = registry.fetch_other_repo(model, other, self.observer().downloads())?;
        let built = match self.build_native(&name, model, &other.config, &dir)? {
            Err(err) if err.is_unsupported() => {
                tracing::info!(
                    model = name,
                    repo = %other.repo,
                    "zoo does not build this repo's architecture ({}); FiftyOne's class runs it in the model host",
                    err.message()
                );
                return Ok(OtherLoad::Hosted(dir));
            }
            Ok(mut built) => {
                // The provenance names the repo that ran, not the entry's.
                if let Some(snapshot) = zoo_sources::Snapshot::read(&dir) {
                    built.provenance.commit = Some(snapshot.commit);
                    built.provenance.hub_repo = Some(snapshot.repo);
                }
                Ok(built)
            }
            Err(err) => Err(err),
        };
        self.native_copies(name.to_owned(), built, workers)
            .map(|loaded| OtherLoad::Native(Box::new(loaded)))
    }

    /// For a model run through FiftyOne's class in the model host: the
    /// Python must have fiftyone and the entry's packages, checked before
    /// anything is downloaded; the error names the model, the class, what
    /// is missing and how to install it.
    fn check_fiftyone_class_packages(&self, model: &ZooModel) -> Result<()> {
        if !matches!(
            self.registry().load_path(model),
            LoadPath::FiftyOneClass | LoadPath::FiftyOneTensorFlow
        ) {
            return Ok(());
        }
        let python = &self.config().python;
        let mut wanted = vec!["fiftyone".to_owned()];
        wanted.extend(packages_of(model));
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let missing = requirements::missing_python_packages(python, &names);
        if missing.is_empty() {
            return Ok(());
        }
        let class = model
            .model
            .default_deployment_config_dict
            .as_ref()
            .and_then(|config| config.kind.clone())
            .unwrap_or_default();
        Err(Error::new(
            ErrorKind::Requirements,
            format!(
                "model `{}` runs through FiftyOne's `{class}` in the Python model host, and `{python}` (`ZOO_PYTHON`) lacks {}: install them with `{}` (once fiftyone is there, `-i` installs the model's own requirements first)",
                model.name(),
                missing.join(", "),
                requirements::pip_command(python, missing.iter().copied())
            ),
        ))
    }
}

/// How many model hosts run, and what each may use: `Count(N)` starts N
/// hosts, splitting the CPU threads as the native backend splits
/// libtorch's (each gets `threads / N`, at least 1) and, on a machine with
/// several GPUs, giving host `i` GPU `i mod GPUs` alone; `Auto` starts one
/// host, or one per GPU when the model runs on a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPlan {
    /// `Count(N)`, or `None` for `Auto`.
    count: Option<usize>,
    /// The native backend's intra-op threads (libtorch's default).
    threads: usize,
    /// The GPUs by their `CUDA_VISIBLE_DEVICES` names.
    gpus: Vec<String>,
}

impl HostPlan {
    fn new(workers: Workers, info: &SystemInfo, visible: Option<Vec<String>>) -> Self {
        let gpus = match visible {
            Some(visible) => visible.into_iter().take(info.cuda_devices).collect(),
            None => (0..info.cuda_devices).map(|id| id.to_string()).collect(),
        };
        Self {
            count: match workers {
                Workers::Auto => None,
                Workers::Count(count) => Some(count.max(1)),
            },
            threads: info.threads.max(1),
            gpus,
        }
    }

    /// The spec of host `index` of `count`.
    fn spec_of(&self, spec: &HostSpec, index: usize, count: usize) -> HostSpec {
        let mut spec = spec.clone();
        if count > 1 {
            spec.threads = Some((self.threads / count).max(1));
            if self.gpus.len() > 1 {
                spec.gpu = Some(self.gpus[index % self.gpus.len()].clone());
            }
        }
        spec
    }

    /// The spec of host `index` before the first host said where its
    /// model runs.
    fn spec(&self, spec: &HostSpec, index: usize) -> HostSpec {
        self.spec_of(spec, index, self.count.unwrap_or(1))
    }

    /// How many hosts run, once the first said where its model runs.
    fn count(&self, device: Option<&str>) -> usize {
        match self.count {
            Some(count) => count,
            None if device.is_some_and(|device| device.starts_with("cuda")) => {
                self.gpus.len().max(1)
            }
            None => 1,
        }
    }
}

/// The hosted model and the other hosts the plan asks for.
fn hosted(
    spec: &HostSpec,
    hosts: &HostPlan,
    name: String,
    first: HostedModel,
    provenance: Provenance,
) -> Result<LoadedModel> {
    let ragged = first.info().ragged_batches;
    let count = hosts.count(first.info().device.as_deref());
    tracing::debug!(
        model = %name,
        class = %first.info().class,
        device = ?first.info().device,
        threads = ?first.info().threads,
        hosts = count,
        "running in the model host"
    );
    let mut models: Vec<Box<dyn Model>> = vec![Box::new(first)];
    for index in 1..count {
        match zoo_python_host::load(&hosts.spec_of(spec, index, count))? {
            Loaded::Model(model) => models.push(Box::new(model)),
            Loaded::Config(_) => {
                bail!(
                    Model,
                    "`load_model` of `{name}` returned a model, then a config"
                )
            }
        }
    }
    Ok(LoadedModel {
        name,
        models,
        one_image_per_call: ragged,
        hosted: true,
        provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HostSpec {
        HostSpec {
            python: "python3".into(),
            init: "/source/__init__.py".into(),
            model_name: "a/model".into(),
            model_path: "/source/model.pt".into(),
            kwargs: Map::new(),
            load_timeout: std::time::Duration::from_secs(1),
            batch_timeout: std::time::Duration::from_secs(1),
            threads: None,
            gpu: None,
        }
    }

    #[test]
    fn workers_parse_auto_or_a_positive_count() {
        assert_eq!("auto".parse::<Workers>(), Ok(Workers::Auto));
        assert_eq!("3".parse::<Workers>(), Ok(Workers::Count(3)));
        assert!("0".parse::<Workers>().is_err());
        assert!("many".parse::<Workers>().is_err());
    }

    #[test]
    fn host_plans_split_threads_and_gpus_between_hosts() {
        let gpus = |count: usize| (0..count).map(|id| id.to_string()).collect();
        // (--workers, threads, GPUs, device of the first host) -> (hosts,
        // each host's threads and GPU)
        type Host = (Option<usize>, Option<String>);
        type Case = (
            Option<usize>,
            usize,
            Vec<String>,
            Option<&'static str>,
            Vec<Host>,
        );
        let cases: Vec<Case> = vec![
            (None, 8, gpus(0), Some("cpu"), vec![(None, None)]),
            (Some(1), 8, gpus(0), Some("cpu"), vec![(None, None)]),
            (
                Some(2),
                8,
                gpus(0),
                Some("cpu"),
                vec![(Some(4), None), (Some(4), None)],
            ),
            (
                Some(3),
                2,
                gpus(1),
                None,
                vec![(Some(1), None), (Some(1), None), (Some(1), None)],
            ),
            (
                Some(3),
                16,
                vec!["3".into(), "5".into()],
                Some("cuda:0"),
                vec![
                    (Some(5), Some("3".into())),
                    (Some(5), Some("5".into())),
                    (Some(5), Some("3".into())),
                ],
            ),
            // auto on a GPU: one host per GPU, each alone on its own.
            (
                None,
                16,
                gpus(2),
                Some("cuda:0"),
                vec![(None, None), (Some(8), Some("1".into()))],
            ),
        ];
        for (count, threads, gpus, device, expected) in cases {
            let plan = HostPlan {
                count,
                threads,
                gpus,
            };
            let hosts = plan.count(device);
            let got: Vec<Host> = (0..hosts)
                .map(|index| {
                    let spec = if index == 0 {
                        plan.spec(&spec(), 0)
                    } else {
                        plan.spec_of(&spec(), index, hosts)
                    };
                    (spec.threads, spec.gpu)
                })
                .collect();
            assert_eq!(got, expected, "{plan:?} {device:?}");
        }
    }

    #[test]
    fn visible_gpus_name_the_hosts_gpus() {
        let info = SystemInfo {
            cuda_available: true,
            cuda_devices: 2,
            cudnn_available: true,
            threads: 8,
            mkl: false,
        };
        let plan = HostPlan::new(
            Workers::Count(2),
            &info,
            Some(vec!["4".into(), "6".into(), "7".into()]),
        );
        assert_eq!(plan.gpus, ["4", "6"]);
    }
}
