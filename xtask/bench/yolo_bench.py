"""Ultralytics' own predictor and FiftyOne for `cargo xtask bench yolo`.

Driven by `crates/cli/examples/bench_yolo.rs` over stdin/stdout: one JSON
command per line in, one reply per line out (prefixed `@@ `; anything else
on stdout is Ultralytics' or FiftyOne's own chatter). One process for the
whole run, so imports and model loads are paid once, and the example can
interleave zoo's rounds with these.

Usage: PYTHON yolo_bench.py WEIGHTS_DIR

WEIGHTS_DIR (kept between runs) gets, once per stem, a full-size seeded
checkpoint in Ultralytics' release format, written by
`xtask/fixtures/yolo_oracle.py`'s own `seeded_model` and `save_release`
(Ultralytics builds the network from its yaml; random weights, batch norm
statistics calibrated on smooth pictures, two class biases raised so that
it detects; a training checkpoint passed through Ultralytics'
`strip_optimizer`). FiftyOne's model zoo dir is WEIGHTS_DIR/fiftyone, the
same file linked there under the entry's `base_filename`, so that
`foz.load_zoo_model(name)` finds it and never touches the network.

Commands:
  {"op": "seed", "model": NAME, "stem": STEM}
      -> {"weights": PATH}; writes WEIGHTS_DIR/STEM.pt when missing
  {"op": "ultralytics", "model": NAME, "images": [...], "batch": B,
   "threads": T}
      -> {"rate": images/s, "seconds": s, "labels": [...]}; `YOLO(weights)
         .predict(images, batch=B, stream=True)` with its defaults
         (`conf` 0.25, `iou` 0.7, rectangular letterbox of same-shaped
         batches, `retina_masks` off), timed around the whole predict after
         a warm-up on one image
  {"op": "fiftyone", "model": NAME, "images": [...], "batch": B,
   "threads": T}
      -> {"rate": images/s, "seconds": s, "labels": [...]};
         `dataset.apply_model(foz.load_zoo_model(NAME), batch_size=B)` timed
         around the call, after a warm-up on one image
  {"op": "quit"}

Labels: per image, in the images' order, `[label, [x, y, w, h] relative,
confidence, has_mask]` per detection.
"""

import json
import os
import shutil
import sys
import tempfile
import time

WEIGHTS = os.path.abspath(sys.argv[1])
FIFTYONE_DIR = os.path.join(WEIGHTS, "fiftyone")
DB = tempfile.mkdtemp(prefix="zoo-bench-yolo-db-")
os.environ["FIFTYONE_MODEL_ZOO_DIR"] = FIFTYONE_DIR
os.environ["FIFTYONE_DATABASE_DIR"] = DB
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["YOLO_OFFLINE"] = "1"

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
sys.path.insert(0, FIXTURES)

import torch  # noqa: E402

import fiftyone as fo  # noqa: E402
import fiftyone.zoo as foz  # noqa: E402
import yolo_oracle  # noqa: E402

fo.config.show_progress_bars = False

# Biases for the scales the oracle script does not seed (its own table has
# the others): the class branch's gain, how much every class's bias is
# lowered and how much person's and dog's are raised, so that a few to
# some tens of boxes per 640x480 picture pass the 0.25 threshold.
yolo_oracle.BIAS.setdefault(("yolo11", "s"), (0.01, 0.0, 8.0, 7.6))
yolo_oracle.BIAS.setdefault(("yolo26", "m"), (0.01, 0.0, 7.2, 7.0))

# Release stems: (generation, scale) of the oracle script's table.
STEMS = {
    "yolov8n": ("yolov8", "n"),
    "yolo11s": ("yolo11", "s"),
    "yolo26m": ("yolo26", "m"),
    "yolov8n-seg": ("yolov8-seg", "n"),
    "yolo11n-seg": ("yolo11-seg", "n"),
}
# Bump when the seeding changes: the cached files are written again.
STAMP = "yolo-bench-weights-1"

FIFTYONE = {}
ULTRALYTICS = {}
DATASETS = {}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def reply(value):
    sys.stdout.write("@@ " + json.dumps(value) + "\n")
    sys.stdout.flush()


def zoo_file(name):
    """Where FiftyOne's zoo keeps `name`'s weights."""
    path = foz.get_zoo_model(name).filename
    return path if os.path.isabs(path) else os.path.join(FIFTYONE_DIR, path)


def seed(name, stem):
    path = os.path.join(WEIGHTS, stem + ".pt")
    stamp = path + ".stamp"
    fresh = os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == STAMP
    if not fresh:
        generation, scale = STEMS[stem]
        log("seeding %s (Ultralytics, from its yaml)" % stem)
        task = yolo_oracle.GENERATIONS[generation][3]
        model = yolo_oracle.seeded_model(generation, scale, 0)
        yolo_oracle.save_release(model, path, stem, task)
        with open(stamp, "w") as f:
            f.write(STAMP)
    target = zoo_file(name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        os.remove(target)
    os.link(path, target)
    return {"weights": path}


def ultralytics(name, paths, batch):
    from ultralytics import YOLO

    if name not in ULTRALYTICS:
        ULTRALYTICS[name] = YOLO(zoo_file(name))
    model = ULTRALYTICS[name]
    for _ in model.predict(paths[:1], batch=1, stream=True, verbose=False):
        pass
    labels = []
    started = time.perf_counter()
    results = list(model.predict(paths, batch=batch, stream=True, verbose=False))
    seconds = time.perf_counter() - started
    for result in results:
        names = result.names
        boxes = result.boxes
        found = []
        has_masks = result.masks is not None
        for (x, y, w, h), conf, cls in zip(boxes.xywhn.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
            found.append([names[int(cls)], [x - w / 2, y - h / 2, w, h], conf, has_masks])
        labels.append(found)
    return {"rate": len(paths) / seconds, "seconds": seconds, "labels": labels}


def fiftyone(name, paths, batch):
    if name not in FIFTYONE:
        FIFTYONE[name] = foz.load_zoo_model(name, device="cpu")
    model = FIFTYONE[name]
    key = tuple(paths)
    if key not in DATASETS:
        dataset = fo.Dataset()
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        DATASETS[key] = dataset
    dataset = DATASETS[key]
    # A field per model: a field keeps the label type it was first given.
    field = "pred_" + name.replace("-", "_")
    dataset.limit(1).apply_model(model, label_field="warm_" + field, batch_size=batch, progress=False)
    started = time.perf_counter()
    dataset.apply_model(model, label_field=field, batch_size=batch, progress=False)
    seconds = time.perf_counter() - started
    labels = []
    for detections in dataset.values(field):
        labels.append(
            [[d.label, [float(v) for v in d.bounding_box], float(d.confidence), d.mask is not None]
             for d in (detections.detections if detections else [])]
        )
    return {"rate": len(paths) / seconds, "seconds": seconds, "labels": labels}


def main():
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            break
        try:
            if "threads" in command:
                torch.set_num_threads(int(command["threads"]))
            if op == "seed":
                reply(seed(command["model"], command["stem"]))
            elif op == "ultralytics":
                reply(ultralytics(command["model"], command["images"], command["batch"]))
            elif op == "fiftyone":
                reply(fiftyone(command["model"], command["images"], command["batch"]))
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
