# zoo's model host: imports a source's `__init__.py`, calls its
# `load_model(model_name, model_path, **kwargs)` and, when that returns a
# `fiftyone.core.models.Model`, serves it batch by batch. It is embedded in
# zoo and passed with `-c`; nothing is written in the source folder.
#
# Protocol, on the process's own stdin/stdout (the model's prints go to
# stderr): every message is a frame, two little-endian u64 (the JSON
# header's length, the payload's length), the JSON header, the payload.
# Pixels travel as raw uint8 HWC RGB bytes and embeddings as float32 bytes
# in payloads; labels as `Label.to_dict(extended=True)` in the header.
#
# argv: source_dir model_path parent_pid threads (`threads`: this host's
# share of the CPU threads with `--workers N`, or empty; zoo also sets
# OMP_NUM_THREADS to it before the interpreter starts). The first frame on
# stdin holds the model's name and `load_model`'s keyword arguments
# (`{"model_name": ..., "kwargs": {...}}`): they can be any size, which a
# command line cannot.
#
# Models that FiftyOne's `apply_model` feeds through its DataLoader (a
# `SupportsGetItem` or `TorchModelMixin`) are fed here as it feeds them: each
# array becomes the RGB PIL image its loader reads from the file, then the
# model's `GetItem` or `transforms` run on it, FiftyOne's collate makes the
# batch, and `predict_all` / `embed_all` get it with `preprocess` False.
#
# Prompts (FiftyOne's `apply_model(..., prompt_field=FIELD)`): `setup`
# names the field and each `predict` request carries its samples (id, file
# path, and the label zoo read from that field, as FiftyOne's JSON). The
# model gets them as `apply_model` hands them over: a `SamplesMixin` gets
# `needs_fields` and in-memory `fo.Sample`s holding the label
# (`Label.from_dict`), a `SupportsGetItem` gets its `field_mapping` and its
# own `GetItem` runs on the sample dict FiftyOne's dataset would build,
# with the file read replaced by the decoded image (`Decoded`).
import importlib.util
import json
import os
import signal
import struct
import sys
import threading
import time
import traceback

try:
    import fcntl

    # Bigger pipes (1 MiB, Linux's F_SETPIPE_SZ): fewer switches per batch.
    for _fd in (0, 1):
        fcntl.fcntl(_fd, 1031, 1 << 20)
except (ImportError, OSError):
    pass
protocol_in = os.fdopen(os.dup(0), "rb", buffering=0)
protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)

source_dir, model_path, parent, threads = sys.argv[1:5]
parent = int(parent)
threads = int(threads) if threads else None


def _watch_parent():
    # zoo killed (even with SIGKILL): take the whole process group down,
    # so nothing the model started outlives it.
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)


threading.Thread(target=_watch_parent, daemon=True).start()


def read_exact(size):
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = protocol_in.readinto(view[got:])
        if not count:
            raise EOFError
        got += count
    return buffer


def write_all(data):
    view = memoryview(data)
    while len(view):
        count = protocol_out.write(view)
        view = view[count:]


def receive():
    header_length, payload_length = struct.unpack("<QQ", read_exact(16))
    header = json.loads(bytes(read_exact(header_length)))
    payload = read_exact(payload_length) if payload_length else bytearray()
    return header, payload


def send(header, payload=b""):
    data = json.dumps(header).encode()
    write_all(struct.pack("<QQ", len(data), len(payload)) + data)
    if len(payload):
        write_all(payload)


def describe(error):
    return {
        "error": "%s: %s" % (type(error).__name__, error),
        "exception": type(error).__name__,
        "module": getattr(error, "name", None) if isinstance(error, ImportError) else None,
        "traceback": traceback.format_exc(limit=-12),
    }


def load():
    request, _ = receive()
    kwargs = request["kwargs"]
    name = "zoo_hosted_source"
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(source_dir, "__init__.py"), submodule_search_locations=[source_dir]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    hook = getattr(module, "load_model", None)
    if hook is None:
        raise LookupError("__init__.py defines no function `load_model`")
    return hook(request["model_name"], model_path, **kwargs)


def has_class(model, name):
    return any(cls.__name__ == name for cls in type(model).__mro__)


def flag(model, name, default=False):
    try:
        return bool(getattr(model, name))
    except Exception:
        return default


def start():
    """Loads the model; answers with its description, or a config, or why not."""
    try:
        result = load()
    except BaseException as error:
        send(dict(kind="error", stage="load_model", **describe(error)))
        return None
    if isinstance(result, dict):
        send({"kind": "config", "config": result})
        return None
    try:
        import fiftyone.core.models as fom
    except BaseException as error:
        send(dict(kind="error", stage="import fiftyone", **describe(error)))
        return None
    if not isinstance(result, fom.Model):
        send(
            {
                "kind": "error",
                "stage": "load_model",
                "error": "load_model returned a `%s`, which is neither a `fiftyone.core.models.Model` nor a JSON config"
                % type(result).__name__,
            }
        )
        return None
    try:
        media_type = result.media_type
    except Exception:
        media_type = "image"
    if media_type != "image":
        send({"kind": "error", "stage": "load_model", "error": "zoo hosts image models; this one's `media_type` is `%s`" % media_type})
        return None
    config = getattr(result, "config", None)
    device = model_device(result)
    send(
        {
            "kind": "model",
            "device": device,
            "threads": split_threads(device),
            "data_loader": isinstance(result, (fom.SupportsGetItem, fom.TorchModelMixin)),
            "class": "%s.%s" % (type(result).__module__, type(result).__qualname__),
            "has_logits": flag(result, "has_logits"),
            "has_embeddings": flag(result, "has_embeddings"),
            "can_embed_prompts": isinstance(result, fom.PromptMixin) and flag(result, "can_embed_prompts"),
            "ragged_batches": flag(result, "ragged_batches", True),
            "torch": has_class(result, "TorchModelMixin"),
            "thresholds_itself": config is not None and hasattr(config, "confidence_thresh"),
            "samples_mixin": isinstance(result, fom.SamplesMixin),
            "prompt_get_item": get_item_takes_prompts(result),
            "required_prompt_keys": required_prompt_keys(result),
        }
    )
    return result


# A field name no dataset has: what probes whether a `GetItem` takes a
# prompt field (FiftyOne's `GetItem.field_mapping` refuses unknown keys).
PROBE_FIELD = "zoo-probe:prompt_field"


def get_item_takes_prompts(model):
    """Whether `apply_model(..., prompt_field=F)` reaches the model's
    `GetItem` (a `SupportsGetItem` that is no `SamplesMixin` gets
    `field_mapping={"prompt_field": F}`, which its `GetItem` must take)."""
    import fiftyone.core.models as fom

    if not isinstance(model, fom.SupportsGetItem) or isinstance(model, fom.SamplesMixin):
        return False
    try:
        get_item = model.build_get_item(field_mapping={"prompt_field": PROBE_FIELD})
        return PROBE_FIELD in get_item.field_mapping.values()
    except Exception:
        return False


def required_prompt_keys(model):
    """The keys besides `filepath` and `id` that the model's `GetItem`
    requires when no prompt field is given: it cannot run without one."""
    import fiftyone.core.models as fom

    if not isinstance(model, fom.SupportsGetItem):
        return []
    try:
        keys = model.build_get_item(field_mapping=None).required_keys
    except Exception:
        return []
    return [key for key in keys if key not in ("filepath", "id")]


def model_device(model):
    """The torch device the model runs on (`cpu`, `cuda:0`), if it says."""
    for name in ("_device", "device"):
        try:
            device = getattr(model, name, None)
        except Exception:
            device = None
        if device is not None:
            return str(device)
    return None


def split_threads(device):
    """Gives torch this host's share of the CPU threads (not for a model on
    a GPU); returns the intra-op threads torch runs with, else the
    OMP_NUM_THREADS this host runs with."""
    torch = sys.modules.get("torch")
    on_gpu = device is not None and not device.startswith("cpu")
    if torch is not None:
        if threads is not None and not on_gpu and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return torch.get_num_threads()
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


class Feeder:
    """FiftyOne's DataLoader path of `apply_model` and `compute_embeddings`
    (`fiftyone.core.models._make_data_loader`), on decoded arrays instead of
    files: what its loader would read from the file (an RGB PIL image, or
    the RGB array when it reads numpy), then the model's `GetItem` or
    `transforms`, then its `ErrorHandlingCollate`."""

    def __init__(self, model, field_mapping=None, prompt_field=None):
        import fiftyone.core.models as fom

        self.torch_model = isinstance(model, fom.TorchModelMixin)
        self.prompted = prompt_field is not None and isinstance(model, fom.SupportsGetItem)
        use_numpy = not self.torch_model
        if self.prompted and isinstance(model, fom.SupportsGetItem):
            self.item = self._prompted_get_item(model.build_get_item(field_mapping=field_mapping), prompt_field)
        elif isinstance(model, fom.SupportsGetItem):
            import fiftyone.utils.torch as fout

            get_item = model.build_get_item(field_mapping=None)
            if not isinstance(get_item, fout.ImageGetItem) or type(get_item).__call__ is not fout.ImageGetItem.__call__:
                raise TypeError(
                    "zoo cannot feed this model: its `build_get_item()` returns a `%s`, which reads the fields %s "
                    "of FiftyOne samples rather than decoded images (zoo feeds `ImageGetItem`s and `TorchModelMixin` transforms)"
                    % (type(get_item).__name__, list(get_item.required_keys))
                )
            self.item = self._get_item(get_item)
        else:
            self.item = self._transforms(model.transforms)
        user_collate = model.collate_fn if getattr(model, "has_collate_fn", False) else None
        self.collate = fom.ErrorHandlingCollate(
            False, ragged_batches=model.ragged_batches, use_numpy=use_numpy, user_collate_fn=user_collate
        )

    @staticmethod
    def _loaded(array, use_numpy):
        # FiftyOne's `_load_image(path, use_numpy, force_rgb=True)`.
        if use_numpy:
            return array
        from PIL import Image

        return Image.fromarray(array)

    def _get_item(self, get_item):
        # `ImageGetItem.__call__`, with the image already decoded.
        def item(array):
            img = self._loaded(array, get_item.use_numpy)
            if get_item.transform is not None:
                img = get_item.transform(img)
            if get_item.raw_inputs:
                return img
            if get_item.using_half_precision:
                import torch

                if torch.is_tensor(img):
                    img = img.half()
            return img

        return item

    @staticmethod
    def _prompted_get_item(get_item, prompt_field):
        # FiftyOne's `FiftyOneTorchDataset` hands the `GetItem` a dict of
        # its `field_mapping`'s keys and the sample's values of their
        # fields; zoo has the file (decoded), the id and the prompt field.
        mapping = dict(get_item.field_mapping)
        unknown = [field for field in mapping.values() if field not in ("filepath", "id", prompt_field)]
        if unknown:
            raise TypeError(
                "zoo cannot feed this model: its `GetItem` (`%s`) reads the fields %s, and zoo reads only the file, "
                "the id and the prompt field `%s`" % (type(get_item).__name__, unknown, prompt_field)
            )

        def item(array, sample):
            values = {
                "filepath": Decoded(array, sample["filepath"]),
                "id": sample["id"],
                prompt_field: sample["prompt"],
            }
            return get_item({key: values[field] for key, field in mapping.items()})

        return item

    def _transforms(self, transform):
        # `TorchImageDataset.__getitem__` (`use_numpy` False for torch models).
        def item(array):
            img = self._loaded(array, not self.torch_model)
            return img if transform is None else transform(img)

        return item

    def __call__(self, imgs, samples=None):
        if self.prompted and samples is not None:
            return self.collate([self.item(img, sample) for img, sample in zip(imgs, samples)])
        return self.collate([self.item(img) for img in imgs])


class Decoded:
    """Stands for a sample's file where a `GetItem` reads it: the image zoo
    decoded (with Pillow's bytes), which `fiftyone.utils.torch._load_image`
    returns as it would the file's (see `read_decoded`)."""

    def __init__(self, array, filepath):
        self.array = array
        self.filepath = filepath

    def __fspath__(self):
        return self.filepath


def read_decoded():
    """Makes FiftyOne's image reader (`fiftyone.utils.torch._load_image`,
    what its `GetItem`s call) return a `Decoded` image's pixels, as the RGB
    PIL image or array it reads from the file; other paths read as before."""
    import fiftyone.utils.torch as fout

    original = fout._load_image
    if getattr(original, "zoo_decoded", False):
        return

    def load_image(image_path, use_numpy, force_rgb):
        if isinstance(image_path, Decoded):
            return Feeder._loaded(image_path.array, use_numpy)
        return original(image_path, use_numpy, force_rgb)

    load_image.zoo_decoded = True
    fout._load_image = load_image


def prompt_samples(header, prompt_field):
    """The samples of a `predict` request, with their prompt labels
    deserialised by FiftyOne (`Label.from_dict`), as `FiftyOneTorchDataset`
    and `SamplesMixin` models read them: per sample `{"id", "filepath",
    "prompt", "sample"}` (`sample`: an in-memory `fo.Sample` holding the
    label in the prompt field)."""
    import fiftyone.core.labels as fol
    import fiftyone.core.sample as fos

    out = []
    for item in header.get("samples") or []:
        value = item.get("prompt")
        label = None
        if value is not None:
            try:
                label = fol.Label.from_dict(value, extended=True)
            except Exception as error:
                raise ValueError(
                    "the label of `%s` in field `%s` is no FiftyOne label: %s: %s"
                    % (item.get("filepath"), prompt_field, type(error).__name__, error)
                )
            if not isinstance(label, fol.Label):
                raise ValueError(
                    "the value of `%s` in field `%s` is a `%s`, not a FiftyOne label"
                    % (item.get("filepath"), prompt_field, type(label).__name__)
                )
        # As `samples.select_fields([prompt_field])` gives them: the field
        # is there, `None` where the sample has no label.
        sample = fos.Sample(filepath=item["filepath"], **{prompt_field: label})
        out.append({"id": str(item["id"]), "filepath": item["filepath"], "prompt": label, "sample": sample})
    return out


def images(header, payload):
    import numpy as np

    pixels = np.frombuffer(payload, dtype=np.uint8)
    out, offset = [], 0
    for height, width in header["shapes"]:
        size = height * width * 3
        out.append(pixels[offset : offset + size].reshape(height, width, 3))
        offset += size
    return out


def label_item(value):
    import fiftyone.core.labels as fol

    if value is None:
        return {"none": True}
    if isinstance(value, fol.Label):
        return {"label": value.to_dict(extended=True)}
    if isinstance(value, dict) and all(v is None or isinstance(v, fol.Label) for v in value.values()):
        return {"map": {str(k): (None if v is None else v.to_dict(extended=True)) for k, v in value.items()}}
    return {"error": "the model returned a `%s`, which is not a FiftyOne `Label` (nor a dict of them)" % type(value).__name__}


def one_by_one(imgs, call):
    """FiftyOne's `ragged_batches`: images go one at a time; each fails alone."""
    results = []
    for img in imgs:
        try:
            results.append(("ok", call(img)))
        except Exception as error:
            results.append(("error", "%s: %s" % (type(error).__name__, error)))
    return results


class Job:
    """One request as the intake thread left it for the model: its header,
    and for `predict`/`embed` its images, already through FiftyOne's
    DataLoader work when the model is fed that way (`fed`: the collated
    batch, or per image `("ok", batch)`/`("error", message)` for ragged
    models), or the exception that work raised."""

    def __init__(self, header):
        self.header = header
        self.op = header.get("op")
        self.imgs = None
        self.fed = None
        self.samples = None
        self.error = None
        self.received = time.perf_counter()
        self.ready = self.received
        self.feed = 0.0
        self.io = 0.0


class State:
    """What the model thread sets for the intake thread: the DataLoader
    feed (set up by `setup`, before zoo sends a batch) and raggedness."""

    def __init__(self, ragged):
        self.feed = None
        self.ragged = ragged
        self.prompt_field = None


def intake(state, jobs):
    """Reads zoo's requests as they come and, for each batch, runs
    FiftyOne's DataLoader work (the model's `GetItem` or transforms, and
    collate) at once: zoo sends batch N+1 before it reads the answer to
    batch N, so this runs while the model runs the batch before, as
    FiftyOne's DataLoader worker does. `None` in `jobs`: end of input."""
    while True:
        try:
            header, payload = receive()
        except BaseException:
            jobs.put(None)
            return
        job = Job(header)
        if job.op in ("predict", "embed"):
            try:
                started = time.perf_counter()
                imgs = images(header, payload)
                if job.op == "predict" and state.prompt_field is not None:
                    job.samples = prompt_samples(header, state.prompt_field)
                    if len(job.samples) != len(imgs):
                        raise ValueError("%d samples for %d images" % (len(job.samples), len(imgs)))
                fed_at = time.perf_counter()
                job.io = fed_at - started
                feed = state.feed
                if feed is None:
                    job.imgs = imgs
                elif state.ragged and job.samples is not None:
                    job.fed = one_by_one(list(zip(imgs, job.samples)), lambda pair: feed([pair[0]], [pair[1]]))
                elif state.ragged:
                    job.fed = one_by_one(imgs, lambda img: feed([img]))
                else:
                    job.fed = feed(imgs, job.samples)
                job.ready = time.perf_counter()
                job.feed = job.ready - fed_at
            except Exception as error:
                job.error = describe(error)
                job.ready = time.perf_counter()
        jobs.put(job)


class Clock:
    """Seconds spent in one request: FiftyOne's DataLoader work (`feed`,
    on the intake thread), how long the model waited for it (`feed_wait`:
    the part the forward before did not hide), the model's own calls
    (`model`) and the boundary's work in this process (`io`: arrays from
    the payload, labels and embeddings serialised)."""

    def __init__(self, job, free_since):
        self.feed = job.feed
        self.feed_wait = max(0.0, job.ready - max(job.received, free_since)) if job.feed else 0.0
        self.model = 0.0
        self.io = job.io

    def timed(self, name, call, *args):
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)

    def header(self, header):
        header["seconds"] = {"feed": self.feed, "feed_wait": self.feed_wait, "model": self.model, "io": self.io}
        return header


def results_of(model, info, job, clock, batch_name, single_name):
    """The model's calls on a job, as FiftyOne makes them: on the batch its
    DataLoader made (per image for ragged models), or on the arrays."""
    batch = getattr(model, batch_name)
    # FiftyOne's `apply_model` hands a `SamplesMixin` its samples too.
    samples = None
    if job.samples is not None and info["samples_mixin"]:
        samples = [sample["sample"] for sample in job.samples]
        call_batch = lambda imgs, chosen: batch(imgs, samples=chosen)  # noqa: E731
    else:
        call_batch = lambda imgs, chosen: batch(imgs)  # noqa: E731
    if job.fed is not None:
        if info["ragged_batches"]:
            results = []
            for index, (kind, value) in enumerate(job.fed):
                if kind == "error":
                    results.append((kind, value))
                    continue
                chosen = None if samples is None else samples[index : index + 1]
                try:
                    results.append(("ok", clock.timed("model", call_batch, value, chosen)[0]))
                except Exception as error:
                    results.append(("error", "%s: %s" % (type(error).__name__, error)))
            return results
        return [("ok", value) for value in list(clock.timed("model", call_batch, job.fed, samples))]
    if info["ragged_batches"]:
        single = getattr(model, single_name)
        if samples is not None:
            pairs = list(zip(job.imgs, samples))
            return one_by_one(pairs, lambda pair: clock.timed("model", lambda: single(pair[0], sample=pair[1])))
        return one_by_one(job.imgs, lambda img: clock.timed("model", single, img))
    return [("ok", value) for value in list(clock.timed("model", call_batch, job.imgs, samples))]


def predict(model, info, job, clock):
    results = results_of(model, info, job, clock, "predict_all", "predict")
    started = time.perf_counter()
    items = []
    for kind, value in results:
        items.append({"error": value} if kind == "error" else label_item(value))
    clock.io += time.perf_counter() - started
    return clock.header({"ok": True, "items": items}), b""


def embed(model, info, job, clock):
    import numpy as np

    results = results_of(model, info, job, clock, "embed_all", "embed")
    started = time.perf_counter()
    items, chunks = [], []
    for kind, value in results:
        if kind == "error":
            items.append({"error": value})
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        vector = np.ascontiguousarray(np.asarray(value, dtype="<f4").reshape(-1))
        items.append({"dim": int(vector.shape[0])})
        chunks.append(vector.tobytes())
    payload = b"".join(chunks)
    clock.io += time.perf_counter() - started
    return clock.header({"ok": True, "items": items}), payload


def embed_prompts(model, header):
    """FiftyOne's `PromptMixin.embed_prompts`: one float32 vector per
    prompt, as the payload; each item says its length."""
    import numpy as np

    prompts = header.get("prompts")
    if not isinstance(prompts, list) or not all(isinstance(prompt, str) for prompt in prompts):
        return {"ok": False, "error": "`prompts` must be a list of strings"}, b""
    vectors = model.embed_prompts(prompts)
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().cpu().numpy()
    vectors = [np.ascontiguousarray(np.asarray(vector, dtype="<f4").reshape(-1)) for vector in vectors]
    return (
        {"ok": True, "items": [{"dim": int(vector.shape[0])} for vector in vectors]},
        b"".join(vector.tobytes() for vector in vectors),
    )


def prompt_kwargs(model, info, prompt_field, set_attribute):
    """`apply_model(..., prompt_field=F)`'s keyword arguments, routed as
    FiftyOne routes them: to `needs_fields` (set for the run) for a
    `SamplesMixin`, to the `GetItem`'s `field_mapping` (returned) for a
    `SupportsGetItem` that is not one; `None` without a prompt field."""
    if prompt_field is None:
        return None
    kwargs = {"prompt_field": prompt_field}
    if info["samples_mixin"]:
        set_attribute(model, "needs_fields", dict(kwargs))
        return {} if info["data_loader"] else None
    return dict(kwargs)


def serve(model, info):
    import queue

    entered = False
    state = State(info["ragged_batches"])
    jobs = queue.Queue()
    threading.Thread(target=intake, args=(state, jobs), daemon=True).start()
    # Attributes set for the run (FiftyOne's `SetAttributes`), restored
    # after the model's context is left.
    restore = []

    def set_attribute(target, name, value):
        restore.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def leave():
        model.__exit__(None, None, None)
        while restore:
            target, name, value = restore.pop()
            setattr(target, name, value)

    free_since = time.perf_counter()
    while True:
        job = jobs.get()
        if job is None:
            break
        header, op = job.header, job.op
        try:
            if job.error is not None:
                send(dict(ok=False, **job.error))
            elif op == "setup":
                threshold = header.get("confidence_thresh")
                if threshold is not None and info["thresholds_itself"]:
                    set_attribute(model.config, "confidence_thresh", threshold)
                if header.get("store_logits"):
                    set_attribute(model, "store_logits", True)
                prompt_field = header.get("prompt_field")
                if prompt_field is not None and not isinstance(prompt_field, str):
                    raise TypeError("`prompt_field` must be a string")
                field_mapping = prompt_kwargs(model, info, prompt_field, set_attribute)
                if info["data_loader"]:
                    set_attribute(model, "preprocess", False)
                    if prompt_field is not None:
                        read_decoded()
                    state.feed = Feeder(model, field_mapping, prompt_field)
                state.prompt_field = prompt_field
                model.__enter__()
                entered = True
                send({"ok": True})
            elif op == "teardown":
                if entered:
                    entered = False
                    leave()
                state.feed = None
                state.prompt_field = None
                send({"ok": True})
            elif op == "predict":
                send(*predict(model, info, job, Clock(job, free_since)))
            elif op == "embed":
                send(*embed(model, info, job, Clock(job, free_since)))
            elif op == "embed_prompts":
                send(*embed_prompts(model, header))
            else:
                send({"ok": False, "error": "unknown request `%s`" % op})
        except Exception as error:
            send(dict(ok=False, **describe(error)))
        free_since = time.perf_counter()
    if entered:
        leave()


model = start()
if model is not None:
    import fiftyone.core.models as fom

    serve(model, {
        "ragged_batches": flag(model, "ragged_batches", True),
        "data_loader": isinstance(model, (fom.SupportsGetItem, fom.TorchModelMixin)),
        "thresholds_itself": getattr(model, "config", None) is not None and hasattr(model.config, "confidence_thresh"),
        "samples_mixin": isinstance(model, fom.SamplesMixin),
    })
