//! PyTorch Hub entrypoints in FiftyOne configs: which native architecture
//! an `entrypoint_fcn` names.
//!
//! FiftyOne's DINOv2 entries load their network with
//! `fiftyone.utils.torch.load_torch_hub_raw_model`, i.e.
//! `torch.hub.load(repo_or_dir, model)` with the config's
//! `entrypoint_args`. zoo runs no hub code: it builds the networks of the
//! repositories it knows natively (`facebookresearch/dinov2`, see
//! `dinov2.rs`; the family table's `Task::Hub` rows) and reads their
//! weights from the model's downloaded file.

use serde_json::Value;
use zoo_model_core::ModelError;

use crate::families::{FAMILIES, Task};

/// The hub loader's FiftyOne name (last part of `entrypoint_fcn`).
const HUB_LOADER: &str = "load_torch_hub_raw_model";

/// The hub repositories zoo builds natively (the family table's
/// [`Task::Hub`] rows), each once, in table order.
fn repositories() -> Vec<&'static str> {
    let mut repositories: Vec<&'static str> = Vec::new();
    for family in FAMILIES {
        if let Task::Hub { repository } = family.task
            && !repositories.contains(&repository)
        {
            repositories.push(repository);
        }
    }
    repositories
}

/// The entrypoints zoo builds from hub repository `repository`.
fn entrypoints(repository: &str) -> Vec<&'static str> {
    FAMILIES
        .iter()
        .filter(
            |family| matches!(family.task, Task::Hub { repository: known } if known == repository),
        )
        .flat_map(|family| family.names.iter().copied())
        .collect()
}

/// The architecture name an `entrypoint_fcn` (with its `entrypoint_args`)
/// names: the last dotted part for torchvision builders
/// (`torchvision.models.resnet18` -> `resnet18`), the hub entrypoint for
/// `load_torch_hub_raw_model` (`{"repo_or_dir": "facebookresearch/dinov2",
/// "model": "dinov2_vits14"}` -> `dinov2_vits14`). A hub repository or
/// entrypoint zoo does not build is an error naming it.
pub(crate) fn architecture<'a>(
    entrypoint: &'a str,
    entrypoint_args: Option<&'a Value>,
) -> Result<&'a str, ModelError> {
    let name = entrypoint.rsplit('.').next().unwrap_or(entrypoint);
    if name != HUB_LOADER {
        return Ok(name);
    }
    let argument = |key: &str| {
        entrypoint_args
            .and_then(|args| args.get(key))
            .and_then(Value::as_str)
    };
    let unsupported = |what: String| ModelError::unsupported(what);
    let repository = argument("repo_or_dir").ok_or_else(|| {
        unsupported(format!(
            "`{entrypoint}` needs `entrypoint_args.repo_or_dir` naming a PyTorch Hub repository"
        ))
    })?;
    // `owner/repo[:ref]`: the ref does not change which network is built.
    let bare = repository.split(':').next().unwrap_or(repository);
    let repositories = repositories();
    if !repositories.contains(&bare) {
        return Err(unsupported(format!(
            "PyTorch Hub repository `{repository}` is not available natively; zoo builds: {}",
            repositories.join(", ")
        )));
    }
    let models = entrypoints(bare);
    let model = argument("model").ok_or_else(|| {
        unsupported(format!(
            "`{entrypoint}` needs `entrypoint_args.model` naming an entrypoint of `{repository}`"
        ))
    })?;
    models
        .iter()
        .find(|known| **known == model)
        .copied()
        .ok_or_else(|| {
            unsupported(format!(
                "entrypoint `{model}` of `{repository}` is not available natively; zoo builds: {}",
                models.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::architecture;

    #[test]
    fn hub_entrypoints_name_their_architecture_and_unknown_ones_are_errors() {
        let loader = "fiftyone.utils.torch.load_torch_hub_raw_model";
        let cases = [
            ("torchvision.models.resnet18", json!(null), Ok("resnet18")),
            (
                loader,
                json!({"repo_or_dir": "facebookresearch/dinov2", "model": "dinov2_vits14"}),
                Ok("dinov2_vits14"),
            ),
            (
                loader,
                json!({"repo_or_dir": "facebookresearch/dinov2:main", "model": "dinov2_vitg14_reg"}),
                Ok("dinov2_vitg14_reg"),
            ),
            (
                loader,
                json!({"repo_or_dir": "facebookresearch/dinov2", "model": "dinov2_vits14_lc"}),
                Err("dinov2_vits14_lc"),
            ),
            (
                loader,
                json!({"repo_or_dir": "someone/else", "model": "dinov2_vits14"}),
                Err("someone/else"),
            ),
            (
                loader,
                json!({"model": "dinov2_vits14"}),
                Err("repo_or_dir"),
            ),
        ];
        for (entrypoint, args, want) in cases {
            let got = architecture(entrypoint, Some(&args));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(err), Err(needle)) => {
                    assert!(err.to_string().contains(needle), "{err}")
                }
                (got, want) => panic!("{entrypoint} {args}: got {got:?}, want {want:?}"),
            }
        }
    }
}
