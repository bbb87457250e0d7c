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
# argv: source_dir model_name model_path kwargs_json parent_pid
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

source_dir, model_name, model_path, kwargs_json, parent = sys.argv[1:6]
parent = int(parent)


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
    return hook(model_name, model_path, **json.loads(kwargs_json))


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
    send(
        {
            "kind": "model",
            "class": "%s.%s" % (type(result).__module__, type(result).__qualname__),
            "has_logits": flag(result, "has_logits"),
            "has_embeddings": flag(result, "has_embeddings"),
            "ragged_batches": flag(result, "ragged_batches", True),
            "torch": has_class(result, "TorchModelMixin"),
            "thresholds_itself": config is not None and hasattr(config, "confidence_thresh"),
        }
    )
    return result


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


def one_by_one(model, imgs, call, batch_call):
    """FiftyOne's `ragged_batches`: images go one at a time; each fails alone."""
    results = []
    for img in imgs:
        try:
            results.append(("ok", call(img) if call else batch_call([img])[0]))
        except Exception as error:
            results.append(("error", "%s: %s" % (type(error).__name__, error)))
    return results


def predict(model, info, imgs):
    if info["ragged_batches"]:
        single = None if info["torch"] else model.predict
        results = one_by_one(model, imgs, single, model.predict_all)
    else:
        results = [("ok", value) for value in model.predict_all(imgs)]
    items = []
    for kind, value in results:
        items.append({"error": value} if kind == "error" else label_item(value))
    return {"ok": True, "items": items}, b""


def embed(model, info, imgs):
    import numpy as np

    if info["ragged_batches"]:
        single = None if info["torch"] else model.embed
        results = one_by_one(model, imgs, single, model.embed_all)
    else:
        results = [("ok", value) for value in list(model.embed_all(imgs))]
    items, chunks = [], []
    for kind, value in results:
        if kind == "error":
            items.append({"error": value})
            continue
        vector = np.ascontiguousarray(np.asarray(value, dtype="<f4").reshape(-1))
        items.append({"dim": int(vector.shape[0])})
        chunks.append(vector.tobytes())
    return {"ok": True, "items": items}, b"".join(chunks)


def serve(model, info):
    entered = False
    while True:
        try:
            header, payload = receive()
        except EOFError:
            break
        op = header.get("op")
        try:
            if op == "setup":
                if header.get("store_logits"):
                    model.store_logits = True
                threshold = header.get("confidence_thresh")
                if threshold is not None and info["thresholds_itself"]:
                    model.config.confidence_thresh = threshold
                model.__enter__()
                entered = True
                send({"ok": True})
            elif op == "teardown":
                if entered:
                    entered = False
                    model.__exit__(None, None, None)
                send({"ok": True})
            elif op == "predict":
                send(*predict(model, info, images(header, payload)))
            elif op == "embed":
                send(*embed(model, info, images(header, payload)))
            else:
                send({"ok": False, "error": "unknown request `%s`" % op})
        except Exception as error:
            send(dict(ok=False, **describe(error)))
    if entered:
        model.__exit__(None, None, None)


model = start()
if model is not None:
    serve(model, {
        "ragged_batches": flag(model, "ragged_batches", True),
        "torch": has_class(model, "TorchModelMixin"),
        "thresholds_itself": getattr(model, "config", None) is not None and hasattr(model.config, "confidence_thresh"),
    })
