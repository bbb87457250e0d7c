//! Hugging Face image feature extractors: the repos FiftyOne's
//! `FiftyOneTransformer` loads with transformers' `AutoModel` (no task
//! head), whose outputs are `last_hidden_state`, `pooler_output` and, when
//! asked for, `hidden_states`. Which network a repo is follows its
//! `model_type` ([`EMBEDDERS`]), each a `FAMILIES` row
//! (`Task::TransformersEmbedder`): `dinov3_vit` (`DINOv3ViTModel`,
//! `dinov3.rs`). Any other type is an error naming it.

use std::path::Path;

use serde::Deserialize;
use tch::Tensor;

use super::dinov3::Features;
use super::processor::{ImageProcessor, ProcessorKind};
use super::{HfError, dinov3, repo};

/// The feature extractors zoo builds: `model_type` and transformers' class
/// (the name in `FAMILIES`).
pub(crate) const EMBEDDERS: &[(&str, &str)] = &[("dinov3_vit", "DINOv3ViTModel")];

/// The network of a repo.
pub(crate) enum EmbedderNetwork {
    Dinov3(dinov3::Dinov3),
}

/// A feature extractor read from a Hugging Face repo: its network and image
/// processor.
pub(crate) struct HfEmbedder {
    /// transformers' class (`DINOv3ViTModel`).
    pub(crate) class: &'static str,
    pub(crate) network: EmbedderNetwork,
    pub(crate) processor: ImageProcessor,
}

impl std::fmt::Debug for HfEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfEmbedder")
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

/// `config.json`'s field that picks the network.
#[derive(Debug, Deserialize)]
struct Common {
    model_type: Option<String>,
}

impl HfEmbedder {
    /// Reads the repo in `dir`: `config.json`, the weights and
    /// `preprocessor_config.json`.
    pub(crate) fn load(dir: &Path) -> Result<HfEmbedder, HfError> {
        let path = dir.join("config.json");
        let common: Common = repo::read_json(dir, "config.json")?;
        let model_type = common.model_type.unwrap_or_default();
        let class = EMBEDDERS
            .iter()
            .find(|(kind, _)| *kind == model_type)
            .map(|(_, class)| *class)
            .ok_or_else(|| HfError::Unsupported {
                path: path.clone(),
                model_type: model_type.clone(),
                known: EMBEDDERS
                    .iter()
                    .map(|(kind, _)| format!("`{kind}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                what: "image feature extractors",
            })?;
        // The class must be a transformers row of FAMILIES.
        let family = super::super::family(class).map_err(|err| HfError::Config {
            path: path.clone(),
            message: err.to_string(),
        })?;
        debug_assert_eq!(family.task, super::super::Task::TransformersEmbedder);
        let mut weights = repo::read_weights(dir)?;
        let config: dinov3::Dinov3Config = repo::read_json(dir, "config.json")?;
        let network = dinov3::Dinov3::build(config, &mut weights)
            .map_err(|message| HfError::Config { path, message })?;
        weights.finish()?;
        let processor = ImageProcessor::read(dir, ProcessorKind::Dinov3)?;
        let (patch_height, patch_width) = network.patch_size();
        if let Some((width, height)) = processor.fixed_size() {
            let patches = (i64::from(height) / patch_height) * (i64::from(width) / patch_width);
            if !(1..=dinov3::MAX_PATCHES).contains(&patches) {
                return Err(HfError::Config {
                    path: dir.join("preprocessor_config.json"),
                    message: format!(
                        "the processor's {width}x{height} images make {patches} patches of {patch_width}x{patch_height}; DINOv3 takes from 1 to {}",
                        dinov3::MAX_PATCHES
                    ),
                });
            }
        }
        Ok(HfEmbedder {
            class,
            network: EmbedderNetwork::Dinov3(network),
            processor,
        })
    }

    /// How many hidden states `output_hidden_states` gives.
    pub(crate) fn hidden_states(&self) -> usize {
        match &self.network {
            EmbedderNetwork::Dinov3(network) => network.hidden_states(),
        }
    }

    /// The smallest input `(height, width)` the network takes.
    pub(crate) fn min_input(&self) -> (i64, i64) {
        match &self.network {
            EmbedderNetwork::Dinov3(network) => network.patch_size(),
        }
    }

    /// The features of `pixels` (`[N, 3, H, W]`), with hidden state `keep`
    /// when asked for.
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: Option<usize>,
    ) -> Result<Features, HfError> {
        match &self.network {
            EmbedderNetwork::Dinov3(network) => network.forward(pixels, keep),
        }
    }
}
