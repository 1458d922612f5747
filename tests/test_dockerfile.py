"""The Dockerfile, read without building it: the image gets every module the service imports,
and only model manifests whose weights it fetches.

COPY is read as Docker reads it: a folder source puts its contents (not the folder) at the
target, sources are globs, `.dockerignore` removes files from the build context, and COPY
--from takes nothing from the context. `make image-test` builds and starts the image for real.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.helpers import REPO_ROOT
from ui import routes as ui_routes

# What the image runs: the WSGI app (gunicorn.conf.py names serve_http), the gunicorn config,
# and the scripts the config (reload check) and the build (model fetch) run.
ENTRY_POINTS = ("serve_http.py", "gunicorn.conf.py", "scripts/check_models.py")


# Read at run time, not imported: the gunicorn config, the OpenAPI document and every file of
# the web UI (ui/routes.py: UI_FILES, served from ui/static/ by name).
def runtime_files(ui_files: Iterable[str]) -> tuple[str, ...]:
    return (
        "gunicorn.conf.py",
        "openapi.json",
        *(f"ui/static/{name}" for name in sorted(ui_files)),
    )


RUNTIME_FILES = runtime_files(ui_routes.UI_FILES)


@dataclass(frozen=True)
class Image:
    """What the final stage of a Dockerfile puts in the image from the build context."""

    workdir: PurePosixPath
    files: frozenset[PurePosixPath]  # absolute paths in the image
    fetched_models: frozenset[str]  # names given to scripts/fetch_model.py in RUN lines


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\[ \t]*\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def _pattern_matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_pattern_matches(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _pattern_matches(pattern[1:], parts[1:])
    )


def ignored(relative: PurePosixPath, dockerignore: str) -> bool:
    """Whether `.dockerignore` keeps this file out of the build context: a pattern that
    matches the file or a folder above it excludes it, `!pattern` takes it back, last wins."""
    verdict = False
    for raw in dockerignore.splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = tuple(PurePosixPath(rule.lstrip("!").strip("/")).parts)
        prefixes = [relative.parts[: i + 1] for i in range(len(relative.parts))]
        if any(_pattern_matches(pattern, prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def read_image(dockerfile: str, context: Path, dockerignore: str = "") -> Image:
    """The files the last stage copies from `context`, as absolute paths in the image."""
    workdir = PurePosixPath("/")
    files: set[PurePosixPath] = set()
    fetched: set[str] = set()
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":  # a new stage: only the last one is the image
            workdir, files, fetched = PurePosixPath("/"), set(), set()
        elif keyword == "WORKDIR":
            workdir = workdir / arguments
        elif keyword == "RUN" and "fetch_model.py" in arguments:
            words = shlex.split(arguments.split("fetch_model.py", 1)[1].split("&&")[0])
            fetched.update(word for word in words if not word.startswith("-"))
        elif keyword in {"COPY", "ADD"}:
            words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            if any(word.startswith("--from") for word in words):
                continue  # from another stage or image, not from the context
            *sources, target = [word for word in words if not word.startswith("--")]
            destination = workdir / target
            into_folder = target.endswith("/") or len(sources) > 1
            for source in sources:
                for match in sorted(context.glob(source)):
                    if match.is_dir():
                        pairs = [
                            (path, destination / path.relative_to(match).as_posix())
                            for path in match.rglob("*")
                            if path.is_file()
                        ]
                    else:
                        pairs = [(match, destination / match.name if into_folder else destination)]
                    files.update(
                        in_image
                        for path, in_image in pairs
                        if not ignored(
                            PurePosixPath(path.relative_to(context).as_posix()), dockerignore
                        )
                    )
    return Image(workdir, frozenset(files), frozenset(fetched))


def local_imports(path: Path, root: Path) -> set[str]:
    """Top-level names imported by `path` that are modules or packages of `root`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {
        n for n in names if (root / f"{n}.py").is_file() or (root / n / "__init__.py").is_file()
    }


def needed_files(root: Path, entry_points: tuple[str, ...]) -> set[str]:
    """Every project file the entry points import, transitively: a module's `.py`, or all of
    a package's `.py` files (any of them may be imported), relative to `root`."""
    needed: set[str] = set()
    todo = [root / entry for entry in entry_points]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        needed.add(path.relative_to(root).as_posix())
        for name in local_imports(path, root):
            package = root / name
            if (package / "__init__.py").is_file():
                todo.extend(sorted(package.rglob("*.py")))
            else:
                todo.append(root / f"{name}.py")
    return needed


def missing_from_image(
    root: Path, dockerfile: str, dockerignore: str, runtime: Iterable[str] = RUNTIME_FILES
) -> list[str]:
    image = read_image(dockerfile, root, dockerignore)
    wanted = needed_files(root, ENTRY_POINTS) | set(runtime)
    return sorted(f for f in wanted if image.workdir / f not in image.files)


# --------------------------------------------------------------------------- the checker

_SERVICE = {
    "serve_http.py": "import os\nimport flask\nfrom core import run\nfrom dialects import vision\n",
    "core.py": "from leaf import x\n",
    "leaf.py": "x = 1\n",
    "unused.py": "",
    "dialects/__init__.py": "",
    "dialects/vision.py": "from . import common\nfrom leaf import x\n",
    "dialects/common.py": "",
    "gunicorn.conf.py": "import os\n",
    "scripts/check_models.py": "import sys\nfrom core import run\n",
    "openapi.json": "{}",
    "ui/static/index.html": "<!doctype html>",
    "ui/static/app.js": "",
}
_COPY_ALL = (
    "FROM python:3.11-slim\nWORKDIR /app\nCOPY scripts/ scripts/\n"
    "COPY serve_http.py core.py \\\n    leaf.py gunicorn.conf.py openapi.json ./\n"
    "COPY dialects/ dialects/\nCOPY ui/ ui/\n"
)
# The synthetic service's UI serves these two files.
_RUNTIME = runtime_files(["index.html", "app.js"])


@pytest.mark.parametrize(
    ("dockerfile", "dockerignore", "missing"),
    [
        pytest.param(_COPY_ALL, "", [], id="everything-copied"),
        pytest.param(
            _COPY_ALL.replace(" leaf.py", ""), "", ["leaf.py"], id="module-imported-by-a-module"
        ),
        pytest.param(
            _COPY_ALL.replace("COPY dialects/ dialects/\n", ""),
            "",
            ["dialects/__init__.py", "dialects/common.py", "dialects/vision.py"],
            id="package-not-copied",
        ),
        pytest.param(
            # A folder source puts its contents at the target: dialects/ lands in /app itself.
            _COPY_ALL.replace("COPY dialects/ dialects/", "COPY dialects/ ./"),
            "",
            ["dialects/__init__.py", "dialects/common.py", "dialects/vision.py"],
            id="package-flattened",
        ),
        pytest.param(
            _COPY_ALL, "# local state\ndialects/common.py\n", ["dialects/common.py"], id="ignored"
        ),
        pytest.param(_COPY_ALL, "dialects\n!dialects/*.py\n", [], id="ignored-then-taken-back"),
        pytest.param(
            _COPY_ALL.replace("COPY scripts/ scripts/\n", ""),
            "",
            ["scripts/check_models.py"],
            id="scripts-not-copied",
        ),
        pytest.param(
            _COPY_ALL.replace(" openapi.json", ""), "", ["openapi.json"], id="runtime-file"
        ),
        pytest.param(
            # The UI's files are served at run time: without ui/ in the image, /ui/ is a 500.
            _COPY_ALL.replace("COPY ui/ ui/\n", ""),
            "",
            ["ui/static/app.js", "ui/static/index.html"],
            id="ui-not-copied",
        ),
        pytest.param(_COPY_ALL, "ui/static/*.js\n", ["ui/static/app.js"], id="ui-file-ignored"),
        pytest.param(
            # Copied into an earlier stage only, or from another stage: not in the image.
            _COPY_ALL + "FROM python:3.11-slim\nWORKDIR /app\nCOPY --from=0 /app /app\n",
            "",
            sorted(_SERVICE.keys() - {"unused.py"}),
            id="last-stage-only",
        ),
        pytest.param(_COPY_ALL.replace("WORKDIR /app", "WORKDIR /srv"), "", [], id="other-workdir"),
    ],
)
def test_checker_finds_what_the_image_lacks(
    tmp_path: Path, dockerfile: str, dockerignore: str, missing: list[str]
) -> None:
    for name, content in _SERVICE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    assert missing_from_image(tmp_path, dockerfile, dockerignore, _RUNTIME) == missing


def test_fetched_model_names_are_read_from_run_lines(tmp_path: Path) -> None:
    dockerfile = (
        "FROM x\nRUN --mount=type=bind,from=m,target=/m \\\n"
        "    MODEL_MIRROR=/m python scripts/fetch_model.py yolox_nano other --optional\n"
    )
    assert read_image(dockerfile, tmp_path).fetched_models == {"yolox_nano", "other"}


# ------------------------------------------------------------------------ the Dockerfile


def _project_image() -> Image:
    return read_image(
        (REPO_ROOT / "Dockerfile").read_text(),
        REPO_ROOT,
        (REPO_ROOT / ".dockerignore").read_text(),
    )


def test_image_copies_every_module_the_service_imports() -> None:
    # A module split off (or newly imported) and not copied fails only when the container
    # starts; this says which one without building.
    missing = missing_from_image(
        REPO_ROOT,
        (REPO_ROOT / "Dockerfile").read_text(),
        (REPO_ROOT / ".dockerignore").read_text(),
    )
    assert missing == [], f"add to the Dockerfile's COPY: {missing}"


def test_no_module_in_the_image_imports_requests() -> None:
    # requests is the client's dependency, not the service's: the image does not install it.
    image = _project_image()
    modules = [
        REPO_ROOT / path.relative_to(image.workdir)
        for path in image.files
        if path.suffix == ".py" and path.is_relative_to(image.workdir)
    ]
    assert modules
    assert not [
        m.name for m in modules if "requests" in local_imports(m, REPO_ROOT) | _all_imports(m)
    ]


def _all_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_image_ships_only_manifests_whose_weights_it_fetches() -> None:
    # A manifest without its weights makes every worker warn at start, telling the operator
    # to run `make model`, which the image does not have.
    image = _project_image()
    models = image.workdir / "models"
    manifests = {p.stem for p in image.files if p.parent == models and p.suffix == ".json"}
    assert manifests, "the image copies no model manifest"
    assert manifests == image.fetched_models
    for name in manifests:
        labels = json.loads((REPO_ROOT / "models" / f"{name}.json").read_text()).get("labels_file")
        if labels:
            assert models / labels in image.files, f"{name}: its labels_file {labels}"


def test_image_installs_the_lock_file_with_hashes() -> None:
    # The one lock file `make` installs from too; it is not checked here that it exists (the
    # image test fails with a clear message when it does not).
    steps = instructions((REPO_ROOT / "Dockerfile").read_text())
    assert ("COPY", "requirements.lock ./") in steps
    assert any(
        keyword == "RUN"
        and "pip install" in args
        and "--require-hashes -r requirements.lock" in args
        for keyword, args in steps
    )


def test_every_stage_starts_from_the_one_base_image() -> None:
    # The model-mirror stage reuses the service's base, so that no other image is pulled.
    steps = instructions((REPO_ROOT / "Dockerfile").read_text())
    bases = {args.split()[0] for keyword, args in steps if keyword == "FROM"}
    assert len(bases) == 1, bases
