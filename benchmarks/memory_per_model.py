"""Resident memory of one worker per loaded model: prints a table for the README.

Each configuration runs in a fresh process that builds the app as a gunicorn worker does
(`create_app()` with MODELS set), answers one request per model, then reads its own resident
set size. Run from the repository root after `make test-models`:

    .venv/bin/python benchmarks/memory_per_model.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = ["", "yolox_nano", "nanodet_m_416", "yolox_nano,nanodet_m_416"]

WORKER = """
import base64, json, os, sys
sys.path.insert(0, os.getcwd())
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import serve_http
models = os.environ["MODELS"]
if not models:
    print(json.dumps({"rss_mib": rss_mib()}))
    raise SystemExit
app = serve_http.create_app()
image = base64.b64encode(open("sample_images/astronaut.png", "rb").read()).decode()
client = app.test_client()
for name in models.split(","):
    body = {"requests": [{"image": {"content": image}, "features": [{"model": name}]}]}
    assert client.post("/", json=body).status_code == 200
print(json.dumps({"rss_mib": rss_mib()}))
"""


def measure(models: str) -> float:
    env = {**os.environ, "MODELS": models, "AUTH_DISABLED": "1", "LOG_LEVEL": "WARNING"}
    if models:
        env["MODEL_NAME"] = models.split(",")[0]
    output = subprocess.run(
        [sys.executable, "-c", WORKER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rss: float = json.loads(output.strip().splitlines()[-1])["rss_mib"]
    return rss


def main() -> int:
    baseline = measure("")
    print(f"{'models loaded':<28} {'RSS MiB':>8} {'over imports':>13}")
    print(f"{'(imports only, no model)':<28} {baseline:>8.1f} {0.0:>13.1f}")
    for models in CONFIGURATIONS[1:]:
        rss = measure(models)
        print(f"{models:<28} {rss:>8.1f} {rss - baseline:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
