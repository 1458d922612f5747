"""Rules of the test suite itself, read from the test modules' source with ast.

- Every table (a `parametrize` with more than one row) names its rows: `ids=`, or every row a
  `pytest.param(..., id=...)` (or a short name string, its own id), so that a failure says
  which case failed.
- Every test that starts real gunicorn or loads a real model to run it on photos carries the
  marker that `make test-fast` deselects.
- Under CI=true a skip is a failure (the hook in conftest.py).

Each rule also runs on a synthetic module that breaks it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

TESTS = REPO_ROOT / "tests"
# Test modules the ids rule does not read yet, each with the reason; remove an entry once its
# module is done.
IDS_PENDING: Mapping[str, str] = {
    "test_openapi.py": "being rewritten on its own branch; it gets ids there",
}
# What makes a test slow, and the markers one of which it must then carry (`make test-fast`
# runs `-m "not (e2e or newman or fuzz or real_model)"`).
SLOW_CALLS: Mapping[str, frozenset[str]] = {
    # tests/live_server.py: real gunicorn on a loopback port.
    "live_gunicorn": frozenset({"e2e", "newman", "fuzz"}),
    # tests/helpers.py: real gunicorn loading the app and the model, then exiting.
    "gunicorn_check_config": frozenset({"e2e"}),
    # tests/helpers.py: a real model from models/, to run it.
    "load_real_model": frozenset({"real_model"}),
}
FAST_EXCLUDED = frozenset({"e2e", "newman", "fuzz", "real_model"})
# A string row that is its own id: short, ASCII, no spaces.
SELF_NAMING = re.compile(r"[\w./:+-]{1,40}", re.ASCII)

# --- names on table rows ------------------------------------------------------------------------


def _is_call_to(node: ast.AST, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == name
    )


def _has_keyword(call: ast.Call, name: str) -> bool:
    return any(
        keyword.arg == name
        and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)
        for keyword in call.keywords
    )


def _rows(
    node: ast.expr, assigned: Mapping[str, ast.expr], functions: Mapping[str, ast.FunctionDef]
) -> list[ast.expr] | None:
    """The rows of a parametrize's argvalues, following module-level names, `+` and `*name`;
    None when they cannot be read from the source."""
    if isinstance(node, ast.Name) and node.id in assigned:
        return _rows(assigned[node.id], assigned, functions)
    if isinstance(node, ast.List | ast.Tuple):
        rows: list[ast.expr] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                inner = _rows(element.value, assigned, functions)
                if inner is None:
                    return None
                rows.extend(inner)
            else:
                rows.append(element)
        return rows
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        # A slice of named rows is named: judged by all of them.
        return _rows(node.value, assigned, functions)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _rows(node.left, assigned, functions)
        right = _rows(node.right, assigned, functions)
        return None if left is None or right is None else left + right
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"list", "sorted", "tuple"}
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and isinstance(assigned.get(node.args[0].id), ast.Dict)
    ):
        # list(CASES) of a dict literal: the rows are its keys.
        keys = assigned[node.args[0].id]
        assert isinstance(keys, ast.Dict)
        return [key if key is not None else keys for key in keys.keys]
    if isinstance(node, ast.ListComp | ast.GeneratorExp):
        # Rows made in a comprehension are named when each one is a pytest.param with an id;
        # counted as two, so that the rule applies.
        return [node.elt, node.elt]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
        # Rows made by a function of the module: named when it makes them all with
        # pytest.param(..., id=...).
        made: list[ast.expr] = [
            n
            for n in ast.walk(functions[node.func.id])
            if isinstance(n, ast.Call) and _is_call_to(n, "param")
        ]
        return made * 2 if made else None
    return None


def _named(row: ast.expr) -> bool:
    """A pytest.param with an id, or a short ASCII name as the whole row (a string row is its
    own id, as in `parametrize("form", ["json", "multipart"])`)."""
    if isinstance(row, ast.Constant) and isinstance(row.value, str):
        return SELF_NAMING.fullmatch(row.value) is not None
    return isinstance(row, ast.Call) and _is_call_to(row, "param") and _has_keyword(row, "id")


def unnamed_tables(source: str) -> list[str]:
    """'line N: why' for every parametrize in `source` with more than one row and no ids."""
    tree = ast.parse(source)
    assigned: dict[str, ast.expr] = {}
    functions: dict[str, ast.FunctionDef] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                assigned[target.id] = statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            if statement.value is not None:
                assigned[statement.target.id] = statement.value
        elif isinstance(statement, ast.FunctionDef):
            functions[statement.name] = statement
    problems: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _is_call_to(node, "parametrize")):
            continue
        if _has_keyword(node, "ids"):
            continue
        values = node.args[1] if len(node.args) > 1 else None
        values = next((k.value for k in node.keywords if k.arg == "argvalues"), values)
        if values is None:
            continue
        rows = _rows(values, assigned, functions)
        if rows is None:
            problems.append(f"line {node.lineno}: rows not readable from the source: pass ids=")
        elif len(rows) > 1 and not all(_named(row) for row in rows):
            unnamed = sum(not _named(row) for row in rows)
            problems.append(
                f"line {node.lineno}: {unnamed} of {len(rows)} rows without an id: use "
                "pytest.param(..., id=...) or ids="
            )
    return problems


def suite_modules() -> list[Path]:
    return sorted(TESTS.glob("test_*.py"))


@pytest.mark.parametrize(
    "path",
    [pytest.param(path, id=path.name) for path in suite_modules() if path.name not in IDS_PENDING],
)
def test_every_table_names_its_rows(path: Path) -> None:
    problems = unnamed_tables(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_pending_modules_exist() -> None:
    assert [name for name in IDS_PENDING if not (TESTS / name).is_file()] == []


TABLE_CASES = [
    # Two tuples, no ids.
    pytest.param("@pytest.mark.parametrize('a', [1, 2])\ndef test(a): ...", 1, id="bare"),
    # One pytest.param without an id is enough to fail.
    pytest.param(
        "@pytest.mark.parametrize('a', [pytest.param(1, id='one'), pytest.param(2)])\n"
        "def test(a): ...",
        1,
        id="param-without-id",
    ),
    # id=None names nothing.
    pytest.param(
        "@pytest.mark.parametrize('a', [pytest.param(1, id=None), pytest.param(2, id='b')])\n"
        "def test(a): ...",
        1,
        id="id-none",
    ),
    # Rows in a module-level list, followed by name, with `+`, `*` and slices.
    pytest.param(
        "ROWS = [1, 2]\nMORE = [*ROWS] + [3]\n"
        "@pytest.mark.parametrize('a', MORE)\ndef test(a): ...\n"
        "@pytest.mark.parametrize('a', ROWS[:2])\ndef test2(a): ...",
        2,
        id="module-list",
    ),
    # Rows from a call of something else cannot be read: ids= is needed.
    pytest.param("@pytest.mark.parametrize('a', rows())\ndef test(a): ...", 1, id="call"),
    # A function of the module that makes a row without an id.
    pytest.param(
        "def rows():\n    return [pytest.param(1, id='a'), pytest.param(2)]\n"
        "@pytest.mark.parametrize('a', rows())\ndef test(a): ...",
        1,
        id="function-without-ids",
    ),
    # A comprehension of bare values.
    pytest.param(
        "@pytest.mark.parametrize('a', [n for n in range(3)])\ndef test(a): ...", 1, id="comp"
    ),
    # Strings that are no names: not ASCII, or with spaces.
    pytest.param(
        "@pytest.mark.parametrize('a', ['\\u00b2', 'x'])\ndef t1(a): ...\n"
        "@pytest.mark.parametrize('a', ['a b', 'c'])\ndef t2(a): ...",
        2,
        id="strings-no-names",
    ),
    # Named in every way: ids=, pytest.param(id=), comprehension of named params, one row,
    # name strings, the keys of a dict literal.
    pytest.param(
        "@pytest.mark.parametrize('a', [1, 2], ids=['x', 'y'])\ndef t1(a): ...\n"
        "@pytest.mark.parametrize('a', [pytest.param(1, id='x'), pytest.param(2, id='y')])\n"
        "def t2(a): ...\n"
        "@pytest.mark.parametrize('a', [pytest.param(n, id=str(n)) for n in range(3)])\n"
        "def t3(a): ...\n"
        "@pytest.mark.parametrize('a', [1])\ndef t4(a): ...\n"
        "@pytest.mark.parametrize('a', rows(), ids=str)\ndef t5(a): ...\n"
        "def made():\n    return [pytest.param(n, id=str(n)) for n in range(3)]\n"
        "@pytest.mark.parametrize('a', made())\ndef t6(a): ...\n"
        "@pytest.mark.parametrize('form', ['json', 'multipart/form-data'])\ndef t7(a): ...\n"
        "CASES = {'one': 1, 'two': 2}\n"
        "@pytest.mark.parametrize('case', list(CASES))\ndef t8(a): ...",
        0,
        id="named",
    ),
]


@pytest.mark.parametrize(("source", "expected"), TABLE_CASES)
def test_table_guard(source: str, expected: int) -> None:
    assert len(unnamed_tables(source)) == expected


# --- markers on slow tests ----------------------------------------------------------------------


def _marks(decorators: list[ast.expr]) -> set[str]:
    """The names of `pytest.mark.X` / `pytest.mark.X(...)` among decorators or values."""
    names: set[str] = set()
    for decorator in decorators:
        node = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark"
        ):
            names.add(node.attr)
    return names


def unmarked_slow_tests(source: str, slow: Mapping[str, frozenset[str]] = SLOW_CALLS) -> list[str]:
    """'test: why' for every test function that reaches a slow call, itself or through the
    module's fixtures and helpers (by name or as a parameter), without one of its markers."""
    tree = ast.parse(source)
    module_marks: set[str] = set()
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in statement.targets
        ):
            value = statement.value
            module_marks |= _marks(list(value.elts) if isinstance(value, ast.List) else [value])
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[statement.name] = statement
    # What a function uses: names, attributes, its parameters (fixtures) and strings (fixtures
    # asked for with request.getfixturevalue("name")).
    uses = {
        name: {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
        | {n.attr for n in ast.walk(function) if isinstance(n, ast.Attribute)}
        | {
            n.value
            for n in ast.walk(function)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        | {a.arg for a in function.args.args}
        for name, function in functions.items()
    }
    # reaches[name]: the slow calls a function reaches; grown until nothing changes.
    reaches = {name: {call for call in slow if call in used} for name, used in uses.items()}
    changed = True
    while changed:
        changed = False
        for name, used in uses.items():
            for other in used & set(functions) - {name}:
                if not reaches[other] <= reaches[name]:
                    reaches[name] |= reaches[other]
                    changed = True
    problems: list[str] = []
    for name, function in functions.items():
        if not name.startswith("test"):
            continue
        marks = module_marks | _marks(function.decorator_list)
        for call in sorted(reaches[name]):
            if not marks & slow[call]:
                problems.append(f"{name}: reaches {call} but has none of {sorted(slow[call])}")
    return problems


@pytest.mark.parametrize("path", [pytest.param(path, id=path.name) for path in suite_modules()])
def test_slow_tests_carry_their_marker(path: Path) -> None:
    problems = unmarked_slow_tests(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_the_fast_run_deselects_exactly_the_slow_markers() -> None:
    assert set().union(*SLOW_CALLS.values()) == FAST_EXCLUDED
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert '-m "not (e2e or newman or fuzz or real_model)"' in makefile


MARKER_CASES = [
    # A fixture starts gunicorn; the test takes the fixture and has no marker.
    pytest.param(
        "@pytest.fixture\ndef server():\n    with live_gunicorn(x) as s:\n        yield s\n"
        "def test_a(server): ...",
        ["test_a: reaches live_gunicorn but has none of ['e2e', 'fuzz', 'newman']"],
        id="through-fixture",
    ),
    # Through a helper that a helper calls.
    pytest.param(
        "def model():\n    return helpers.load_real_model('m')\n"
        "def detect():\n    return model().detect()\n"
        "@pytest.mark.e2e\ndef test_b():\n    detect()",
        ["test_b: reaches load_real_model but has none of ['real_model']"],
        id="wrong-marker",
    ),
    # Marked on the function, or for the whole module: fine.
    pytest.param(
        "@pytest.mark.fuzz\n@pytest.mark.timeout(9)\ndef test_c():\n    live_gunicorn(x)",
        [],
        id="decorator",
    ),
    pytest.param(
        "pytestmark = [pytest.mark.newman, pytest.mark.e2e]\ndef test_d():\n    live_gunicorn()",
        [],
        id="module-mark",
    ),
    # A fixture asked for by name.
    pytest.param(
        "@pytest.fixture\ndef real():\n    return load_real_model('m')\n"
        "@pytest.fixture\ndef any_model(request):\n    return request.getfixturevalue('real')\n"
        "def test_f(any_model): ...",
        ["test_f: reaches load_real_model but has none of ['real_model']"],
        id="getfixturevalue",
    ),
    # A test that reaches nothing slow needs no marker.
    pytest.param("def helper(): ...\ndef test_e():\n    helper()", [], id="fast"),
]


@pytest.mark.parametrize(("source", "expected"), MARKER_CASES)
def test_marker_guard(source: str, expected: list[str]) -> None:
    assert unmarked_slow_tests(source) == expected


# --- under CI=true a skip is a failure ----------------------------------------------------------

INNER_TESTS = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("models/x.onnx is missing: run `make model`")

@pytest.fixture
def tool():
    pytest.skip("node is not installed")

def test_skips_in_setup(tool):
    pass

@pytest.mark.xfail(reason="an expected failure is no skip", strict=True)
def test_expected_failure():
    assert False
"""


@pytest.mark.parametrize(
    ("ci", "outcomes"),
    [
        pytest.param("", {"passed": 1, "skipped": 2, "xfailed": 1}, id="not-ci"),
        pytest.param("false", {"passed": 1, "skipped": 2, "xfailed": 1}, id="ci-false"),
        pytest.param("true", {"passed": 1, "failed": 1, "errors": 1, "xfailed": 1}, id="ci-true"),
        pytest.param("1", {"passed": 1, "failed": 1, "errors": 1, "xfailed": 1}, id="ci-1"),
    ],
)
def test_skips_fail_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcomes: dict[str, int]
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest("-p", "tests.conftest")
    result.assert_outcomes(**outcomes)
    if outcomes.get("failed"):
        result.stdout.fnmatch_lines(
            [
                "*test_inner.py::test_skips was skipped under CI=true*: models/x.onnx is missing*",
                "*test_inner.py::test_skips_in_setup was skipped under CI=true*: node is not*",
            ]
        )
