"""Build the Dockerfile, unchanged, without a Docker engine, and smoke-test the image.

    sudo make image-test          # what `make test` runs when CI=true or when run as root

Rootful podman (Debian's package) with runc builds the Dockerfile in the Docker image format
(the OCI format drops HEALTHCHECK), never pulling anything: the base image named in the
Dockerfile's FROM is a local stand-in, made once with debootstrap and kept between runs in the
scratch folder (IMAGE_TEST_DIR). The model weights come from a mirror folder (MODEL_MIRROR,
default: a `shared/models` folder beside the checkout) given to the build as its
`model-mirror` build context, as docs/operations.md shows for Docker.

The stand-in is NOT the official python image: Debian's own python3 (3.11.2, not 3.11.14) and
pip (23.0.1) on a debootstrap minbase of bookworm, with Debian's EXTERNALLY-MANAGED marker
removed; docs/operations.md lists every difference. Its labels say what it is, and the image
built on it inherits them. The build also mounts this machine's CA bundle (PIP_CERT, else
Debian's) over the stand-in's for its RUN steps, so that pip trusts what this machine trusts (a
TLS-inspecting proxy, say); a bind mount, it leaves nothing in the image.

Then one container runs the image as Docker would be told to in production (`--read-only`
with a tmpfs on /tmp, podman's own `--read-only-tmpfs` off so that it means what Docker means,
every capability dropped, no-new-privileges) and the checks below run against it. Every wait is
bounded, the container is removed by its id whatever happens, and nothing is left running.
Exit status 0 when every check passed, 1 when one failed, 2 when the test could not run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCK_FILE = REPO_ROOT / "requirements.lock"
SIBLING_SHARED = REPO_ROOT.parent / "shared"
# Kept between runs on the same machine (the base image and the build cache live here).
DEFAULT_SCRATCH = Path("/var/tmp/detection-service-image-test")  # noqa: S108 - not a temp file

APP_UID = 10001
IMAGE_TAG = "localhost/detection-service:image-test"
# What the stand-in is made of; a change here (or in STAND_IN_RECIPE's other fields) makes a
# new one at the next run instead of reusing the kept one.
STAND_IN_SUITE = "bookworm"
STAND_IN_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3")
STAND_IN_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)
STAND_IN_RECIPE = json.dumps(
    {"suite": STAND_IN_SUITE, "packages": STAND_IN_PACKAGES, "env": STAND_IN_ENV, "v": 1}
)
RECIPE_LABEL = "detection-service.stand-in-recipe"
# podman's own default for both limits when none is configured.
PODMAN_DEFAULT_ULIMIT = 1048576
# Debian's podman 4.3 lowers its own RLIMIT_NPROC to this when it starts; a container asking
# for more is refused (runc: "error setting rlimit type 6"), so no more is asked for.
PODMAN_NPROC_CEILING = 32768
# Command -> the Debian package that has it. runc, not crun: crun refuses the hybrid cgroup
# v1/v2 layout of this kind of machine.
REQUIRED_TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}

# Bounds of every wait, in seconds: far above what a run takes on a loaded 2-core machine.
APT_TIMEOUT_S = 900
DEBOOTSTRAP_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1500
PODMAN_TIMEOUT_S = 120
READY_TIMEOUT_S = 120
RELOAD_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 30


class Fail(Exception):
    """The test cannot go on; the message says why."""


class Unrunnable(Exception):
    """The test cannot run on this machine at all (exit status 2)."""


def say(message: str) -> None:
    print(f"image-test: {message}", flush=True)


# ---------------------------------------------------------------------------------- podman


@dataclass
class Podman:
    """Rootful podman with its configuration and storage in the scratch folder only."""

    scratch: Path
    executable: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def setup(self) -> None:
        self.executable = _tool("podman")
        conf = self.scratch / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        nofile = _hard_limit(resource.RLIMIT_NOFILE, PODMAN_DEFAULT_ULIMIT)
        nproc = _hard_limit(resource.RLIMIT_NPROC, PODMAN_NPROC_CEILING)
        # podman's default ulimits (1048576 open files and processes) are above this machine's
        # hard limits, and raising a hard limit needs CAP_SYS_RESOURCE, which root lacks here:
        # ask for the current hard limits instead.
        _write(
            conf / "containers.conf",
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            # crun refuses this kind of machine's hybrid cgroup v1/v2 layout; runc runs.
            'runtime = "runc"\n'
            # No systemd: cgroups by hand, events to a file.
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.scratch / "events.log"}"\n',
        )
        _write(
            conf / "storage.conf",
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.scratch / "storage"}"\n'
            f'runroot = "{self.scratch / "run"}"\n',
        )
        # Short names as Docker resolves them (python:... is docker.io/library/python:...).
        _write(
            conf / "registries.conf",
            'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n',
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(conf / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(conf / "registries.conf"),
        }

    def run(
        self, *args: str, timeout: float = PODMAN_TIMEOUT_S, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        try:
            completed = subprocess.run(
                [self.executable, *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **kwargs,
            )
        except subprocess.TimeoutExpired:
            raise Fail(f"`podman {' '.join(args[:3])} ...` took more than {timeout:g} s") from None
        if check and completed.returncode != 0:
            raise Fail(
                f"`podman {' '.join(args[:3])} ...` exited with {completed.returncode}: "
                f"{completed.stderr.strip()[-2000:]}"
            )
        return completed

    def inspect(self, *args: str) -> dict[str, Any]:
        found = json.loads(self.run(*args, "--format", "json").stdout)
        item: dict[str, Any] = found[0] if isinstance(found, list) else found
        return item


def _hard_limit(which: int, ceiling: int) -> int:
    hard = resource.getrlimit(which)[1]
    return ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)


def _write(path: Path, text: str) -> None:
    # Whole or not at all: a run in another checkout may be reading it.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise Unrunnable(f"{name} is not installed")
    return path


def ensure_tools() -> None:
    """Install podman, runc and debootstrap from Debian's packages when one is missing."""
    missing = [pkg for tool, pkg in REQUIRED_TOOLS.items() if _which(tool) is None]
    if not missing:
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise Unrunnable(f"{', '.join(missing)} missing and no apt-get to install them")
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", *missing]):
        try:
            completed = subprocess.run(
                [apt_get, *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unrunnable(f"apt-get {args[0]} took more than {APT_TIMEOUT_S} s") from None
        if completed.returncode != 0:
            raise Unrunnable(f"apt-get {args[0]} failed: {completed.stderr.strip()[-2000:]}")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


# ------------------------------------------------------------------------------ stand-in


def base_reference() -> str:
    """The service stage's FROM, fully qualified as Docker reads it; only the releases the
    stand-in can stand in for (Python 3.11 on Debian bookworm, slim) are accepted."""
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", DOCKERFILE.read_text(), re.M | re.I)
    stages = {stage.lower() for _, stage in froms if stage}
    images = sorted({image for image, _ in froms if image != "scratch" and image not in stages})
    if len(images) != 1:
        raise Fail(f"expected one base image in the Dockerfile's FROM lines, found {images}")
    (image,) = images
    if not re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image):
        raise Fail(
            f"the Dockerfile's base is {image}; the local stand-in is Debian bookworm's Python "
            "3.11 and stands in for python:3.11.*-slim-bookworm only: update scripts/image_test.py"
        )
    return f"docker.io/library/{image}"


def debian_mirror() -> str:
    """DEBIAN_MIRROR, else the archive this Debian machine's own release comes from (the first
    apt source that serves its codename, bookworm or another, with the main component)."""
    configured = os.environ.get("DEBIAN_MIRROR", "").strip()
    if configured:
        return configured
    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    codename = release.get("VERSION_CODENAME", "").strip('"')
    if release.get("ID", "").strip('"') == "debian" and codename:
        sources: list[tuple[list[str], list[str], list[str]]] = []  # (uris, suites, components)
        for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
            for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
                fields: dict[str, list[str]] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith((" ", "\t", "#")):
                        fields[key.strip().lower()] = value.split()
                if "deb" in fields.get("types", []):
                    sources.append(
                        (
                            fields.get("uris", []),
                            fields.get("suites", []),
                            fields.get("components", []),
                        )
                    )
        for path in [
            Path("/etc/apt/sources.list"),
            *Path("/etc/apt/sources.list.d").glob("*.list"),
        ]:
            if path.is_file():
                for line in path.read_text(errors="replace").splitlines():
                    words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                    if len(words) >= 4 and words[0] == "deb":
                        sources.append(([words[1]], [words[2]], words[3:]))
        for uris, suites, components in sources:
            if uris and codename in suites and "main" in components:
                return uris[0]
    raise Unrunnable("no Debian archive found in this machine's apt sources: set DEBIAN_MIRROR")


def ensure_stand_in(podman: Podman, reference: str) -> str:
    """Make the stand-in base image unless the scratch folder keeps one of this recipe."""
    recipe = hashlib.sha256(STAND_IN_RECIPE.encode()).hexdigest()[:16]
    with _locked(podman.scratch / "stand-in.lock"):
        if podman.run("image", "exists", reference, check=False).returncode == 0:
            labels = podman.inspect("image", "inspect", reference).get("Labels") or {}
            if labels.get(RECIPE_LABEL) == recipe:
                return f"kept from an earlier run ({labels.get('org.opencontainers.image.title')})"
        rootfs = podman.scratch / "stand-in-rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        mirror = debian_mirror()
        say(f"making the stand-in for {reference}: debootstrap {STAND_IN_SUITE} from {mirror}")
        try:
            _run(
                [
                    _tool("debootstrap"),
                    "--variant=minbase",
                    f"--include={','.join(STAND_IN_PACKAGES)}",
                    STAND_IN_SUITE,
                    str(rootfs),
                    mirror,
                ],
                DEBOOTSTRAP_TIMEOUT_S,
            )
            # Debian marks its Python as managed by apt; the official image has no marker, and
            # the Dockerfile's pip installs system-wide, as root, the same in both.
            for marker in (rootfs / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
                marker.unlink()
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / leftover).glob("*"):
                    if path.is_file():
                        path.unlink()
            versions = ", ".join(
                _run([_tool("chroot"), str(rootfs), *cmd], 60).stdout.strip().split(" from ")[0]
                for cmd in (["python", "--version"], ["pip", "--version"])
            )
            title = f"local stand-in, not the official image: Debian {STAND_IN_SUITE}, {versions}"
            changes = [f"ENV {env}" for env in STAND_IN_ENV]
            changes += ['CMD ["python3"]', f"LABEL {RECIPE_LABEL}={recipe}"]
            changes.append(f'LABEL org.opencontainers.image.title="{title}"')
            tar = subprocess.Popen(
                [_tool("tar"), "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                stdout=subprocess.PIPE,
            )
            try:
                args = [a for change in changes for a in ("--change", change)]
                podman.run("import", *args, "-", reference, stdin=tar.stdout, timeout=600)
            finally:
                if tar.stdout is not None:
                    tar.stdout.close()
                tar.wait(timeout=60)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
        return f"made ({title})"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two checkouts testing at once on one machine share the scratch folder.
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        completed = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise Fail(f"`{' '.join(args[:2])} ...` took more than {timeout:g} s") from None
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()[-3000:]
        raise Fail(f"`{' '.join(args[:2])} ...` exited with {completed.returncode}:\n{output}")
    return completed


# ---------------------------------------------------------------------------------- build


def model_mirror() -> Path:
    configured = os.environ.get("MODEL_MIRROR", "").strip()
    mirror = Path(configured) if configured else SIBLING_SHARED / "models"
    if not mirror.is_dir():
        raise Unrunnable(f"no model mirror folder {mirror}: set MODEL_MIRROR to one")
    return mirror


def build(podman: Podman, mirror: Path) -> str:
    """`podman build` of the unchanged Dockerfile; returns the image id."""
    iid_file = podman.scratch / f"iid-{os.getpid()}"
    args = [
        "build",
        "--format",
        "docker",
        "--pull=never",
        "--network=host",
        "--build-context",
        f"model-mirror={mirror}",
        "--iidfile",
        str(iid_file),
        "--tag",
        IMAGE_TAG,
        "--file",
        str(DOCKERFILE),
    ]
    ca_bundle = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    if ca_bundle.is_file():
        args += ["--volume", f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    try:
        completed = podman.run(*args, str(REPO_ROOT), timeout=BUILD_TIMEOUT_S, check=False)
        if completed.returncode != 0:
            output = completed.stdout + completed.stderr
            raise Fail(f"podman build failed:\n{_tail(output, 40)}")
        return iid_file.read_text().strip().removeprefix("sha256:")
    finally:
        iid_file.unlink(missing_ok=True)


def _tail(text: str, lines: int) -> str:
    """The last lines of a log, after the error lines in it (a traceback buries them)."""
    all_lines = text.strip().splitlines()
    errors = dict.fromkeys(line for line in all_lines if re.match(r"\w+(Error|Exception): ", line))
    head = [f"error: {line}" for line in errors] + ["--- the log ends with:"] if errors else []
    return "\n".join(head + all_lines[-lines:])


# ------------------------------------------------------------------------------ container


@dataclass
class Container:
    podman: Podman
    image: str
    cid: str
    url: str
    token: str

    def logs(self) -> str:
        completed = self.podman.run("logs", self.cid, check=False)
        return completed.stdout + completed.stderr

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.podman.inspect("container", "inspect", self.cid)["State"]
        return state

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.podman.run("exec", self.cid, *command, check=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(podman: Podman, image: str, cid_file: Path) -> Container:
    port = free_port()
    token = "image-test-" + secrets.token_urlsafe(12)
    completed = podman.run(
        "run",
        "--detach",
        "--cidfile",
        str(cid_file),
        # Host networking: the build machine has no container network set up, and publishing
        # a port is not what this test is about (EXPOSE is metadata).
        "--network=host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp",  # noqa: S108 - the container's own /tmp, a tmpfs of its own
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--env",
        f"API_TOKENS={token}",
        "--env",
        f"PORT={port}",
        "--env",
        "WEB_CONCURRENCY=2",
        image,
    )
    return Container(podman, image, completed.stdout.strip(), f"http://127.0.0.1:{port}/", token)


def wait_ready(container: Container) -> float:
    started = time.monotonic()
    while True:
        state = container.state()
        if not state.get("Running"):
            raise Fail(
                f"the container stopped before it was ready (exit status "
                f"{state.get('ExitCode')}); its log:\n{_tail(container.logs(), 40)}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(container.url + "readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise Fail(f"not ready after {READY_TIMEOUT_S} s; log:\n{_tail(container.logs(), 40)}")
        time.sleep(0.2)


def remove(podman: Podman, cid: str) -> None:
    podman.run("rm", "--force", "--time", "0", cid, check=False)


# --------------------------------------------------------------------------------- checks

Check = Callable[["Container"], str]


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


def _dog() -> Path:
    images = Path(os.environ.get("TEST_IMAGES_DIR") or SIBLING_SHARED / "images")
    dog = images / "dog.jpg"
    if not dog.is_file():
        raise Unrunnable(f"{dog} is missing: set TEST_IMAGES_DIR to the shared test images")
    return dog


EXPECTED_ON_DOG = {"dog", "bicycle", "car"}


def check_send2api(container: Container) -> str:
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "client.send2api", str(_dog()), "--url", container.url],
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
    image = vision.Image(content=_dog().read_bytes())
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
            raise Fail("SIGHUP: " + _tail(log, 5))
        if "models checked, reloading" in log and log.count("Booting worker") >= before + 2:
            break
        time.sleep(0.3)
    else:
        raise Fail(
            f"no reload within {RELOAD_TIMEOUT_S} s of SIGHUP:\n{_tail(container.logs(), 10)}"
        )
    wait_ready(container)
    return "SIGHUP: models checked in a child process, new workers serving"


def check_sigterm(container: Container) -> str:
    container.podman.run("kill", "--signal", "TERM", container.cid)
    container.podman.run("wait", container.cid, timeout=STOP_TIMEOUT_S)
    state = container.state()
    if state.get("ExitCode") != 0:
        raise Fail(
            f"exit status {state.get('ExitCode')} after SIGTERM:\n{_tail(container.logs(), 10)}"
        )
    return "SIGTERM: gunicorn stopped with exit status 0"


# ----------------------------------------------------------------------------------- main

# In this order: the last two change the container (a reload, then its end).
CHECKS: tuple[Check, ...] = (
    check_probes,
    check_log_is_quiet,
    check_send2api,
    check_google_client,
    check_token_required,
    check_processes,
    check_files,
    check_healthcheck,
    check_reload,
    check_sigterm,
)


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGINT/SIGHUP from make or CI: unwind, so that `finally` removes the container.
    raise SystemExit(128 + signum)


def main() -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    started = time.monotonic()
    try:
        if os.geteuid() != 0:
            raise Unrunnable("rootful podman needs root: run `sudo make image-test`")
        if not LOCK_FILE.is_file():
            raise Unrunnable(
                f"{LOCK_FILE.name} is missing: the Dockerfile installs the service's "
                f"dependencies with `pip install --require-hashes -r {LOCK_FILE.name}` (every "
                "package pinned with its sha256 hashes); create it with `make lock`"
            )
        reference = base_reference()
        mirror = model_mirror()
        _dog()
        ensure_tools()
        scratch = Path(os.environ.get("IMAGE_TEST_DIR") or DEFAULT_SCRATCH)
        scratch.mkdir(parents=True, exist_ok=True)
        podman = Podman(scratch)
        podman.setup()
    except (Unrunnable, Fail) as exc:
        say(f"cannot run: {exc}")
        return 2

    cid_file = Path(tempfile.mkdtemp(dir=scratch, prefix="cid-")) / "cid"
    passed: list[str] = []
    failed: list[str] = []
    try:
        mark = time.monotonic()
        base = ensure_stand_in(podman, reference)
        say(f"base {reference}: {base} ({time.monotonic() - mark:.0f} s)")
        mark = time.monotonic()
        image = build(podman, mirror)
        seconds = time.monotonic() - mark
        say(f"built {IMAGE_TAG} ({image[:12]}) in {seconds:.0f} s, model from {mirror}")
        size = int(podman.inspect("image", "inspect", image)["Size"])
        base_size = int(podman.inspect("image", "inspect", reference)["Size"])
        megabytes = f"{size / 1e6:.0f} MB ({size} bytes)"
        say(f"image size: {megabytes}; the stand-in base alone: {base_size / 1e6:.0f} MB")
        container = start(podman, image, cid_file)
        say(f"container {container.cid[:12]} ready in {wait_ready(container):.1f} s")
        for check in CHECKS:
            name = check.__name__.removeprefix("check_")
            try:
                print(f"ok    {name}: {check(container)}", flush=True)
                passed.append(name)
            except Exception as exc:  # a check that breaks is a failed check, not a crash
                print(f"FAIL  {name}: {exc}", flush=True)
                failed.append(name)
    except Fail as exc:
        print(f"FAIL  {exc}", flush=True)
        failed.append("setup")
    finally:
        cid = cid_file.read_text().strip() if cid_file.is_file() else ""
        if cid:
            remove(podman, cid)
        shutil.rmtree(cid_file.parent, ignore_errors=True)
        # Earlier runs' images whose tag has moved on; an hour old, so as to leave alone an
        # image that a run in another checkout has just built.
        podman.run("image", "prune", "--force", "--filter", "until=1h", check=False)
    say(f"{time.monotonic() - started:.0f} s in all")
    say(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
