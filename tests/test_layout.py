"""Layout guards: which of the project's modules may import which, what the Docker image copies,
and how long a module may grow.

Every rule is a function of the project's import graph (module -> what it imports, read from
the source with ast) or of file texts. Each is run on the project, and again on a synthetic
graph or a temporary file that breaks it, so that every guard is seen to fail.
"""

from __future__ import annotations

import ast
import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, run_python

# --- the rules, as tables ---------------------------------------------------------------------

# The service's modules, top to bottom (fnmatch patterns of dotted module names). A module may
# import only modules of the layers below its own: never sideways, never up. image_io sits
# below predict: it is the one owner of cv2, and predict takes cv2 (for resizing) from it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # gunicorn's settings and the worker class they name (gunicorn_worker.py).
    ("run the service", ("gunicorn.conf", "gunicorn_worker")),
    ("composition root", ("serve_http",)),
    ("the web UI's files", ("ui", "ui.*")),
    ("views of other servers' protocols", ("compat", "compat.*")),
    # Metrics and log formatting: gunicorn.conf.py's hooks and the app use them.
    ("observability", ("metrics", "logs")),
    # The image repository (repository/): above the protocols and the core it uses, below the
    # root that installs its blueprint; nothing under it imports it. Its own modules in layers
    # too: the views (the one module of it that knows Flask: OWNERS) and the command line,
    # then what they answer with, the transactions, and their parts.
    (
        "repository views and commands",
        ("repository", "repository.routes", "repository.__main__", "repository.migrations.*"),
    ),
    ("repository answers", ("repository.shapes",)),
    ("repository operations", ("repository.service",)),
    ("repository upkeep and filters", ("repository.maintenance", "repository.queries")),
    ("repository rows", ("repository.rows",)),
    ("repository values", ("repository.records",)),
    (
        "repository parts",
        (
            "repository.db",
            "repository.storage",
            "repository.pages",
            "repository.exif",
            "repository.renditions",
            "repository.tables",
        ),
    ),
    ("protocols", ("dialects", "dialects.*")),
    ("tokens and pictures", ("auth", "render")),
    ("core", ("utils_serve",)),
    ("models", ("registry",)),
    ("detector", ("predict",)),
    ("images", ("image_io",)),
    ("manifests", ("manifests",)),
    ("families", ("families",)),
    # Request bodies and base64 images, read for the core.
    ("bodies", ("request_body", "base64_image")),
    # master_models: the gunicorn master's verified weights (stdlib only); http_front: the
    # worker's HTTP framing (gunicorn only).
    (
        "leaves",
        (
            "detection_types",
            "errors",
            "config",
            "image_header",
            "stages",
            "master_models",
            "http_front",
        ),
    ),
    # What the machine gives: CPU quota and set (config's defaults follow it).
    ("machine", ("cpu_quota",)),
)
# Not part of the service: imports nothing of it.
CLIENT = ("client", "client.*")
# The tools outside the service (not walked: SKIPPED_DIRS); nothing walked imports them.
TOOLS = frozenset({"tests", "scripts", "benchmarks"})
# Where a module's imports of these may be; nowhere else.
OWNERS: Mapping[str, tuple[str, ...]] = {
    # OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, at its first import: image_io sets it first.
    "cv2": ("image_io",),
    # Only the composition root and blueprints know HTTP.
    "flask": ("serve_http", "*.routes"),
    "werkzeug": ("serve_http", "*.routes"),
}
# Neither the protocols nor the core know HTTP.
NO_HTTP = ("dialects", "dialects.*", "utils_serve")
DIALECTS = "dialects.*"
LEAF = "errors"
# Beyond the layers: (modules, what they never import, why).
FORBIDDEN: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        ("predict", "manifests", "families", "detection_types"),
        ("config",),
        "detection knows nothing of the service's configuration",
    ),
)
# Line limits: utils_serve is the core and stays small; families.py holds every family's head.
MAX_LINES = 600
LINE_LIMITS: Mapping[str, int | None] = {"utils_serve.py": 450, "families.py": None}
# Not walked for the import rules: tools that stand outside the service and drive it from the
# outside. tests/ and scripts/ do, and so does benchmarks/, which measures the service against
# reference sides of its own (a naive Flask app with its own onnxruntime session, cv2 for the
# large test images): those may import Flask and cv2, and nothing of the service imports them.
# The size guard still walks all three (test_modules_stay_small).
SKIPPED_DIRS = frozenset({"tests", "scripts", "benchmarks", "node_modules", "__pycache__"})

# --- reading the project ----------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """Module name -> file (relative to the root; a package is its __init__.py), and module
    name -> every dotted name it imports, anywhere in the file."""

    files: Mapping[str, Path]
    imports: Mapping[str, frozenset[str]]


def module_files(root: Path, skipped: Iterable[str] = SKIPPED_DIRS) -> dict[str, Path]:
    """Every Python module and package under `root`, by dotted name, outside hidden folders
    (.venv, .git) and the `skipped` ones."""
    files: dict[str, Path] = {}
    skip = set(skipped)
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in skip and not d.startswith("."))
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            relative = (Path(folder) / name).relative_to(root)
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = relative
    return files


def imports_in(source: str, module: str, is_package: bool) -> frozenset[str]:
    """The absolute dotted names that `source` imports: `import a.b` gives a.b, `from a import
    b` gives a and a.b (b may be a module), relative imports resolved, and
    importlib.import_module / __import__ of a literal name."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            if origin:
                names.add(origin)
            names.update(f"{origin}.{a.name}" if origin else a.name for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return frozenset(names)


def read_project(root: Path, skipped: Iterable[str] = SKIPPED_DIRS) -> Project:
    files = module_files(root, skipped)
    imports = {
        module: imports_in(
            (root / path).read_text(encoding="utf-8"), module, path.name == "__init__.py"
        )
        for module, path in files.items()
    }
    return Project(files, imports)


def matches(module: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns)


def ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def ours(imports: Mapping[str, frozenset[str]], module: str) -> set[str]:
    """The project modules `module` imports (a package counts with its module), leaving out
    its own packages."""
    found: set[str] = set()
    for name in imports[module]:
        for candidate in {name} | ancestors(name):
            if candidate in imports and candidate != module:
                found.add(candidate)
    return found - ancestors(module)


def top_levels(imports: Mapping[str, frozenset[str]], module: str) -> set[str]:
    return {name.split(".")[0] for name in imports[module]}


# --- the checks: each returns its violations, one line each -------------------------------------


def layer_violations(
    imports: Mapping[str, frozenset[str]],
    layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS,
    outside: tuple[str, ...] = CLIENT,
) -> list[str]:
    rank: dict[str, int] = {}
    problems: list[str] = []
    for module in sorted(imports):
        placed = [i for i, (_, patterns) in enumerate(layers) if matches(module, patterns)]
        if matches(module, outside):
            continue
        if len(placed) != 1:
            problems.append(f"{module} is in {len(placed)} layers of LAYERS, not exactly one")
            continue
        rank[module] = placed[0]
    for module, level in sorted(rank.items()):
        for target in sorted(ours(imports, module)):
            if target in rank and rank[target] <= level:
                problems.append(
                    f"{module} ({layers[level][0]}) imports {target} "
                    f"({layers[rank[target]][0]}): imports only go down LAYERS"
                )
    return problems


def leaf_violations(imports: Mapping[str, frozenset[str]], leaf: str = LEAF) -> list[str]:
    return [f"{leaf} imports {target}: it is a leaf" for target in sorted(ours(imports, leaf))]


def forbidden_violations(
    imports: Mapping[str, frozenset[str]],
    forbidden: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = FORBIDDEN,
) -> list[str]:
    return [
        f"{module} imports {target}: {why}"
        for modules, targets, why in forbidden
        for module in sorted(m for m in imports if matches(m, modules))
        for target in sorted(ours(imports, module))
        if matches(target, targets)
    ]


def owner_violations(
    imports: Mapping[str, frozenset[str]], owners: Mapping[str, tuple[str, ...]] = OWNERS
) -> list[str]:
    return [
        f"{module} imports {library}: only {', '.join(allowed)} may"
        for module in sorted(imports)
        for library, allowed in sorted(owners.items())
        if library in top_levels(imports, module) and not matches(module, allowed)
    ]


def http_violations(
    imports: Mapping[str, frozenset[str]], modules: tuple[str, ...] = NO_HTTP
) -> list[str]:
    return [
        f"{module} imports {library}: protocols and the core know no HTTP framework"
        for module in sorted(imports)
        if matches(module, modules)
        for library in sorted(top_levels(imports, module) & {"flask", "werkzeug"})
    ]


def dialect_violations(
    imports: Mapping[str, frozenset[str]], dialects: str = DIALECTS
) -> list[str]:
    problems: list[str] = []
    for module in sorted(m for m in imports if fnmatch.fnmatchcase(m, dialects)):
        if "cv2" in top_levels(imports, module):
            problems.append(f"{module} imports cv2: pictures go through image_io and render")
        for other in sorted(ours(imports, module)):
            if fnmatch.fnmatchcase(other, dialects):
                problems.append(f"{module} imports {other}: a dialect imports no other dialect")
    return problems


def client_violations(
    imports: Mapping[str, frozenset[str]], client: tuple[str, ...] = CLIENT
) -> list[str]:
    return [
        f"{module} imports {target}: the client imports nothing of the server"
        for module in sorted(m for m in imports if matches(m, client))
        for target in sorted(ours(imports, module))
        if not matches(target, client)
    ]


def tool_violations(
    imports: Mapping[str, frozenset[str]], tools: frozenset[str] = TOOLS
) -> list[str]:
    return [
        f"{module} imports {tool}: the service and the client import none of {sorted(tools)}"
        for module in sorted(imports)
        for tool in sorted(top_levels(imports, module) & tools)
    ]


def import_cycles(imports: Mapping[str, frozenset[str]]) -> list[str]:
    """Every strongly connected group of more than one module (Tarjan), as 'a -> b -> a'."""
    edges = {module: sorted(ours(imports, module)) for module in imports}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[str] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(" -> ".join([*sorted(group), sorted(group)[0]]))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return groups


def size_violations(
    root: Path,
    files: Iterable[Path],
    limit: int = MAX_LINES,
    limits: Mapping[str, int | None] = LINE_LIMITS,
) -> list[str]:
    problems: list[str] = []
    for path in sorted(files):
        allowed = limits.get(path.as_posix(), limit)
        lines = len((root / path).read_text(encoding="utf-8").splitlines())
        if allowed is not None and lines > allowed:
            problems.append(f"{path} has {lines} lines, more than {allowed}: split it")
    return problems


# --- the project obeys them ---------------------------------------------------------------------


def assert_none(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def project() -> Project:
    return read_project(REPO_ROOT)


def test_the_walk_finds_the_service_and_its_packages(project: Project) -> None:
    assert {"serve_http", "utils_serve", "predict", "dialects", "dialects.google"} <= set(
        project.files
    )
    assert {"client", "client.send2api"} <= set(project.files)
    assert not [m for m in project.files if m.split(".")[0] in TOOLS]


def test_imports_flow_down_the_layers(project: Project) -> None:
    assert_none(layer_violations(project.imports))


def test_errors_is_a_leaf(project: Project) -> None:
    assert_none(leaf_violations(project.imports))


def test_no_forbidden_imports(project: Project) -> None:
    assert_none(forbidden_violations(project.imports))


def test_only_the_owners_import_cv2_and_flask(project: Project) -> None:
    assert_none(owner_violations(project.imports))


def test_protocols_and_core_know_no_http_framework(project: Project) -> None:
    assert_none(http_violations(project.imports))


def test_dialects_import_no_cv2_and_no_other_dialect(project: Project) -> None:
    assert_none(dialect_violations(project.imports))


def test_client_imports_nothing_of_the_server(project: Project) -> None:
    assert_none(client_violations(project.imports))


def test_nothing_imports_the_tools_outside_the_service(project: Project) -> None:
    assert_none(tool_violations(project.imports))


def test_no_import_cycles(project: Project) -> None:
    assert_none(import_cycles(project.imports))


def test_modules_stay_small() -> None:
    # Every Python file that is not a test: the service, the client, the scripts, benchmarks.
    files = module_files(REPO_ROOT, skipped={"tests", "node_modules", "__pycache__"}).values()
    assert {Path("scripts/fetch_model.py"), Path("benchmarks/bench.py")} <= set(files)
    assert_none(size_violations(REPO_ROOT, files))


def test_modules_import_cleanly() -> None:
    completed = run_python("-c", "import serve_http, utils_serve, predict, client.send2api")
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(module, id=module)
        for module in ("detection_types", "families", "manifests", "errors", "config", "auth")
    ],
)
def test_modules_below_image_io_import_without_cv2(module: str) -> None:
    # In a fresh interpreter; none of them may pull in cv2 (through any import chain), as cv2
    # must first be imported by image_io, after OPENCV_IO_MAX_IMAGE_PIXELS is set.
    completed = run_python(
        "-c", f"import sys, {module}; sys.exit('cv2' in sys.modules and 'cv2 imported')"
    )
    assert completed.returncode == 0, f"{module}: {completed.stderr}"


# --- each guard fails on a project that breaks it ----------------------------------------------


def graph(**edges: Iterable[str]) -> dict[str, frozenset[str]]:
    """A synthetic import graph: module (dots written as __) -> imported names, as imports_in
    gives them. A target is a module too (with no imports) unless it is a third-party name or
    a name inside another target (`from a import f` gives a and a.f: a is the module)."""
    named = {module.replace("__", "."): frozenset(targets) for module, targets in edges.items()}
    targets = {target for found in named.values() for target in found}
    for target in targets:
        if target.split(".")[0] in {"cv2", "flask", "werkzeug", "numpy"}:
            continue
        if not ancestors(target) & (targets | set(named)):
            named.setdefault(target, frozenset())
    return named


def test_imports_in_reads_every_form() -> None:
    source = (
        "import os.path\n"
        "from errors import ApiError\n"
        "from . import google\n"
        "from .native import extras\n"
        "def lazy():\n"
        "    import cv2\n"
        "    importlib.import_module('flask')\n"
    )
    found = imports_in(source, "dialects.deepstack", is_package=False)
    assert {"os.path", "errors", "errors.ApiError", "dialects", "dialects.google"} <= found
    assert {"dialects.native", "dialects.native.extras", "cv2", "flask"} <= found
    assert "google" not in found


def test_the_walk_skips_tests_scripts_benchmarks_and_hidden_folders(tmp_path: Path) -> None:
    names = ("a.py", "pkg/__init__.py", "pkg/sub/m.py", "tests/t.py", "scripts/s.py")
    for name in (*names, "benchmarks/__init__.py", "benchmarks/peers/peer.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("import os\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "v.py").write_text("import flask\n")
    project = read_project(tmp_path)
    assert set(project.files) == {"a", "pkg", "pkg.sub.m"}
    assert project.imports["pkg"] == {"os"}


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        # The detector reaching up to the core.
        pytest.param(
            {"predict": ["utils_serve"]}, "predict (detector) imports utils_serve", id="up"
        ),
        # Sideways, inside one layer.
        pytest.param({"errors": ["config"]}, "errors (leaves) imports config", id="sideways"),
        # Through a package: a dialect's import of the root.
        pytest.param(
            {"dialects__google": ["serve_http", "serve_http.create_app"]},
            "dialects.google (protocols) imports serve_http",
            id="from-import",
        ),
        # A new module nobody placed in the table.
        pytest.param({"gallery": ["errors"]}, "gallery is in 0 layers", id="unplaced"),
        # The core reaching up into the repository that uses it.
        pytest.param(
            {"utils_serve": ["repository.service"]},
            "utils_serve (core) imports repository.service",
            id="core-up-to-repository",
        ),
        # A protocol module using the repository.
        pytest.param(
            {"dialects__google": ["repository.records"]},
            "dialects.google (protocols) imports repository.records",
            id="protocol-up-to-repository",
        ),
        # Inside the repository: a part reaching up to the transactions.
        pytest.param(
            {"repository__storage": ["repository.service"]},
            "repository.storage (repository parts) imports repository.service",
            id="repository-part-up",
        ),
    ],
)
def test_layer_guard_fails(edges: dict[str, list[str]], expected: str) -> None:
    problems = layer_violations(graph(**edges))
    assert any(expected in problem for problem in problems), problems


def test_layer_guard_passes_imports_that_go_down() -> None:
    edges = graph(
        serve_http=["dialects.google", "auth"],
        dialects__google=["utils_serve"],
        utils_serve=["registry", "image_io"],
        registry=["predict"],
        predict=["image_io", "manifests"],
        manifests=["families"],
        families=["detection_types"],
    )
    assert not layer_violations(edges)


def test_forbidden_guard_fails() -> None:
    assert forbidden_violations(graph(manifests=["config", "families"])) == [
        "manifests imports config: detection knows nothing of the service's configuration"
    ]


def test_leaf_guard_fails() -> None:
    assert leaf_violations(graph(errors=["config"])) == ["errors imports config: it is a leaf"]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"render": ["cv2"]}, "render imports cv2", id="cv2-outside-image_io"),
        pytest.param({"registry": ["flask.json"]}, "registry imports flask", id="flask"),
        pytest.param({"auth": ["werkzeug.http"]}, "auth imports werkzeug", id="werkzeug"),
        # Of the repository, only its blueprint (repository.routes) knows Flask.
        pytest.param(
            {"repository__service": ["flask"]},
            "repository.service imports flask",
            id="flask-in-repository-service",
        ),
    ],
)
def test_owner_guard_fails(edges: dict[str, list[str]], expected: str) -> None:
    problems = owner_violations(graph(**edges))
    assert any(expected in problem for problem in problems), problems


def test_owner_guard_allows_blueprints() -> None:
    edges = graph(image_io=["cv2"], serve_http=["flask"], repository__routes=["flask"])
    assert not owner_violations(edges)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"utils_serve": ["werkzeug.datastructures"]}, "utils_serve", id="core"),
        pytest.param({"dialects__native": ["flask"]}, "dialects.native", id="dialect"),
    ],
)
def test_http_guard_fails(edges: dict[str, list[str]], expected: str) -> None:
    problems = http_violations(graph(**edges))
    assert problems
    assert problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"dialects__native": ["cv2"]}, "dialects.native imports cv2", id="cv2"),
        pytest.param(
            {"dialects__native": ["dialects.google"]},
            "dialects.native imports dialects.google",
            id="other-dialect",
        ),
    ],
)
def test_dialect_guard_fails(edges: dict[str, list[str]], expected: str) -> None:
    problems = dialect_violations(graph(**edges))
    assert any(expected in problem for problem in problems), problems


def test_client_guard_fails() -> None:
    edges = graph(client__send2api=["client", "predict"])
    assert client_violations(edges) == [
        "client.send2api imports predict: the client imports nothing of the server"
    ]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"utils_serve": ["benchmarks.report"]}, "utils_serve", id="benchmarks"),
        pytest.param({"client__send2api": ["tests.helpers"]}, "client.send2api", id="tests"),
    ],
)
def test_tool_guard_fails(edges: dict[str, list[str]], expected: str) -> None:
    problems = tool_violations(graph(**edges))
    assert problems
    assert problems[0].startswith(f"{expected} imports ")


def test_benchmarks_pass_the_import_guards_only_because_they_are_not_walked(
    tmp_path: Path,
) -> None:
    # The naive peer imports Flask and cv2, as the real one does: walked as part of the service,
    # it breaks the ownership and layer rules; skipped, as benchmarks/ is, it breaks none.
    (tmp_path / "benchmarks" / "peers").mkdir(parents=True)
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "peers" / "naive.py").write_text(
        "import cv2\nfrom flask import Flask\nimport predict\n"
    )
    (tmp_path / "predict.py").write_text("import image_io\n")
    (tmp_path / "image_io.py").write_text("import cv2\n")
    walked = read_project(tmp_path, skipped=SKIPPED_DIRS - {"benchmarks"}).imports
    assert owner_violations(walked) == [
        "benchmarks.peers.naive imports cv2: only image_io may",
        "benchmarks.peers.naive imports flask: only serve_http, *.routes may",
    ]
    assert any("benchmarks.peers.naive is in 0 layers" in p for p in layer_violations(walked))
    skipped = read_project(tmp_path).imports
    assert set(skipped) == {"predict", "image_io"}
    assert not owner_violations(skipped)
    assert not layer_violations(skipped)


def test_cycle_guard_fails() -> None:
    edges = graph(a=["b"], b=["c"], c=["a"], d=["a"])
    assert import_cycles(edges) == ["a -> b -> c -> a"]
    assert not import_cycles(graph(a=["b"], b=["c"]))


def test_size_guard_fails(tmp_path: Path) -> None:
    sizes = {"big.py": 601, "fine.py": 600, "utils_serve.py": 451, "families.py": 5000}
    for name, lines in sizes.items():
        (tmp_path / name).write_text("x = 1\n" * lines)
    problems = size_violations(tmp_path, [Path(name) for name in sizes])
    assert problems == [
        "big.py has 601 lines, more than 600: split it",
        "utils_serve.py has 451 lines, more than 450: split it",
    ]
