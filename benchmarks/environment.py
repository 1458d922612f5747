"""The machine the bench runs on and the tools it needs: the report's header lines about them,
wrk and the FastAPI peer's own venv (installed on first use), and the progress lines on
stderr."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import loadgen
from benchmarks.servers import REPO_ROOT

PEERS_VENV = REPO_ROOT / "benchmarks" / ".venv-peers"
# Installed from its lock (`make lock` writes it, constrained by the service's runtime lock).
PEERS_REQUIREMENTS = REPO_ROOT / "benchmarks" / "peers" / "requirements.lock"


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"machine: {cpu_model(cpuinfo)}, {len(os.sched_getaffinity(0))} usable cores "
        f"({os.cpu_count()} online), {memory_kib / 1024 / 1024:.1f} GiB, "
        f"Linux {platform.release()}, load average {load}",
        f"versions: Python {platform.python_version()}, onnxruntime {_version('onnxruntime')}, "
        f"numpy {_version('numpy')}, opencv-python-headless "
        f"{_version('opencv-python-headless')}, gunicorn {_version('gunicorn')}, "
        f"flask {_version('flask')}, {loadgen.wrk_version()}",
    ]


def ensure_wrk() -> None:
    if loadgen.wrk_binary() is None:
        subprocess.run([str(REPO_ROOT / "scripts" / "install_tools.sh")], check=True)


def peers_python() -> Path:
    """The FastAPI/uvicorn peer's own venv (git-ignored), made on first use."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if not stamp.is_file() or stamp.stat().st_mtime < PEERS_REQUIREMENTS.stat().st_mtime:
        progress(f"installing the peers' dependencies into {PEERS_VENV.relative_to(REPO_ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "--require-hashes",
                "-r",
                str(PEERS_REQUIREMENTS),
            ],
            check=True,
        )
        stamp.touch()
    return python
