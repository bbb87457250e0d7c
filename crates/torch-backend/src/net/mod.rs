//! The building blocks every network is written with: [`Network`]
//! (features, then a head), fallible layers (`layers.rs`: [`Forward`],
//! `Conv`, `Sequence`), the [`Maker`](maker::Maker) a family writes its graph
//! against once (built on a variable store, or folded from loaded weights:
//! `fold.rs`), and the transformer blocks ViTs share (`vit.rs`).
//!
//! **Architecture Invariant:** nothing here names a family: `net` imports
//! nothing from `families`.

use tch::{TchError, Tensor};

pub(crate) mod fold;
pub(crate) mod layers;
pub(crate) mod maker;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod vit;

use layers::Forward;

/// A network as `head(features(x))`.
pub(crate) struct Network {
    features: Box<dyn Forward>,
    head: Option<Box<dyn Forward>>,
    /// The `embeddings_layer` whose input the features are, if any.
    pub(crate) embeddings_layer: Option<&'static str>,
    /// The smallest input height and width the network accepts
    /// (torchvision's `min_size`); smaller inputs leave nothing to pool.
    pub(crate) min_input: i64,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("embeddings_layer", &self.embeddings_layer)
            .field("min_input", &self.min_input)
            .finish()
    }
}

impl Network {
    /// A network with a head; its family's row (`families`) then names
    /// the head's input as an `embeddings_layer` and gives its minimum
    /// input ([`Network::described`]).
    pub(crate) fn new(features: impl Forward + 'static, head: impl Forward + 'static) -> Network {
        Network {
            features: Box::new(features),
            head: Some(Box::new(head)),
            embeddings_layer: None,
            min_input: 1,
        }
    }

    /// A network without a separate head (so without embeddings).
    pub(crate) fn whole(network: impl Forward + 'static) -> Network {
        Network {
            features: Box::new(network),
            head: None,
            embeddings_layer: None,
            min_input: 1,
        }
    }

    /// This network with its family's `embeddings_layer` (read only when
    /// it has a head) and `min_input`.
    pub(crate) fn described(
        mut self,
        embeddings_layer: Option<&'static str>,
        min_input: i64,
    ) -> Network {
        self.embeddings_layer = embeddings_layer.filter(|_| self.head.is_some());
        self.min_input = min_input;
        self
    }

    /// Features (the head's input).
    pub(crate) fn features(&self, input: &Tensor) -> Result<Tensor, TchError> {
        self.features.forward(input)
    }

    /// Logits from features.
    pub(crate) fn head(&self, features: &Tensor) -> Result<Tensor, TchError> {
        match &self.head {
            Some(head) => head.forward(features),
            None => Ok(features.shallow_clone()),
        }
    }
}
