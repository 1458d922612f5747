"""The load generator: request bodies for each input form, and wrk driving them.

wrk (Debian's package; `scripts/install_tools.sh` installs it) runs `rotate.lua`, which sends
the pre-built requests of a list file in rotation and prints wrk's own latency percentiles.
The CPU wrk itself uses is read from this process's reaped-children usage.
"""

from __future__ import annotations

import base64
import json
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "rotate.lua"
DETECT_PATH = "/v1/detect"
MULTIPART_BOUNDARY = "benchBoundary7MA4YWxkTrZu0gW"


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request: POST `path` with `body` of `content_type`."""

    path: str
    content_type: str
    body: bytes


def json_request(image: bytes, path: str = DETECT_PATH) -> RequestSpec:
    """The Vision-style JSON form: one image as base64, default parameters."""
    payload = {"requests": [{"image": {"content": base64.b64encode(image).decode("ascii")}}]}
    return RequestSpec(path, "application/json", json.dumps(payload).encode())


def raw_request(image: bytes, content_type: str = "image/jpeg") -> RequestSpec:
    """The raw form: the body is the image."""
    return RequestSpec(DETECT_PATH, content_type, image)


def multipart_request(
    image: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg"
) -> RequestSpec:
    """The multipart form: one file field `image`."""
    head = (
        f"--{MULTIPART_BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()
    return RequestSpec(
        DETECT_PATH,
        f"multipart/form-data; boundary={MULTIPART_BOUNDARY}",
        head + image + tail,
    )


def write_request_list(
    directory: Path, name: str, specs: Sequence[RequestSpec], token: str
) -> Path:
    """Write each body to a file and the list that rotate.lua reads; returns the list's path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"token\t{token or '-'}"]
    for index, spec in enumerate(specs):
        body_path = directory / f"{name}-{index:04d}.body"
        body_path.write_bytes(spec.body)
        lines.append(f"{spec.path}\t{spec.content_type}\t{body_path}")
    list_path = directory / f"{name}.list"
    list_path.write_text("\n".join(lines) + "\n")
    list_path.chmod(0o600)
    return list_path


@dataclass(frozen=True)
class WrkResult:
    """What rotate.lua's done() printed; latencies in ms."""

    requests: int
    duration_s: float
    errors: int
    status_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


class WrkOutputError(ValueError):
    """wrk's output has no (or a malformed) BENCH_WRK line."""


def parse_wrk_output(text: str) -> WrkResult:
    """Parse the BENCH_WRK line printed by rotate.lua's done()."""
    lines = [line for line in text.splitlines() if line.startswith("BENCH_WRK ")]
    if not lines:
        raise WrkOutputError(f"no BENCH_WRK line in wrk's output:\n{text[-2000:]}")
    values: dict[str, float] = {}
    for item in lines[-1].split()[1:]:
        key, sep, raw = item.partition("=")
        if not sep:
            raise WrkOutputError(f"malformed field {item!r} in {lines[-1]!r}")
        try:
            values[key] = float(raw)
        except ValueError:
            raise WrkOutputError(f"field {key}={raw!r} is not a number") from None
    needed = ("requests", "duration_us", "connect", "read", "write", "status", "timeout")
    missing = [
        k for k in (*needed, "p50_us", "p95_us", "p99_us", "mean_us", "max_us") if k not in values
    ]
    if missing:
        raise WrkOutputError(f"BENCH_WRK line lacks {', '.join(missing)}")
    errors = sum(int(values[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=int(values["requests"]),
        duration_s=values["duration_us"] / 1e6,
        errors=errors,
        status_errors=int(values["status"]),
        p50_ms=values["p50_us"] / 1000,
        p95_ms=values["p95_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        mean_ms=values["mean_us"] / 1000,
        max_ms=values["max_us"] / 1000,
    )


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    binary = wrk_binary()
    if binary is None:
        return "not installed"
    # `wrk -v` prints its version, then the usage, and exits 1.
    output = subprocess.run(
        [binary, "-v"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    first = output.splitlines()[0] if output else ""
    return first.split(" Copyright")[0].strip() or "unknown"


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    base_url: str,
    list_file: Path,
    connections: int,
    duration_s: float,
    timeout_s: float = 30.0,
) -> tuple[WrkResult, float]:
    """Run wrk with one thread and `connections` connections for `duration_s`; returns the
    result and wrk's own CPU seconds."""
    binary = wrk_binary()
    if binary is None:
        raise FileNotFoundError("wrk is not installed: run scripts/install_tools.sh")
    command = [
        binary,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(LUA_SCRIPT),
        base_url,
        "--",
        str(list_file),
    ]
    before = _children_cpu_seconds()
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration_s + timeout_s + 30
    )
    cpu = _children_cpu_seconds() - before
    if completed.returncode != 0:
        raise WrkOutputError(
            f"wrk exited with {completed.returncode}: {completed.stderr.strip()[-2000:]}"
        )
    return parse_wrk_output(completed.stdout), cpu
