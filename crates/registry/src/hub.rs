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

use serde_json::Value;
use zoo_manifest::ZooModel;
use zoo_sources::{HubClient, Progress, Snapshot, partial_path};

use crate::error::RegistryError;
use crate::hooks::{self, HookKind};
use crate::models::ModelPaths;
use crate::registry::Registry;

/// The revision FiftyOne's classes load when the config names none.
const DEFAULT_REVISION: &str = "main";

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

/// The repo a model's weights come from: a deployment config whose
/// `name_or_path` is a Hub repo id (not a local path), or, with none, the
/// default repo of its FiftyOne transformers class, for a model with no
/// `manager`.
pub(crate) fn hub_plan(model: &ZooModel) -> Option<HubPlan> {
    if model.model.download_manager().is_some() {
        return None;
    }
    let deployment = model.model.default_deployment_config_dict.as_ref()?;
    let config = &deployment.config;
    let repo = config_repo(deployment)?;
    let revision = config
        .get("revision")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|revision| !revision.is_empty())
        .unwrap_or(DEFAULT_REVISION);
    Some(HubPlan {
        repo,
        revision: revision.to_owned(),
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
