"""master_models.ReloadGuard: the model check before a reload runs off the master's loop (the
guard returns at once, while the check is still running), the reload happens only when the
check's own SIGHUP comes back with a pass, and a failed check keeps the old workers."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from master_models import ALL_LOADED, ReloadGuard

# Bounds against hangs only.
WAIT_S = 60


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append("info " + message % args)

    def error(self, message: str, *args: Any) -> None:
        self.lines.append("error " + message % args)


class _Server:
    """What the guard uses of gunicorn's arbiter: `reload` and `log`."""

    def __init__(self) -> None:
        self.reloads = 0
        self.log = _Log()

    def reload(self) -> None:
        self.reloads += 1


@pytest.fixture
def hangup() -> Iterator[threading.Event]:
    """The SIGHUP the guard's thread sends to its own process (the master, in gunicorn)."""
    received = threading.Event()
    previous = signal.signal(signal.SIGHUP, lambda *_: received.set())
    yield received
    signal.signal(signal.SIGHUP, previous)


def _check_waiting_for(release: Path, last_line: str) -> list[str]:
    code = (
        "import pathlib, time\n"
        f"while not pathlib.Path({str(release)!r}).exists():\n"
        "    time.sleep(0.05)\n"
        f"print({last_line!r})\n"
    )
    return [sys.executable, "-c", code]


@pytest.mark.parametrize(
    ("last_line", "reloads", "logged"),
    [
        pytest.param(ALL_LOADED, 1, "info models checked, reloading", id="check-passes"),
        pytest.param("error: broken", 0, "error reload refused", id="check-fails"),
    ],
)
def test_the_check_runs_off_the_loop_and_decides_the_reload(
    tmp_path: Path,
    hangup: threading.Event,
    last_line: str,
    reloads: int,
    logged: str,
) -> None:
    server = _Server()
    release = tmp_path / "release"
    guard = ReloadGuard(server, _check_waiting_for(release, last_line), timeout_s=WAIT_S)
    guard()
    # Back in the master's loop while the check is still running: nothing reloaded yet.
    assert server.reloads == 0
    guard()  # a second SIGHUP meanwhile waits for the same check
    assert any("already running" in line for line in server.log.lines)
    release.touch()
    assert hangup.wait(WAIT_S), "the guard's thread never signalled the master"
    guard()  # the master's loop handles that SIGHUP
    assert server.reloads == reloads
    assert any(line.startswith(logged) for line in server.log.lines), server.log.lines
