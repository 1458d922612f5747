"""Real gunicorn: the master's metrics endpoint sums the workers, keeps their counts when one
is killed and answers while the only worker is blocked; and the real log output (gunicorn's
own lines included) holds no token and no forged line after a worker aborted in the middle
of a `?key=` request and a CR/LF path, in text and in JSON."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from metrics import ServiceMetrics
from tests.helpers import REPO_ROOT
from tests.live_server import LiveServer, live_gunicorn

pytestmark = pytest.mark.e2e

TOKEN = "ops-e2e-token-7f3a9c"
AUTH = {"X-Api-Token": TOKEN}
PHOTO = (REPO_ROOT / "sample_images" / "astronaut.png").read_bytes()
WAIT_S = 90

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: LiveServer) -> Samples:
    text = requests.get(server.metrics_url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not after {timeout_s} s: {what}")
        time.sleep(0.1)


def worker_pids(samples: Samples) -> set[int]:
    return {
        int(dict(labels)["pid"])
        for name, labels in samples
        if name == "detection_worker_resident_memory_bytes"
    }


def detect(server: LiveServer, headers: Mapping[str, str] | None = None) -> requests.Response:
    response = requests.post(
        server.url + "v1/detect",
        data=PHOTO,
        headers={**AUTH, "Content-Type": "image/png", **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def test_metrics_sum_the_workers_and_survive_a_killed_worker(tmp_path: Path) -> None:
    env = {"LOG_FORMAT": "json"}
    with live_gunicorn(tmp_path, [TOKEN], workers=2, extra_env=env) as server:
        wait_for("two workers ready", lambda: scrape(server).get(_ready()) == 2)
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        for index in range(6):
            detect(server, {"traceparent": traceparent} if index == 0 else None)
        assert requests.get(server.url + "v1/models", timeout=30).status_code == 401
        before = scrape(server)
        route = {"route": "/v1/detect", "code": "200"}
        assert total(before, "detection_requests_total", **route) == 6
        assert total(before, "detection_images_total", route="/v1/detect") == 6
        assert total(before, "detection_stage_duration_seconds_count", stage="infer") == 6
        assert total(before, "detection_workers") == 2
        assert total(before, "detection_inflight_requests") == 0

        # Every metric is there (the repository's size only once a repository reports it).
        exported = {
            m.name + "_total" if m.type == "counter" else m.name
            for m in ServiceMetrics(CollectorRegistry()).registry.collect()
        } - {"detection_repository_size"}
        exported |= {"detection_workers", "detection_worker_resident_memory_bytes"}
        text = requests.get(server.metrics_url, timeout=10).text
        present = {
            f.name + "_total" if f.type == "counter" else f.name
            for f in text_string_to_metric_families(text)
            if f.samples
        }
        assert exported <= present, exported - present

        # One worker killed: the master starts another; the counts stay, the gauges follow.
        pids = worker_pids(before)
        assert len(pids) == 2
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            "a new worker in place of the killed one, ready",
            lambda: _replaced(scrape(server), victim),
        )
        after = scrape(server)
        assert total(after, "detection_requests_total", **route) == 6
        assert total(after, "detection_images_total", route="/v1/detect") == 6
        assert total(after, "detection_inflight_requests") == 0
        for _ in range(2):
            detect(server)
        assert total(scrape(server), "detection_requests_total", **route) == 8

        # LOG_FORMAT=json: every line is one JSON object, gunicorn's own lines included.
        lines = [line for line in server.log().splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]
        loggers = {entry["logger"] for entry in entries}
        assert {"gunicorn.error", "gunicorn.access", "detection_service"} <= loggers
        requests_logged = [e for e in entries if e.get("message") == "request"]
        traced = [e for e in requests_logged if e.get("trace_id") == traceparent[3:35]]
        assert len(traced) == 1
        assert traced[0]["parent_id"] == traceparent[36:52]
        assert traced[0]["model"] == "yolox_nano"
        assert set(traced[0]["stages_ms"]) >= {"read_body", "decode", "infer", "serialize"}
        assert TOKEN not in server.log()


def _ready() -> tuple[str, frozenset[tuple[str, str]]]:
    return ("detection_model_ready", frozenset({("model", "yolox_nano")}))


def _replaced(samples: Samples, victim: int) -> bool:
    pids = worker_pids(samples)
    return len(pids) == 2 and victim not in pids and samples.get(_ready()) == 2


def _raw(server: LiveServer, data: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_no_token_and_no_forged_line_in_real_gunicorn_output(tmp_path: Path) -> None:
    # One worker and a short worker timeout: a body that never comes holds the only worker
    # until gunicorn aborts it in the middle of the request (WORKER TIMEOUT), the path on which
    # gunicorn logs "Error handling request <uri with the query string>".
    env = {"GUNICORN_TIMEOUT": "8"}
    with live_gunicorn(tmp_path, [TOKEN], workers=1, extra_env=env) as server:
        # CR/LF in the path, percent-encoded and as it reaches the app
        response = requests.get(
            server.url + "v1/models/x%0d%0aFAKE-LOG-LINE", headers=AUTH, timeout=30
        )
        assert response.status_code == 404
        # control and non-ASCII bytes sent raw in the request line
        _raw(
            server,
            b"GET /v1/models/caf\xc3\xa9\x1b[2J HTTP/1.1\r\nHost: t\r\nX-Api-Token: "
            + TOKEN.encode()
            + b"\r\nConnection: close\r\n\r\n",
        )
        _raw(server, b"GET /a\rFAKE-LOG-LINE?key=" + TOKEN.encode() + b" HTTP/1.1\r\n\r\n")
        # a token in every place a caller may put one, on a request that fails
        requests.get(
            server.url + f"v1/nowhere?key={TOKEN}&api_key={TOKEN}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )

        # The slow ?key= request: headers, then a body that stops.
        host, port = server.url.removeprefix("http://").rstrip("/").split(":")
        slow = socket.create_connection((host, int(port)), timeout=60)
        slow.sendall(
            f"POST /v1/detect?key={TOKEN}&format=json HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
            + b'{"requests": ['
        )
        # The metrics are served by the master while the only worker is stuck in the request.
        wait_for(
            "the blocked request in flight, seen by a scrape",
            lambda: total(scrape(server), "detection_inflight_requests") == 1,
        )
        wait_for(
            "the worker aborted (or the request cut by a deadline)",
            lambda: "WORKER TIMEOUT" in server.log() or _closed(slow),
        )
        slow.close()
        wait_for("a new worker ready", lambda: _get_ok(server.url + "readyz"))
        samples = scrape(server)
        assert total(samples, "detection_inflight_requests") == 0

    raw_log = server.log_path.read_bytes()
    log = raw_log.decode("ascii")  # only ASCII: every other byte was escaped
    assert TOKEN not in log
    for line in log.splitlines():
        assert not line.startswith("FAKE-LOG-LINE"), line
    # no raw control byte but the line breaks
    assert not [b for b in raw_log if b < 0x20 and b != 0x0A], "control bytes in the log"
    # the CR/LF path, escaped, in the service's line and in the access line
    escaped = "/v1/models/x\\r\\nFAKE-LOG-LINE"
    assert any("detection_service request" in ln and escaped in ln for ln in log.splitlines())
    assert any(f'"GET {escaped}"' in ln for ln in log.splitlines())
    if "WORKER TIMEOUT" in log:
        # gunicorn's own line, with the URI and its query string, redacted
        aborted = [ln for ln in log.splitlines() if "Error handling request" in ln]
        assert aborted
        assert all("key=[redacted]" in ln for ln in aborted)


def _closed(sock: socket.socket) -> bool:
    """The server answered (a 408, a 500) or closed the connection."""
    sock.setblocking(False)
    try:
        sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
    return True


def _get_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
