"""The PyTorch/FiftyOne side of `cargo xtask bench transformers`.

Usage: transformers_bench.py REPOS PICTURES MODELS ROUNDS BATCH

Seeds full-size Hugging Face repos (once) into REPOS with transformers'
own `from_config(...).save_pretrained(...)` on the real architectures'
hyperparameters (ConvNeXt tiny at 224, ViT base patch 16 at 224, 1000
labels, seeded initialisation), then times on the JPEGs of PICTURES, in
ROUNDS interleaved rounds: transformers eager (the model's forward under
`torch.inference_mode()` on the processor's output, batches of BATCH) and
FiftyOne 1.22.1's `load_zoo_model(NAME, name_or_path=REPO).apply_model`
(batch_size=BATCH). Prints one JSON line: per model the median img/s of
each and the labels of each (per picture, sorted by file name).
"""

import json
import os
import sys
import time

import torch

MODELS = {
    "convnext-tiny-224-torch": "convnext-tiny-224",
    "vit-base-patch16-224-imagenet-torch": "vit-base-patch16-224",
}


def label_maps():
    labels = [f"class_{index:04d}" for index in range(1000)]
    return {
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
    }


def seed(repos, name):
    from transformers import (
        AutoModelForImageClassification,
        ConvNextConfig,
        ConvNextImageProcessor,
        ViTConfig,
        ViTImageProcessor,
    )

    path = os.path.join(repos, MODELS[name])
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(7)
    if name.startswith("convnext"):
        # facebook/convnext-tiny-224's hyperparameters.
        config = ConvNextConfig(
            depths=[3, 3, 9, 3],
            hidden_sizes=[96, 192, 384, 768],
            drop_path_rate=0.0,
            **label_maps(),
        )
        processor = ConvNextImageProcessor(
            size={"shortest_edge": 224}, crop_pct=0.875
        )
    else:
        # google/vit-base-patch16-224's hyperparameters.
        config = ViTConfig(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            image_size=224,
            patch_size=16,
            **label_maps(),
        )
        processor = ViTImageProcessor(size={"height": 224, "width": 224})
    model = AutoModelForImageClassification.from_config(config).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def main():
    repos, pictures, models, rounds, batch = sys.argv[1:6]
    rounds, batch = int(rounds), int(batch)
    os.makedirs(repos, exist_ok=True)
    files = sorted(
        os.path.join(pictures, name)
        for name in os.listdir(pictures)
        if name.endswith(".jpg")
    )
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import fiftyone as fo
    import fiftyone.zoo as foz

    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=path) for path in files])
    out = {}
    for name in models.split(","):
        path = seed(repos, name)
        processor = AutoImageProcessor.from_pretrained(path)
        model = AutoModelForImageClassification.from_pretrained(path).eval()
        fiftyone = foz.load_zoo_model(name, name_or_path=path)

        def eager():
            labels = []
            start = time.perf_counter()
            for at in range(0, len(files), batch):
                images = [Image.open(f).convert("RGB") for f in files[at : at + batch]]
                with torch.inference_mode():
                    inputs = processor(images=images, return_tensors="pt")
                    start_forward = time.perf_counter()
                    logits = model(**inputs).logits
                    eager.forward += time.perf_counter() - start_forward
                labels += [model.config.id2label[int(i)] for i in logits.argmax(-1)]
            return time.perf_counter() - start, labels

        def apply():
            start = time.perf_counter()
            dataset.apply_model(fiftyone, "fo", batch_size=batch, progress=False)
            elapsed = time.perf_counter() - start
            return elapsed, [
                label.label for label in dataset.sort_by("filepath").values("fo")
            ]

        # Warm-ups: one batch each.
        with torch.inference_mode():
            model(**processor(images=[Image.open(files[0]).convert("RGB")], return_tensors="pt"))
        fiftyone.predict_all([Image.open(files[0]).convert("RGB")]) if hasattr(
            fiftyone, "predict_all"
        ) else None
        rates = {"eager": [], "eager_forward": [], "fiftyone": []}
        for _ in range(rounds):
            eager.forward = 0.0
            elapsed, eager_labels = eager()
            rates["eager"].append(len(files) / elapsed)
            rates["eager_forward"].append(len(files) / eager.forward)
            elapsed, fiftyone_labels = apply()
            rates["fiftyone"].append(len(files) / elapsed)
        median = lambda values: sorted(values)[len(values) // 2]
        out[name] = {
            "eager": median(rates["eager"]),
            "eager_forward": median(rates["eager_forward"]),
            "fiftyone": median(rates["fiftyone"]),
            "eager_labels": eager_labels,
            "fiftyone_labels": fiftyone_labels,
            "repo": path,
        }
    print("@@ " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
