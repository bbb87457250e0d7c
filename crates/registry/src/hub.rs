//! Models whose weights are a Hugging Face Hub repo: FiftyOne's entries with
//! no `manager` whose deployment config names the repo in `name_or_path`
//! (transformers, FC-CLIP, Depth Anything V3, Qwen3-VL: 96 built-ins), and
//! FiftyOne's transformers entries whose config names none, whose class
//! picks its default repo ([`CLASS_DEFAULT_REPOS`]).
//!
//! FiftyOne lets the model's library download the repo when the model is
//! loaded; zoo fetches it ahead of time, at one commit, through
//! [`zoo_sources::HubClient`] (token to the Hub's host only, LFS files
//! checked against the sha256 the Hub states), into the model's path, a
//! folder named like any built-in's file:
//!
//! ```text
//! <zoo dir>/
//! ├── .detr-resnet50-coco-torch.partial/   files so far (resumed; another
//! │   ├── .zoo-hf.json                     commit's files are discarded)
//! │   └── ...
//! └── detr-resnet50-coco-torch/            renamed into place when complete
//!     ├── .zoo-hf.json                     repo, revision, commit, files
//!     ├── config.json
//!     └── model.safetensors
//! ```
//!
//! Under the model's lock, as every download; offline mode refuses before
//! any request.
//!
//! A transformers entry zoo builds natively whose `load_zoo_model` kwargs
//! name another repo (`zoo models apply classification-transformer-torch
//! -k name_or_path=facebook/convnext-tiny-224`: [`Registry::other_repo`])
//! gets that repo fetched the same way, once, into a folder of its own:
//!
//! ```text
//! <zoo dir>/.hf-repos/
//! ├── .facebook--convnext-tiny-224@main.partial/   files so far
//! └── facebook--convnext-tiny-224@main/            complete
//! ```
//!
//! zoo then builds it natively when its `config.json` names an
//! architecture zoo builds, and runs FiftyOne's class on it otherwise.

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use zoo_fs::{LockMode, LockedFile};
use zoo_manifest::{DeploymentConfig, ZooModel};
use zoo_sources::{HubClient, Progress, Snapshot, partial_path};

use crate::error::RegistryError;
use crate::hooks::{self, HookKind};
use crate::models::{LOCKS_DIR, ModelPaths};
use crate::registry::Registry;

/// The revision FiftyOne's classes load when the config names none.
const DEFAULT_REVISION: &str = "main";

/// The folder, in the zoo dir, of the repos kwargs name
/// ([`Registry::other_repo`]).
pub(crate) const OTHER_REPOS_DIR: &str = ".hf-repos";

/// The repo FiftyOne 1.22.1's transformers classes load when their config
/// names none (`fiftyone/utils/transformers.py`'s `DEFAULT_*_PATH`, set by
/// each config class): `vit-base-patch16-224-imagenet-torch` and the other
/// entries with an empty config get the repo their class would fetch, and
/// zoo fetches it instead (with its checks), as for a named repo.
const CLASS_DEFAULT_REPOS: &[(&str, &str)] = &[
    (
        "fiftyone.utils.transformers.FiftyOneTransformerForImageClassification",
        "google/vit-base-patch16-224",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneTransformerForObjectDetection",
        "hustvl/yolos-tiny",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneTransformerForSemanticSegmentation",
        "nvidia/segformer-b0-finetuned-ade-512-512",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneTransformerForUniversalSegmentation",
        "facebook/mask2former-swin-tiny-coco-instance",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneTransformerForDepthEstimation",
        "Intel/dpt-hybrid-midas",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneTransformerForPoseEstimation",
        "usyd-community/vitpose-base-simple",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForImageClassification",
        "openai/clip-vit-large-patch14",
    ),
    (
        "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForObjectDetection",
        "google/owlvit-base-patch32",
    ),
];

/// A model's Hugging Face repo and the revision to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubPlan {
    /// `owner/name`.
    pub(crate) repo: String,
    /// The config's `revision`, else `main`.
    pub(crate) revision: String,
}

/// The revision a deployment config names, else `main`.
pub(crate) fn config_revision(deployment: &DeploymentConfig) -> String {
    deployment
        .config
        .get("revision")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|revision| !revision.is_empty())
        .unwrap_or(DEFAULT_REVISION)
        .to_owned()
}

/// A transformers entry's kwargs naming another Hub repo than the one zoo
/// downloads for it ([`Registry::other_repo`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OtherRepo {
    /// The entry's deployment config with the kwargs applied.
    pub config: DeploymentConfig,
    /// The repo id the kwargs name.
    pub repo: String,
    /// The revision to fetch (`revision`, else `main`).
    pub revision: String,
}

impl OtherRepo {
    /// The repo's folder name under [`OTHER_REPOS_DIR`]: `owner--name@rev`
    /// (a repo id holds no `--`), the revision as given when it is plain
    /// (letters, digits, `-`, `_`, `.`, not leading), else its sha256.
    fn folder_name(&self) -> String {
        let plain = !self.revision.starts_with(['.', '-'])
            && self.revision.len() <= 64
            && self
                .revision
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
        let revision = if plain {
            self.revision.clone()
        } else {
            Sha256::digest(self.revision.as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        };
        format!("{}@{revision}", self.repo.replace('/', "--"))
    }
}

/// The repo a model's weights come from: a deployment config whose
/// `name_or_path` is a Hub repo id (not a local path), or, with none, the
/// default repo of its FiftyOne transformers class, for a model with no
/// `manager`.
pub(crate) fn hub_plan(model: &ZooModel) -> Option<HubPlan> {
    if model.model.download_manager().is_some() {
        return None;
    }
    let deployment = model.model.default_deployment_config_dict.as_ref()?;
    let repo = config_repo(deployment)?;
    Some(HubPlan {
        repo,
        revision: config_revision(deployment),
    })
}

/// The Hub repo a deployment config names in `name_or_path` (a repo id, not
/// a local path), or with none, its FiftyOne transformers class's default.
pub(crate) fn config_repo(deployment: &zoo_manifest::DeploymentConfig) -> Option<String> {
    let repo = match deployment.config.get("name_or_path") {
        Some(value) => value.as_str()?.trim(),
        None => {
            let kind = deployment.kind.as_deref()?;
            CLASS_DEFAULT_REPOS
                .iter()
                .find(|(class, _)| *class == kind)
                .map(|(_, repo)| *repo)?
        }
    };
    zoo_sources::check_repo_id(repo).ok()?;
    Some(repo.to_owned())
}

impl Registry {
    /// The Hub plan for `model`, unless its source ships a download hook
    /// (the source's own way wins).
    pub(crate) fn hub_download(&self, model: &ZooModel, paths: &ModelPaths) -> Option<HubPlan> {
        let plan = hub_plan(model)?;
        if matches!(model.origin, zoo_manifest::Origin::Source { .. })
            && hooks::find(&paths.dir, HookKind::Download).is_some()
        {
            return None;
        }
        Some(plan)
    }

    /// Fetches the repo into the hidden partial folder beside the model's
    /// path (resuming what an interrupted download left there), then renames
    /// it into place.
    pub(crate) fn download_from_hub(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
        plan: &HubPlan,
        progress: &dyn Progress,
    ) -> Result<(), RegistryError> {
        let endpoint = self.mirrored(&self.config().hf_endpoint);
        let client = HubClient::new(&endpoint, self.config().hf_token.clone());
        let partial = partial_path(&paths.file);
        self.check_paths(model, paths, "download the Hugging Face repo")?;
        let snapshot = client
            .snapshot(
                &plan.repo,
                &plan.revision,
                &partial,
                &self.config().transfer,
                progress,
            )
            .map_err(|source| RegistryError::Hub {
                model: model.name(),
                repo: plan.repo.clone(),
                revision: plan.revision.clone(),
                source: Box::new(source),
            })?;
        tracing::debug!(
            model = %model.name(),
            repo = %snapshot.repo,
            commit = %snapshot.commit,
            files = snapshot.files.len(),
            "fetched the Hugging Face repo"
        );
        self.check_paths(model, paths, "install the Hugging Face repo")?;
        zoo_fs::persist_dir(&partial, &paths.file)?;
        Ok(())
    }

    /// Fetches [`OtherRepo`]'s repo into `<zoo dir>/.hf-repos/` (once; a
    /// later call finds it there), as a model's repo: resumed from the
    /// partial folder, renamed into place when complete, under a lock so
    /// that processes asking at once fetch it once. Returns its folder.
    /// `model` names the entry in errors; offline mode refuses a repo not
    /// fetched yet.
    pub fn fetch_other_repo(
        &self,
        model: &ZooModel,
        other: &OtherRepo,
        progress: &dyn Progress,
    ) -> Result<PathBuf, RegistryError> {
        let dirs = self.root().join(OTHER_REPOS_DIR);
        let name = other.folder_name();
        let dir = dirs.join(&name);
        let escapes = |action: &str| {
            let action = action.to_owned();
            move |source| RegistryError::Escapes {
                action,
                model: model.name(),
                source: Box::new(source),
            }
        };
        if Snapshot::read(&dir).is_some() {
            zoo_fs::ensure_inside(self.root(), &dir)
                .map_err(escapes("use the Hugging Face repo"))?;
            return Ok(dir);
        }
        let _lock = LockedFile::acquire(
            &self
                .root()
                .join(LOCKS_DIR)
                .join(format!("hf-repo~{name}.lock")),
            LockMode::Exclusive,
        )?;
        if Snapshot::read(&dir).is_some() {
            zoo_fs::ensure_inside(self.root(), &dir)
                .map_err(escapes("use the Hugging Face repo"))?;
            return Ok(dir);
        }
        if self.config().offline {
            return Err(RegistryError::Offline {
                what: format!(
                    "fetching the Hugging Face repo `{}` that model `{}`'s `name_or_path` names",
                    other.repo,
                    model.name()
                ),
            });
        }
        fs_err::create_dir_all(&dirs)?;
        let partial = partial_path(&dir);
        zoo_fs::ensure_inside(self.root(), &partial)
            .map_err(escapes("download the Hugging Face repo"))?;
        let endpoint = self.mirrored(&self.config().hf_endpoint);
        let client = HubClient::new(&endpoint, self.config().hf_token.clone());
        client
            .snapshot(
                &other.repo,
                &other.revision,
                &partial,
                &self.config().transfer,
                progress,
            )
            .map_err(|source| RegistryError::OtherHub {
                model: model.name(),
                repo: other.repo.clone(),
                revision: other.revision.clone(),
                source: Box::new(source),
            })?;
        zoo_fs::ensure_inside(self.root(), &dir)
            .map_err(escapes("install the Hugging Face repo"))?;
        zoo_fs::persist_dir(&partial, &dir)?;
        Ok(dir)
    }

    /// The Hugging Face repo and revision `model`'s weights come from, if
    /// they are a Hub repo (for `zoo models info`).
    pub fn hub_repo(&self, model: &ZooModel) -> Option<(String, String)> {
        hub_plan(model).map(|plan| (plan.repo, plan.revision))
    }

    /// The Hub snapshot recorded in a downloaded model's folder, if the
    /// model's weights are a Hugging Face repo and it is downloaded.
    pub fn hub_snapshot(&self, model: &ZooModel) -> Option<Snapshot> {
        hub_plan(model)?;
        let path = self.downloaded_path(model)?;
        Snapshot::read(&path)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::registry::RegistryConfig;

    fn registry(root: &std::path::Path) -> Registry {
        let mut config = RegistryConfig::new(root);
        config.builtin = Some(crate::builtin_manifest());
        Registry::new(config)
    }

    fn kwargs(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// The kwargs name another repo only when they name one other than the
    /// entry's own (or its revision), and no Python `model`; entries zoo
    /// runs in the model host, or that are not transformers, have none.
    #[test]
    fn other_repo_is_the_repo_the_kwargs_name() {
        let root = tempfile::tempdir().unwrap();
        let registry = registry(root.path());
        let generic = registry.model("classification-transformer-torch").unwrap();
        let other = registry
            .other_repo(
                &generic,
                &kwargs(json!({"name_or_path": "facebook/convnext-tiny-224"})),
            )
            .unwrap();
        assert_eq!(other.repo, "facebook/convnext-tiny-224");
        assert_eq!(other.revision, "main");
        assert_eq!(
            other.config.config["name_or_path"],
            "facebook/convnext-tiny-224"
        );
        assert_eq!(other.folder_name(), "facebook--convnext-tiny-224@main");
        // The entry's own repo, no kwargs, a local path, a Python model.
        for overrides in [
            json!({"name_or_path": "google/vit-base-patch16-224"}),
            json!({}),
            json!({"name_or_path": "/tmp/../etc/passwd"}),
            json!({"name_or_path": "a/b", "model": "x"}),
            json!({"name_or_path": "a/b", "entrypoint_fcn": "x.y"}),
        ] {
            assert_eq!(registry.other_repo(&generic, &kwargs(overrides)), None);
        }
        // Another revision of the entry's own repo is another repo.
        let convnext = registry.model("convnext-tiny-224-torch").unwrap();
        let pinned = registry
            .other_repo(&convnext, &kwargs(json!({"revision": "v1.0"})))
            .unwrap();
        assert_eq!(pinned.repo, "facebook/convnext-tiny-224");
        assert_eq!(pinned.folder_name(), "facebook--convnext-tiny-224@v1.0");
        // Not transformers, or run by FiftyOne's class: none.
        for name in ["resnet50-imagenet-torch", "detection-transformer-torch"] {
            let model = registry.model(name).unwrap();
            assert_eq!(
                registry.other_repo(&model, &kwargs(json!({"name_or_path": "a/b"}))),
                None,
                "{name}"
            );
        }
    }

    /// A revision with `/`, `..` or other characters becomes its sha256 in
    /// the folder name: the folder stays one plain name.
    #[test]
    fn odd_revisions_make_plain_folder_names() {
        for revision in [
            "refs/pr/1",
            "../../escape",
            ".hidden",
            "a b",
            &"x".repeat(65),
        ] {
            let other = OtherRepo {
                config: serde_json::from_value(json!({"type": "t", "config": {}})).unwrap(),
                repo: "owner/name".to_owned(),
                revision: revision.to_owned(),
            };
            let name = other.folder_name();
            let (repo, hash) = name.split_once('@').unwrap();
            assert_eq!(repo, "owner--name");
            assert_eq!(hash.len(), 64, "{revision}: {name}");
            assert!(hash.bytes().all(|byte| byte.is_ascii_hexdigit()), "{name}");
        }
    }
}
