#!/usr/bin/env bash
# The GPU check: run on the GPU machine, in the repository root, with the
# bundle `cargo xtask device-build` made (carried there):
#
#   bash xtask/device/gpu_check.sh target/device/bundle
#
# It finds the Python that has PyTorch (ZOO_DEVICE_PYTHON, else
# /opt/torch/.venv/bin/python3, else python3), points the loader at that
# PyTorch's libtorch (the bundle's binaries were built against the same
# version), and hands over to gpu_check.py, which writes results.json,
# summary.txt and logs/ under $OUT (default: ./gpu-check-out).
# Extra arguments go to gpu_check.py (e.g. --budget 300, --n 512).
set -euo pipefail

bundle="${1:-target/device/bundle}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

python="${ZOO_DEVICE_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x /opt/torch/.venv/bin/python3 ]; then
    python=/opt/torch/.venv/bin/python3
  else
    python=python3
  fi
fi
torch_lib="$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
echo "gpu_check: python $python, libtorch $torch_lib, bundle $bundle, out $OUT"
exec "$python" "$here/gpu_check.py" --bundle "$bundle" --out "$OUT" "$@"
