"""The local stand-in for the Dockerfile's base image: made once with debootstrap, kept in the
scratch folder between runs, remade when its recipe changes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from .common import DEBOOTSTRAP_TIMEOUT_S, DOCKERFILE, Fail, Unrunnable, say
from .podman import Podman, tool

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
                    tool("debootstrap"),
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
                _run([tool("chroot"), str(rootfs), *cmd], 60).stdout.strip().split(" from ")[0]
                for cmd in (["python", "--version"], ["pip", "--version"])
            )
            title = f"local stand-in, not the official image: Debian {STAND_IN_SUITE}, {versions}"
            changes = [f"ENV {env}" for env in STAND_IN_ENV]
            changes += ['CMD ["python3"]', f"LABEL {RECIPE_LABEL}={recipe}"]
            changes.append(f'LABEL org.opencontainers.image.title="{title}"')
            tar = subprocess.Popen(
                [tool("tar"), "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
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
