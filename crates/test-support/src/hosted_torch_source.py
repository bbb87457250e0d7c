# A test source whose `load_model` returns torch models that FiftyOne's
# `apply_model` feeds through its DataLoader (`TorchModelMixin`), with
# seeded weights (the "weights" file holds the seed): zoo's model host must
# feed them as FiftyOne does. Needs torch and torchvision (the oracle venv),
# so only `cargo xtask hosted-torch-check` and a CI with torch run it.
# Models by the last part of their name:
#   resnet18      `fout.TorchImageModel` from a torchvision config, as
#                 FiftyOne's resnet18-imagenet-torch (MinResize/MaxResize,
#                 ragged), logits and embeddings (`<fc`)
#   resnet18-pil  the same network with transforms that take PIL images
#                 only (torchvision's Resize/CenterCrop), `ragged_batches`
#                 False, so batches collate
#   tiny          a plain `TorchModelMixin` (no `GetItem`): its transforms
#                 make tensors and it refuses to run with `preprocess` on
#   torch-threads labels each image with torch's intra-op threads
# kwargs: classes (names; their count sets the classifier's size), or
# num_classes (names `c0`, `c1`, ...), image_size (resnet18: [h, w]
# instead of min/max dims, not ragged).
import numpy as np
import torch
import torchvision

import fiftyone.core.labels as fol
import fiftyone.core.models as fom
import fiftyone.utils.torch as fout

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def download_model(model_name, model_path):
    with open(model_path, "w") as f:
        f.write("seed 7 for " + model_name)


def _seed(model_path):
    with open(model_path) as f:
        words = f.read().split()
    if len(words) < 2 or words[0] != "seed":
        raise ValueError("not this source's weights: %s" % model_path)
    return int(words[1])


def _resnet18(seed, classes, **config):
    torch.manual_seed(seed)
    d = {
        "entrypoint_fcn": "torchvision.models.resnet.resnet18",
        "entrypoint_args": {"weights": None, "num_classes": len(classes)},
        "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "classes": classes,
        "image_mean": MEAN,
        "image_std": STD,
        "embeddings_layer": "<fc",
        "device": "cpu",
    }
    d.update(config)
    return fout.TorchImageModel(fout.TorchImageModelConfig(d))


class TinyTorch(fom.Model, fom.TorchModelMixin, fom.LogitsMixin):
    """Classifies the mean of each channel of its transforms' tensors."""

    def __init__(self, classes):
        fom.LogitsMixin.__init__(self)
        self.classes = classes
        self._preprocess = True
        self._transforms = torchvision.transforms.Compose(
            [torchvision.transforms.Resize(20), torchvision.transforms.ToTensor()]
        )

    @property
    def media_type(self):
        return "image"

    @property
    def has_logits(self):
        return True

    @property
    def ragged_batches(self):
        return True

    @property
    def transforms(self):
        return self._transforms

    @property
    def preprocess(self):
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value):
        self._preprocess = value

    def predict(self, img):
        return self.predict_all([img])[0]

    def predict_all(self, imgs):
        if self._preprocess:
            raise RuntimeError("FiftyOne's DataLoader path runs this model with preprocess off")
        labels = []
        for img in imgs:
            if not torch.is_tensor(img):
                raise TypeError("expected a tensor from the transforms, got %s" % type(img).__name__)
            logits = img.reshape(3, -1).mean(dim=1).numpy().astype(np.float32) * 4.0
            odds = np.exp(logits - logits.max())
            odds /= odds.sum()
            best = int(np.argmax(odds))
            label = fol.Classification(label=self.classes[best], confidence=float(odds[best]))
            if self.store_logits:
                label.logits = logits
            labels.append(label)
        return labels


class Threads(fom.Model):
    @property
    def media_type(self):
        return "image"

    @property
    def ragged_batches(self):
        return False

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self):
        return False

    @preprocess.setter
    def preprocess(self, value):
        pass

    def predict_all(self, imgs):
        return [fol.Classification(label="torch=%d" % torch.get_num_threads()) for _ in imgs]

    def predict(self, img):
        return self.predict_all([img])[0]


def load_model(model_name, model_path, **kwargs):
    seed = _seed(model_path)
    kind = model_name.split("@")[0].rsplit("/", 1)[-1]
    classes = kwargs.get("classes", ["ant", "bee", "cat", "dog", "eel"])
    if kwargs.get("num_classes"):
        classes = ["c%d" % index for index in range(int(kwargs["num_classes"]))]
    if kind == "resnet18":
        if kwargs.get("image_size"):
            return _resnet18(seed, classes, image_size=kwargs["image_size"])
        return _resnet18(seed, classes, image_min_dim=224, image_max_dim=2048)
    if kind == "resnet18-pil":
        transforms = torchvision.transforms.Compose(
            [
                torchvision.transforms.Resize(48),
                torchvision.transforms.CenterCrop(40),
                torchvision.transforms.ToTensor(),
                torchvision.transforms.Normalize(MEAN, STD),
            ]
        )
        return _resnet18(seed, classes, transforms=transforms, ragged_batches=False)
    if kind == "tiny":
        return TinyTorch(classes)
    if kind == "torch-threads":
        return Threads()
    raise ValueError("unknown model %s" % model_name)
