"""The gunicorn master's part in keeping a bad model file from stopping a running server.

1. **A verified copy of the weights.** When the server starts, and after every reload whose
   model check passed, the master reads the weights files of the models the workers load and
   keeps in memory those whose manifest accepts their sha256. Every worker it forks loads from
   that copy, not from the file: a file corrupted or deleted on disk under a running server
   cannot stop a worker from coming back after a crash, a kill, a timeout or a recycle. The
   master only reads bytes: it never creates an onnxruntime session (sessions must not exist
   before a fork) and never imports onnxruntime or OpenCV.

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

from config import ConfigError, load_config
from manifests import snapshot_weights

CHECK_SCRIPT = Path(__file__).resolve().parent / "scripts" / "check_models.py"
CHECK_TIMEOUT_S = 300
# scripts/check_models.py's last line when every model loaded, and its line per weights file.
ALL_LOADED = "all models loaded"
_WEIGHTS_LINE = re.compile(r"^weights (?P<sha256>[0-9a-f]{64}) (?P<path>.+)$")

_verified: dict[Path, bytes] = {}


def verified_weights() -> Mapping[Path, bytes]:
    """The master's verified copy (resolved path -> bytes), as inherited by a worker."""
    return MappingProxyType(_verified)


def take_snapshot(environ: Mapping[str, str]) -> dict[Path, bytes]:
    config = load_config(environ)
    return snapshot_weights(config.models_dir, config.models or None)


def _install_weights(snapshot: Mapping[Path, bytes]) -> None:
    _verified.clear()
    _verified.update(snapshot)


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
        try:
            snapshot = take_snapshot(os.environ)
        except ConfigError as exc:
            self.server.log.error(refused, exc)
            return
        checked = [m for m in map(_WEIGHTS_LINE.match, lines) if m is not None]
        for match in checked:
            data = snapshot.get(Path(match["path"]))
            if data is None or hashlib.sha256(data).hexdigest() != match["sha256"]:
                self.server.log.error(
                    refused, f"{Path(match['path']).name} changed after the model check"
                )
                return
        _install_weights(snapshot)
        summary = [line for line in lines[:-1] if line.startswith("ok:")]
        self.server.log.info("models checked, reloading: %s", " | ".join(summary))
        self.reload_workers()


def install(server: Any) -> None:
    """From gunicorn's `when_ready`: take the first verified copy, guard every reload."""
    try:
        snapshot = take_snapshot(os.environ)
    except ConfigError as exc:
        # The workers will say so too, and stop the server: a misconfiguration fails at start.
        server.log.error("no verified copy of the weights: %s", exc)
        snapshot = {}
    _install_weights(snapshot)
    server.log.info(
        "verified copy of the weights for the workers: %s",
        ", ".join(f"{path.name} ({len(data)} bytes)" for path, data in snapshot.items()) or "none",
    )
    server.reload = ReloadGuard(server)
