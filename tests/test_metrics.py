"""What the app records, through the test client with a registry of the test's own: counts
by route template, model and status, stages, images, errors by code, in-flight requests;
labels from bounded sets only. The master's sum over real workers, and counts surviving a
killed worker, are in tests/test_ops_e2e.py."""

from __future__ import annotations

import io
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest

import metrics
from compat.routes import ServiceState
from config import ServiceConfig
from metrics import NullMetrics, ServiceMetrics
from registry import ModelRegistry
from serve_http import create_app
from stages import STAGES
from tests.helpers import AUTH, REPO_ROOT, TOKEN, FakeDetector, annotate_body, encode_image


@pytest.fixture
def recorded(config: ServiceConfig) -> ServiceMetrics:
    return ServiceMetrics(CollectorRegistry())


@pytest.fixture
def app(config: ServiceConfig, recorded: ServiceMetrics) -> Flask:
    registry = ModelRegistry(
        detectors={"fake": FakeDetector(), "other": FakeDetector(name="other")}, default="fake"
    )
    return create_app(config, registry, metrics=recorded)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


def value(recorded: ServiceMetrics, name: str, **labels: str) -> float:
    found = recorded.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_requests_by_route_template_model_and_code(
    client: FlaskClient, recorded: ServiceMetrics
) -> None:
    image = encode_image(40, 30)
    for _ in range(3):
        client.post("/v1/detect", json=annotate_body(image), headers=AUTH)
    client.post("/v1/detect?model=other", data=image, headers={**AUTH, "Content-Type": "image/png"})
    client.get("/v1/models/fake", headers=AUTH)
    client.get("/v1/models/no-such-model", headers=AUTH)
    client.post("/v1/detect", json=annotate_body(image))  # no token
    client.get("/nowhere")
    requests = "detection_requests_total"
    assert value(recorded, requests, route="/v1/detect", model="fake", code="200") == 3
    assert value(recorded, requests, route="/v1/detect", model="other", code="200") == 1
    assert value(recorded, requests, route="/v1/models/<name>", model="none", code="200") == 1
    assert value(recorded, requests, route="/v1/models/<name>", model="none", code="404") == 1
    assert value(recorded, requests, route="/v1/detect", model="none", code="401") == 1
    assert value(recorded, requests, route="unmatched", model="none", code="404") == 1
    duration = "detection_request_duration_seconds_count"
    assert value(recorded, duration, route="/v1/detect", model="fake", code="200") == 3
    assert value(recorded, "detection_images_total", route="/v1/detect", model="fake") == 3
    errors = "detection_errors_total"
    assert value(recorded, errors, route="/v1/models/<name>", code="unknown_model") == 1
    assert value(recorded, errors, route="/v1/detect", code="unauthenticated") == 1
    assert value(recorded, errors, route="unmatched", code="not_found") == 1
    assert value(recorded, "detection_inflight_requests") == 0


def test_per_image_errors_in_a_200_are_counted(
    client: FlaskClient, recorded: ServiceMetrics
) -> None:
    body = annotate_body(
        encode_image(20, 20), b"not an image", b"nor this", type="OBJECT_LOCALIZATION"
    )
    assert client.post("/v1/images:annotate", json=body, headers=AUTH).status_code == 200
    route = "/v1/images:annotate"
    assert value(recorded, "detection_errors_total", route=route, code="invalid_image") == 2
    assert value(recorded, "detection_images_total", route=route, model="fake") == 1
    assert value(recorded, "detection_requests_total", route=route, model="fake", code="200") == 1


def test_stages_of_each_route(client: FlaskClient, recorded: ServiceMetrics) -> None:
    image = encode_image(50, 40)
    client.post("/v1/detect", json=annotate_body(image, image), headers=AUTH)
    client.post("/v1/detect?format=png", data=image, headers={**AUTH, "Content-Type": "image/png"})
    client.post("/v1/vision/detection", data={"image": (io.BytesIO(image), "a.png")}, headers=AUTH)
    count = "detection_stage_duration_seconds_count"
    # per image: two of the JSON request, one each of the others
    assert value(recorded, count, stage="decode", model="fake") == 4
    assert value(recorded, count, stage="infer", model="fake") == 4
    # per request
    assert value(recorded, count, stage="render", model="fake") == 3
    # the JSON answers, and the PNG encoded as the picture's serialisation
    assert value(recorded, count, stage="serialize", model="fake") == 3
    assert value(recorded, count, stage="read_body", model="fake") >= 3
    names = {s.labels.get("stage") for m in recorded.registry.collect() for s in m.samples}
    assert {"read_body", "decode", "infer", "render", "serialize"} <= names & set(STAGES)


def test_models_ready_and_info(recorded: ServiceMetrics, client: FlaskClient) -> None:
    assert value(recorded, "detection_model_ready", model="fake") == 1
    assert value(recorded, "detection_model_ready", model="other") == 1
    info = {
        "model": "fake",
        "family": "yolox",
        "input_size": "416x416",
        "sha256": "0" * 64,
    }
    assert value(recorded, "detection_model_info", **info) == 1


def test_labels_never_hold_what_the_caller_chose(
    client: FlaskClient, recorded: ServiceMetrics
) -> None:
    secret_path = "/v1/models/caller-chosen-name-x9"
    client.get(secret_path, headers=AUTH)
    client.get(f"/v1/models?key={TOKEN}")
    client.get("/caller/path/y7", headers={"X-Api-Token": "wrong-token-z5"})
    client.post(
        "/v1/detect?model=unknown-model-w3",
        data=b"x",
        headers={**AUTH, "Content-Type": "image/png"},
    )
    exposition = generate_latest(recorded.registry).decode()
    for chosen in (
        "caller-chosen-name-x9",
        TOKEN,
        "caller/path",
        "wrong-token-z5",
        "unknown-model-w3",
        "127.0.0.1",
    ):
        assert chosen not in exposition


def test_repository_hooks(recorded: ServiceMetrics) -> None:
    recorded.repository_upload(duplicate=False)
    recorded.repository_upload(duplicate=True)
    recorded.repository_size(images=3, blobs=2, stored_bytes=1234)
    assert value(recorded, "detection_repository_uploads_total") == 2
    assert value(recorded, "detection_repository_duplicates_total") == 1
    assert value(recorded, "detection_repository_size", unit="bytes") == 1234
    assert value(recorded, "detection_repository_size", unit="images") == 3


def test_repository_uploads_duplicates_and_size(tmp_path: Path) -> None:
    recorded = ServiceMetrics(CollectorRegistry(), repository_size_interval_s=0)
    config = ServiceConfig(api_tokens=(f"alice:{TOKEN}",), data_dir=tmp_path / "data")
    app = create_app(config, FakeDetector(), metrics=recorded)
    client = app.test_client()
    raw = {**AUTH, "Content-Type": "application/octet-stream"}
    first, second = encode_image(64, 48, seed=1), encode_image(64, 48, seed=2)
    try:
        assert value(recorded, "detection_repository_size", unit="images") == 0
        assert client.post("/v1/images", headers=raw, data=first).status_code == 201
        assert client.post("/v1/images", headers=raw, data=first).status_code == 200
        answer = client.post("/v1/images", headers=raw, data=second)
        assert answer.status_code == 201
        assert value(recorded, "detection_repository_uploads_total") == 3
        assert value(recorded, "detection_repository_duplicates_total") == 1
        assert value(recorded, "detection_repository_size", unit="images") == 2
        assert value(recorded, "detection_repository_size", unit="blobs") == 2
        stored = value(recorded, "detection_repository_size", unit="bytes")
        assert stored >= len(first) + len(second) * 0.5  # stored files, EXIF-rewritten or not
        image_id = answer.get_json()["image"]["id"]
        assert client.delete(f"/v1/images/{image_id}", headers=AUTH).status_code == 204
        assert value(recorded, "detection_repository_size", unit="images") == 1
        assert value(recorded, "detection_repository_size", unit="blobs") == 1
    finally:
        app.extensions["image_repository"].repository.database.dispose()


def test_repository_size_is_read_at_most_once_per_interval() -> None:
    recorded = ServiceMetrics(CollectorRegistry(), repository_size_interval_s=3600)
    reads: list[int] = []

    def read() -> tuple[int, int, int]:
        reads.append(1)
        return (len(reads), 0, 0)

    recorded.repository_changed(read)
    recorded.repository_changed(read)
    assert reads == [1]
    assert value(recorded, "detection_repository_size", unit="images") == 1


def test_a_failed_size_read_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    recorded = ServiceMetrics(CollectorRegistry(), repository_size_interval_s=0)

    def broken() -> tuple[int, int, int]:
        raise RuntimeError("database gone")

    recorded.repository_changed(broken)
    assert "repository size not read" in caplog.text


def test_metrics_port_zero_records_nothing(config: ServiceConfig) -> None:
    off = ServiceConfig(api_tokens=config.api_tokens, metrics_port=0)
    app = create_app(off, FakeDetector())
    state: ServiceState = app.extensions["detection_service"]
    assert isinstance(state.metrics, NullMetrics)
    assert app.test_client().get("/healthz").status_code == 200


def test_service_version_is_pyproject_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == metrics.SERVICE_VERSION


def test_buckets_are_sorted_and_reach_the_worker_timeout() -> None:
    for buckets in (metrics.REQUEST_BUCKETS, metrics.STAGE_BUCKETS, metrics.LOAD_BUCKETS):
        assert list(buckets) == sorted(set(buckets))
    assert metrics.REQUEST_BUCKETS[-1] >= 120  # gunicorn's default worker timeout


def test_prepare_multiproc_dir_empties_it(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "sub").mkdir()
    metrics.prepare_multiproc_dir(str(folder))
    assert list(folder.iterdir()) == []
    metrics.prepare_multiproc_dir(str(tmp_path / "made"))
    assert (tmp_path / "made").is_dir()


def test_metric_names_in_the_docs() -> None:
    # Every metric the service exports is in docs/operations.md's table, and the other way round.
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(detection_[a-z_]+)`", text, re.MULTILINE))
    exported = {
        m.name + "_total" if m.type == "counter" else m.name
        for m in ServiceMetrics(CollectorRegistry()).registry.collect()
    }
    # the master's own, read from /proc at scrape time (metrics.WorkersCollector)
    exported |= {"detection_workers", "detection_worker_resident_memory_bytes"}
    assert documented == exported
