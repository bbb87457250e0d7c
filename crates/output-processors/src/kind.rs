//! Which output processor a FiftyOne config's `output_processor_cls` names.

/// The output processors zoo implements, one for each of FiftyOne 1.22.1's
/// `fiftyone.utils.torch.*OutputProcessor` classes that a
/// `TorchImageModelConfig` may name in `output_processor_cls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessorKind {
    /// `ClassifierOutputProcessor`: [`Classifier`](crate::Classifier).
    Classifier,
    /// `DetectorOutputProcessor`: [`Detector`](crate::Detector).
    Detector,
    /// `InstanceSegmenterOutputProcessor`:
    /// [`InstanceSegmenter`](crate::InstanceSegmenter).
    InstanceSegmenter,
    /// `KeypointDetectorOutputProcessor`:
    /// [`KeypointDetector`](crate::KeypointDetector).
    KeypointDetector,
    /// `SemanticSegmenterOutputProcessor`:
    /// [`SemanticSegmenter`](crate::SemanticSegmenter).
    SemanticSegmenter,
}

impl ProcessorKind {
    /// Every kind.
    pub const ALL: [ProcessorKind; 5] = [
        ProcessorKind::Classifier,
        ProcessorKind::Detector,
        ProcessorKind::InstanceSegmenter,
        ProcessorKind::KeypointDetector,
        ProcessorKind::SemanticSegmenter,
    ];

    /// The kind FiftyOne class name `class` names
    /// (`fiftyone.utils.torch.ClassifierOutputProcessor` ->
    /// [`ProcessorKind::Classifier`]), read by its last dotted part, so the
    /// bare class name names it too; `None` for a class zoo does not
    /// implement.
    pub fn from_fiftyone_class(class: &str) -> Option<ProcessorKind> {
        let name = class.rsplit('.').next().unwrap_or(class);
        ProcessorKind::ALL
            .into_iter()
            .find(|kind| kind.class_name() == name)
    }

    /// FiftyOne's class name for this kind, without its module
    /// (`ClassifierOutputProcessor`).
    pub fn class_name(self) -> &'static str {
        match self {
            ProcessorKind::Classifier => "ClassifierOutputProcessor",
            ProcessorKind::Detector => "DetectorOutputProcessor",
            ProcessorKind::InstanceSegmenter => "InstanceSegmenterOutputProcessor",
            ProcessorKind::KeypointDetector => "KeypointDetectorOutputProcessor",
            ProcessorKind::SemanticSegmenter => "SemanticSegmenterOutputProcessor",
        }
    }

    /// FiftyOne's full class path for this kind
    /// (`fiftyone.utils.torch.ClassifierOutputProcessor`).
    pub fn fiftyone_class(self) -> String {
        format!("fiftyone.utils.torch.{}", self.class_name())
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessorKind;

    #[test]
    fn fiftyones_class_names_name_their_kind() {
        for kind in ProcessorKind::ALL {
            assert_eq!(
                ProcessorKind::from_fiftyone_class(&kind.fiftyone_class()),
                Some(kind)
            );
            assert_eq!(
                ProcessorKind::from_fiftyone_class(kind.class_name()),
                Some(kind)
            );
        }
        assert_eq!(
            ProcessorKind::from_fiftyone_class("fiftyone.utils.torch.ClassifierOutputProcessor"),
            Some(ProcessorKind::Classifier)
        );
        assert_eq!(
            ProcessorKind::from_fiftyone_class(
                "fiftyone.utils.torch.SemanticSegmenterOutputProcessor"
            ),
            Some(ProcessorKind::SemanticSegmenter)
        );
    }

    #[test]
    fn other_classes_name_no_kind() {
        for class in [
            "",
            "fiftyone.utils.torch.",
            "fiftyone.utils.torch.OutputProcessor",
            "fiftyone.utils.torch.ClassifierOutputProcessorX",
            "classifieroutputprocessor",
        ] {
            assert_eq!(ProcessorKind::from_fiftyone_class(class), None, "{class}");
        }
    }
}
