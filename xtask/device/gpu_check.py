"""zoo on a real GPU: parity, device, and speed next to PyTorch, in one run.

Run through gpu_check.sh on a machine with an NVIDIA GPU, PyTorch and
torchvision (no network, no Rust), with the bundle `cargo xtask device-build`
makes. Every step is timed, printed as it goes, and saved at once, so a run
cut short still leaves its results:

  environment   nvidia-smi, Python, torch, torchvision, Pillow, numpy, the bundle
  system        `zoo-torch system --json` (and whether libtorch_cuda.so loaded)
  parity_*      the bundle's torch-backend parity tests on the CPU, then with
                ZOO_TEST_DEVICE=cuda (f32 and half) with TF32 off
                (NVIDIA_TF32_OVERRIDE=0), then with libtorch's default TF32
  data          N JPEGs (640x480, smooth random pictures with noise) and
                random-init torchvision resnet18/resnet50 weights (batch-norm
                statistics calibrated on some of the JPEGs, so activations
                have a trained network's scale), saved with torch.save
  logits        zoo's logits (device_probe) against PyTorch's on the very same
                input tensors zoo made from a few of those JPEGs
  speed         per model and precision: zoo's model-only rate (device_probe),
                `zoo-torch models apply` (batch 64; registry, download from a
                loopback server, decode, preprocess, forward, SQLite), and
                PyTorch's best on the same GPU (DataLoader workers decoding
                with PIL, channels_last, inference_mode, cudnn.benchmark, AMP
                for half) end to end and model-only

Results: $OUT/results.json, $OUT/summary.txt, $OUT/logs/*.log.
"""

import argparse
import functools
import glob
import http.server
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback

START = time.perf_counter()
# The most one zoo process of the speed check may take: a slower run is
# itself the finding, and the steps after it still get their time.
STEP_TIMEOUT = 150
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def elapsed():
    return time.perf_counter() - START


def log(message):
    print(f"[{elapsed():6.1f}s] {message}", flush=True)


class Check:
    """The run's state: results saved after every step, a time budget."""

    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        self.logs = os.path.join(self.out, "logs")
        self.work = os.path.join(self.out, "work") if args.keep_work else os.path.join(
            args.work or "/tmp", "zoo-gpu-check")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)
        self.bundle = os.path.abspath(args.bundle)
        self.results = {"args": vars(args), "steps": {}, "timings": {}}
        self.lines = []

    def left(self):
        return self.args.budget - elapsed()

    def save(self):
        path = os.path.join(self.out, "results.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.results, f, indent=1, default=str)
        os.replace(path + ".tmp", path)
        with open(os.path.join(self.out, "summary.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")

    def say(self, line):
        """A line for summary.txt, printed too."""
        self.lines.append(line)
        log(line)

    def step(self, name, function, need=0.0):
        """Runs `function` as step `name` unless fewer than `need` seconds of
        the budget are left; records its result or its error."""
        if self.left() < need:
            self.results["steps"][name] = {"skipped": f"{self.left():.0f}s left, needs about {need:.0f}s"}
            self.say(f"{name}: SKIPPED (budget: {self.left():.0f}s left, needs about {need:.0f}s)")
            self.save()
            return None
        log(f"--- {name}")
        started = time.perf_counter()
        try:
            value = function()
            self.results["steps"][name] = value
        except Exception as err:  # noqa: BLE001 - every failure is recorded, the run goes on
            value = None
            self.results["steps"][name] = {"error": repr(err), "traceback": traceback.format_exc()}
            self.say(f"{name}: ERROR {err!r}")
            traceback.print_exc()
        self.results["timings"][name] = round(time.perf_counter() - started, 2)
        log(f"--- {name} done in {self.results['timings'][name]:.1f}s")
        self.save()
        return value

    def run(self, name, argv, env=None, timeout=None):
        """Runs a command, its output to logs/<name>.log; returns
        (returncode, stdout, stderr); a timeout is returncode None."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        timeout = timeout or max(10.0, self.left() - 5)
        started = time.perf_counter()
        try:
            done = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=timeout)
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as err:
            code = None
            stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
            stderr += f"\n(timed out after {timeout:.0f}s)"
        except OSError as err:
            code, stdout, stderr = None, "", f"cannot run: {err!r}"
        seconds = time.perf_counter() - started
        with open(os.path.join(self.logs, f"{name}.log"), "w") as f:
            shown = {k: v for k, v in (env or {}).items()}
            f.write(f"$ {' '.join(argv)}\nenv: {shown}\nexit: {code} in {seconds:.1f}s\n")
            f.write(f"--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
        log(f"{name}: exit {code} in {seconds:.1f}s")
        return code, stdout, stderr

    def binary(self, name):
        return os.path.join(self.bundle, name)


# ---------------------------------------------------------------- environment


def environment(check):
    import numpy
    import PIL
    import torch
    import torchvision

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "cudnn_allow_tf32_default": torch.backends.cudnn.allow_tf32,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_capability"] = list(torch.cuda.get_device_capability(0))
    smi = shutil.which("nvidia-smi")
    if smi:
        code, stdout, _ = check.run("nvidia-smi", [smi])
        print(stdout, flush=True)
        info["nvidia_smi"] = stdout.splitlines()[:12]
        _, query, _ = check.run("nvidia-smi-query", [
            smi, "--query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit",
            "--format=csv,noheader"])
        info["gpu_query"] = query.strip()
    try:
        with open(check.binary("build-info.json")) as f:
            info["bundle"] = json.load(f)
    except OSError as err:
        info["bundle"] = repr(err)
    info["bundle_files"] = {
        name: os.path.getsize(os.path.join(check.bundle, name))
        for name in sorted(os.listdir(check.bundle))
        if os.path.isfile(os.path.join(check.bundle, name))
    }
    _, ldd, _ = check.run("ldd-zoo-torch", ["ldd", check.binary("zoo-torch")])
    info["zoo_torch_unresolved"] = [line.strip() for line in ldd.splitlines() if "not found" in line]
    info["zoo_torch_libtorch"] = [line.strip() for line in ldd.splitlines() if "libtorch" in line or "libc10" in line]
    check.say(f"environment: {info.get('gpu', 'no GPU')} | torch {info['torch']} (CUDA {info['torch_cuda']}, "
              f"cuDNN {info['cudnn']}) | torchvision {info['torchvision']} | Pillow {info['pillow']} | "
              f"{info['cpus']} CPUs | bundle {info['bundle'].get('commit', '?')[:12] if isinstance(info['bundle'], dict) else '?'}")
    if info["zoo_torch_unresolved"]:
        check.say(f"environment: zoo-torch has unresolved libraries: {info['zoo_torch_unresolved']}")
    return info


def system(check):
    code, stdout, stderr = check.run("system", [check.binary("zoo-torch"), "system", "--json"],
                                     env={"ZOO_LOG": "debug"}, timeout=120)
    result = {"exit": code, "stderr_tail": stderr[-2000:]}
    try:
        result["system"] = json.loads(stdout)
    except ValueError:
        result["stdout"] = stdout
    loaded = re.search(r"loaded=(true|false)", stderr)
    result["libtorch_cuda_loaded"] = loaded.group(1) == "true" if loaded else None
    check.say(f"system: exit {code}, {json.dumps(result.get('system'))}, "
              f"libtorch_cuda.so loaded: {result['libtorch_cuda_loaded']}")
    return result


# --------------------------------------------------------------------- parity

PARITY_LINE = re.compile(r"^parity (.*) on (\S+) (f32|half): max \|diff\| (\S+) \(tolerance (\S+)\)$")
DETECTOR_LINE = re.compile(r"^parity detector score on (\S+) (f32|half): \|diff\| (\S+) \(tolerance (\S+)\)$")


def parity(check, name, env):
    environment = {"ZOO_TEST_FIXTURES": check.binary("fixtures")}
    environment.update(env)
    code, stdout, stderr = check.run(name, [check.binary("it"), "--test-threads=1", "--nocapture"],
                                     env=environment, timeout=min(300, max(30, check.left() - 5)))
    text = stdout + stderr
    comparisons = []
    for line in text.splitlines():
        match = PARITY_LINE.match(line.strip())
        if match:
            what, device, precision, diff, tolerance = match.groups()
            comparisons.append({"what": what, "device": device, "precision": precision,
                                "max_abs_diff": float(diff), "tolerance": float(tolerance)})
        match = DETECTOR_LINE.match(line.strip())
        if match:
            device, precision, diff, tolerance = match.groups()
            comparisons.append({"what": "detector score", "device": device, "precision": precision,
                                "max_abs_diff": float(diff), "tolerance": float(tolerance)})
    passed = [line for line in text.splitlines() if line.startswith("test ") and line.endswith(" ok")]
    failed = [line for line in text.splitlines() if line.startswith("test ") and "FAILED" in line]
    summary = re.findall(r"test result: .*", text)
    worst = {}
    for item in comparisons:
        key = f"{item['device']} {item['precision']}"
        if key not in worst or item["max_abs_diff"] > worst[key]["max_abs_diff"]:
            worst[key] = item
    check.say(f"{name}: exit {code}, {summary[-1] if summary else 'no test summary'}")
    for key, item in worst.items():
        check.say(f"  worst on {key}: {item['what']} max |diff| {item['max_abs_diff']:.3e} "
                  f"(tolerance {item['tolerance']:.1e})")
    for line in failed:
        check.say(f"  {line}")
    panics = [line for line in text.splitlines() if "panicked at" in line or "max |diff|" in line and ">" in line]
    return {"exit": code, "env": env, "summary": summary, "passed": passed, "failed": failed,
            "comparisons": comparisons, "panics": panics[:20]}


# ----------------------------------------------------------------------- data


def target_size(width, height, min_dim=224, max_dim=2048):
    """zoo's (and FiftyOne's) resize rule: up to min_dim, down to max_dim."""
    w, h = float(width), float(height)
    if w < min_dim or h < min_dim:
        scale = max(min_dim / h, min_dim / w)
        w, h = round(scale * w), round(scale * h)
    if w > max_dim or h > max_dim:
        scale = min(max_dim / h, max_dim / w)
        w, h = round(scale * w), round(scale * h)
    return max(int(w), 1), max(int(h), 1)


def make_jpeg(task):
    """A smooth random picture with mild noise, JPEG quality 90."""
    import numpy as np
    from PIL import Image

    path, index, width, height = task
    if os.path.exists(path):
        return
    rng = np.random.default_rng(index)
    low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    picture = np.asarray(low.resize((width, height), Image.BICUBIC), dtype=np.int16)
    picture = np.clip(picture + rng.integers(-8, 9, picture.shape), 0, 255).astype(np.uint8)
    Image.fromarray(picture).save(path, quality=90)


def load_image(path):
    """Decoded with PIL, resized by zoo's rule (PIL bilinear), uint8 CHW."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        size = target_size(*image.size)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def normalize(batch_uint8, dtype):
    import torch

    mean = torch.tensor(MEAN, device=batch_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=batch_uint8.device).view(1, 3, 1, 1)
    return ((batch_uint8.float() / 255.0 - mean) / std).to(dtype)


def data(check):
    import torch
    import torchvision

    args = check.args
    images = os.path.join(check.work, "images")
    os.makedirs(images, exist_ok=True)
    tasks = [(os.path.join(images, f"img_{i:05d}.jpg"), i, args.width, args.height) for i in range(args.n)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(make_jpeg, tasks, chunksize=16)
    jpeg_seconds = time.perf_counter() - started
    size = sum(os.path.getsize(task[0]) for task in tasks)
    log(f"data: {args.n} JPEGs {args.width}x{args.height} ({size / 1e6:.0f} MB) in {jpeg_seconds:.1f}s")

    device = torch.device(args.device)
    weights = os.path.join(check.work, "weights")
    os.makedirs(weights, exist_ok=True)
    calibration = torch.stack([load_image(task[0]) for task in tasks[: args.calibration_images]])
    saved = {}
    for arch in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(weights=None).to(device)
        # Batch-norm statistics from real inputs (cumulative averages), so
        # that, as in a trained network, each layer's output is of unit
        # scale rather than growing with depth.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        model.train()
        with torch.no_grad():
            for chunk in calibration.split(16):
                model(normalize(chunk.to(device), torch.float32))
        model.eval()
        path = os.path.join(weights, f"{arch}.pth")
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
        saved[arch] = {"path": path, "bytes": os.path.getsize(path)}
        log(f"data: {arch} weights ({os.path.getsize(path) / 1e6:.0f} MB)")
        del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    check.images = images
    check.image_files = [task[0] for task in tasks]
    check.weights = {arch: saved[arch]["path"] for arch in saved}
    check.say(f"data: {args.n} JPEGs {args.width}x{args.height} ({size / 1e6:.0f} MB, {jpeg_seconds:.1f}s); "
              f"weights {', '.join(saved)} (random init, BN calibrated on {args.calibration_images} images)")
    return {"images": images, "count": args.n, "bytes": size, "jpeg_seconds": jpeg_seconds, "weights": saved}


# ---------------------------------------------------------------------- zoo


def zoo_config(arch, device, half, search=False):
    config = {
        "entrypoint_fcn": f"torchvision.models.resnet.{arch}",
        "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "labels_path": "{{eta-resources}}/imagenet-labels-no-background.txt",
        "image_min_dim": 224,
        "image_max_dim": 2048,
        "image_mean": list(MEAN),
        "image_std": list(STD),
        "embeddings_layer": "<fc",
        "device": device,
    }
    if half:
        config["use_half_precision"] = True
    if search:
        config["cudnn_benchmark"] = True
    return config


def precisions(check):
    return [False, True] if check.args.device.startswith("cuda") else [False]


def label(half):
    return "half" if half else "f32"


def compare(ours, theirs):
    import torch

    diff = (ours.float() - theirs.float()).abs()
    scale = theirs.float().abs().max().item()
    return {
        "max_abs_diff": diff.max().item(),
        "max_rel_diff": diff.max().item() / max(scale, 1e-12),
        "scale": scale,
        "top1_agree": (ours.argmax(1) == theirs.argmax(1)).float().mean().item(),
    }


def logits(check):
    import numpy as np
    import torch
    import torchvision

    args = check.args
    files = check.image_files[: args.logit_images]
    device = torch.device(args.device)
    out = {}
    for arch in args.models:
        # zoo: f32 with libtorch's default (TF32 convolutions on Ampere and
        # newer), f32 with TF32 off, and half precision.
        runs = [("f32", False, {})]
        if device.type == "cuda":
            runs += [("f32_no_tf32", False, {"NVIDIA_TF32_OVERRIDE": "0"}), ("half", True, {})]
        zoo = {}
        inputs = None
        for name, half, env in runs:
            tensors = os.path.join(check.work, "logits", arch, name)
            code, stdout, stderr = check.run(
                f"logits-{arch}-{name}",
                [check.binary("device_probe"), "logits", json.dumps(zoo_config(arch, args.device, half)),
                 check.weights[arch], tensors, *files],
                env=env, timeout=180)
            if code != 0:
                raise RuntimeError(f"device_probe logits {arch} {name} exited {code}: {stderr[-1500:]}")
            results = json.loads(stdout.strip().splitlines()[-1])["results"]
            zoo[name] = torch.tensor([r["logits"] for r in results])
            if inputs is None:
                inputs = torch.stack([
                    torch.from_numpy(np.fromfile(r["input"], dtype="<f4").reshape(r["shape"])) for r in results])
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(weights=None)
        model.load_state_dict(torch.load(check.weights[arch], map_location="cpu"))
        model.eval()
        theirs = {}
        with torch.inference_mode():
            theirs["cpu_f32"] = model(inputs)
            if device.type == "cuda":
                gpu = model.to(device)
                theirs["cuda_f32"] = gpu(inputs.to(device)).cpu()
                tf32 = torch.backends.cudnn.allow_tf32
                torch.backends.cudnn.allow_tf32 = False
                theirs["cuda_f32_no_tf32"] = gpu(inputs.to(device)).cpu()
                torch.backends.cudnn.allow_tf32 = tf32
                with torch.autocast("cuda", dtype=torch.float16):
                    theirs["cuda_amp"] = gpu(inputs.to(device)).float().cpu()
                theirs["cuda_half"] = gpu.half()(inputs.to(device).half()).float().cpu()
        pairs = [("f32", "cpu_f32")]
        if device.type == "cuda":
            pairs += [("f32", "cuda_f32"), ("f32_no_tf32", "cpu_f32"), ("f32_no_tf32", "cuda_f32_no_tf32"),
                      ("half", "cpu_f32"), ("half", "cuda_half"), ("half", "cuda_amp")]
        out[arch] = {"images": len(files), "input_shape": list(inputs.shape), "comparisons": {}}
        for ours, reference in pairs:
            result = compare(zoo[ours], theirs[reference])
            out[arch]["comparisons"][f"zoo {ours} vs torch {reference}"] = result
            check.say(f"logits {arch}: zoo {ours:<11} vs PyTorch {reference:<16} max |diff| "
                      f"{result['max_abs_diff']:.3e} (relative {result['max_rel_diff']:.1e}, "
                      f"|logit| up to {result['scale']:.2f}), top-1 agree {result['top1_agree']:.2f}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def zoo_model_only(check, arch, half, search=False):
    args = check.args
    code, stdout, stderr = check.run(
        f"zoo-model-{arch}-{label(half)}" + ("-search" if search else ""),
        [check.binary("device_probe"), "rate", json.dumps(zoo_config(arch, args.device, half, search)),
         check.weights[arch], check.image_files[0], str(args.batch), str(args.n), str(args.warmup)],
        timeout=min(STEP_TIMEOUT, max(30, check.left() - 5)))
    if code != 0:
        raise RuntimeError(f"device_probe rate exited {code}: {stderr[-1500:]}")
    return json.loads(stdout.strip().splitlines()[-1])


class Weights(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory):
    handler = functools.partial(Weights, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def zoo_registry(check):
    """A manifest of the check's models (one per architecture and
    precision), their weights served from loopback; the zoo's environment."""
    args = check.args
    server = serve(os.path.dirname(next(iter(check.weights.values()))))
    port = server.server_address[1]
    models = []
    for arch in check.weights:
        for half in precisions(check):
            models.append({
                "base_name": f"{arch}-gpu-check-{label(half)}",
                "base_filename": f"{arch}-gpu-check-{label(half)}.pth",
                "version": None,
                "description": f"{arch}, random init (gpu_check.py)",
                "manager": {"type": "fiftyone.core.models.ModelManager",
                            "config": {"url": f"http://127.0.0.1:{port}/{arch}.pth"}},
                "default_deployment_config_dict": {
                    "type": "fiftyone.zoo.models.torch.TorchvisionImageModel",
                    "config": zoo_config(arch, args.device, half),
                },
                "tags": ["classification", "gpu-check"],
            })
    manifest = os.path.join(check.work, "manifest.json")
    with open(manifest, "w") as f:
        json.dump({"name": "gpu-check", "models": models}, f, indent=1)
    zoo_dir = os.path.join(check.work, "zoo")
    datasets = os.path.join(check.work, "datasets")
    shutil.rmtree(zoo_dir, ignore_errors=True)
    shutil.rmtree(datasets, ignore_errors=True)
    check.server = server
    check.zoo_env = {
        "ZOO_MODEL_ZOO_DIR": zoo_dir,
        "ZOO_DATASETS_DIR": datasets,
        "ZOO_MANIFEST_PATHS": manifest,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    return {"manifest": manifest, "port": port, "models": [m["base_name"] for m in models]}


def zoo_apply(check, arch, half, extra, env=None):
    name = f"{arch}-gpu-check-{label(half)}"
    tag = "-".join([arch, label(half)] + [e.strip("-") for e in extra] + sorted(env or {}))
    argv = [check.binary("zoo-torch"), "models", "apply", name, check.images, "pred",
            "--batch-size", str(check.args.batch), "--overwrite", "--json", "--quiet", *extra]
    started = time.perf_counter()
    code, stdout, stderr = check.run(f"zoo-apply-{tag}", argv, env={**check.zoo_env, **(env or {})},
                                     timeout=min(STEP_TIMEOUT, max(30, check.left() - 5)))
    process_seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"zoo models apply exited {code}: {stderr[-1500:]}")
    report = json.loads(stdout)
    report["process_seconds"] = process_seconds
    report["args"] = extra
    return report


# -------------------------------------------------------------------- PyTorch


class Jpegs:
    """The JPEGs as uint8 CHW tensors, decoded in DataLoader workers."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return load_image(self.files[index])


def torch_model(check, arch):
    import torch
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    model.load_state_dict(torch.load(check.weights[arch], map_location="cpu"))
    return model.eval().to(check.args.device).to(memory_format=torch.channels_last)


def forward(model, batch, half):
    import torch

    if half:
        with torch.autocast("cuda", dtype=torch.float16):
            return model(batch)
    return model(batch)


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def torch_rates(check, arch, half):
    """PyTorch's best on this machine: end to end over the JPEGs, and model
    only (inputs resident on the GPU, and copied from host memory as zoo's
    model-only rate does)."""
    import torch

    args = check.args
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    model = torch_model(check, arch)
    shape = load_image(check.image_files[0]).shape
    resident = normalize(torch.randint(0, 256, (args.batch, *shape), dtype=torch.uint8, device=device),
                         torch.float32).contiguous(memory_format=torch.channels_last)
    result = {"input_shape": list(shape), "batch_size": args.batch}
    with torch.inference_mode():
        for _ in range(args.warmup):
            forward(model, resident, half)
        sync(device)
        started = time.perf_counter()
        done = 0
        while done < args.n:
            take = min(args.batch, args.n - done)
            forward(model, resident[:take], half)
            done += take
        sync(device)
        result["model_resident_images_per_second"] = done / (time.perf_counter() - started)

        host = resident.cpu().contiguous()
        if device.type == "cuda":
            host = host.pin_memory()

        def from_host():
            started = time.perf_counter()
            done = 0
            while done < args.n:
                take = min(args.batch, args.n - done)
                batch = host[:take].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                forward(model, batch, half).float().softmax(1).cpu()
                done += take
            return done / (time.perf_counter() - started)

        result["model_from_host_images_per_second"] = from_host()
        if device.type == "cuda" and not half:
            # zoo's f32 convolutions run with TF32 off (exact f32): PyTorch
            # in the same numerics, after a warm-up for cuDNN's new search.
            tf32 = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
            for _ in range(args.warmup):
                forward(model, resident, half)
            sync(device)
            result["model_from_host_no_tf32_images_per_second"] = from_host()
            torch.backends.cudnn.allow_tf32 = tf32

        loader = torch.utils.data.DataLoader(
            Jpegs(check.image_files), batch_size=args.batch, num_workers=args.loader_workers,
            pin_memory=device.type == "cuda", prefetch_factor=4, persistent_workers=False)
        started = time.perf_counter()
        done = 0
        for batch in loader:
            batch = normalize(batch.to(device, non_blocking=True), torch.float32)
            batch = batch.contiguous(memory_format=torch.channels_last)
            forward(model, batch, half).float().softmax(1).cpu()
            done += len(batch)
        result["end_to_end_images_per_second"] = done / (time.perf_counter() - started)
        result["loader_workers"] = args.loader_workers
    del model, resident
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# ----------------------------------------------------------------------- main


def speed(check, arch, half):
    """One model and precision: zoo model-only, zoo apply (default, then
    decoding pipelined), PyTorch; the ratios."""
    key = f"{arch} {label(half)}"
    result = {}
    result["zoo_model_only"] = check.step(f"zoo model-only {key}", lambda: zoo_model_only(check, arch, half), need=20)
    result["zoo_apply"] = check.step(f"zoo apply {key}", lambda: zoo_apply(check, arch, half, []), need=20)
    result["zoo_apply_pipelined"] = check.step(
        f"zoo apply pipelined {key}", lambda: zoo_apply(check, arch, half, ["--pipeline", "on"]), need=20)
    # cuDNN's algorithm search (`cudnn_benchmark`, ZOO_CUDNN_BENCHMARK=1):
    # model-only after its warm-up, and apply with the search inside.
    result["zoo_model_only_search"] = check.step(
        f"zoo model-only search {key}", lambda: zoo_model_only(check, arch, half, True), need=20)
    result["zoo_apply_search"] = check.step(
        f"zoo apply search {key}", lambda: zoo_apply(check, arch, half, [], {"ZOO_CUDNN_BENCHMARK": "1"}), need=20)
    result["pytorch"] = check.step(f"pytorch {key}", lambda: torch_rates(check, arch, half), need=20)

    def rate(value, field):
        return value.get(field) if isinstance(value, dict) else None

    model = rate(result["zoo_model_only"], "images_per_second")
    applied = rate(result["zoo_apply"], "images_per_second")
    searched = rate(result["zoo_model_only_search"], "images_per_second")
    searched_apply = rate(result["zoo_apply_search"], "images_per_second")
    pipelined = rate(result["zoo_apply_pipelined"], "images_per_second")
    eager = result["pytorch"] if isinstance(result["pytorch"], dict) else {}
    best_apply = applied
    ratios = {
        "apply_over_pytorch_end_to_end": (best_apply / eager["end_to_end_images_per_second"])
        if best_apply and eager.get("end_to_end_images_per_second") else None,
        "model_over_pytorch_from_host": (model / eager["model_from_host_images_per_second"])
        if model and eager.get("model_from_host_images_per_second") else None,
        "model_over_pytorch_from_host_no_tf32": (model / eager["model_from_host_no_tf32_images_per_second"])
        if model and eager.get("model_from_host_no_tf32_images_per_second") else None,
        "apply_over_model": (applied / model) if applied and model else None,
        "model_search_over_pytorch_from_host": (searched / eager["model_from_host_images_per_second"])
        if searched and eager.get("model_from_host_images_per_second") else None,
        "model_search_over_pytorch_from_host_no_tf32": (searched / eager["model_from_host_no_tf32_images_per_second"])
        if searched and eager.get("model_from_host_no_tf32_images_per_second") else None,
    }
    result["ratios"] = ratios

    def cell(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    check.say(
        f"speed {key:<14} img/s | zoo apply {cell(applied)} (pipelined {cell(pipelined)}, search {cell(searched_apply)}) | zoo model-only {cell(model)} "
        f"(search, after warm-up {cell(searched)}) | "
        f"PyTorch end-to-end {cell(eager.get('end_to_end_images_per_second'))}, from host "
        f"{cell(eager.get('model_from_host_images_per_second'))}, resident "
        f"{cell(eager.get('model_resident_images_per_second'))}, from host without TF32 "
        f"{cell(eager.get('model_from_host_no_tf32_images_per_second'))} | apply/model "
        f"{cell(ratios['apply_over_model'], 3)}, apply/PyTorch e2e "
        f"{cell(ratios['apply_over_pytorch_end_to_end'], 3)}, model/PyTorch from host "
        f"{cell(ratios['model_over_pytorch_from_host'], 3)} (without TF32 "
        f"{cell(ratios['model_over_pytorch_from_host_no_tf32'], 3)}); with search: model/PyTorch from host "
        f"{cell(ratios['model_search_over_pytorch_from_host'], 3)} (without TF32 "
        f"{cell(ratios['model_search_over_pytorch_from_host_no_tf32'], 3)})")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", help="scratch folder (default /tmp)")
    parser.add_argument("--keep-work", action="store_true", help="keep scratch files under OUT/work")
    parser.add_argument("--budget", type=float, default=510, help="seconds; steps that do not fit are skipped")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu (dry run)")
    parser.add_argument("--n", type=int, default=2048, help="JPEGs, and images per rate")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5, help="warm-up batches before model-only timing")
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--logit-images", type=int, default=4)
    parser.add_argument("--loader-workers", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma-separated: parity,logits,speed")
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    args.loader_workers = args.loader_workers or min(16, os.cpu_count() or 1)
    skip = set(filter(None, args.skip.split(",")))

    check = Check(args)
    check.step("environment", lambda: environment(check))
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    check.results["device"] = args.device
    check.step("system", lambda: system(check))
    if "parity" not in skip:
        check.step("parity_cpu", lambda: parity(check, "parity_cpu", {}), need=30)
        if args.device.startswith("cuda"):
            check.step("parity_cuda_no_tf32", lambda: parity(
                check, "parity_cuda_no_tf32", {"ZOO_TEST_DEVICE": args.device, "NVIDIA_TF32_OVERRIDE": "0"}), need=30)
            check.step("parity_cuda_default_tf32", lambda: parity(
                check, "parity_cuda_default_tf32", {"ZOO_TEST_DEVICE": args.device}), need=30)
    if check.step("data", lambda: data(check), need=30) is None:
        check.say("no data: logits and speed skipped")
        check.save()
        return 1
    if "logits" not in skip:
        check.step("logits", lambda: logits(check), need=30)
    if "speed" not in skip:
        check.step("zoo_registry", lambda: zoo_registry(check))
        speeds = {}
        for arch in args.models:
            for half in precisions(check):
                speeds[f"{arch} {label(half)}"] = speed(check, arch, half)
        check.results["speed"] = speeds
    check.say(f"total {elapsed():.0f}s (budget {args.budget:.0f}s)")
    check.save()
    print("\n=== summary (also in summary.txt; everything in results.json and logs/)")
    print("\n".join(check.lines), flush=True)
    if not args.keep_work:
        shutil.rmtree(check.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
