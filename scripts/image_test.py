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
every capability dropped, no-new-privileges) and the checks (scripts/image_testing/checks.py)
run against it. Every wait is bounded, the container is removed by its id whatever happens, and
nothing is left running. The parts of the test are the modules of scripts/image_testing/.
Exit status 0 when every check passed, 1 when one failed, 2 when the test could not run.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType

from image_testing.build import IMAGE_TAG, build, model_mirror
from image_testing.checks import CHECKS, dog_photo
from image_testing.common import DEFAULT_SCRATCH, LOCK_FILE, Fail, Unrunnable, say
from image_testing.container import remove, start, wait_ready
from image_testing.podman import Podman, ensure_tools
from image_testing.stand_in import base_reference, ensure_stand_in


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
        dog_photo()
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
