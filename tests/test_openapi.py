"""The OpenAPI contract (openapi.json): built by scripts/build_openapi.py from the code's tables
and the fragments in openapi/, committed as built, a valid OpenAPI 3.1 document whose examples
match its schemas, in step with the Flask routes, served at /openapi.json as it is on disk, and
fuzzed with schemathesis against the real service (gunicorn, real model) on a loopback port.

The document is generated from the route, parameter, error and status tables, so the tests
here do not compare it with copies of those tables: a few check that the builder used them,
and that it refuses fragments that do not fit the code.

The fuzz runs the `schemathesis run` CLI in a subprocess (its own process and warning
settings, and a hard time limit). This module is also that run's hooks file
(SCHEMATHESIS_HOOKS): the hooks at the bottom are registered only in the CLI's process. They
add explicit cases with a real photo for the bodies a JSON document cannot hold (multipart
files, raw image bodies, DeepStack), check that picture answers really are PNG or JPEG, and
fail the run when an operation never answered 2xx (so every success schema was checked).
Set FUZZ_SEED to replay a run's seed (the failure message prints it).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import errors
import serve_http
import utils_serve
from config import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IMAGES, ServiceConfig
from detection_types import DetectionParams
from dialects import deepstack, doods, google, kserve, roboflow
from tests.helpers import REPO_ROOT, FakeDetector
from tests.live_server import live_gunicorn

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_openapi
from openapi_build.common import BuildError, camel, openapi_path
from openapi_build.document import build, load_fragments

OPENAPI_PATH = REPO_ROOT / "openapi.json"
DOCUMENT_URI = "urn:detection-service:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
FUZZ_TOKEN = "fuzz-token-7c1d"
# Bounds of the fuzz run: examples per operation and phase, seconds per request, seconds for
# the whole CLI run (the server's start and stop come on top, a few seconds each).
FUZZ_MAX_EXAMPLES = 15
FUZZ_REQUEST_TIMEOUT_S = 20
FUZZ_RUN_TIMEOUT_S = 150
# gunicorn answers 414 itself for a request line over limit_request_line (4094 bytes): the
# hooks drop such failures only for request lines longer than this.
GUNICORN_REQUEST_LINE_MARGIN = 4000
FUZZ_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",  # each secured operation refuses a missing or wrong token
    "unsupported_method",  # other methods are 405 ...
    "allow_header_conformance",  # ... with an Allow header that lists the right ones
    # Ours, registered by the hooks below.
    "picture_matches_content_type",
    "every_operation_answered_2xx",
)


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return loaded


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) for every operation in the document."""
    for path, item in document()["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def pointer(*parts: str) -> str:
    """A JSON pointer into the document (RFC 6901 escaping)."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def ref_parts(ref: str) -> tuple[str, ...]:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in ref.removeprefix("#/").split("/"))


def resolve(node: Any) -> Any:
    """Follow a local `$ref` (components) to the object it names."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document()
        for part in ref_parts(node["$ref"]):
            target = target[part]
        node = target
    return node


def located(node: Any, where: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    """(pointer parts, object) of a node that may be a `$ref` to a component."""
    if isinstance(node, dict) and "$ref" in node:
        return ref_parts(node["$ref"]), resolve(node)
    return where, node


def cat_jpeg() -> bytes:
    """The real photo the document's examples carry (a small JPEG of sample_images/chelsea.png)."""
    content = resolve({"$ref": "#/components/examples/Cat"})["value"]["requests"][0]
    return base64.b64decode(content["image"]["content"])


def schemas() -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["schemas"]
    return found


# ------------------------------------------------------------------------------- the document


def test_document_is_valid_openapi_3_1() -> None:
    assert document()["openapi"] == "3.1.0"
    validate(document(), cls=OpenAPIV31SpecValidator)


def test_committed_document_is_the_build() -> None:
    # `make test` also runs `scripts/build_openapi.py --check`; this says the same in pytest.
    built = build_openapi.render(build())
    assert OPENAPI_PATH.read_text(encoding="utf-8") == built, (
        "openapi.json is stale: run .venv/bin/python scripts/build_openapi.py"
    )


def test_check_fails_with_a_diff_on_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text(OPENAPI_PATH.read_text(encoding="utf-8").replace("3.1.0", "3.1.1", 1))
    assert build_openapi.main(["--check", "--output", str(stale)]) == 1
    out = capsys.readouterr().out
    assert '-  "openapi": "3.1.1",' in out
    assert '+  "openapi": "3.1.0",' in out
    assert "differs from the build (+1 -1 lines)" in out
    assert build_openapi.main(["--output", str(stale)]) == 0  # writes the build
    assert build_openapi.main(["--check", "--output", str(stale)]) == 0
    assert stale.read_bytes() == OPENAPI_PATH.read_bytes()


def test_the_example_photo_is_in_the_document_once() -> None:
    text = OPENAPI_PATH.read_text(encoding="utf-8")
    photo = base64.b64encode(cat_jpeg()).decode("ascii")
    assert text.count(photo[:64]) == 1
    assert cv2.imdecode(np.frombuffer(cat_jpeg(), np.uint8), cv2.IMREAD_COLOR) is not None


def schema_validator(schema_pointer: str) -> Any:
    """A JSON Schema 2020-12 (OpenAPI 3.1 dialect) validator for the schema at this pointer,
    with `$ref`s resolved inside the document."""
    resource: Resource[Any] = Resource.from_contents(document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    return OAS31Validator({"$ref": DOCUMENT_URI + schema_pointer}, registry=registry)


def media_examples() -> Iterator[tuple[str, str, Any]]:
    """(where, schema pointer, example value) for every example of every media type."""
    for path, method, operation in operations():
        contents: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        bodies = [(operation["requestBody"], "requestBody")] if "requestBody" in operation else []
        responses = [(r, "responses", s) for s, r in operation["responses"].items()]
        for node, *key in [*bodies, *responses]:
            where, body = located(node, ("paths", path, method, *key))
            for media_type in body.get("content", {}):
                contents.append(((*where, "content", media_type), body["content"][media_type]))
        for where, media in contents:
            label = f"{method.upper()} {path} {' '.join(where[-3:])}"
            schema_at = pointer(*where, "schema")
            if "example" in media:
                yield label, schema_at, media["example"]
            for name, example in media.get("examples", {}).items():
                yield f"{label} example {name}", schema_at, resolve(example)["value"]


def test_examples_match_their_schemas() -> None:
    checked = 0
    for where, schema_at, value in media_examples():
        problems = [e.message[:300] for e in schema_validator(schema_at).iter_errors(value)]
        assert not problems, f"{where}: {problems}"
        checked += 1
    for name, schema in schemas().items():
        for index, value in enumerate(schema.get("examples", [])):
            validator = schema_validator(pointer("components", "schemas", name))
            problems = [e.message[:300] for e in validator.iter_errors(value)]
            assert not problems, f"components/schemas/{name} examples[{index}]: {problems}"
            checked += 1
    assert checked >= 15


def test_every_ref_resolves() -> None:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = set(walk(document()))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        resolve({"$ref": ref})  # raises KeyError when it names nothing


# ------------------------------------------------------------------------- in step with the app


@pytest.fixture
def app_routes(config: ServiceConfig) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) -> endpoint for every route the app registers."""
    app = serve_http.create_app(config, FakeDetector())
    routes: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:  # Flask adds these to every rule
                routes[(path, method.lower())] = rule.endpoint
    return routes


def test_every_route_is_documented_and_nothing_else(
    app_routes: dict[tuple[str, str], str],
) -> None:
    documented = {(path, method) for path, method, _ in operations()}
    assert sorted(set(app_routes) - documented) == [], "routes missing from openapi.json"
    assert sorted(documented - set(app_routes)) == [], "documented but not served"


def test_path_parameters_are_declared() -> None:
    for path, method, operation in operations():
        declared = {
            p["name"]
            for p in map(resolve, [*document()["paths"][path].get("parameters", [])])
            if p["in"] == "path"
        } | {p["name"] for p in map(resolve, operation.get("parameters", [])) if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), f"{method.upper()} {path}"


def test_served_document_is_this_file(config: ServiceConfig) -> None:
    app = serve_http.create_app(config, FakeDetector())
    with app.test_client() as client:
        response = client.get("/openapi.json")  # no token: the contract is public
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == OPENAPI_PATH.read_bytes()


# ----------------------------------------------------------- the builder used the code's tables

# Each dialect's error body and the schema its error responses have (else Google's envelope).
ERROR_SCHEMAS: dict[Callable[[errors.ApiError], dict[str, Any]], str] = {
    deepstack.error_body: "DeepStackError",
    roboflow.error_body: "RoboflowError",
    kserve.error_body: "KServeError",
    doods.error_body: "DoodsError",
}
# Non-2xx answers that are a state, not an error: KServe's readiness says `ready: false`.
STATE_ANSWERS = frozenset(
    {
        ("/v2/health/ready", "503"),
        ("/v2/models/{model}/ready", "503"),
        ("/v2/models/{model}/versions/{version}/ready", "503"),
    }
)
ROUTE_CASES = [
    pytest.param(route, id=f"{route.methods[0]} {route.rule}") for route in serve_http.ROUTES
]


@pytest.mark.parametrize("route", ROUTE_CASES)
def test_each_operation_has_its_routes_security_and_error_shape(route: serve_http.Route) -> None:
    path = openapi_path(route.rule)
    operation = document()["paths"][path][route.methods[0].lower()]
    if route.public:
        assert operation["security"] == []
        assert "401" not in operation["responses"]
    else:
        assert "security" not in operation  # the document's: any one of the token schemes
        assert "401" in operation["responses"]
    shape = ERROR_SCHEMAS.get(route.error_body, "ErrorEnvelope")
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")) and (path, status) not in STATE_ANSWERS:
            schema = resolve(response)["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, status


def test_error_reason_enum_is_the_error_codes() -> None:
    assert schemas()["ErrorReason"]["enum"] == [cls.code for cls in errors.error_classes()]


def test_google_status_enum_is_googles_status_table() -> None:
    names = {name for name, _ in google.STATUS_BY_HTTP.values()} | {google.UNKNOWN_STATUS[0]}
    assert set(schemas()["GoogleStatusName"]["enum"]) == names


def test_feature_type_enum_is_googles_table() -> None:
    by_name, by_number = schemas()["GoogleFeatureType"]["anyOf"]
    assert by_name["enum"] == [google.FEATURE_TYPES[n] for n in sorted(google.FEATURE_TYPES)]
    assert by_number["enum"] == sorted(google.FEATURE_TYPES)


@pytest.mark.parametrize(
    "status",
    [pytest.param(s, id=str(s)) for s in sorted({c.status for c in errors.error_classes()})],
)
def test_every_error_status_has_a_response_rendered_by_the_service(status: int) -> None:
    # Each example is the envelope that google.error_envelope writes for an error of that class.
    responses = document()["components"]["responses"]
    examples = [
        r["content"]["application/json"]["example"]["error"]
        for r in responses.values()
        if r["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    ]
    found = [e for e in examples if e["code"] == status]
    assert found
    codes = {cls.code: cls for cls in errors.error_classes()}
    for example in found:
        assert codes[example["reason"]].status == status
        assert example["status"] == google.STATUS_BY_HTTP[status][0]


@pytest.mark.parametrize(
    "parameter", [pytest.param(p, id=p.attribute) for p in utils_serve.PARAMETERS]
)
def test_parameter_schemas_come_from_the_parameter_table(
    parameter: utils_serve.Parameter,
) -> None:
    schema = schemas()[camel(parameter.attribute)]
    assert schema["type"] == ("integer" if parameter.kind is int else "number")
    assert (schema["minimum"], schema["maximum"]) == (parameter.low, parameter.high)
    assert schema["default"] == getattr(DetectionParams(), parameter.attribute)
    ref = {"$ref": f"#/components/schemas/{camel(parameter.attribute)}"}
    features = schemas()["Thresholds"]["properties"]
    for spelling in parameter.spellings:  # every spelling of a JSON feature
        assert {**features[spelling], "description": ""} == {**ref, "description": ""}
    query = document()["components"]["parameters"][f"Query_{parameter.spellings[0]}"]
    assert query["schema"] == ref


@pytest.mark.parametrize(
    ("where", "value"),
    [
        pytest.param(
            ("schemas", "DetectJsonRequest", "properties", "requests", "maxItems"),
            DEFAULT_MAX_IMAGES,
            id="json-requests",
        ),
        pytest.param(
            ("schemas", "GoogleBatchAnnotateImagesRequest", "properties", "requests", "maxItems"),
            DEFAULT_MAX_IMAGES,
            id="google-requests",
        ),
        pytest.param(
            ("schemas", "DetectMultipartRequest", "properties", "image", "maxItems"),
            DEFAULT_MAX_IMAGES,
            id="multipart-images",
        ),
        pytest.param(
            ("schemas", "DetectFormRequest", "properties", "images", "maxItems"),
            DEFAULT_MAX_IMAGES,
            id="form-images",
        ),
        pytest.param(
            ("schemas", "DeepStackRequest", "properties", "min_confidence", "default"),
            deepstack.DEFAULTS.score_threshold,
            id="deepstack-confidence",
        ),
    ],
)
def test_limits_and_defaults_come_from_the_code(where: tuple[str, ...], value: object) -> None:
    node: Any = document()["components"]
    for part in where:
        node = node[part]
    assert node == value


def test_payload_too_large_example_names_the_body_limit() -> None:
    for name in ("PayloadTooLarge", "DeepStackPayloadTooLarge"):
        example = document()["components"]["responses"][name]["content"]["application/json"]
        assert str(DEFAULT_MAX_BODY_BYTES) in json.dumps(example["example"]), name


# The builder refuses fragments that do not fit the code: each case breaks a copy of them.
Breakage = Callable[[dict[str, Any]], None]


def _describe_unserved_route(fragments: dict[str, Any]) -> None:
    operations = fragments["native.json"]["operations"]
    operations["/v1/detect/extra"] = copy.deepcopy(operations["/v1/detect"])


def _forget_a_served_route(fragments: dict[str, Any]) -> None:
    del fragments["service.json"]["operations"]["/healthz"]


def _name_an_unknown_error(fragments: dict[str, Any]) -> None:
    fragments["native.json"]["operations"]["/v1/models"]["get"]["x-errors"].append("teapot")


def _misspell_a_placeholder(fragments: dict[str, Any]) -> None:
    schema = fragments["native.json"]["components"]["schemas"]["DetectJsonRequest"]
    schema["properties"]["requests"]["maxItems"] = "{{max_image}}"


def _define_a_schema_twice(fragments: dict[str, Any]) -> None:
    schema = fragments["service.json"]["components"]["schemas"]["Health"]
    fragments["native.json"]["components"]["schemas"]["Health"] = schema


def _describe_a_parameter_that_is_not_in_the_table(fragments: dict[str, Any]) -> None:
    fragments["native.json"]["parameterDescriptions"]["min_area_fraction"] = "Smallest area."


def _refer_to_nothing(fragments: dict[str, Any]) -> None:
    body = fragments["google.json"]["components"]["requestBodies"]["GoogleBatch"]
    body["content"]["application/json"]["schema"]["$ref"] = "#/components/schemas/Nothing"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        pytest.param(_describe_unserved_route, "not served", id="unserved-route"),
        pytest.param(
            _forget_a_served_route, "no fragment describes GET /healthz", id="undescribed"
        ),
        pytest.param(_name_an_unknown_error, "teapot", id="unknown-error-code"),
        pytest.param(_misspell_a_placeholder, "{{max_image}}", id="unknown-placeholder"),
        pytest.param(_define_a_schema_twice, "Health is defined twice", id="duplicate-component"),
        pytest.param(
            _describe_a_parameter_that_is_not_in_the_table, "min_area_fraction", id="parameter"
        ),
        pytest.param(_refer_to_nothing, "#/components/schemas/Nothing", id="dangling-ref"),
    ],
)
def test_builder_refuses_fragments_that_do_not_fit_the_code(
    breakage: Breakage, message: str
) -> None:
    fragments = copy.deepcopy(load_fragments())
    build(fragments)  # the copy builds before it is broken
    breakage(fragments)
    with pytest.raises(BuildError, match=re.escape(message)):
        build(fragments)


# ---------------------------------------------------------------------- the fuzz, live server


def schemathesis_command(report: Path, seed: str | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(OPENAPI_PATH),
        "--checks",
        ",".join(FUZZ_CHECKS),
        "--max-examples",
        str(FUZZ_MAX_EXAMPLES),
        "--request-timeout",
        str(FUZZ_REQUEST_TIMEOUT_S),
        "--max-failures",
        "25",
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    if seed:
        command += ["--seed", seed]
    return command


def failure_summary(report: dict[str, Any], output: str) -> str:
    found = [
        f"  {item.get('code', '')} {item.get('title', '')}: {', '.join(item.get('operations', []))}"
        for item in [*report.get("failures", []), *report.get("errors", [])]
    ]
    lines = [
        f"schemathesis found {len(report.get('failures', []))} kind(s) of failure and "
        f"{len(report.get('errors', []))} of error (seed {report.get('seed')}; rerun the same "
        "cases with FUZZ_SEED=<seed>):",
        *found,
        "Its output, with a curl command for each failure:",
        output[-20000:],
    ]
    return "\n".join(lines)


@pytest.mark.fuzz
@pytest.mark.timeout(FUZZ_RUN_TIMEOUT_S + 40)  # the hard bound, server start and stop included
def test_schemathesis_fuzz_against_live_server(tmp_path: Path) -> None:
    report_path = tmp_path / "schemathesis.json"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": __file__,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    # live_gunicorn skips when the model has not been fetched, and checks a clean stop.
    with live_gunicorn(tmp_path, [FUZZ_TOKEN], ready_timeout_s=30) as server:
        # The hooks store real photos there first, for the repository's explicit cases.
        env["FUZZ_SERVER_URL"] = server.url
        command = schemathesis_command(report_path, os.environ.get("FUZZ_SEED"))
        command += ["--url", server.url.rstrip("/"), "-H", f"X-Api-Token: {FUZZ_TOKEN}"]
        try:
            completed = subprocess.run(
                command,
                cwd=tmp_path,  # anything it writes stays out of the repository
                env=env,
                capture_output=True,
                text=True,
                timeout=FUZZ_RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout if isinstance(exc.stdout, str) else ""
            pytest.fail(f"schemathesis ran over {FUZZ_RUN_TIMEOUT_S} s:\n{partial[-20000:]}")
        server_log = server.log()
    output = completed.stdout + completed.stderr
    assert report_path.is_file(), output[-20000:]
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["failures"] == [], failure_summary(report, output)
    assert report["errors"] == [], failure_summary(report, output)
    assert completed.returncode == 0, output[-20000:]
    assert report["operations"]["tested"] == len(list(operations())), output[-20000:]
    assert "Traceback" not in server_log, server_log[-20000:]
    print(  # shown with -s or -rA: how long and how much the run did
        f"schemathesis: {report['test_cases']['generated']} cases, seed {report['seed']}, "
        f"{time.monotonic() - started:.1f} s including the server's start"
    )


# ------------------------------------------------------------ hooks for the schemathesis run


PICTURE_TYPES = ("image/png", "image/jpeg", "image/webp")


def _has_signature(content: bytes, content_type: str) -> bool:
    if content_type == "image/webp":
        return content[:4] == b"RIFF" and content[8:12] == b"WEBP"
    magic = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}[content_type]
    return content.startswith(magic)


def _picture_problem(content: bytes, content_type: str, max_side: int | None) -> str | None:
    """Why these bytes are not a picture of this type (within max_side), or None."""
    if not _has_signature(content, content_type):
        return f"a {content_type} answer does not start with the {content_type} signature"
    picture = cv2.imdecode(np.frombuffer(content, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None:
        return f"the {content_type} answer does not decode"
    if max_side is not None and max(picture.shape[:2]) > max_side:
        return f"the picture is {picture.shape[1]}x{picture.shape[0]}, over max_side={max_side}"
    return None


def _register_schemathesis_hooks() -> None:  # pragma: no cover - runs in the CLI's process
    import schemathesis
    from schemathesis import Case, CheckContext, HookContext, Response
    from schemathesis.core.deserialization import DeserializationContext

    jpeg = cat_jpeg()
    b64 = base64.b64encode(jpeg).decode("ascii")
    photo = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert photo is not None
    bmp, tiff = (cv2.imencode(ext, photo)[1].tobytes() for ext in (".bmp", ".tiff"))
    # Schemathesis has no serializer of its own for these two documented image types; the
    # bytes it generates for them are sent as they are, like application/octet-stream.
    schemathesis.serializer.alias(["image/bmp", "image/tiff"], "application/octet-stream")

    def media_type_of(response: Response) -> str:
        values = response.headers.get("content-type") or [""]
        return values[0].split(";")[0].strip().lower()

    @schemathesis.deserializer(*PICTURE_TYPES)
    def picture(ctx: DeserializationContext, response: Response) -> str:
        # A 206 holds part of the file (the picture check below skips it too).
        if response.status_code == 200:
            problem = _picture_problem(response.content, media_type_of(response), None)
            if problem:
                raise ValueError(problem)
        return f"{len(response.content)} bytes"

    def side_limit(case: Case[Any]) -> int | None:
        """The longest side the request allows: `max_side` (the detection picture and the
        repository's original route), or a thumbnail's `size` (256 by default)."""
        query = case.query or {}
        name = "size" if case.operation.path.endswith("/thumbnail") else "max_side"
        raw = str(query.get(name, ""))
        if raw.isdecimal() and raw.isascii():
            return int(raw)
        return 256 if name == "size" else None

    @schemathesis.check
    def picture_matches_content_type(
        ctx: CheckContext, response: Response, case: Case[Any]
    ) -> None:
        media_type = media_type_of(response)
        # A 304 has no body and a 206 part of one: only a whole answer is a whole picture.
        if media_type not in PICTURE_TYPES or response.status_code != 200:
            return
        problem = _picture_problem(response.content, media_type, side_limit(case))
        if problem:
            raise AssertionError(problem)
        if case.operation.method.upper() == "POST":
            # A detection's picture (POST / and /v1/detect) says how many boxes it drew.
            if not response.headers.get("x-detection-count"):
                raise AssertionError("a detection picture has no X-Detection-Count header")
        elif not response.headers.get("etag"):
            # A stored image or a rendition of one (the repository's GET routes).
            raise AssertionError("a stored picture answer has no ETag")

    @schemathesis.check
    class every_operation_answered_2xx:  # noqa: N801 - the class name is the check's CLI name
        """Fail the run when an operation never answered 2xx: its success schema was then
        never checked (the explicit cases below give every operation a valid request)."""

        def __init__(self) -> None:
            self.tested: set[str] = set()
            self.succeeded: set[str] = set()

        def after_response(self, ctx: CheckContext, response: Response, case: Case[Any]) -> None:
            self.tested.add(case.operation.label)
            if 200 <= response.status_code < 300:
                self.succeeded.add(case.operation.label)

        def after_run(self, ctx: CheckContext) -> None:
            never = sorted(self.tested - self.succeeded)
            if never:
                raise AssertionError("never answered 2xx: " + ", ".join(never))

    # (media type, body, query, headers) of requests with the real photo; multipart files and
    # raw image bodies cannot be written as examples in a JSON document.
    detect_cases: list[tuple[str, Any, dict[str, Any], dict[str, str]]] = [
        ("multipart/form-data", {"image": [jpeg], "camera": "porch", "score_th": "0.25"}, {}, {}),
        ("multipart/form-data", {"image": [jpeg, jpeg], "maxResults": "3"}, {}, {}),
        ("image/jpeg", jpeg, {"format": "png", "max_side": 64}, {}),
        ("application/octet-stream", jpeg, {"score_th": 0.2}, {"Accept": "image/jpeg"}),
        ("image/jpeg", jpeg, {"nms_iou": 0.5, "min_width": 0}, {}),
        ("image/bmp", bmp, {"classes": "cat,dog", "agnostic_nms": "true"}, {}),
        ("image/tiff", tiff, {"model": "yolox_nano", "format": "jpeg", "max_side": 100}, {}),
        # A picture of two images: 406.
        ("multipart/form-data", {"image": [jpeg, jpeg]}, {"format": "jpeg"}, {}),
        ("application/x-www-form-urlencoded", {"images": [b64, b64], "nms_iou": "0.5"}, {}, {}),
    ]
    deepstack_cases: list[tuple[str, Any, dict[str, Any], dict[str, str]]] = [
        ("multipart/form-data", {"image": jpeg}, {}, {}),
        ("multipart/form-data", {"image": jpeg, "min_confidence": "0.2"}, {}, {}),
    ]

    image_object = {"type": "base64", "value": b64}
    roboflow_cases: list[tuple[str, Any, dict[str, Any], dict[str, str]]] = [
        ("application/json", {"model_id": "yolox_nano/1", "image": image_object}, {}, {}),
        (
            "application/json",
            {"model_id": "yolox_nano", "image": [image_object, image_object], "confidence": 0.2},
            {},
            {},
        ),
    ]
    v2_image = {"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": [b64]}
    kserve_cases: list[tuple[str, Any, dict[str, Any], dict[str, str]]] = [
        ("application/json", {"inputs": [v2_image], "parameters": {"score_th": 0.2}}, {}, {}),
    ]

    repository_cases = _repository_cases(os.environ.get("FUZZ_SERVER_URL"), jpeg, photo)

    @schemathesis.hook
    def filter_failure(
        context: HookContext, failure: Any, case: Case[Any], response: Response
    ) -> bool:
        """Keep every failure but gunicorn's own 414: a generated URL whose request line is
        over gunicorn's limit_request_line (4094 bytes by default) is refused by gunicorn
        before the service sees it (no X-Request-Id), which no operation can document."""
        request = response.request
        line = f"{request.method} {request.path_url} HTTP/1.1"
        return not (
            response.status_code == 414
            and len(line.encode()) > GUNICORN_REQUEST_LINE_MARGIN
            and not response.headers.get("x-request-id")
        )

    @schemathesis.hook
    def before_add_examples(context: HookContext, examples: list[Case[Any]]) -> None:
        operation = context.operation
        if operation is None:
            return
        method = operation.method.lower()
        if method == "post":
            cases = {"/": detect_cases, "/v1/detect": detect_cases}
            cases["/v1/vision/detection"] = deepstack_cases
            cases["/v1/vision/custom/{model}"] = deepstack_cases
            cases["/infer/object_detection"] = roboflow_cases
            cases["/detect"] = [("application/json", {"data": b64, "detect": {"*": 20}}, {}, {})]
            cases["/v2/models/{model}/infer"] = kserve_cases
            cases["/v2/models/{model}/versions/{version}/infer"] = kserve_cases
            path_parameters = {
                name: value
                for name, value in (("model", "yolox_nano"), ("version", "1"))
                if "{" + name + "}" in operation.path
            }
            for media_type, body, query, headers in cases.get(operation.path, []):
                examples.append(
                    operation.Case(
                        media_type=media_type,
                        body=body,
                        query=query,
                        headers=headers,
                        path_parameters=path_parameters or None,
                    )
                )
        for case in repository_cases.get((method, operation.path), []):
            examples.append(operation.Case(**case))


def _repository_cases(
    url: str | None, jpeg: bytes, photo: np.ndarray[Any, Any]
) -> dict[tuple[str, str], list[dict[str, Any]]]:  # pragma: no cover - in the CLI's process
    """Explicit cases for the image repository's routes, (method, path) -> Case arguments, so
    that each answers 2xx at least once: real photos stored first as the fuzz's owner, one
    for the reads and one more to delete per DELETE route (other bytes, so other images).
    The uploads' own cases send yet other bytes, never those of the images used here."""
    if not url:
        return {}

    def encoded(ext: str, pixels: np.ndarray[Any, Any]) -> bytes:
        ok, buffer = cv2.imencode(ext, pixels)
        assert ok
        return buffer.tobytes()

    def store(data: bytes, name: str) -> dict[str, Any]:
        answer = requests.post(
            url.rstrip("/") + "/v1/images",
            headers={"X-Api-Token": FUZZ_TOKEN},
            files={"image": (name, data)},
            data={"detect": "true"},
            timeout=FUZZ_REQUEST_TIMEOUT_S,
        )
        answer.raise_for_status()
        image: dict[str, Any] = answer.json()["image"]
        return image

    kept = store(jpeg, "cat.jpg")
    gone = {
        "/v1/images/{image_id}": store(encoded(".png", photo), "cat.png")["id"],
        "/image/{image_id}": store(encoded(".jpg", cv2.flip(photo, 1)), "mirrored.jpg")["id"],
    }
    fresh = encoded(".jpg", cv2.flip(photo, 0))  # stored by the upload cases themselves
    one = {"image_id": kept["id"]}
    etag = f'"{kept["sha256"]}"'
    uploads: list[dict[str, Any]] = [
        {"media_type": "multipart/form-data", "body": {"image": fresh, "detect": "false"}},
        {"media_type": "image/jpeg", "body": fresh, "query": {"filename": "upside-down.jpg"}},
    ]
    originals: list[dict[str, Any]] = [
        {"path_parameters": one},
        {"path_parameters": one, "headers": {"Range": "bytes=0-99"}},
        {"path_parameters": one, "headers": {"If-None-Match": etag}},
        {"path_parameters": one, "query": {"max_side": 64, "format": "webp"}},
    ]
    thumbnails: list[dict[str, Any]] = [
        {"path_parameters": one},
        {"path_parameters": one, "query": {"size": 128, "format": "png"}},
    ]
    cases: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for prefix, upload, listing in (
        ("/v1/images", "/v1/images", "/v1/images"),
        ("/image", "/image/upload", "/image/list"),
    ):
        cases[("post", upload)] = uploads
        cases[("get", listing)] = [{"query": {"label": ["cat"], "min_score": 0.2}}, {}]
        cases[("get", prefix + "/{image_id}")] = originals
        cases[("get", prefix + "/{image_id}/details")] = [{"path_parameters": one}]
        cases[("get", prefix + "/{image_id}/thumbnail")] = thumbnails
        cases[("delete", prefix + "/{image_id}")] = [
            {"path_parameters": {"image_id": gone[prefix + "/{image_id}"]}}
        ]
    cases[("get", "/v1/images/{image_id}/render")] = [
        {"path_parameters": one, "query": {"w": 64, "format": "webp", "annotate": "true"}},
        {"path_parameters": one, "query": {"w": 100, "h": 100, "fit": "cover"}},
    ]
    cases[("get", "/v1/images/{image_id}/detections")] = [{"path_parameters": one}]
    cases[("post", "/v1/images/{image_id}/detect")] = [
        {"path_parameters": one, "query": {"score_th": 0.2}}
    ]
    cases[("get", "/v1/labels")] = [{"query": {"min_score": 0.2}}]
    return cases


if os.environ.get("SCHEMATHESIS_HOOKS") == __file__:
    _register_schemathesis_hooks()
