"""The repository under real gunicorn (2 workers, the real model) on SQLite and PostgreSQL:
concurrent uploads of the same bytes, several clients uploading and listing at once, deletes
racing re-uploads; a process killed between the file and the commit; the migrations; the
`python -m repository` command; and real photos: labels, orientation and the boxes of
/v1/detect."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests
from alembic import command
from PIL import Image
from sqlalchemy import inspect

from repository.db import alembic_config, database_url, make_engine, upgrade
from tests.helpers import REPO_ROOT, SHARED_IMAGES, shared_image
from tests.live_server import LiveServer, live_gunicorn
from tests.repo_support import (
    ALICE,
    BOB,
    DATABASES,
    REPO_TOKENS,
    drop_postgres_database,
    fresh_postgres_database,
)

pytestmark = [pytest.mark.e2e]

HEADERS = {"X-Api-Token": ALICE}


def gradient(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".png", pixels)
    assert ok
    return buffer.tobytes()


@pytest.fixture(scope="module", params=DATABASES)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Path, dict[str, str]]]:
    """gunicorn with 2 workers on a repository of its own; (server, DATA_DIR, its env)."""
    folder = tmp_path_factory.mktemp(f"live-{request.param}")
    env = {"DATA_DIR": str(folder / "data"), "REPO_BUSY_TIMEOUT_MS": "5000"}
    name = None
    if request.param == "postgresql":
        server_url = request.getfixturevalue("postgres_server")
        url, name = fresh_postgres_database(server_url)
        env["REPO_DB_URL"] = url
    try:
        with live_gunicorn(folder, list(REPO_TOKENS), workers=2, extra_env=env) as server:
            yield server, folder / "data", env
            log = server.log()
            assert "Traceback" not in log, log[-3000:]
            assert "locked" not in log
    finally:
        if name is not None:
            drop_postgres_database(request.getfixturevalue("postgres_server"), name)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repository", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def post(server: LiveServer, data: bytes, name: str = "x.png", **params: str) -> requests.Response:
    return requests.post(
        server.url + "v1/images",
        headers=HEADERS,
        files={"image": (name, data)},
        params=params,
        timeout=120,
    )


def test_twenty_concurrent_uploads_of_the_same_bytes(
    live: tuple[LiveServer, Path, dict[str, str]],
) -> None:
    server, data_dir, _env = live
    data = gradient(1)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: post(server, data, detect="false"), range(20)))
    assert sorted({a.status_code for a in answers}) in ([200, 201], [201])
    assert [a.status_code for a in answers].count(201) == 1
    assert len({a.json()["image"]["id"] for a in answers}) == 1
    sha = answers[0].json()["image"]["sha256"]
    assert len(list((data_dir / "originals").rglob(f"{sha}.*"))) == 1
    listed = requests.get(
        server.url + f"v1/images?sha256={sha}", headers=HEADERS, timeout=30
    ).json()
    assert len(listed["images"]) == 1


def test_four_clients_fifty_uploads_each_with_lists(
    live: tuple[LiveServer, Path, dict[str, str]],
) -> None:
    server, _, _ = live
    before = len(
        requests.get(server.url + "v1/images?page_size=1000", headers=HEADERS, timeout=30).json()[
            "images"
        ]
    )

    def client(number: int) -> list[int]:
        statuses = []
        with requests.Session() as session:
            for index in range(50):
                answer = session.post(
                    server.url + "v1/images",
                    headers=HEADERS,
                    files={
                        "image": (
                            f"c{number}-{index}.png",
                            gradient(1000 + number * 100 + index, 24),
                        )
                    },
                    params={"detect": "false"},
                    timeout=120,
                )
                statuses.append(answer.status_code)
                if index % 10 == 0:
                    listed = session.get(
                        server.url + "v1/images?page_size=20", headers=HEADERS, timeout=60
                    )
                    statuses.append(listed.status_code)
        return statuses

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for result in pool.map(client, range(4)) for s in result]
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    after = requests.get(
        server.url + "v1/images?page_size=1000", headers=HEADERS, timeout=60
    ).json()["images"]
    assert len(after) == before + 200


def test_delete_racing_reupload_keeps_every_row_with_its_file(
    live: tuple[LiveServer, Path, dict[str, str]],
) -> None:
    server, _, env = live
    data = gradient(7)
    for _ in range(15):
        image_id = post(server, data, detect="false").json()["image"]["id"]
        with ThreadPoolExecutor(3) as pool:
            deleted = pool.submit(
                requests.delete, server.url + f"v1/images/{image_id}", headers=HEADERS, timeout=60
            )
            uploads = [pool.submit(post, server, data, detect="false") for _ in range(2)]
            assert deleted.result().status_code in (204, 404)
            assert {u.result().status_code for u in uploads} <= {200, 201}
        listed = requests.get(
            server.url + "v1/images?page_size=1000", headers=HEADERS, timeout=60
        ).json()
        for image in listed["images"]:
            original = requests.get(
                server.url + f"v1/images/{image['id']}", headers=HEADERS, timeout=60
            )
            assert original.status_code == 200, image["id"]
    checked = cli(env, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_owners_and_the_original_aliases_live(
    live: tuple[LiveServer, Path, dict[str, str]],
) -> None:
    server, _, _ = live
    created = requests.post(
        server.url + "image/upload",
        headers=HEADERS,
        files={"image": ("bus.jpg", shared_image("bus.jpg").read_bytes())},
        timeout=120,
    )
    assert created.status_code in (200, 201)
    image_id = created.json()["image"]["id"]
    assert (
        requests.get(
            server.url + f"image/{image_id}/details", headers={"X-Api-Token": BOB}, timeout=30
        ).status_code
        == 404
    )
    assert (
        requests.get(
            server.url + f"image/{image_id}/thumbnail", headers=HEADERS, timeout=30
        ).headers["Content-Type"]
        == "image/jpeg"
    )


# ---------------------------------------------------------------------- a crash, then gc

CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from config import load_config
    from registry import load_registry
    from repository.records import DetectOptions, UploadSource
    from repository.service import Repository
    from detection_types import DetectionParams

    config = load_config({**os.environ, "AUTH_DISABLED": "1"})
    repository = Repository.open(config, load_registry(config))
    # The process dies the moment the upload's transaction is about to commit: the file is
    # linked into place, the row is not committed.
    def crash(session):
        if session.get_bind().get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            os.kill(os.getpid(), signal.SIGKILL)  # a write transaction (Database.write)

    event.listen(Session, "before_commit", crash)
    data = Path(sys.argv[1]).read_bytes()
    options = DetectOptions(False, config.model_name, DetectionParams())
    repository.upload_one("alice", UploadSource(data, "crash.png"), options)
    """
)


@pytest.mark.parametrize("database", DATABASES, ids=DATABASES)
def test_a_crash_between_file_and_commit_leaves_an_orphan_that_gc_removes(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    name = None
    if database == "postgresql":
        server_url = request.getfixturevalue("postgres_server")
        url, name = fresh_postgres_database(server_url)
        env["REPO_DB_URL"] = url
    try:
        image = tmp_path / "crash.png"
        image.write_bytes(gradient(99))
        crashed = subprocess.run(
            [sys.executable, "-c", CRASH, str(image)],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert crashed.returncode == -9, crashed.stderr
        files = list((tmp_path / "data" / "originals").rglob("*.png"))
        assert len(files) == 1  # the orphan
        checked = cli(env, "check")
        assert checked.returncode == 0
        assert "0 image(s)" in checked.stdout
        assert "1 file(s) no row names" in checked.stdout
        collected = cli(env, "gc", "--temp-age", "0")
        assert collected.returncode == 0, collected.stderr
        assert "1 unreferenced original" in collected.stdout
        assert not list((tmp_path / "data" / "originals").rglob("*.png"))
        assert not list((tmp_path / "data" / "tmp").iterdir())
    finally:
        if name is not None:
            drop_postgres_database(request.getfixturevalue("postgres_server"), name)


# ---------------------------------------------------------------------- migrations, CLI


@pytest.mark.parametrize("database", DATABASES, ids=DATABASES)
def test_migrations_on_an_empty_database_and_alembic_check(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = None
    if database == "postgresql":
        server_url = request.getfixturevalue("postgres_server")
        url, name = fresh_postgres_database(server_url)
    else:
        url = database_url(tmp_path, None)
    engine = make_engine(url, 1000)
    try:
        assert inspect(engine).get_table_names() == []
        before, after = upgrade(engine, tmp_path)
        assert (before, after) == (None, "0001")
        assert set(inspect(engine).get_table_names()) >= {
            "blobs",
            "images",
            "detection_runs",
            "detections",
            "alembic_version",
        }
        with engine.connect() as connection:
            command.check(alembic_config(connection))  # raises when the models drifted
        assert upgrade(engine, tmp_path) == ("0001", "0001")  # idempotent
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert inspect(engine).get_table_names() == ["alembic_version"]
    finally:
        engine.dispose()
        if name is not None:
            drop_postgres_database(request.getfixturevalue("postgres_server"), name)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(database_url(tmp_path, None), 1234)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    engine.dispose()


def test_cli_migrate_check_detect(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    migrated = cli(env, "migrate")
    assert migrated.returncode == 0
    assert "revision 0001" in migrated.stdout
    assert cli(env, "check").returncode == 0
    detected = cli(env, "detect", "--missing")
    assert detected.returncode == 0
    assert "detected 0 image(s)" in detected.stdout
    bad = cli({**env, "GPS_POLICY": "nope"}, "check")
    assert bad.returncode == 2
    assert "GPS_POLICY" in bad.stderr


# ---------------------------------------------------------------------- real photos


@pytest.fixture(scope="module")
def real_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("real")
    with live_gunicorn(
        folder, list(REPO_TOKENS), workers=2, extra_env={"DATA_DIR": str(folder / "data")}
    ) as server:
        yield server


def detect_names(server: LiveServer, data: bytes, min_score: float = 0.0) -> dict[str, Any]:
    answer = requests.post(
        server.url + "v1/detect",
        headers={**HEADERS, "Content-Type": "application/octet-stream"},
        data=data,
        timeout=120,
    )
    assert answer.status_code == 200
    response: dict[str, Any] = answer.json()["responses"][0]
    return response


@pytest.mark.real_model
def test_label_queries_return_exactly_the_expected_sets(real_live: LiveServer) -> None:
    photos = [shared_image("dog.jpg"), shared_image("bus.jpg")]
    photos += sorted((SHARED_IMAGES / "coco").glob("*.jpg"))[:10]
    if len(photos) < 12 and os.environ.get("CI", "").lower() == "true":
        pytest.fail("the shared coco photos are missing")
    expected: dict[str, set[str]] = {}
    labels_by_id: dict[str, set[str]] = {}
    for path in photos:
        data = path.read_bytes()
        image = post(real_live, data, path.name).json()["image"]
        found = {
            a["name"]
            for a in detect_names(real_live, data)["localizedObjectAnnotations"]
            if a["score"] >= 0.5
        }
        labels_by_id[image["id"]] = found
        for name in found:
            expected.setdefault(name, set()).add(image["id"])
    assert {"dog", "bicycle", "car"} <= labels_by_id[next(iter(labels_by_id))]  # dog.jpg
    for name, ids in expected.items():
        listed = requests.get(
            real_live.url + f"v1/images?label={name}&min_score=0.5&page_size=1000",
            headers=HEADERS,
            timeout=60,
        ).json()
        assert {i["id"] for i in listed["images"]} == ids, name
    both = {i for i, names in labels_by_id.items() if {"person", "bus"} <= names}
    listed = requests.get(
        real_live.url + "v1/images?label=person&label=bus&min_score=0.5",
        headers=HEADERS,
        timeout=60,
    ).json()
    assert {i["id"] for i in listed["images"]} == both
    assert both


@pytest.mark.real_model
def test_orientation_six_gives_a_portrait_and_the_boxes_of_v1_detect(real_live: LiveServer) -> None:
    source = Image.open(shared_image("dog.jpg"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    buffer = io.BytesIO()
    source.save(buffer, "JPEG", quality=92, exif=exif)
    data = buffer.getvalue()
    image = post(real_live, data, "rotated.jpg").json()["image"]
    assert (image["width"], image["height"]) == (576, 768)
    thumbnail = requests.get(
        real_live.url + f"v1/images/{image['id']}/thumbnail", headers=HEADERS, timeout=30
    )
    decoded = cv2.imdecode(np.frombuffer(thumbnail.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape[:2] == (256, 192)  # portrait
    stored = requests.get(
        real_live.url + f"v1/images/{image['id']}/detections", headers=HEADERS, timeout=30
    ).json()
    direct = detect_names(real_live, data)
    stored_boxes = [
        (a["name"], a["boundingPoly"]["normalizedVertices"])
        for a in stored["runs"][0]["localizedObjectAnnotations"]
    ]
    direct_boxes = [
        (a["name"], a["boundingPoly"]["normalizedVertices"])
        for a in direct["localizedObjectAnnotations"]
    ]
    assert len(stored_boxes) == len(direct_boxes) > 0
    for (name, corners), (direct_name, direct_corners) in zip(
        stored_boxes, direct_boxes, strict=True
    ):
        assert name == direct_name
        for a, b in zip(corners, direct_corners, strict=True):
            assert a["x"] == pytest.approx(b["x"], abs=1e-5)
            assert a["y"] == pytest.approx(b["y"], abs=1e-5)
    assert json.dumps(stored)  # plain JSON


def test_client_functions_and_cli(real_live: LiveServer, tmp_path: Path) -> None:
    from client import send2api

    photo = shared_image("dog.jpg")
    stored = send2api.upload(real_live.url, ALICE, photo)
    image_id = stored["image"]["id"]
    assert stored["image"]["originalName"] == "dog.jpg"
    assert send2api.upload(real_live.url, ALICE, photo)["duplicate"] is True
    listed = send2api.list_images(real_live.url, ALICE, label=["dog", "bicycle"], min_score=0.5)
    assert image_id in {i["id"] for i in listed["images"]}
    assert (
        send2api.get_image(real_live.url, ALICE, image_id)["image"]["sha256"]
        == stored["image"]["sha256"]
    )
    assert send2api.download_image(real_live.url, ALICE, image_id) == photo.read_bytes()
    with pytest.raises(send2api.ApiError) as raised:
        send2api.get_image(real_live.url, BOB, image_id)
    assert raised.value.status_code == 404
    assert raised.value.reason == "image_not_found"
    env = {**os.environ, "API_TOKEN": ALICE}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "client.send2api", *args, "--url", real_live.url],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    listed_cli = run("list", "--label", "dog")
    assert listed_cli.returncode == 0
    assert image_id in listed_cli.stdout
    saved = tmp_path / "copy.jpg"
    assert run("get", image_id, "--original", str(saved)).returncode == 0
    assert saved.read_bytes() == photo.read_bytes()
    assert run("delete", image_id).returncode == 0
    missing = run("get", image_id)
    assert missing.returncode == 1
    assert "404" in missing.stderr
    # The detection command line is unchanged: images first.
    legacy = run(str(photo))
    assert legacy.returncode == 0
    assert "localizedObjectAnnotations" in legacy.stdout
