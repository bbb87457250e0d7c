//! Hugging Face semantic segmenters: the repos FiftyOne's
//! `FiftyOneTransformerForSemanticSegmentation` loads with transformers'
//! `AutoModelForSemanticSegmentation`, whose output is `logits`
//! (`[N, classes, h, w]`). Which network a repo is follows its
//! `model_type` ([`SEGMENTERS`]), each a `FAMILIES` row
//! (`Task::TransformersSegmenter`): `segformer`
//! (`SegformerForSemanticSegmentation`, `segformer.rs`). Any other type is
//! an error naming it.

use std::path::Path;

use serde::Deserialize;
use tch::Tensor;

use super::processor::{ImageProcessor, ProcessorKind};
use super::{HfError, repo, segformer};

/// The semantic segmenters zoo builds: `model_type` and transformers' class
/// (the name in `FAMILIES`).
pub(crate) const SEGMENTERS: &[(&str, &str)] = &[("segformer", "SegformerForSemanticSegmentation")];

/// The network of a repo.
pub(crate) enum SegmenterNetwork {
    Segformer(segformer::Segformer),
}

/// A semantic segmenter read from a Hugging Face repo: its network, labels
/// and image processor.
pub(crate) struct HfSegmenter {
    /// transformers' class (`SegformerForSemanticSegmentation`).
    pub(crate) class: &'static str,
    pub(crate) network: SegmenterNetwork,
    /// `id2label` in index order.
    pub(crate) labels: Vec<String>,
    pub(crate) processor: ImageProcessor,
}

impl std::fmt::Debug for HfSegmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfSegmenter")
            .field("class", &self.class)
            .field("labels", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// `config.json`'s fields every segmenter has.
#[derive(Debug, Deserialize)]
struct Common {
    model_type: Option<String>,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
}

impl HfSegmenter {
    /// Reads the repo in `dir`: `config.json`, the weights and
    /// `preprocessor_config.json`.
    pub(crate) fn load(dir: &Path) -> Result<HfSegmenter, HfError> {
        let path = dir.join("config.json");
        let common: Common = repo::read_json(dir, "config.json")?;
        let model_type = common.model_type.unwrap_or_default();
        let class = SEGMENTERS
            .iter()
            .find(|(kind, _)| *kind == model_type)
            .map(|(_, class)| *class)
            .ok_or_else(|| HfError::Unsupported {
                path: path.clone(),
                model_type: model_type.clone(),
                known: SEGMENTERS
                    .iter()
                    .map(|(kind, _)| format!("`{kind}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                what: "semantic segmenters",
            })?;
        // The class must be a transformers row of FAMILIES.
        let family = super::super::family(class).map_err(|err| HfError::Config {
            path: path.clone(),
            message: err.to_string(),
        })?;
        debug_assert_eq!(family.task, super::super::Task::TransformersSegmenter);
        let labels = match common.id2label {
            Some(map) if !map.is_empty() => super::labels(map, &path)?,
            // transformers' default: two labels, LABEL_0 and LABEL_1.
            _ => vec!["LABEL_0".to_owned(), "LABEL_1".to_owned()],
        };
        let mut weights = repo::read_weights(dir)?;
        let classes = weights
            .rows("decode_head.classifier.weight")
            .unwrap_or(labels.len() as i64);
        if classes != labels.len() as i64 {
            return Err(HfError::Mismatch {
                dir: dir.to_owned(),
                message: format!(
                    "`decode_head.classifier.weight` has {classes} rows but `id2label` lists {} labels",
                    labels.len()
                ),
            });
        }
        let config: segformer::SegformerConfig = repo::read_json(dir, "config.json")?;
        let network = segformer::Segformer::build(config, &path, &mut weights, classes)?;
        weights.finish()?;
        let processor = ImageProcessor::read(dir, ProcessorKind::Segformer)?;
        Ok(HfSegmenter {
            class,
            network: SegmenterNetwork::Segformer(network),
            labels,
            processor,
        })
    }

    /// The smallest input side the network takes.
    pub(crate) fn min_input(&self) -> i64 {
        match &self.network {
            SegmenterNetwork::Segformer(network) => network.min_input(),
        }
    }

    /// The logits (`[N, classes, h, w]`) of `pixels` (`[N, 3, H, W]`).
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor, HfError> {
        match &self.network {
            SegmenterNetwork::Segformer(network) => network.forward(pixels),
        }
    }
}
