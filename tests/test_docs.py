"""Every shell and Python example in README.md and docs/*.md runs against a live server.

The fenced ```sh, ```bash, ```console and ```python blocks are taken from the Markdown and each
one is run against real gunicorn with the real models (`tests/live_server.py`), so that an
example cannot rot: a route, a field or a file it names that no longer exists fails here.

Conventions for the examples:

- they call `http://127.0.0.1:5000` (or httpie's shorthand for it, `:5000/...`; and its metrics
  at `http://127.0.0.1:9102`) with the token `my-secret`; the test puts the live server's
  addresses and port and a token of its own in their place;
- the shared photos they name (`dog.jpg`, `bus.jpg`: ../shared/images) are linked into the
  scratch folder, as if the reader had them at hand;
- a shell block runs with `bash -euo pipefail`, a Python block with this Python, in a scratch
  folder that holds links to every entry of the repository root (so `sample_images/...` and
  `python -m client.send2api` work, and files the examples write land in the scratch folder),
  with the virtual environment's `bin` first on PATH; it passes when it exits with status 0, so
  curl runs with `-fsS` (an HTTP error fails the block) and the answer is checked by
  `python -m json.tool`, a `grep`, or an expectation;
- `<!-- expect: TEXT -->` on the line right before a block (several may be stacked): TEXT must
  appear in what the block prints;
- `<!-- no-run: reason -->` on the line right before a block: the block is not run (it starts
  a server, needs Docker or a cluster, ...). The reason is required, and marked blocks must
  stay the exception.

A ```console block runs its `$ ` lines. Every example runs in a process group of its own,
ended when the example is done or after BLOCK_TIMEOUT_S, so nothing it starts outlives it. Its
standard input is a pseudo-terminal, as a reader's is: httpie reads a request body from a
standard input that is not a terminal, so without one `http --multipart ... image@dog.jpg`
would not send the file. httpie runs with a config folder of the test's that turns off its
update check (no traffic beyond the loopback server). A
block that names a model whose weights have not been fetched is skipped with the command that
fetches them, as the real-model tests do.

The tests that run examples are marked `e2e`; the checks of the Markdown and of the parser
need no server and run with the unit tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, shared_image
from tests.live_server import LiveServer, live_gunicorn

DOC_FILES = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
SHELL_LANGUAGES = frozenset({"sh", "bash", "console"})
RUNNABLE_LANGUAGES = SHELL_LANGUAGES | {"python"}
EXAMPLE_URL = "http://127.0.0.1:5000"
EXAMPLE_METRICS_URL = "http://127.0.0.1:9102"  # METRICS_PORT's default
EXAMPLE_TOKEN = "my-secret"
TOKEN = f"docs-{secrets.token_hex(8)}"
BLOCK_TIMEOUT_S = 180
# The README is the front page: the details live in docs/.
README_MAX_BYTES = 8 * 1024
# httpie's `:PORT/path` (localhost), as a whole word: after a space, a quote or `=`.
HTTPIE_SHORTHAND = re.compile(r"(?<=[\s'\"=]):5000(?=[/\s'\"]|$)", re.MULTILINE)
# The shared photos an example may name.
SHARED_PHOTOS = re.compile(r"\b(?:dog|bus)\.jpg\b")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*(?P<kind>[a-z-]+)\s*:(?P<text>.*?)-->\s*$")
_MARK_LIKE = re.compile(r"<!--\s*(no-run|expect)\b")
MARK_KINDS = frozenset({"no-run", "expect"})


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language, its code and its marks."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    no_run: str | None = None  # the reason, when the block is marked no-run
    expects: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        path = (
            self.path.relative_to(REPO_ROOT) if self.path.is_relative_to(REPO_ROOT) else self.path
        )
        return f"{path}:L{self.line}"


@dataclass(frozen=True)
class Parsed:
    blocks: tuple[Block, ...]
    problems: tuple[str, ...]  # marks that are malformed or attached to nothing runnable


def parse_markdown(path: Path) -> Parsed:
    """The fenced blocks of one Markdown file, each with the marks on the lines right before
    its opening fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    where = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
    pending: list[tuple[int, str, str]] = []  # (line, kind, text) of the marks just read
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        mark = _MARK.match(line)
        if mark and mark["kind"] in MARK_KINDS:
            pending.append((index + 1, mark["kind"], mark["text"].strip()))
            index += 1
            continue
        if line.lstrip().startswith("<!--") and _MARK_LIKE.search(line):
            problems.append(f"{where}:L{index + 1}: malformed mark {line.strip()!r}")
        if fence is None:
            for number, kind, _ in pending:
                problems.append(f"{where}:L{number}: {kind} mark not right before a code block")
            pending = []
            index += 1
            continue
        indent, ticks = fence["indent"], fence["fence"]
        language = (fence["info"].split() or [""])[0].lower()
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped.startswith(ticks[0] * len(ticks)) and not stripped.strip(ticks[0]):
                break
            text = lines[end]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            end += 1
        marks = {kind: [t for _, k, t in pending if k == kind] for kind in MARK_KINDS}
        reasons = marks["no-run"]
        for number, kind, text in pending:
            if language not in RUNNABLE_LANGUAGES:
                problems.append(f"{where}:L{number}: {kind} mark on a ```{language} block")
            elif not text:
                problems.append(f"{where}:L{number}: {kind} mark without text")
        if reasons and marks["expect"]:
            problems.append(f"{where}:L{index + 1}: a no-run block with expectations")
        blocks.append(
            Block(
                path=path,
                line=index + 1,
                language=language,
                code="\n".join(body) + "\n",
                no_run="; ".join(reasons) if reasons else None,
                expects=tuple(marks["expect"]),
            )
        )
        pending = []
        index = end + 1
    for number, kind, _ in pending:
        problems.append(f"{where}:L{number}: {kind} mark not right before a code block")
    return Parsed(tuple(blocks), tuple(problems))


PARSED = {path: parse_markdown(path) for path in DOC_FILES}
ALL_BLOCKS = [block for parsed in PARSED.values() for block in parsed.blocks]
EXAMPLES = [b for b in ALL_BLOCKS if b.language in RUNNABLE_LANGUAGES]
RUNNABLE = [b for b in EXAMPLES if b.no_run is None]
NOT_RUN = [b for b in EXAMPLES if b.no_run is not None]


def shell_script(block: Block) -> str:
    """A shell block as a script: a ```console block is its `$ ` lines (with their
    continuation lines), the rest of it being sample output."""
    if block.language != "console":
        return block.code
    commands: list[str] = []
    continued = False
    for line in block.code.splitlines():
        if continued or line.startswith("$ "):
            commands.append(line if continued else line[2:])
            continued = line.endswith("\\")
    return "\n".join(commands) + "\n"


def for_live_server(code: str, live: LiveServer) -> str:
    port = live.url.rstrip("/").rsplit(":", 1)[1]
    metrics = live.metrics_url.removesuffix("/metrics")
    code = (
        code.replace(EXAMPLE_URL, live.url.rstrip("/"))
        .replace(EXAMPLE_METRICS_URL, metrics)
        .replace(EXAMPLE_TOKEN, TOKEN)
    )
    return HTTPIE_SHORTHAND.sub(f":{port}", code)


def link_shared_photos(code: str, root: Path) -> None:
    """Link the shared photos the code names into the scratch folder (skips when missing)."""
    for name in sorted(set(SHARED_PHOTOS.findall(code))):
        (root / name).symlink_to(shared_image(name))


def httpie_config(folder: Path) -> Path:
    """A config folder for httpie that turns its update check off."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"disable_update_warnings": true}\n', encoding="utf-8")
    return folder


def missing_models(code: str) -> list[str]:
    """Models the code names whose weights are not in models/ (`make test-models` fetches)."""
    missing = []
    for manifest in sorted((REPO_ROOT / "models").glob("*.json")):
        name = manifest.stem
        fetched = (REPO_ROOT / "models" / f"{name}.onnx").is_file()
        if not fetched and re.search(rf"\b{re.escape(name)}\b", code):
            missing.append(name)
    return missing


def scratch_root(tmp_path: Path) -> Path:
    """A folder that looks like the repository root: a link to each of its entries."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO_ROOT.iterdir():
        if entry.name != ".git":
            (root / entry.name).symlink_to(entry)
    return root


def example_env(httpie_dir: Path | None = None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # No proxy between the example and the loopback server, and no token from outside.
        if "proxy" not in name.lower() and name not in {"API_TOKEN", "API_TOKENS"}
    }
    bins = [str(REPO_ROOT / ".venv" / "bin"), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if httpie_dir is not None:
        env["HTTPIE_CONFIG_DIR"] = str(httpie_dir)
    return env


def run_in_own_group(
    command: list[str], cwd: Path, httpie_dir: Path | None = None
) -> tuple[int | None, str, str]:
    """Run an example in a process group of its own, and end the whole group afterwards: an
    example that starts a server (one that should have been marked no-run) or leaves something
    in the background must not outlive its test. The exit status is None after a timeout.
    Standard input is a pseudo-terminal (nothing is ever typed into it)."""
    terminal, standard_input = os.openpty()
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=example_env(httpie_dir),
            stdin=standard_input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    finally:
        os.close(standard_input)  # the child holds its own copy
    try:
        return _finish(process)
    finally:
        os.close(terminal)


def _finish(process: subprocess.Popen[str]) -> tuple[int | None, str, str]:
    """Wait for the example (BLOCK_TIMEOUT_S at most), then end its whole group."""
    try:
        stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT_S)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        # ProcessLookupError: the group is gone, nothing was left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if returncode is None:
        stdout, stderr = process.communicate()
    return returncode, stdout, stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_gunicorn(tmp_path_factory.mktemp("gunicorn"), [TOKEN]) as live:
        yield live


# --- The parser, on small Markdown texts

_PARSER_CASES = [
    # a plain block: its language and code, no marks
    pytest.param("```sh\necho hi\n```\n", [("sh", "echo hi\n", None, ())], [], id="plain"),
    # the info string's first word is the language; other fences are blocks too
    pytest.param(
        "```Python x\n1\n```\n~~~json\n{}\n~~~\n",
        [("python", "1\n", None, ()), ("json", "{}\n", None, ())],
        [],
        id="languages",
    ),
    # marks right before the fence attach to it, several stacked
    pytest.param(
        "<!-- expect: a -->\n<!-- expect: b c -->\n```sh\necho a b c\n```\n",
        [("sh", "echo a b c\n", None, ("a", "b c"))],
        [],
        id="expectations",
    ),
    pytest.param(
        "<!-- no-run: needs a cluster -->\n```sh\nkubectl get pods\n```\n",
        [("sh", "kubectl get pods\n", "needs a cluster", ())],
        [],
        id="no-run",
    ),
    # a block inside a list item: the indentation is not part of the code
    pytest.param(
        "1. Step:\n\n   <!-- no-run: needs a cluster -->\n"
        "   ```sh\n   kubectl apply -k x\n     --dry-run\n   ```\n",
        [("sh", "kubectl apply -k x\n  --dry-run\n", "needs a cluster", ())],
        [],
        id="indented",
    ),
    # a mark without its reason, or not right before a block, or before a block that never runs
    pytest.param(
        "<!-- no-run: -->\n```sh\nx\n```\n",
        [("sh", "x\n", "", ())],
        ["without text"],
        id="no-reason",
    ),
    pytest.param(
        "<!-- no-run: a reason -->\n\n```sh\nx\n```\n",
        [("sh", "x\n", None, ())],
        ["not right before"],
        id="blank-line-between",
    ),
    pytest.param(
        "<!-- no-run: a reason -->\n```json\n{}\n```\n",
        [("json", "{}\n", "a reason", ())],
        ["on a ```json block"],
        id="non-runnable",
    ),
    pytest.param(
        "<!-- no-run -->\n```sh\nx\n```\n", [("sh", "x\n", None, ())], ["malformed"], id="malformed"
    ),
    pytest.param("text\n<!-- expect: x -->\n", [], ["not right before"], id="mark-at-end"),
    pytest.param(
        "<!-- no-run: a reason -->\n<!-- expect: x -->\n```sh\nx\n```\n",
        [("sh", "x\n", "a reason", ("x",))],
        ["no-run block with expectations"],
        id="no-run-and-expect",
    ),
    # marks shown inside a block are text, not marks
    pytest.param(
        "```markdown\n<!-- no-run: x -->\n```\n",
        [("markdown", "<!-- no-run: x -->\n", None, ())],
        [],
        id="mark-in-a-block",
    ),
]


@pytest.mark.parametrize(("markdown", "blocks", "problems"), _PARSER_CASES)
def test_parse_markdown(
    markdown: str,
    blocks: list[tuple[str, str, str | None, tuple[str, ...]]],
    problems: list[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "page.md"
    path.write_text(markdown, encoding="utf-8")
    parsed = parse_markdown(path)
    assert [(b.language, b.code, b.no_run, b.expects) for b in parsed.blocks] == blocks
    assert len(parsed.problems) == len(problems), parsed.problems
    for found, expected in zip(parsed.problems, problems, strict=True):
        assert expected in found


def test_console_blocks_run_their_prompt_lines() -> None:
    block = Block(Path("page.md"), 1, "console", "$ echo a \\\n  b\na b\n$ true\n")
    assert shell_script(block) == "echo a \\\n  b\ntrue\n"


_ADDRESS_CASES = [
    # httpie's shorthand, bare and quoted: the live port (localhost, as httpie reads it)
    pytest.param(
        "http -b --multipart POST :5000/image/upload image@dog.jpg",
        "http -b --multipart POST :4321/image/upload image@dog.jpg",
        id="httpie-shorthand",
    ),
    pytest.param(
        "http GET ':5000/v1/images?label=dog' X-Api-Token:my-secret",
        f"http GET ':4321/v1/images?label=dog' X-Api-Token:{TOKEN}",
        id="httpie-quoted-and-token",
    ),
    # the full URL: the live server's
    pytest.param(
        "curl -fsS http://127.0.0.1:5000/healthz",
        "curl -fsS http://127.0.0.1:4321/healthz",
        id="url",
    ),
    # `:5000` inside another word is no address
    pytest.param("echo 10:5000 a:5000", "echo 10:5000 a:5000", id="not-an-address"),
]


@pytest.mark.parametrize(("code", "expected"), _ADDRESS_CASES)
def test_examples_get_the_live_address_and_token(code: str, expected: str) -> None:
    live = LiveServer("http://127.0.0.1:4321/", Path("gunicorn.log"))
    assert for_live_server(code, live) == expected


def test_examples_run_with_a_terminal_as_standard_input(tmp_path: Path) -> None:
    # httpie sends a standard input that is not a terminal as the body, instead of the file.
    check = "import sys; print(sys.stdin.isatty())"
    returncode, stdout, _ = run_in_own_group([sys.executable, "-c", check], tmp_path)
    assert (returncode, stdout) == (0, "True\n")


# --- The Markdown itself


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_marks_are_well_formed(path: Path) -> None:
    """Every mark has its text and sits right before a shell or Python block."""
    assert not PARSED[path].problems, "\n".join(PARSED[path].problems)


def test_readme_stays_short_and_links_the_repository_docs() -> None:
    readme = REPO_ROOT / "README.md"
    assert readme.stat().st_size <= README_MAX_BYTES, "README.md: move details to docs/"
    assert "(docs/repository.md)" in readme.read_text(encoding="utf-8")
    assert "(repository.md)" in (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def test_examples_are_found_and_marked_ones_stay_the_exception() -> None:
    readme = [b for b in RUNNABLE if b.path.name == "README.md"]
    assert any(b.language in SHELL_LANGUAGES for b in readme), "README.md runs no shell example"
    assert any(b.language == "python" for b in readme), "README.md runs no Python example"
    listing = "\n".join(f"{b.where}: {b.no_run}" for b in NOT_RUN)
    assert len(NOT_RUN) < len(RUNNABLE), (
        f"{len(NOT_RUN)} examples are marked no-run, {len(RUNNABLE)} run:\n{listing}"
    )


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.where for b in NOT_RUN])
def test_no_run_mark_gives_a_reason(block: Block) -> None:
    assert block.no_run is not None
    assert len(block.no_run.split()) >= 2, f"{block.where}: say why it cannot run here"


# --- The examples, against a live server


@pytest.mark.e2e
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_example_runs(block: Block, server: LiveServer, tmp_path: Path) -> None:
    missing = missing_models(block.code)
    if missing:
        pytest.skip(f"models/{missing[0]}.onnx is missing: run `make test-models`")
    root = scratch_root(tmp_path)
    link_shared_photos(block.code, root)
    if block.language == "python":
        script = root / "example.py"
        script.write_text(for_live_server(block.code, server), encoding="utf-8")
        command = [sys.executable, str(script)]
    else:
        script = root / "example.sh"
        script.write_text(for_live_server(shell_script(block), server), encoding="utf-8")
        command = ["bash", "-euo", "pipefail", str(script)]
    code = script.read_text(encoding="utf-8")
    for stray in ("127.0.0.1:5000", "localhost"):
        assert stray not in code, f"{block.where}: call the service as {EXAMPLE_URL}/"
    returncode, stdout, stderr = run_in_own_group(command, root, httpie_config(tmp_path / "httpie"))
    report = (
        f"{block.where} exited with {returncode}\n--- code\n{code}"
        f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    )
    assert returncode is not None, f"still running after {BLOCK_TIMEOUT_S} s: {report}"
    assert returncode == 0, report
    for expected in block.expects:
        assert expected in stdout, f"{block.where}: {expected!r} not printed\n{report}"


@pytest.mark.e2e
def test_server_log_holds_no_token(server: LiveServer) -> None:
    """The examples send the token in headers, form fields and `?key=`; none is logged."""
    assert TOKEN not in server.log()
