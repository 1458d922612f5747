"""The gunicorn master's part in keeping a bad model file from stopping a running server.

1. **A verified copy of the weights.** When the server starts, and after every reload whose
   model check passed, the master copies the weights files of the models the workers load,
   each only when it has the sha256 that a child process found the manifest to accept, into an
   anonymous in-memory file (memfd) that every worker it forks inherits and loads from, not
   from the file: a file corrupted or deleted on disk under a running server cannot stop a
   worker from coming back after a crash, a kill, a timeout or a recycle. The master itself
   imports only the standard library (the manifests are read by the child): no onnxruntime
   session before a fork, no numpy or OpenCV in every worker's inherited memory.

2. **A reload only after a model check, off the master's loop.** On SIGHUP gunicorn starts new
   workers and stops the old ones at once. The guard installed here first loads every model in
   a child process (scripts/check_models.py, exactly as a worker would); a thread of the master
   waits for it, and the master's loop goes on meanwhile (reaping, restarting and timing out
   workers). When the check is done the thread sends the master a SIGHUP of its own, and the
   master, in its loop, reloads if the check passed and the files still have the sha256 the
   check loaded (taking the new verified copy), or logs why not and keeps the old workers.

gunicorn.conf.py calls `install(server)` from `when_ready`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

CHECK_SCRIPT = Path(__file__).resolve().parent / "scripts" / "check_models.py"
CHECK_TIMEOUT_S = 300
# scripts/check_models.py's last line when every model loaded (or, with --weights, when the
# weights were checked), and its line per weights file.
ALL_LOADED = "all models loaded"
WEIGHTS_VERIFIED = "weights verified"
_WEIGHTS_LINE = re.compile(r"^weights (?P<sha256>[0-9a-f]{64}) (?P<path>/.+)$")

# Resolved weights path -> the verified copy's path (/proc/self/fd/N), and the copies' fds.
_verified: dict[Path, Path] = {}
_copies: list[int] = []


def verified_weights() -> Mapping[Path, Path]:
    """The master's verified copies (resolved path -> copy), as inherited by a worker."""
    return MappingProxyType(_verified)


def copy_verified(lines: Sequence[str]) -> tuple[dict[Path, Path], list[int], list[str]]:
    """For each `weights <sha256> <path>` line of a check: the file copied into a memfd when
    it still has that sha256. Returns the copies, their fds, and what was left out, why."""
    copies: dict[Path, Path] = {}
    fds: list[int] = []
    problems: list[str] = []
    for match in filter(None, map(_WEIGHTS_LINE.match, lines)):
        path = Path(match["path"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{path.name}: {exc.strerror}")
            continue
        if hashlib.sha256(data).hexdigest() != match["sha256"]:
            problems.append(f"{path.name} changed after the model check")
            continue
        fd = os.memfd_create(f"verified-{path.name}", 0)  # inherited by the workers
        with os.fdopen(os.dup(fd), "wb") as copy:
            copy.write(data)
        fds.append(fd)
        copies[path] = Path(f"/proc/self/fd/{fd}")
    return copies, fds, problems


def _install_copies(copies: Mapping[Path, Path], fds: Sequence[int]) -> None:
    """The new copies for the workers forked from now on; the old ones are closed here (the
    workers that loaded them keep their own descriptors until they exit)."""
    for fd in _copies:
        with contextlib.suppress(OSError):
            os.close(fd)
    _verified.clear()
    _verified.update(copies)
    _copies[:] = fds


@dataclass(frozen=True)
class CheckResult:
    stdout: str = ""
    stderr: str = ""
    error: str | None = None


class ReloadGuard:
    """Replaces the arbiter's `reload`: see the module's docstring, point 2."""

    def __init__(
        self,
        server: Any,
        command: Sequence[str] = (sys.executable, str(CHECK_SCRIPT)),
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self.server = server
        self.reload_workers = server.reload
        self.command = list(command)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._result: CheckResult | None = None

    def __call__(self) -> None:
        with self._lock:
            result, self._result = self._result, None
        if result is not None:
            self._thread = None
            self._finish(result)
            return
        if self._thread is not None:
            self.server.log.info("a model check is already running; this SIGHUP waits for it")
            return
        self.server.log.info("checking the models in a child process before reloading")
        self._thread = threading.Thread(target=self._check, name="model-check", daemon=True)
        self._thread.start()

    def _check(self) -> None:
        """In a thread of the master: run the check, hand the result to the master's loop.
        Nothing is logged here (the master's loop logs, in `_finish`)."""
        try:
            completed = subprocess.run(
                self.command,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
            result = CheckResult(completed.stdout, completed.stderr)
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = CheckResult(error=f"the model check failed: {exc}")
        with self._lock:
            self._result = result
        os.kill(os.getpid(), signal.SIGHUP)

    def _finish(self, result: CheckResult) -> None:
        refused = "reload refused, old workers keep serving: %s"
        if result.error is not None:
            self.server.log.error(refused, result.error)
            return
        # Not the exit status: the master reaps every child (waitpid(-1)), this one too.
        lines = result.stdout.strip().splitlines()
        if not lines or lines[-1] != ALL_LOADED:
            reason = result.stderr.strip().splitlines()[-1:] or ["the model check printed nothing"]
            self.server.log.error(refused, reason[0])
            return
        copies, fds, problems = copy_verified(lines)
        if problems:
            for fd in fds:
                os.close(fd)
            self.server.log.error(refused, "; ".join(problems))
            return
        _install_copies(copies, fds)
        summary = [line for line in lines[:-1] if line.startswith("ok:")]
        self.server.log.info("models checked, reloading: %s", " | ".join(summary))
        self.reload_workers()


def install(server: Any) -> None:
    """From gunicorn's `when_ready`: the first verified copy, from a child that checks the
    weights against the manifests (a second or so, before the first workers); then every
    reload is guarded."""
    try:
        checked = subprocess.run(
            [sys.executable, str(CHECK_SCRIPT), "--weights"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
        lines = checked.stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as exc:
        lines = [f"error: {exc}"]
    if not lines or lines[-1] != WEIGHTS_VERIFIED:
        # The workers will load from the files and say what is wrong.
        reason = (checked.stderr.strip().splitlines() or lines or ["no output"])[-1]
        server.log.error("no verified copy of the weights: %s", reason)
        lines = []
    copies, fds, problems = copy_verified(lines)
    for problem in problems:
        server.log.error("no verified copy of %s", problem)
    _install_copies(copies, fds)
    server.log.info(
        "verified copy of the weights for the workers: %s",
        ", ".join(path.name for path in copies) or "none",
    )
    server.reload = ReloadGuard(server)
