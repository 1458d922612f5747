"""Configuration, gunicorn settings, model fetching and the dependency pins (the module layout
is in tests/test_layout.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from config import ConfigError, ServiceConfig, load_config
from tests.helpers import REPO_ROOT, gunicorn_check_config, model_weights

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import fetch_model

# ------------------------------------------------------------------------------- config


def test_config_defaults() -> None:
    config = load_config({"API_TOKENS": "a, b ,,c"})
    assert config.api_tokens == ("a", "b", "c")
    assert config.model_name == "yolox_nano"
    assert config.intra_op_threads == 1
    assert config.max_body_bytes == 10 * 1024 * 1024
    assert config.max_images_per_request == 16
    assert config.models_dir == REPO_ROOT / "models"


def test_config_reads_every_variable(tmp_path: Path) -> None:
    config = load_config(
        {
            "AUTH_DISABLED": "true",
            "MODELS_DIR": str(tmp_path),
            "MODEL_NAME": "nanodet_m_416",
            "INTRA_OP_THREADS": "2",
            "MAX_BODY_BYTES": "2_000_000",
            "MAX_IMAGES_PER_REQUEST": "4",
            "MAX_IMAGE_PIXELS": "1000000",
            "LOG_LEVEL": "debug",
            "DATA_DIR": str(tmp_path / "data"),
            "REPO_DB_URL": "postgresql+psycopg://repo@/repository?host=/run/pg",
            "GPS_POLICY": "Strip",
            "REPO_BUSY_TIMEOUT_MS": "250",
            "REPO_PAGE_TOKEN_KEY": "k" * 32,
        }
    )
    assert config == ServiceConfig(
        auth_disabled=True,
        models_dir=tmp_path,
        model_name="nanodet_m_416",
        intra_op_threads=2,
        max_body_bytes=2_000_000,
        max_images_per_request=4,
        max_image_pixels=1_000_000,
        log_level="DEBUG",
        data_dir=tmp_path / "data",
        repo_db_url="postgresql+psycopg://repo@/repository?host=/run/pg",
        gps_policy="strip",
        repo_busy_timeout_ms=250,
        repo_page_token_key="k" * 32,
    )


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        # no token and auth not switched off: refuse to start
        pytest.param({}, "API_TOKENS", id="no-token"),
        pytest.param({"API_TOKENS": " , "}, "API_TOKENS", id="only-separators"),
        pytest.param(
            {"API_TOKENS": "a", "AUTH_DISABLED": "maybe"}, "AUTH_DISABLED", id="auth-disabled-maybe"
        ),
        pytest.param(
            {"API_TOKENS": "a", "INTRA_OP_THREADS": "two"},
            "INTRA_OP_THREADS",
            id="threads-not-a-number",
        ),
        pytest.param(
            {"API_TOKENS": "a", "INTRA_OP_THREADS": "0"}, "INTRA_OP_THREADS", id="threads-zero"
        ),
        pytest.param(
            {"API_TOKENS": "a", "MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES", id="body-limit-too-small"
        ),
        pytest.param(
            {"API_TOKENS": "a", "MAX_IMAGES_PER_REQUEST": "0"},
            "MAX_IMAGES_PER_REQUEST",
            id="images-zero",
        ),
        pytest.param(
            {"API_TOKENS": "a", "MAX_IMAGE_PIXELS": str(1 << 30)},
            "MAX_IMAGE_PIXELS",
            id="pixels-too-many",
        ),
        pytest.param({"API_TOKENS": "a", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL", id="log-level-unknown"),
        pytest.param(
            {"API_TOKENS": "a", "GPS_POLICY": "blur"}, "GPS_POLICY", id="gps-policy-unknown"
        ),
        pytest.param(
            {"API_TOKENS": "a", "REPO_DB_URL": "mysql://u:secret@h/db"},
            "REPO_DB_URL",
            id="db-url-mysql",
        ),
        pytest.param(
            {"API_TOKENS": "a", "REPO_DB_URL": "postgresql://u@h/db"},
            "REPO_DB_URL",
            id="db-url-postgresql-without-driver",
        ),
        pytest.param(
            {"API_TOKENS": "a", "REPO_BUSY_TIMEOUT_MS": "-1"},
            "REPO_BUSY_TIMEOUT_MS",
            id="busy-timeout-negative",
        ),
        pytest.param(
            {"API_TOKENS": "a", "REPO_PAGE_TOKEN_KEY": "short"},
            "REPO_PAGE_TOKEN_KEY",
            id="page-token-key-short",
        ),
    ],
)
def test_config_errors_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as raised:
        load_config(environ)
    assert "secret" not in str(raised.value)  # a database password never reaches a message


def test_config_repository_defaults() -> None:
    config = load_config({"API_TOKENS": "a"})
    assert config.data_dir == REPO_ROOT / "data"
    assert config.repo_db_url is None  # SQLite under DATA_DIR
    assert config.gps_policy == "store"
    assert "k" * 32 not in repr(load_config({"API_TOKENS": "a", "REPO_PAGE_TOKEN_KEY": "k" * 32}))


# ------------------------------------------------------------------------------- gunicorn


@pytest.mark.e2e
def test_gunicorn_check_config(tmp_path: Path) -> None:
    model_weights("yolox_nano")
    # --check-config builds the app, so the repository's folder and database too.
    completed = gunicorn_check_config({"API_TOKENS": "check-token", "DATA_DIR": str(tmp_path)})
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.e2e
def test_gunicorn_refuses_to_start_without_a_token() -> None:
    completed = gunicorn_check_config({})
    assert completed.returncode != 0
    assert "API_TOKENS is empty" in completed.stdout + completed.stderr


def test_gunicorn_settings() -> None:
    code = compile((REPO_ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec")
    settings: dict[str, object] = {}
    env_backup = dict(os.environ)
    try:
        os.environ.update({"PORT": "6123", "WEB_CONCURRENCY": "3"})
        os.environ.pop("BIND", None)
        exec(code, settings)  # noqa: S102 - our own config file, as gunicorn itself loads it
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    assert settings["bind"] == "0.0.0.0:6123"
    assert settings["workers"] == 3
    assert settings["preload_app"] is False
    assert settings["wsgi_app"] == "serve_http:create_app()"
    assert "%(q)s" not in str(settings["access_log_format"])  # no query strings (API keys)
    assert "%(r)s" not in str(settings["access_log_format"])


# ------------------------------------------------------------------------------- fetch_model


def _models_dir(tmp_path: Path, payload: bytes, upstream: str | None = None) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    manifest = {
        "name": "tiny",
        "file": "tiny.onnx",
        "sha256": [hashlib.sha256(payload).hexdigest()],
        "upstream_url": upstream,
    }
    (models / "tiny.json").write_text(json.dumps(manifest))
    return models


def test_fetch_from_mirror_verifies_and_is_idempotent(tmp_path: Path) -> None:
    models = _models_dir(tmp_path, b"weights")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.onnx").write_bytes(b"weights")
    first = fetch_model.fetch("tiny", models, mirror, optional=False)
    assert "from mirror" in first
    assert (models / "tiny.onnx").read_bytes() == b"weights"
    assert "present" in fetch_model.fetch("tiny", models, mirror, optional=False)
    assert not list(models.glob("*.part"))


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_fetched_weights_are_readable_by_group_and_others(tmp_path: Path, umask: int) -> None:
    # The Docker image fetches the weights as root and serves them as uid 10001: a file only
    # its owner can read stops every worker (tests read it as the owner and would not notice).
    models = _models_dir(tmp_path, b"weights")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.onnx").write_bytes(b"weights")
    previous = os.umask(umask)
    try:
        fetch_model.fetch("tiny", models, mirror, optional=False)
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((models / "tiny.onnx").stat().st_mode)
    assert mode == 0o644, oct(mode)


def test_weights_fetched_owner_only_are_made_readable(tmp_path: Path) -> None:
    # Weights fetched before the mode was set stay in place when verified: their mode is fixed.
    models = _models_dir(tmp_path, b"weights")
    (models / "tiny.onnx").write_bytes(b"weights")
    (models / "tiny.onnx").chmod(0o600)
    assert "present" in fetch_model.fetch("tiny", models, None, optional=False)
    assert stat.S_IMODE((models / "tiny.onnx").stat().st_mode) == 0o644


def test_fetch_refuses_a_wrong_checksum(tmp_path: Path) -> None:
    models = _models_dir(tmp_path, b"weights")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.onnx").write_bytes(b"tampered")
    with pytest.raises(fetch_model.FetchError, match="sha256"):
        fetch_model.fetch("tiny", models, mirror, optional=False)
    assert not (models / "tiny.onnx").exists()
    assert not list(models.glob("*.part"))


def test_fetch_replaces_a_corrupt_local_file(tmp_path: Path) -> None:
    models = _models_dir(tmp_path, b"weights")
    (models / "tiny.onnx").write_bytes(b"corrupt")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.onnx").write_bytes(b"weights")
    fetch_model.fetch("tiny", models, mirror, optional=False)
    assert (models / "tiny.onnx").read_bytes() == b"weights"


def test_fetch_without_any_source(tmp_path: Path) -> None:
    models = _models_dir(tmp_path, b"weights")
    with pytest.raises(fetch_model.FetchError, match="MODEL_MIRROR"):
        fetch_model.fetch("tiny", models, None, optional=False)
    assert "skipped" in fetch_model.fetch("tiny", models, None, optional=True)


@pytest.mark.parametrize(
    ("ci", "status"),
    [
        pytest.param("", 0, id="optional-skips"),
        pytest.param("true", 1, id="ci-true-is-not-optional"),
        pytest.param("1", 1, id="ci-1-is-not-optional"),
        pytest.param("false", 0, id="ci-false-skips"),
    ],
)
def test_fetch_optional_only_outside_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, status: int
) -> None:
    # `make test-models` fetches NanoDet with --optional; under CI=true a model that cannot be
    # fetched fails the build there instead of skipping its tests.
    models = _models_dir(tmp_path, b"weights")
    monkeypatch.setenv("CI", ci)
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    argv = ["tiny", "--optional", "--models-dir", str(models), "--mirror", str(empty)]
    assert fetch_model.main(argv) == status


def test_fetch_refuses_plain_http(tmp_path: Path) -> None:
    models = _models_dir(tmp_path, b"weights", upstream="http://127.0.0.1:9/tiny.onnx")
    with pytest.raises(fetch_model.FetchError, match="non-https"):
        fetch_model.fetch("tiny", models, None, optional=False)


def test_fetch_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = _models_dir(tmp_path, b"weights")
    assert fetch_model.main(["tiny", "--models-dir", str(models), "--mirror", str(tmp_path)]) == 1
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------------------- dependencies

# Each requirements file pins the direct dependencies; its lock (`make lock`) pins the whole tree
# with hashes. The client has no lock of its own: the tests install it from the dev lock.
REQUIREMENT_LOCKS = [
    pytest.param("requirements.txt", "requirements.lock", id="runtime"),
    pytest.param("requirements-dev.txt", "requirements-dev.lock", id="dev"),
    pytest.param("client/requirements.txt", "requirements-dev.lock", id="client"),
    # The bench's FastAPI peer, in a venv of its own (never the service's, never the image).
    pytest.param(
        "benchmarks/peers/requirements.txt", "benchmarks/peers/requirements.lock", id="peers"
    ),
    # The third-party clients of tests/test_clients_e2e.py, in .venv-clients.
    pytest.param(
        "tests/clients/requirements.txt", "tests/clients/requirements.lock", id="third-party"
    ),
]
LOCKS = [
    pytest.param("requirements.lock", id="runtime"),
    pytest.param("requirements-dev.lock", id="dev"),
    pytest.param("benchmarks/peers/requirements.lock", id="peers"),
    pytest.param("tests/clients/requirements.lock", id="third-party"),
]
_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def _normalized(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _direct_pins(path: Path) -> dict[str, str]:
    """name -> version of every requirement in `path` and the files it includes with -r;
    fails on a requirement that is not pinned with ==."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            pins.update(_direct_pins(path.parent / line.removeprefix("-r ").strip()))
            continue
        match = _PIN.fullmatch(line)
        assert match, f"{path.name}: {line!r} is not pinned as name==version"
        pins[_normalized(match["name"])] = match["version"]
    return pins


def _lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of every package in a lock file; fails on a line that is
    neither a pinned package, one of its --hash options nor a comment."""
    packages: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[0].isspace():
            assert name, f"{path.name}: {raw!r} belongs to no package"
            assert line.startswith("--hash=sha256:"), f"{path.name}: {raw!r} is not a --hash"
            version, hashes = packages[name]
            packages[name] = (version, hashes | {line.removeprefix("--hash=").rstrip(" \\")})
            continue
        match = _PIN.match(line)
        assert match, f"{path.name}: {raw!r} is not pinned as name==version"
        name = _normalized(match["name"])
        assert name not in packages, f"{path.name}: {name} is locked twice"
        packages[name] = (match["version"], frozenset())
    return packages


def test_every_requirements_file_has_a_lock() -> None:
    found = {
        str(path.relative_to(REPO_ROOT))
        for path in REPO_ROOT.rglob("requirements*.txt")
        if not {".venv", ".venv-clients", "node_modules"} & set(path.parts)
    }
    assert found == {row.values[0] for row in REQUIREMENT_LOCKS}


@pytest.mark.parametrize(("requirements", "lock"), REQUIREMENT_LOCKS)
def test_direct_requirements_are_locked_at_their_pinned_version(
    requirements: str, lock: str
) -> None:
    pins = _direct_pins(REPO_ROOT / requirements)
    locked = _lock(REPO_ROOT / lock)
    assert pins
    mismatched = {
        name: (version, locked[name][0] if name in locked else None)
        for name, version in pins.items()
        if name not in locked or locked[name][0] != version
    }
    assert not mismatched, f"pinned in {requirements} vs {lock} (run `make lock`): {mismatched}"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_has_a_hash(lock: str) -> None:
    locked = _lock(REPO_ROOT / lock)
    assert locked
    assert not [name for name, (_, hashes) in locked.items() if not hashes]


def test_runtime_lock_agrees_with_dev_lock() -> None:
    # The tests run against exactly what the image installs: every runtime package is in the dev
    # lock with the same version and the same hashes.
    runtime = _lock(REPO_ROOT / "requirements.lock")
    dev = _lock(REPO_ROOT / "requirements-dev.lock")
    assert not {name: entry for name, entry in runtime.items() if dev.get(name) != entry}


def test_service_does_not_need_requests() -> None:
    # requests is the client's dependency (client/requirements.txt): the image has none (and
    # tests/test_dockerfile.py checks that no module it runs imports it).
    assert "requests" not in _lock(REPO_ROOT / "requirements.lock")


@pytest.mark.parametrize(
    ("recipe", "command"),
    [
        pytest.param(
            "Dockerfile",
            "pip install --no-cache-dir --require-hashes -r requirements.lock",
            id="image",
        ),
        pytest.param(
            "Makefile",
            "pip install --disable-pip-version-check -q --require-hashes -r requirements-dev.lock",
            id="venv",
        ),
    ],
)
def test_installs_come_from_a_lock_with_hashes(recipe: str, command: str) -> None:
    text = (REPO_ROOT / recipe).read_text()
    assert command in text
    assert not re.search(r"pip install[^\n]* -r requirements[-a-z]*\.txt", text)
