# Runs snippets of Python sent by zoo's interop tests against real FiftyOne,
# in one process for a whole test binary (FiftyOne and its database start
# once). Protocol: one JSON request per line on stdin,
# {"code": "<python>", "args": {...}}; the snippet sees `fo`, `np`, `json`,
# `json_util`, `args` and sets `result`; the answer is one JSON line,
# {"result": ...} or {"error": "<traceback>"}.
import json
import os
import sys
import time
import traceback

# Answers go to the real stdout; everything FiftyOne prints goes to stderr.
protocol = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr

started = time.time()
import numpy as np  # noqa: E402
import fiftyone as fo  # noqa: E402
from bson import json_util  # noqa: E402

print(json.dumps({"ready": True, "import_seconds": time.time() - started}), file=protocol, flush=True)
for line in sys.stdin:
    request = json.loads(line)
    scope = {"fo": fo, "np": np, "json": json, "json_util": json_util, "args": request.get("args", {})}
    try:
        exec(request["code"], scope)
        answer = {"result": scope.get("result")}
        text = json_util.dumps(answer)
    except Exception:
        text = json.dumps({"error": traceback.format_exc()})
    print(text, file=protocol, flush=True)
