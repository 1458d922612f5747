"""The checks, each of a running container: a passed check returns what it saw, a failed one
raises Fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from .common import (
    HTTP_TIMEOUT_S,
    RELOAD_TIMEOUT_S,
    REPO_ROOT,
    SIBLING_SHARED,
    STOP_TIMEOUT_S,
    Fail,
    Unrunnable,
    tail,
)
from .container import Container, wait_ready

APP_UID = 10001

Check = Callable[[Container], str]


def check_probes(container: Container) -> str:
    answers = {
        p: requests.get(container.url + p, timeout=HTTP_TIMEOUT_S) for p in ("healthz", "readyz")
    }
    bad = {p: r.status_code for p, r in answers.items() if r.status_code != 200}
    if bad:
        raise Fail(f"probe status {bad}")
    return f"/healthz 200, /readyz 200 {answers['readyz'].json()}"


def check_log_is_quiet(container: Container) -> str:
    # A manifest without its weights, or anything else worth a warning, at worker start.
    log = container.logs()
    noisy = [
        line for line in log.splitlines() if re.search(r"WARNING|ERROR|Traceback|make model", line)
    ]
    if noisy:
        raise Fail("the start log has warnings:\n" + "\n".join(noisy[:10]))
    return "no warning or error in the start log"


def dog_photo() -> Path:
    images = Path(os.environ.get("TEST_IMAGES_DIR") or SIBLING_SHARED / "images")
    dog = images / "dog.jpg"
    if not dog.is_file():
        raise Unrunnable(f"{dog} is missing: set TEST_IMAGES_DIR to the shared test images")
    return dog


EXPECTED_ON_DOG = {"dog", "bicycle", "car"}


def check_send2api(container: Container) -> str:
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "client.send2api", str(dog_photo()), "--url", container.url],
            cwd=REPO_ROOT,
            env={**os.environ, "API_TOKEN": container.token},
            capture_output=True,
            text=True,
            timeout=HTTP_TIMEOUT_S * 2,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Fail("client.send2api took too long") from None
    if completed.returncode != 0:
        raise Fail(f"client.send2api exited with {completed.returncode}: {completed.stderr}")
    objects = json.loads(completed.stdout)["responses"][0]["localizedObjectAnnotations"]
    return _found_on_dog("client.send2api", objects)


def check_google_client(container: Container) -> str:
    # google-api-core warns about Python's end-of-life dates; not this test's business.
    warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")
    from google.cloud import vision

    client = vision.ImageAnnotatorClient(
        transport="rest",
        client_options={"api_endpoint": container.url.rstrip("/"), "api_key": container.token},
    )
    image = vision.Image(content=dog_photo().read_bytes())
    found = client.object_localization(image=image, timeout=HTTP_TIMEOUT_S)
    objects = [{"name": o.name, "score": o.score} for o in found.localized_object_annotations]
    return _found_on_dog("google-cloud-vision", objects)


def _found_on_dog(client: str, objects: list[dict[str, Any]]) -> str:
    best: dict[str, float] = {}
    for obj in objects:
        best[obj["name"]] = max(best.get(obj["name"], 0.0), float(obj["score"]))
    if not set(best) >= EXPECTED_ON_DOG:
        raise Fail(f"{client} on dog.jpg found {best}, not all of {sorted(EXPECTED_ON_DOG)}")
    scores = ", ".join(f"{name} {best[name]:.2f}" for name in ("dog", "bicycle", "car"))
    return f"{client} JSON on dog.jpg: {scores}"


def check_token_required(container: Container) -> str:
    body = {"requests": [{"image": {"content": ""}}]}
    statuses = [
        requests.post(container.url, json=body, headers=headers, timeout=HTTP_TIMEOUT_S)
        for headers in ({}, {"X-Api-Token": "wrong-token"})
    ]
    if [r.status_code for r in statuses] != [401, 401]:
        raise Fail(f"without / with a wrong token: {[r.status_code for r in statuses]}, not 401")
    return "401 without a token and with a wrong one"


def _namespace_processes(container: Container) -> dict[int, dict[str, str]]:
    """Every process in the container's PID namespace, read from this machine's /proc (the
    image has no ps); rootful podman maps no user ids, so these are the container's ids."""
    pid = int(container.state()["Pid"])
    namespace = os.readlink(f"/proc/{pid}/ns/pid")
    found: dict[int, dict[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") != namespace:
                continue
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # gone meanwhile, or not ours to look at (this machine's own PID 1)
        found[int(entry.name)] = {**{k: v.strip() for k, v in status.items()}, "cmd": cmdline}
    return found


def check_processes(container: Container) -> str:
    processes = _namespace_processes(container)
    wrong = {
        pid: p
        for pid, p in processes.items()
        if set(p["Uid"].split()) != {str(APP_UID)} or set(p["Gid"].split()) != {str(APP_UID)}
    }
    if wrong:
        raise Fail(f"processes not running as {APP_UID}:{APP_UID}: {wrong}")
    privileged = [
        p["cmd"] for p in processes.values() if int(p["CapEff"], 16) or int(p["CapPrm"], 16)
    ]
    if privileged:
        raise Fail(f"processes holding capabilities: {privileged}")
    if len(processes) < 3:
        raise Fail(f"expected the gunicorn master and 2 workers, found {processes}")
    return (
        f"{len(processes)} processes (gunicorn master and workers), all uid/gid {APP_UID}, "
        "no capabilities"
    )


# Run inside the container as the image's user: what it can read, own and write.
_FILES_PROBE = """
import os, pathlib, sys
unreadable = [str(p) for p in pathlib.Path("/app").rglob("*") if not os.access(p, os.R_OK)]
owned = [str(p) for p in pathlib.Path("/app").rglob("*") if p.lstat().st_uid == os.getuid()]
writable = []
for place in ("/app", "/app/models", "/", "/var/tmp", "/tmp"):
    try:
        with open(os.path.join(place, ".image-test-probe"), "w"):
            pass
        os.unlink(os.path.join(place, ".image-test-probe"))
        writable.append(place)
    except OSError:
        pass
print(f"unreadable={unreadable} owned={owned} writable={writable}")
sys.exit(0 if not unreadable and not owned and writable == ["/tmp"] else 1)
"""


def check_files(container: Container) -> str:
    read_only = container.podman.inspect("container", "inspect", container.cid)["HostConfig"]
    if not read_only.get("ReadonlyRootfs"):
        raise Fail("the container's root file system is not read-only")
    completed = container.exec("python", "-c", _FILES_PROBE)
    if completed.returncode != 0:
        raise Fail(f"files as uid {APP_UID}: {(completed.stdout + completed.stderr).strip()}")
    return (
        f"--read-only --tmpfs /tmp: uid {APP_UID} reads every file in /app, owns none, "
        "writes only to /tmp"
    )


def check_healthcheck(container: Container) -> str:
    config = container.podman.inspect("image", "inspect", container.image)
    if not (config.get("Healthcheck") or {}).get("Test"):
        raise Fail("the image has no HEALTHCHECK (built in the OCI format?)")
    completed = container.podman.run("healthcheck", "run", container.cid, check=False)
    status = container.state().get("Health", {}).get("Status")
    if completed.returncode != 0 or status != "healthy":
        raise Fail(f"podman healthcheck run: exit {completed.returncode}, status {status}")
    return "HEALTHCHECK in the image; podman healthcheck run: healthy"


def check_reload(container: Container) -> str:
    before = container.logs().count("Booting worker")
    container.podman.run("kill", "--signal", "HUP", container.cid)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        log = container.logs()
        if "reload refused" in log:
            raise Fail("SIGHUP: " + tail(log, 5))
        if "models checked, reloading" in log and log.count("Booting worker") >= before + 2:
            break
        time.sleep(0.3)
    else:
        raise Fail(
            f"no reload within {RELOAD_TIMEOUT_S} s of SIGHUP:\n{tail(container.logs(), 10)}"
        )
    wait_ready(container)
    return "SIGHUP: models checked in a child process, new workers serving"


def check_sigterm(container: Container) -> str:
    container.podman.run("kill", "--signal", "TERM", container.cid)
    container.podman.run("wait", container.cid, timeout=STOP_TIMEOUT_S)
    state = container.state()
    if state.get("ExitCode") != 0:
        raise Fail(
            f"exit status {state.get('ExitCode')} after SIGTERM:\n{tail(container.logs(), 10)}"
        )
    return "SIGTERM: gunicorn stopped with exit status 0"


def check_ui(container: Container) -> str:
    # The web UI's files are read at run time: one missing from the image is a 500 only then.
    page = requests.get(container.url + "ui/", timeout=HTTP_TIMEOUT_S)
    script = requests.get(container.url + "ui/app.js", timeout=HTTP_TIMEOUT_S)
    got = [(r.status_code, r.headers.get("Content-Type", "")) for r in (page, script)]
    if [status for status, _ in got] != [200, 200] or not got[1][1].startswith("text/javascript"):
        raise Fail(f"/ui/ and /ui/app.js answered {got}")
    if "frame-ancestors 'none'" not in page.headers.get("Content-Security-Policy", ""):
        raise Fail("/ui/ has no strict Content-Security-Policy")
    return "/ui/ and /ui/app.js 200 with their types and the UI's Content-Security-Policy"


# In this order: the last two change the container (a reload, then its end).
CHECKS: tuple[Check, ...] = (
    check_probes,
    check_log_is_quiet,
    check_send2api,
    check_google_client,
    check_token_required,
    check_ui,
    check_processes,
    check_files,
    check_healthcheck,
    check_reload,
    check_sigterm,
)
