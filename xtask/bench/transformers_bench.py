"""The PyTorch/FiftyOne side of `cargo xtask bench transformers`.

Usage: transformers_bench.py REPOS PICTURES MODELS ROUNDS BATCH FIXTURES

Seeds full-size Hugging Face repos (once) into REPOS with transformers'
own `from_config(...).save_pretrained(...)` on the real architectures'
hyperparameters (ConvNeXt tiny at 224, ViT base patch 16 at 224,
EfficientNet-B0 at 224, 1000 labels; SigLIP 2 base patch 16 at 224 with
the tokenizer of zoo's tiny committed SigLIP fixture, FIXTURES, and its
[`CLASSES`]; seeded initialisation), then times on the JPEGs of PICTURES,
in ROUNDS interleaved rounds: transformers eager (the model's forward under
`torch.inference_mode()` on the processor's output, batches of BATCH; for
SigLIP the full `SiglipModel` forward on the class prompts and the images,
as FiftyOne's class runs it) and FiftyOne 1.22.1's `load_zoo_model(NAME,
name_or_path=REPO).apply_model` (batch_size=BATCH). Prints one JSON line:
per model the median img/s of each and the labels of each (per picture,
sorted by file name).
"""

import json
import os
import sys
import time

import torch

MODELS = {
    "convnext-tiny-224-torch": "convnext-tiny-224",
    "vit-base-patch16-224-imagenet-torch": "vit-base-patch16-224",
    "efficientnet-b0-imagenet-torch": "efficientnet-b0",
    "siglip-base-patch16-224-torch": "siglip2-base-patch16-224",
}

# The zero-shot classes (the Rust side passes the same).
CLASSES = ["cat", "dog", "bird", "car", "tree", "house", "person", "boat"]

# The manifest's processor kwargs for siglip-base-patch16-224-torch.
SIGLIP_KWARGS = {"padding": "max_length", "max_length": 64}


def label_maps():
    labels = [f"class_{index:04d}" for index in range(1000)]
    return {
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
    }


def seed_siglip(path, fixtures):
    """SigLIP 2 base (google/siglip2-base-patch16-224's towers) with the
    tiny fixture's tokenizer (its 388-token vocabulary: the image tower,
    what the bench times, is full size)."""
    import shutil

    from transformers import SiglipConfig, SiglipModel

    fixture = os.path.join(fixtures, "zero_shot", "siglip")
    tower = dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    )
    config = SiglipConfig(
        text_config=dict(
            tower, vocab_size=388, max_position_embeddings=64, projection_size=768
        ),
        vision_config=dict(tower, image_size=224, patch_size=16),
    )
    SiglipModel(config).eval().save_pretrained(path)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(fixture, name), os.path.join(path, name))
    with open(os.path.join(fixture, "processor_config.json")) as file:
        processor = json.load(file)
    processor["image_processor"]["size"] = {"height": 224, "width": 224}
    with open(os.path.join(path, "processor_config.json"), "w") as file:
        json.dump(processor, file, indent=2)


def seed(repos, name, fixtures):
    from transformers import (
        AutoModelForImageClassification,
        ConvNextConfig,
        ConvNextImageProcessor,
        EfficientNetConfig,
        EfficientNetImageProcessor,
        ViTConfig,
        ViTImageProcessor,
    )

    path = os.path.join(repos, MODELS[name])
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(7)
    if name.startswith("siglip"):
        seed_siglip(path, fixtures)
        return path
    if name.startswith("efficientnet"):
        # google/efficientnet-b0's hyperparameters and processor (the
        # fixture's, at 224: NEAREST, no crop).
        config = EfficientNetConfig(
            width_coefficient=1.0,
            depth_coefficient=1.0,
            image_size=224,
            dropout_rate=0.2,
            hidden_dim=1280,
            **label_maps(),
        )
        with open(
            os.path.join(fixtures, "transformers", "efficientnet", "preprocessor_config.json")
        ) as file:
            settings = json.load(file)
        settings.pop("image_processor_type")
        settings["size"] = {"height": 224, "width": 224}
        processor = EfficientNetImageProcessor(**settings)
    elif name.startswith("convnext"):
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
    repos, pictures, models, rounds, batch, fixtures = sys.argv[1:7]
    rounds, batch = int(rounds), int(batch)
    os.makedirs(repos, exist_ok=True)
    files = sorted(
        os.path.join(pictures, name)
        for name in os.listdir(pictures)
        if name.endswith(".jpg")
    )
    from PIL import Image
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoProcessor,
        SiglipModel,
    )

    import fiftyone as fo
    import fiftyone.zoo as foz

    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=path) for path in files])
    out = {}
    for name in models.split(","):
        path = seed(repos, name, fixtures)
        zero_shot = name.startswith("siglip")
        if zero_shot:
            processor = AutoProcessor.from_pretrained(path)
            model = SiglipModel.from_pretrained(path).eval()
            fiftyone = foz.load_zoo_model(name, name_or_path=path, classes=CLASSES)
            prompts = processor(
                text=CLASSES, return_tensors="pt", **SIGLIP_KWARGS
            )["input_ids"]
            id2label = dict(enumerate(CLASSES))
        else:
            processor = AutoImageProcessor.from_pretrained(path)
            model = AutoModelForImageClassification.from_pretrained(path).eval()
            fiftyone = foz.load_zoo_model(name, name_or_path=path)
            id2label = model.config.id2label

        def forward(images):
            if zero_shot:
                inputs = processor(images=images, return_tensors="pt")
                start_forward = time.perf_counter()
                logits = model(
                    input_ids=prompts, pixel_values=inputs["pixel_values"]
                ).logits_per_image
            else:
                inputs = processor(images=images, return_tensors="pt")
                start_forward = time.perf_counter()
                logits = model(**inputs).logits
            eager.forward += time.perf_counter() - start_forward
            return logits

        def eager():
            labels = []
            start = time.perf_counter()
            for at in range(0, len(files), batch):
                images = [Image.open(f).convert("RGB") for f in files[at : at + batch]]
                with torch.inference_mode():
                    logits = forward(images)
                labels += [id2label[int(i)] for i in logits.argmax(-1)]
            return time.perf_counter() - start, labels

        def apply():
            start = time.perf_counter()
            dataset.apply_model(fiftyone, "fo", batch_size=batch, progress=False)
            elapsed = time.perf_counter() - start
            return elapsed, [
                label.label for label in dataset.sort_by("filepath").values("fo")
            ]

        # Warm-ups: one batch each.
        eager.forward = 0.0
        with torch.inference_mode():
            forward([Image.open(files[0]).convert("RGB")])
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
