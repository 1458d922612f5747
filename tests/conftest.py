"""Fixtures and hooks only (helpers are in tests/helpers.py).

Fixtures: a fresh app per test, `config` -> `detector` -> `app` -> `client`, with the fake
detector of the HTTP tests.

Hooks: under CI=true a skipped test is a failure. Every skip in this suite is for something
missing (a model, a photo, a tool), and CI installs all of them (`make test`), so a green CI run
means that every collected test really ran.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import ServiceConfig
from serve_http import create_app
from tests.helpers import SECOND_TOKEN, TOKEN, FakeDetector

# pytester: tests/test_suite_rules.py checks the CI hook below on an inner test run;
# repo_support: the image repository's fixtures (a PostgreSQL for the session, a database per
# test).
pytest_plugins = ["pytester", "tests.repo_support"]

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


# --- hooks -------------------------------------------------------------------------------------


def running_in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """CI=true (as GitHub Actions, GitLab and most CI services set it), or CI=1."""
    return environ.get("CI", "").strip().lower() in {"true", "1"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true, turn a skip (in setup or in the test) into a failure naming its reason.
    An expected failure (xfail) also reports as skipped; it is left alone."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and running_in_ci():
        if isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
        else:
            reason = str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped under CI=true, where every test must run "
            f"(install what it needs instead): {reason}"
        )
    return report
