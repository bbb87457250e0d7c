# A test source whose `load_model` returns FiftyOne models written with
# numpy only (no torch), for zoo's model host tests. Models by the last
# part of their name:
#   colour       batched (`ragged_batches` False), logits and embeddings
#   boxes        `predict` only, ragged, a dict of labels, thresholds itself
#   echo         answers at once, for the benchmark
#   environment  labels images with the host's GITHUB_TOKEN presence and cwd
#   threads      labels images with the host's OMP_NUM_THREADS
#   bad-output   returns a string instead of a label
#   not-a-model  load_model returns `object()`
#   needs-missing, raises   load_model fails
#   config       load_model returns a JSON config (zoo runs it natively)
#   prompted     a `SamplesMixin`: per sample, a box per box of its prompt
#                field (`apply_model(..., prompt_field=F)`), scored by the
#                box's mean colour; ragged, `predict(img, sample)` only
#   needs-prompts a `SupportsGetItem` whose `GetItem` requires
#                `prompt_field` (as ViTPose's): it cannot run without one
# kwargs: classes, scale, delay (seconds per batch), die_after (batches),
# fail_width, hang_pid_file.
import os
import subprocess
import time

import numpy as np

import fiftyone.core.labels as fol
import fiftyone.core.models as fom


def download_model(model_name, model_path):
    with open(model_path, "w") as f:
        f.write("numpy weights for " + model_name)


class ColourConfig:
    """A config without `confidence_thresh`: `apply_model` thresholds."""


class ColourClassifier(fom.Model, fom.LogitsMixin, fom.EmbeddingsMixin):
    """Softmax over the mean colour (times `scale`); embeddings are each
    channel's mean and standard deviation."""

    def __init__(self, classes, scale, delay, die_after, hang_pid_file):
        fom.LogitsMixin.__init__(self)
        self.config = ColourConfig()
        self.classes = classes
        self.scale = scale
        self.delay = delay
        self.die_after = die_after
        self.hang_pid_file = hang_pid_file
        self.calls = 0
        self.entered = 0

    @property
    def media_type(self):
        return "image"

    @property
    def has_logits(self):
        return True

    @property
    def has_embeddings(self):
        return True

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

    def __enter__(self):
        self.entered += 1
        if self.entered > 1:
            raise RuntimeError("the context was entered twice")
        return self

    def _step(self):
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            os.kill(os.getpid(), 9)
        if self.hang_pid_file:
            child = subprocess.Popen(["sleep", "1000"])
            with open(self.hang_pid_file, "w") as f:
                f.write(str(child.pid))
            time.sleep(1000)
        if self.delay:
            time.sleep(self.delay)

    def predict(self, img):
        return self.predict_all([img])[0]

    def predict_all(self, imgs):
        self._step()
        if self.entered != 1:
            raise RuntimeError("predict_all outside the model's context")
        labels = []
        for img in imgs:
            logits = (img.reshape(-1, 3).mean(axis=0) / 255.0 * self.scale).astype(np.float32)
            odds = np.exp(logits - logits.max())
            odds /= odds.sum()
            best = int(np.argmax(odds))
            label = fol.Classification(label=self.classes[best], confidence=float(odds[best]))
            if self.store_logits:
                label.logits = logits
            labels.append(label)
        return labels

    def embed(self, img):
        return self.embed_all([img])[0]

    def embed_all(self, imgs):
        self._step()
        pixels = [img.reshape(-1, 3).astype(np.float64) for img in imgs]
        return np.stack([np.concatenate([p.mean(axis=0), p.std(axis=0)]) for p in pixels])


class BoxesConfig:
    def __init__(self):
        self.confidence_thresh = None


class BoxesAndSize(fom.Model):
    """Three boxes whose confidences are the mean colour, and the image size
    as a classification; ragged, `predict` only; thresholds itself."""

    def __init__(self, fail_width):
        self.config = BoxesConfig()
        self.fail_width = fail_width

    @property
    def media_type(self):
        return "image"

    @property
    def ragged_batches(self):
        return True

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self):
        return False

    @preprocess.setter
    def preprocess(self, value):
        pass

    def predict(self, img):
        height, width = img.shape[:2]
        if width == self.fail_width:
            raise ValueError("cannot handle an image %d pixels wide" % width)
        mean = img.reshape(-1, 3).mean(axis=0) / 255.0
        boxes = [
            fol.Detection(
                label=name,
                bounding_box=[0.1 * index, 0.05 * index, 10.0 / width, 10.0 / height],
                confidence=float(mean[index]),
            )
            for index, name in enumerate(["r", "g", "b"])
        ]
        threshold = self.config.confidence_thresh
        if threshold is not None:
            boxes = [box for box in boxes if box.confidence >= threshold]
        return {
            "boxes": fol.Detections(detections=boxes),
            "size": fol.Classification(label="%dx%d" % (width, height)),
        }


class Shapes(BoxesAndSize):
    """An oriented box (Polylines), a depth map (Heatmap) and a score
    (Regression) per image, as a dict; confidences from the mean colour;
    thresholds nothing itself (no `config.confidence_thresh`)."""

    def __init__(self):
        self.config = None

    def predict(self, img):
        height, width = img.shape[:2]
        mean = img.reshape(-1, 3).mean(axis=0) / 255.0
        corners = [(0.1, 0.2), (0.6, 0.1), (0.7, 0.5), (0.2, 0.6)]
        return {
            "obb": fol.Polylines(
                polylines=[
                    fol.Polyline(label="plane", points=[corners], closed=True, filled=True, confidence=float(mean[0])),
                    fol.Polyline(label="ship", points=[corners[:2]], confidence=float(mean[2])),
                ]
            ),
            "depth": fol.Heatmap(map=(img.mean(axis=2) / 255.0).astype(np.float32), range=[0, 1]),
            "score": fol.Regression(value=float(mean.sum()) * width / height, confidence=float(mean[1])),
        }


class Echo(BoxesAndSize):
    """Answers at once (one empty classification per image): the cost of
    the boundary alone, for the host's benchmark."""

    @property
    def ragged_batches(self):
        return False

    def predict_all(self, imgs):
        return [fol.Classification(label="%dx%d" % img.shape[1::-1]) for img in imgs]


class Environment(Echo):
    """Labels each image with what the host's process sees: whether
    `GITHUB_TOKEN` is set, and its working folder."""

    def predict_all(self, imgs):
        seen = "token=%s cwd=%s" % ("GITHUB_TOKEN" in os.environ, os.getcwd())
        return [fol.Classification(label=seen) for img in imgs]


class Threads(Echo):
    """Labels each image with the OMP_NUM_THREADS the host runs with (zoo
    splits the CPU threads between `--workers N` hosts)."""

    def predict_all(self, imgs):
        seen = "omp=%s" % os.environ.get("OMP_NUM_THREADS")
        return [fol.Classification(label=seen) for img in imgs]


class BadOutput(BoxesAndSize):
    def predict(self, img):
        return "a string, not a label"


class ColourPrompts(ColourClassifier, fom.PromptMixin):
    """The colour classifier, embedding text prompts too: each prompt's
    length, its vowels, its first and last code points, and 1, -1 (in the
    image embeddings' six dimensions)."""

    @property
    def can_embed_prompts(self):
        return True

    def embed_prompt(self, prompt):
        return self.embed_prompts([prompt])[0]

    def embed_prompts(self, prompts):
        rows = []
        for prompt in prompts:
            vowels = sum(1 for character in prompt if character in "aeiou")
            first = ord(prompt[0]) if prompt else 0
            last = ord(prompt[-1]) if prompt else 0
            rows.append([len(prompt), vowels, first, last, 1.0, -1.0])
        return np.asarray(rows, dtype=np.float32)


class Prompted(BoxesAndSize, fom.SamplesMixin):
    """Reads each sample's prompt boxes (`needs_fields["prompt_field"]`)
    and returns one box per prompt box: its label with `!`, the same
    coordinates, and the mean of the red channel inside as confidence."""

    def __init__(self):
        BoxesAndSize.__init__(self, None)
        fom.SamplesMixin.__init__(self)

    def predict(self, img, sample=None):
        field = self.needs_fields.get("prompt_field")
        prompts = None if sample is None or field is None else sample.get_field(field)
        if not isinstance(prompts, fol.Detections):
            raise ValueError("sample has no Detections in prompt field %r" % field)
        height, width = img.shape[:2]
        out = []
        for box in prompts.detections:
            x, y, w, h = box.bounding_box
            x0, y0 = int(x * width), int(y * height)
            x1, y1 = max(x0 + 1, int((x + w) * width)), max(y0 + 1, int((y + h) * height))
            inside = img[y0:y1, x0:x1, 0]
            score = float(inside.mean()) / 255.0 if inside.size else 0.0
            out.append(fol.Detection(label=box.label + "!", bounding_box=list(box.bounding_box), confidence=score))
        return fol.Detections(detections=out)


class PromptsGetItem:
    """What `build_get_item` of a model that needs prompts returns: the
    keys FiftyOne's `GetItem` API asks for (no torch needed to read them)."""

    def __init__(self, field_mapping=None):
        self.field_mapping = {"filepath": "filepath", "prompt_field": "prompt_field"}
        self.field_mapping.update(field_mapping or {})

    @property
    def required_keys(self):
        return ["filepath", "prompt_field"]


class NeedsPrompts(Prompted, fom.SupportsGetItem):
    def build_get_item(self, field_mapping=None):
        return PromptsGetItem(field_mapping)


def load_model(model_name, model_path, **kwargs):
    with open(model_path) as f:
        if not f.read().startswith("numpy weights"):
            raise ValueError("not this source's weights: %s" % model_path)
    kind = model_name.split("@")[0].rsplit("/", 1)[-1]
    if kind == "colour":
        return ColourClassifier(
            kwargs.get("classes", ["red", "green", "blue"]),
            kwargs.get("scale", 1.0),
            kwargs.get("delay", 0.0),
            kwargs.get("die_after"),
            kwargs.get("hang_pid_file"),
        )
    if kind == "prompts":
        return ColourPrompts(kwargs.get("classes", ["red", "green", "blue"]), 1.0, 0.0, None, None)
    if kind == "boxes":
        return BoxesAndSize(kwargs.get("fail_width"))
    if kind == "echo":
        return Echo(None)
    if kind == "shapes":
        return Shapes()
    if kind == "prompted":
        return Prompted()
    if kind == "needs-prompts":
        return NeedsPrompts()
    if kind == "environment":
        return Environment(None)
    if kind == "threads":
        return Threads(None)
    if kind == "bad-output":
        return BadOutput(None)
    if kind == "not-a-model":
        return object()
    if kind == "needs-missing":
        import zoo_missing_module_for_tests  # noqa: F401
    if kind == "raises":
        raise RuntimeError("the weights of %s are corrupt" % model_name)
    if kind == "config":
        return {"type": "fiftyone.utils.torch.TorchImageModel", "config": {"labels": kwargs.get("labels", [])}}
    raise ValueError("unknown model %s" % model_name)
