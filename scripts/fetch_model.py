"""Obtain model weights named by `models/<name>.json` manifests and verify their sha256.

Sources, in order: a mirror folder (`--mirror`, else `MODEL_MIRROR`, else a `shared/models`
folder beside the checkout when it exists), then the manifest's upstream URL. Weights that are
already present and verified are left alone. Standard library only, so it runs anywhere
(including a bare Docker build stage).

    python scripts/fetch_model.py                  # the default model, yolox_nano
    python scripts/fetch_model.py nanodet_m_416 --optional   # not optional under CI=true
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
SIBLING_MIRROR = REPO_ROOT.parent / "shared" / "models"
DOWNLOAD_TIMEOUT_S = 60
# Weights are public and read by the service's user: owner writes, everyone reads.
WEIGHTS_MODE = 0o644


class FetchError(Exception):
    """A model could not be obtained; the message says what to do."""


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def default_mirror() -> Path | None:
    configured = os.environ.get("MODEL_MIRROR", "").strip()
    if configured:
        return Path(configured)
    return SIBLING_MIRROR if SIBLING_MIRROR.is_dir() else None


def _download(url: str, destination: Path) -> None:
    if not url.startswith("https://"):
        raise FetchError(f"refusing to download from a non-https URL: {url}")
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,  # noqa: S310
            destination.open("wb") as handle,
        ):
            shutil.copyfileobj(response, handle, 1 << 20)
    except OSError as exc:  # URLError and timeouts are OSErrors
        raise FetchError(
            f"download of {url} failed ({exc}). Without network access, put the file in a "
            "folder and set MODEL_MIRROR to it."
        ) from exc


def fetch(name: str, models_dir: Path, mirror: Path | None, optional: bool) -> str:
    """Make `models_dir/<file>` hold verified weights; returns a one-line account."""
    manifest_path = models_dir / f"{name}.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        file_name = manifest["file"]
        accepted = {s.lower() for s in manifest.get("sha256", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FetchError(f"cannot read the manifest {manifest_path}: {exc}") from exc
    if not accepted:
        raise FetchError(f"{manifest_path} lists no sha256: add the accepted checksums")
    target = models_dir / file_name
    if target.is_file() and sha256_of(target) in accepted:
        # A file fetched before the mode was set (or copied in by hand) may be owner-only,
        # and the service often runs as another user than the one who fetched it.
        if stat.S_IMODE(target.stat().st_mode) != WEIGHTS_MODE:
            target.chmod(WEIGHTS_MODE)
        return f"{name}: {target} present, sha256 verified"

    sources: list[tuple[str, Path | str]] = []
    if mirror is not None and (mirror / file_name).is_file():
        sources.append(("mirror", mirror / file_name))
    upstream = manifest.get("upstream_url")
    if upstream and not optional:
        sources.append(("upstream", upstream))
    if not sources:
        if optional:
            return f"{name}: skipped ({file_name} is not in a mirror folder; set MODEL_MIRROR)"
        raise FetchError(
            f"{name}: no source for {file_name}: no mirror folder holds it and the manifest "
            "has no upstream_url. Set MODEL_MIRROR to a folder that holds it."
        )

    problems = []
    for kind, source in sources:
        with tempfile.NamedTemporaryFile(dir=models_dir, suffix=".onnx.part", delete=False) as tmp:
            partial = Path(tmp.name)
        try:
            if isinstance(source, Path):
                shutil.copyfile(source, partial)
            else:
                _download(source, partial)
            digest = sha256_of(partial)
            if digest not in accepted:
                problems.append(
                    f"{kind} {source} has sha256 {digest}, not one the manifest accepts "
                    f"({', '.join(sorted(accepted))})"
                )
                continue
            # NamedTemporaryFile creates its file 0600 whatever the umask: made readable by
            # everyone before it goes into place, since the service may run as another user
            # than the one who fetched the weights (the Docker image's app user does).
            partial.chmod(WEIGHTS_MODE)
            partial.replace(target)
            return f"{name}: {target} from {kind} {source}, sha256 {digest} verified"
        except FetchError as exc:
            problems.append(str(exc))
        finally:
            partial.unlink(missing_ok=True)
    raise FetchError(f"{name}: " + "; ".join(problems))


def running_in_ci() -> bool:
    """CI=true (or CI=1), as CI services set it."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["yolox_nano"], help="model names")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--mirror", type=Path, default=None, help="folder holding the weights")
    parser.add_argument(
        "--optional",
        action="store_true",
        help="take the weights from a mirror only, and skip quietly when none has them "
        "(ignored under CI=true, where every model the tests use must be there)",
    )
    args = parser.parse_args(argv)
    mirror = args.mirror or default_mirror()
    optional = args.optional and not running_in_ci()
    if args.optional and not optional:
        print("CI=true: --optional ignored, a missing model is an error", file=sys.stderr)
    for name in args.names:
        try:
            print(fetch(name, args.models_dir, mirror, optional))
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
