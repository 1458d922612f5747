"""Rootful podman: installing it (and what the test needs besides) from Debian's packages,
configuring it in the scratch folder only, and running it with a bound on every call."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import APT_TIMEOUT_S, PODMAN_TIMEOUT_S, Fail, Unrunnable, say

# podman's own default for both limits when none is configured.
PODMAN_DEFAULT_ULIMIT = 1048576
# Debian's podman 4.3 lowers its own RLIMIT_NPROC to this when it starts; a container asking
# for more is refused (runc: "error setting rlimit type 6"), so no more is asked for.
PODMAN_NPROC_CEILING = 32768
# Command -> the Debian package that has it. runc, not crun: crun refuses the hybrid cgroup
# v1/v2 layout of this kind of machine.
REQUIRED_TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}


@dataclass
class Podman:
    """Rootful podman with its configuration and storage in the scratch folder only."""

    scratch: Path
    executable: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def setup(self) -> None:
        self.executable = tool("podman")
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


def tool(name: str) -> str:
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
