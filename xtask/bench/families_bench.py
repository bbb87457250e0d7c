"""PyTorch eager and FiftyOne for `cargo xtask bench families`.

Driven by `crates/cli/examples/bench_families.rs` over stdin/stdout: one
JSON command per line in, one reply per line out (prefixed `@@ `; anything
else on stdout is FiftyOne's or torch's own chatter). One process for the
whole run, so `import fiftyone.utils.torch` and each model load are paid
once, and the example can interleave zoo's rounds with these.

Usage: PYTHON families_bench.py WEIGHTS_DIR DINOV2_HUB_DIR

WEIGHTS_DIR (kept between runs) gets, once, seeded weights in the hosted
files' layouts, written by the oracle scripts' own writers:

- fiftyone/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth: detection_oracle.py's
  `formula_state_dict` (hosted key names, its class-bias tweaks so that
  untrained weights detect), as the hosted file, `torch.save` of a dict;
- fiftyone/deeplabv3_resnet50_coco-cd0a2569.pth: fiftyone_families.py's
  `network` (torch_oracle.py's formula weights, the last layer scaled so
  that masks hold several classes), its state dict with the aux head;
- fiftyone/CLIP-ViT-B-32.pt: ViT-B/32 built with FiftyOne's vendored CLIP
  code at OpenAI's sizes, formula weights, cast to half and saved as a
  TorchScript archive as clip_oracle.py saves its tiny one (OpenAI's
  `ViT-B-32.pt` format), with OpenAI's BPE vocabulary beside it;
- dinov2_vits14_pretrain.pth: the hub's `dinov2_vits14` (code from
  DINOV2_HUB_DIR, a facebookresearch/dinov2 checkout) with formula
  weights, its state dict as the hub checkpoint lays it out.

FiftyOne's model zoo dir is WEIGHTS_DIR/fiftyone and torch's hub cache
WEIGHTS_DIR/torch, so `foz.load_zoo_model(name)` finds these files and
never touches the network; the eager columns run the very torch module
FiftyOne built (`model._model`), so both hold the same weights.

Commands:
  {"op": "load", "model": NAME}
      -> {"files": {...}}
  {"op": "eager", "model": NAME, "images": [...], "batch": B,
   "threads": T, "out": PATH|null}
      -> {"rate": images/s, "seconds": s}; PyTorch eager under
         `inference_mode` on FiftyOne's preprocessed inputs (decoding and
         preprocessing not timed), after one warm-up batch; with `out`,
         writes the outputs there
  {"op": "fiftyone", "model": NAME, "images": [...], "batch": B,
   "threads": T, "out": PATH|null}
      -> {"rate": images/s, "seconds": s}; `dataset.apply_model` (or
         `compute_embeddings`) timed around the call, after a warm-up on
         one image
  {"op": "quit"}

Outputs: detections as JSON (per image, [label, [x, y, w, h] relative,
confidence], FiftyOne's `confidence_thresh` applied); masks ([N, H, W]
int64) and embeddings ([N, D] float32) as raw little-endian C-order
bytes, their shape in the reply.
"""

import collections
import json
import os
import shutil
import sys
import tempfile
import time

WEIGHTS = os.path.abspath(sys.argv[1])
HUB = os.path.abspath(sys.argv[2])
FIFTYONE_DIR = os.path.join(WEIGHTS, "fiftyone")
TORCH_HOME = os.path.join(WEIGHTS, "torch")
DB = tempfile.mkdtemp(prefix="zoo-bench-families-db-")
os.environ["FIFTYONE_MODEL_ZOO_DIR"] = FIFTYONE_DIR
os.environ["FIFTYONE_DATABASE_DIR"] = DB
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["TORCH_HOME"] = TORCH_HOME
os.environ.setdefault("XFORMERS_DISABLED", "1")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
sys.path.insert(0, FIXTURES)
# The oracle scripts read their output folder from argv when imported.
sys.argv = [sys.argv[0], WEIGHTS, HUB]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import fiftyone as fo  # noqa: E402
import fiftyone.utils.torch as fout  # noqa: E402
import fiftyone.zoo as foz  # noqa: E402

from detection_oracle import MODELS as DETECTION_MODELS  # noqa: E402
from detection_oracle import formula_state_dict  # noqa: E402
from fiftyone_families import network as family_network  # noqa: E402
from torch_oracle import formula_weights  # noqa: E402

fo.config.show_progress_bars = False

DETECTOR = "faster-rcnn-resnet50-fpn-coco-torch"
SEGMENTER = "deeplabv3-resnet50-coco-torch"
CLIP = "clip-vit-base32-torch"
DINOV2 = "dinov2-vits14-torch"
KINDS = {DETECTOR: "detector", SEGMENTER: "segmenter", CLIP: "clip", DINOV2: "dinov2"}
# Bump when a writer changes: the cached files are written again.
STAMP = "families-weights-1"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def reply(value):
    sys.stdout.write("@@ " + json.dumps(value) + "\n")
    sys.stdout.flush()


def hosted_file(name):
    return foz.get_zoo_model(name).filename


def link(source, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        os.remove(target)
    os.link(source, target)


def write_detector():
    builder, weights, tweaks = DETECTION_MODELS[DETECTOR]
    path = os.path.join(FIFTYONE_DIR, hosted_file(DETECTOR))
    torch.save(formula_state_dict(builder, tweaks), path)
    return path


def write_segmenter():
    path = os.path.join(FIFTYONE_DIR, hosted_file(SEGMENTER))
    torch.save(family_network("deeplabv3_resnet50").state_dict(), path)
    return path


class WithoutScalars(torch.nn.Module):
    """clip_oracle.py's wrapper: `formula_weights` cannot shape
    `logit_scale` (0-dimensional)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def state_dict(self, *args, **kwargs):
        return {k: v for k, v in self.model.state_dict().items() if v.dim() > 0}

    def load_state_dict(self, state, strict=True):
        return self.model.load_state_dict(state, strict=False)


def write_clip():
    from fiftyone.utils.clip.model import CLIP as ClipNet
    from fiftyone.utils.clip.model import convert_weights

    # OpenAI's ViT-B/32 sizes (the `ViT-B-32.pt` state dict's shapes).
    model = ClipNet(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=32,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    )
    formula_weights(WithoutScalars(model))
    model.eval()
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(1 / 0.07)))
    convert_weights(model)
    image = torch.zeros(1, 3, 224, 224, dtype=torch.half)
    text = torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace_module(
        model, {"encode_image": (image,), "encode_text": (text,)}, check_trace=False
    )
    path = os.path.join(FIFTYONE_DIR, hosted_file(CLIP))
    torch.jit.save(traced, path)
    config = foz.get_zoo_model(CLIP).default_deployment_config_dict["config"]
    shutil.copyfile(
        os.path.join(FIXTURES, "..", "..", "crates", "torch-backend", "tests", "fixtures", "clip",
                     "bpe_simple_vocab_16e6.txt.gz"),
        os.path.join(FIFTYONE_DIR, config["tokenizer_base_filename"]),
    )
    return path


_hub_load = torch.hub.load


def local_hub_load(repo_or_dir, model, *args, **kwargs):
    """dinov2_oracle.py's patch of `torch.hub.load` (FiftyOne's
    `load_torch_hub_raw_model` calls it): the hub's code from HUB, no
    download, formula weights."""
    assert repo_or_dir == "facebookresearch/dinov2", repo_or_dir
    kwargs["pretrained"] = False
    network = _hub_load(HUB, model, *args, source="local", **kwargs)
    return formula_weights(network)


def write_dinov2():
    path = os.path.join(WEIGHTS, "dinov2_vits14_pretrain.pth")
    torch.save(local_hub_load("facebookresearch/dinov2", "dinov2_vits14").state_dict(), path)
    return path


WRITERS = {DETECTOR: write_detector, SEGMENTER: write_segmenter, CLIP: write_clip, DINOV2: write_dinov2}


def weights_file(name):
    """The model's seeded weights, written once (a stamp beside them says
    which writers made them)."""
    os.makedirs(FIFTYONE_DIR, exist_ok=True)
    stamp = os.path.join(WEIGHTS, name + ".stamp")
    if name == DINOV2:
        path = os.path.join(WEIGHTS, "dinov2_vits14_pretrain.pth")
    else:
        path = os.path.join(FIFTYONE_DIR, hosted_file(name))
    if not (os.path.exists(stamp) and open(stamp).read() == STAMP and os.path.exists(path)):
        log("writing seeded weights for", name)
        started = time.perf_counter()
        path = WRITERS[name]()
        with open(stamp, "w") as f:
            f.write(STAMP)
        log("  %.1f s" % (time.perf_counter() - started))
    if name in (DETECTOR, SEGMENTER):
        # Where torchvision's named weights look (FiftyOne reads this one).
        link(path, os.path.join(TORCH_HOME, "hub", "checkpoints", os.path.basename(path)))
    return path


MODELS = {}


def load(name):
    """FiftyOne's own model for `name` (its zoo entry, seeded weights)."""
    if name in MODELS:
        return MODELS[name]
    path = weights_file(name)
    if name == DINOV2:
        torch.hub.load = local_hub_load
    model = foz.load_zoo_model(name, device="cpu")
    files = {"weights": path}
    if name == CLIP:
        config = foz.get_zoo_model(CLIP).default_deployment_config_dict["config"]
        files["tokenizer"] = os.path.join(FIFTYONE_DIR, config["tokenizer_base_filename"])
    MODELS[name] = (model, files)
    return MODELS[name]


def inputs(model, paths):
    """FiftyOne's preprocessing of each image (its loader, its transforms)."""
    images = [fout._load_image(p, use_numpy=False, force_rgb=True) for p in paths]
    return images, [model.transforms(img) for img in images]


def eager(name, paths, batch, out):
    model, _ = load(name)
    net = model._model
    kind = KINDS[name]
    images, tensors = inputs(model, paths)

    def forward(chunk):
        if kind == "detector":
            return net(list(chunk))
        x = torch.stack(list(chunk))
        if kind == "segmenter":
            return net(x)["out"].argmax(1)
        if kind == "clip":
            return net.encode_image(x)
        return net(x)

    results = []
    with torch.inference_mode():
        forward(tensors[:batch])
        started = time.perf_counter()
        for i in range(0, len(tensors), batch):
            results.append(forward(tensors[i : i + batch]))
        seconds = time.perf_counter() - started
    shape = write_eager(kind, model, images, results, out) if out else None
    return {"rate": len(paths) / seconds, "seconds": seconds, "shape": shape}


def write_eager(kind, model, images, results, out):
    if kind == "detector":
        threshold = model.config.confidence_thresh
        classes = model.classes
        found = []
        flat = [d for chunk in results for d in chunk]
        for img, d in zip(images, flat):
            w, h = img.size
            rows = []
            for box, label, score in zip(d["boxes"].tolist(), d["labels"].tolist(), d["scores"].tolist()):
                if threshold is not None and score < threshold:
                    continue
                x1, y1, x2, y2 = box
                rows.append([classes[label], [x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h], score])
            found.append(rows)
        with open(out, "w") as f:
            json.dump(found, f)
    elif kind == "segmenter":
        return write_array(out, torch.cat(results).numpy().astype("<i8"))
    else:
        return write_array(out, torch.cat(results).float().numpy().astype("<f4"))
    return None


def write_array(out, array):
    """Raw C-order little-endian bytes; the shape goes in the reply."""
    with open(out, "wb") as f:
        f.write(np.ascontiguousarray(array).tobytes())
    return list(array.shape)


DATASETS = {}


def fiftyone(name, paths, batch, out):
    model, _ = load(name)
    kind = KINDS[name]
    key = tuple(paths)
    if key not in DATASETS:
        dataset = fo.Dataset()
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        DATASETS[key] = dataset
    dataset = DATASETS[key]
    embeds = kind in ("clip", "dinov2")
    warm = dataset.limit(1)
    # One field per model kind: the same images serve every family, and a
    # field keeps the label type it was first given.
    warm_field, field = "warm_" + kind, "pred_" + kind
    if embeds:
        warm.compute_embeddings(model, batch_size=batch, progress=False)
    else:
        warm.apply_model(model, label_field=warm_field, batch_size=batch, progress=False)
    started = time.perf_counter()
    if embeds:
        embeddings = dataset.compute_embeddings(model, batch_size=batch, progress=False)
    else:
        dataset.apply_model(model, label_field=field, batch_size=batch, progress=False)
    seconds = time.perf_counter() - started
    shape = None
    if out:
        if kind == "detector":
            found = []
            for detections in dataset.values(field):
                found.append(
                    [[d.label, [float(v) for v in d.bounding_box], float(d.confidence)]
                     for d in (detections.detections if detections else [])]
                )
            with open(out, "w") as f:
                json.dump(found, f)
        elif kind == "segmenter":
            masks = np.stack([np.asarray(s.mask) for s in dataset.values(field)])
            shape = write_array(out, masks.astype("<i8"))
        else:
            shape = write_array(out, np.asarray(embeddings, dtype="<f4"))
    return {"rate": len(paths) / seconds, "seconds": seconds, "shape": shape,
            "ragged": bool(model.ragged_batches)}


def main():
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            break
        try:
            if "threads" in command:
                torch.set_num_threads(int(command["threads"]))
            if op == "load":
                _, files = load(command["model"])
                reply({"files": files, "threads": torch.get_num_threads()})
            elif op == "eager":
                reply(eager(command["model"], command["images"], command["batch"], command.get("out")))
            elif op == "fiftyone":
                reply(fiftyone(command["model"], command["images"], command["batch"], command.get("out")))
            else:
                reply({"error": "unknown op %r" % op})
        except Exception as error:  # reported to the example, which says so
            import traceback

            traceback.print_exc()
            reply({"error": "%s: %s" % (type(error).__name__, error)})
    for dataset in DATASETS.values():
        dataset.delete()
    shutil.rmtree(DB, ignore_errors=True)


if __name__ == "__main__":
    main()
