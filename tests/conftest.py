"""Fixtures only (helpers are in tests/helpers.py): a fresh app per test, `config` ->
`detector` -> `app` -> `client`, with the fake detector of the HTTP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import ServiceConfig
from serve_http import create_app

# FakeDetector and REPO_ROOT are re-exported (`as`) for tests/test_openapi.py, which still
# imports them from here; make them plain imports once it takes them from tests.helpers.
from tests.helpers import REPO_ROOT as REPO_ROOT
from tests.helpers import SECOND_TOKEN, TOKEN
from tests.helpers import FakeDetector as FakeDetector

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def config() -> ServiceConfig:
    return ServiceConfig(api_tokens=(TOKEN, SECOND_TOKEN), max_body_bytes=1024 * 1024)


@pytest.fixture
def detector() -> FakeDetector:
    return FakeDetector()


@pytest.fixture
def app(config: ServiceConfig, detector: FakeDetector) -> Flask:
    return create_app(config, detector)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client
