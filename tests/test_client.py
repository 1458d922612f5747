"""Tests for client.send2api against a throwaway HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from client.send2api import ApiError, build_payload, main, send2api
from tests.helpers import run_python

TOKEN = "s3cret-test-token"
DEFAULT_FEATURES = {
    "score_th": 0.35,
    "nms_iou": 0.4,
    "min_height": 0.03,
    "min_width": 0.03,
    "maxResults": 20,
}
OK_BODY: dict[str, Any] = {
    "responses": [
        {
            "localizedObjectAnnotations": [
                {
                    "mid": "",
                    "name": "dog",
                    "score": 0.86,
                    "classId": 16,
                    "boundingPoly": {
                        "vertices": [
                            {"x": 1, "y": 2},
                            {"x": 30, "y": 2},
                            {"x": 30, "y": 40},
                            {"x": 1, "y": 40},
                        ],
                        "normalizedVertices": [
                            {"x": 0.01, "y": 0.02},
                            {"x": 0.3, "y": 0.02},
                            {"x": 0.3, "y": 0.4},
                            {"x": 0.01, "y": 0.4},
                        ],
                    },
                }
            ],
            "imageSize": {"width": 100, "height": 100},
        }
    ]
}


# --- a recording HTTP server ---------------------------------------------------------


@dataclass
class Canned:
    """One answer the fake server gives."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Recorded:
    """One request the fake server received."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """A ThreadingHTTPServer that records POSTs and answers from a list of Canned."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.answers: list[Canned] = []
        self.default = Canned(body=json.dumps(OK_BODY).encode())
        self._lock = threading.Lock()
        self._closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                # Read the whole body even for errors, so the client never sees a reset.
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                    answer = fake.answers.pop(0) if fake.answers else fake.default
                if answer.delay_s:
                    # An Event, not sleep: teardown cuts the wait short instead of joining it.
                    fake._closing.wait(answer.delay_s)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the timeout test closes its socket before the answer; that's expected

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the handler threads
        self._thread.join()

    def answer(self, *canned: Canned) -> None:
        self.answers.extend(canned)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_proxy_or_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the test traffic on 127.0.0.1 and the token source explicit."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("API_TOKEN", raising=False)


def _error_body(code: int, message: str, status: str, reason: str) -> bytes:
    envelope = {"error": {"code": code, "message": message, "status": status, "reason": reason}}
    return json.dumps(envelope).encode()


def _sent_images(recorded: Recorded) -> list[bytes]:
    return [base64.b64decode(r["image"]["content"]) for r in recorded.json()["requests"]]


def _free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- build_payload ---------------------------------------------------------------


def test_build_payload_shape_and_base64_round_trip() -> None:
    data = bytes(range(256)) * 3  # every byte value, and a length that needs padding

    payload = build_payload([data])

    assert payload == {
        "requests": [
            {
                "image": {"content": base64.b64encode(data).decode("ascii")},
                "features": [DEFAULT_FEATURES],
            }
        ]
    }
    content = payload["requests"][0]["image"]["content"]
    assert base64.b64decode(content, validate=True) == data  # standard alphabet, not urlsafe
    json.dumps(payload)  # serialisable as is


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, DEFAULT_FEATURES, id="defaults"),
        pytest.param({"score_th": 0.5}, {**DEFAULT_FEATURES, "score_th": 0.5}, id="score-th"),
        pytest.param({"nms_iou": 0.7}, {**DEFAULT_FEATURES, "nms_iou": 0.7}, id="nms-iou"),
        pytest.param(
            {"min_height": 0.0, "min_width": 1},
            {**DEFAULT_FEATURES, "min_height": 0.0, "min_width": 1.0},
            id="min-sizes-as-floats",
        ),
        pytest.param({"max_results": 1}, {**DEFAULT_FEATURES, "maxResults": 1}, id="max-results"),
    ],
)
def test_build_payload_features(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    payload = build_payload([b"img"], **kwargs)
    assert payload["requests"][0]["features"] == [expected]


def test_build_payload_several_images_in_order() -> None:
    images = [b"first", b"second", b"third"]
    payload = build_payload(images, score_th=0.6)
    assert [base64.b64decode(r["image"]["content"]) for r in payload["requests"]] == images
    assert all(r["features"][0]["score_th"] == 0.6 for r in payload["requests"])


def test_build_payload_calls_are_independent() -> None:
    first = build_payload([b"a", b"b"], score_th=0.9, max_results=3)
    second = build_payload([b"c"])

    # Mutating one result must not leak into the other or into later calls.
    first["requests"][0]["features"][0]["score_th"] = 0.0
    first["requests"].append({"junk": True})
    third = build_payload([b"c"])

    assert second == third
    assert len(second["requests"]) == 1
    assert second["requests"][0]["features"] == [DEFAULT_FEATURES]
    # Elements of one payload do not share their features dicts either.
    assert first["requests"][1]["features"][0]["score_th"] == 0.9


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "match"),
    [
        pytest.param([], {}, ValueError, "no images", id="no-images"),
        pytest.param([b""], {}, ValueError, "image 0 is empty", id="only-image-empty"),
        pytest.param([b"ok", b""], {}, ValueError, "image 1 is empty", id="second-image-empty"),
        pytest.param([b"ok"], {"score_th": -0.1}, ValueError, "score_th", id="score-below-zero"),
        pytest.param([b"ok"], {"score_th": 1.5}, ValueError, "score_th", id="score-above-one"),
        pytest.param([b"ok"], {"nms_iou": float("nan")}, ValueError, "nms_iou", id="iou-nan"),
        pytest.param(
            [b"ok"], {"min_height": float("inf")}, ValueError, "min_height", id="height-infinite"
        ),
        pytest.param([b"ok"], {"min_width": "0.1"}, ValueError, "min_width", id="width-string"),
        pytest.param([b"ok"], {"max_results": 0}, ValueError, "max_results", id="max-results-zero"),
        pytest.param(
            [b"ok"], {"max_results": 2.5}, ValueError, "max_results", id="max-results-fraction"
        ),
        pytest.param(
            [b"ok"], {"max_results": True}, ValueError, "max_results", id="max-results-bool"
        ),
        pytest.param(
            b"raw bytes, not a list", {}, TypeError, "expected bytes", id="bytes-not-a-list"
        ),
        pytest.param(["a path"], {}, TypeError, "expected bytes", id="path-string-in-list"),
    ],
)
def test_build_payload_rejects_bad_arguments(
    images: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build_payload(images, **kwargs)


# --- ApiError -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "message", "reason"),
    [
        pytest.param(
            401,
            _error_body(401, "missing or wrong token", "UNAUTHENTICATED", "bad_token").decode(),
            "missing or wrong token",
            "bad_token",
            id="our-error-envelope",
        ),
        pytest.param(
            400,
            json.dumps({"error": {"code": 400, "message": "no requests"}}),
            "no requests",
            None,
            id="google-style-error",
        ),
        pytest.param(
            502,
            "<html><body>\n  <h1>502 Bad   Gateway</h1>\n</body></html>",
            None,
            None,
            id="html-from-a-proxy",
        ),
        pytest.param(503, "", "(empty body)", None, id="empty-body"),
        pytest.param(500, '["not", "an", "envelope"]', None, None, id="json-not-an-envelope"),
        pytest.param(500, '{"error": "flat string"}', None, None, id="flat-error-string"),
    ],
)
def test_api_error_from_body(
    status: int, body: str, message: str | None, reason: str | None
) -> None:
    error = ApiError.from_body(status, body)

    assert error.status_code == status
    assert error.reason == reason
    assert error.body == body
    if message is None:  # not an envelope: the message is the body on one line
        message = " ".join(body.split())
    assert error.message == message
    assert str(error).startswith(f"HTTP {status}: {message}")
    assert "\n" not in str(error)


def test_api_error_truncates_long_non_json_body() -> None:
    body = "x" * 5000
    error = ApiError.from_body(500, body)
    assert 0 < len(error.message) <= 200
    assert error.body == body


def test_api_error_str_names_reason() -> None:
    assert str(ApiError(413, "too big", "payload_too_large")) == (
        "HTTP 413: too big [payload_too_large]"
    )


# --- send2api over HTTP ----------------------------------------------------------------


def test_send2api_sends_token_header_and_json_body(server: FakeServer) -> None:
    result = send2api(server.url, TOKEN, b"\xff\xd8jpeg bytes", score_th=0.5, max_results=7)

    assert result == OK_BODY
    assert len(server.requests) == 1
    sent = server.requests[0]
    assert sent.path == "/"
    assert sent.headers["X-Api-Token"] == TOKEN
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "requests": [
            {
                "image": {"content": base64.b64encode(b"\xff\xd8jpeg bytes").decode()},
                "features": [{**DEFAULT_FEATURES, "score_th": 0.5, "maxResults": 7}],
            }
        ]
    }


def test_send2api_several_images_mixed_inputs_in_order(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "one.jpg").write_bytes(b"one")
    (tmp_path / "three.png").write_bytes(b"three")

    send2api(server.url, TOKEN, [str(tmp_path / "one.jpg"), b"two", tmp_path / "three.png"])

    assert _sent_images(server.requests[0]) == [b"one", b"two", b"three"]


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "list_of_one"])
def test_send2api_path_and_bytes_inputs_send_the_same(
    server: FakeServer, tmp_path: Path, kind: str
) -> None:
    data = b"\x89PNG\r\n\x1a\n...."
    file = tmp_path / "img.png"
    file.write_bytes(data)
    image: Any = {"str": str(file), "path": file, "bytes": data, "list_of_one": [file]}[kind]

    send2api(server.url, TOKEN, image)

    assert _sent_images(server.requests[0]) == [data]


def test_send2api_calls_do_not_share_state(server: FakeServer) -> None:
    send2api(server.url, TOKEN, [b"a", b"b"], score_th=0.9, max_results=2)
    send2api(server.url, TOKEN, b"c")

    first, second = server.requests
    assert _sent_images(first) == [b"a", b"b"]
    assert _sent_images(second) == [b"c"]
    assert second.json()["requests"][0]["features"] == [DEFAULT_FEATURES]


def test_send2api_uses_given_session(server: FakeServer) -> None:
    with requests.Session() as session:
        session.headers["User-Agent"] = "client-test/1"
        send2api(server.url, TOKEN, b"img", session=session)
        send2api(server.url, TOKEN, b"img", session=session)  # still usable afterwards
    assert [r.headers["User-Agent"] for r in server.requests] == ["client-test/1"] * 2


def test_send2api_returns_per_image_errors_without_raising(server: FakeServer) -> None:
    answer = {
        "responses": [
            {"error": {"code": 3, "message": "cannot decode image"}},
            OK_BODY["responses"][0],
        ]
    }
    server.answer(Canned(body=json.dumps(answer).encode()))

    assert send2api(server.url, TOKEN, [b"bad", b"good"]) == answer


@pytest.mark.parametrize(
    ("canned", "message", "reason"),
    [
        pytest.param(
            Canned(401, _error_body(401, "missing or wrong token", "UNAUTHENTICATED", "bad_token")),
            "missing or wrong token",
            "bad_token",
            id="401-with-reason",
        ),
        pytest.param(
            Canned(
                413, _error_body(413, "body too large", "INVALID_ARGUMENT", "payload_too_large")
            ),
            "body too large",
            "payload_too_large",
            id="413-with-reason",
        ),
        pytest.param(
            Canned(502, b"<html>Bad Gateway</html>", content_type="text/html"),
            "<html>Bad Gateway</html>",
            None,
            id="html-502",
        ),
        pytest.param(
            Canned(200, b"not json", content_type="text/plain"),
            "answer is not a JSON object",
            None,
            id="200-not-json",
        ),
        pytest.param(
            Canned(200, b"[1, 2]"), "answer is not a JSON object", None, id="200-json-array"
        ),
        pytest.param(
            Canned(302, b"", headers={"Location": "http://127.0.0.1:9/elsewhere"}),
            "(empty body)",
            None,
            id="redirect-not-followed",
        ),
    ],
)
def test_send2api_raises_api_error(
    server: FakeServer, canned: Canned, message: str, reason: str | None
) -> None:
    server.answer(canned)

    with pytest.raises(ApiError) as info:
        send2api(server.url, TOKEN, b"img")

    assert info.value.status_code == canned.status
    assert info.value.message == message
    assert info.value.reason == reason
    assert info.value.body == canned.body.decode()
    assert TOKEN not in str(info.value)
    assert len(server.requests) == 1  # no retry, and no redirect followed


@pytest.mark.parametrize(
    ("image", "error"),
    [
        pytest.param([], ValueError, id="empty-list"),
        pytest.param((), ValueError, id="empty-tuple"),
        pytest.param(b"", ValueError, id="empty-bytes"),
        pytest.param([b"ok", b""], ValueError, id="second-image-empty"),
        pytest.param("does/not/exist.jpg", FileNotFoundError, id="missing-path-string"),
        pytest.param(Path("does/not/exist.jpg"), FileNotFoundError, id="missing-path"),
        pytest.param([b"ok", 42], TypeError, id="not-bytes-in-list"),
    ],
)
def test_send2api_bad_images_fail_before_sending(
    server: FakeServer, image: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        send2api(server.url, TOKEN, image)
    assert server.requests == []


def test_send2api_directory_is_an_os_error(server: FakeServer, tmp_path: Path) -> None:
    with pytest.raises(OSError):  # noqa: PT011 - the platform picks the subclass
        send2api(server.url, TOKEN, tmp_path)
    assert server.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"token": ""}, id="empty-token"),
        pytest.param({"token": " " + TOKEN}, id="token-padded"),
        pytest.param({"token": TOKEN + "\r\nX-Evil: 1"}, id="token-header-injection"),
        pytest.param({"token": TOKEN + "\u00e9"}, id="token-non-ascii"),
        pytest.param({"score_th": 2.0}, id="score-above-one"),
        pytest.param({"max_results": 0}, id="max-results-zero"),
        pytest.param({"timeout": 0}, id="timeout-zero"),
        pytest.param({"timeout": -1.0}, id="timeout-negative"),
    ],
)
def test_send2api_bad_arguments_fail_before_sending(
    server: FakeServer, kwargs: dict[str, Any]
) -> None:
    call: dict[str, Any] = {"url": server.url, "token": TOKEN, "image": b"img", **kwargs}
    with pytest.raises(ValueError) as info:  # noqa: PT011 - messages checked below
        send2api(**call)
    if kwargs.get("token"):
        assert kwargs["token"].strip() not in str(info.value)
    assert server.requests == []


def test_send2api_connection_error_propagates() -> None:
    with pytest.raises(requests.ConnectionError):
        send2api(f"http://127.0.0.1:{_free_port()}/", TOKEN, b"img", timeout=5)


def test_send2api_timeout_propagates(server: FakeServer) -> None:
    server.answer(Canned(delay_s=1.0))
    with pytest.raises(requests.Timeout):
        send2api(server.url, TOKEN, b"img", timeout=0.2)


# --- command line -------------------------------------------------------------------------


def test_cli_prints_result_and_sends_options(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "dog.jpg"
    img.write_bytes(b"dog")
    other = tmp_path / "cat.jpg"
    other.write_bytes(b"cat")
    argv = [
        str(img),
        str(other),
        "--url",
        server.url,
        "--token",
        TOKEN,
        "--score-th",
        "0.5",
        "--nms-iou",
        "0.6",
        "--min-height",
        "0.1",
        "--min-width",
        "0.2",
        "--max-results",
        "5",
        "--timeout",
        "10",
    ]

    assert main(argv) == 0

    out, err = capsys.readouterr()
    assert json.loads(out) == OK_BODY
    assert out == json.dumps(OK_BODY, indent=2) + "\n"
    assert err == ""
    sent = server.requests[0]
    assert sent.headers["X-Api-Token"] == TOKEN
    assert _sent_images(sent) == [b"dog", b"cat"]
    features = {"score_th": 0.5, "nms_iou": 0.6, "min_height": 0.1, "min_width": 0.2}
    expected = {**features, "maxResults": 5}
    assert [r["features"] for r in sent.json()["requests"]] == [[expected], [expected]]


def test_cli_defaults(server: FakeServer, tmp_path: Path) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    assert main([str(img), "--url", server.url, "--token", TOKEN]) == 0
    assert server.requests[0].json()["requests"][0]["features"] == [DEFAULT_FEATURES]


@pytest.mark.parametrize(
    ("env_token", "flag_token", "expected"),
    [
        pytest.param("env-token", None, "env-token", id="from-environment"),
        pytest.param("env-token", "flag-token", "flag-token", id="flag-wins"),
        pytest.param(None, "flag-token", "flag-token", id="flag-only"),
    ],
)
def test_cli_token_sources(
    server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env_token: str | None,
    flag_token: str | None,
    expected: str,
) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    if env_token is not None:
        monkeypatch.setenv("API_TOKEN", env_token)
    argv = [str(img), "--url", server.url]
    if flag_token is not None:
        argv += ["--token", flag_token]

    assert main(argv) == 0

    assert server.requests[0].headers["X-Api-Token"] == expected
    out, err = capsys.readouterr()
    assert expected not in out + err


@pytest.mark.parametrize(
    ("argv_tail", "env", "message"),
    [
        # no token anywhere
        pytest.param([], {}, "API_TOKEN", id="no-token"),
        # an empty variable is no token
        pytest.param([], {"API_TOKEN": ""}, "API_TOKEN", id="empty-token-variable"),
        pytest.param(
            ["--token", TOKEN, "--score-th", "abc"], {}, "--score-th", id="score-th-not-a-number"
        ),
        pytest.param(
            ["--token", TOKEN, "--max-results", "1.5"],
            {},
            "--max-results",
            id="max-results-fraction",
        ),
        pytest.param(
            ["--token", TOKEN, "--score-th", "3"], {}, "score_th", id="score-th-above-one"
        ),
        pytest.param(["--token", TOKEN, "--timeout", "0"], {}, "timeout", id="timeout-zero"),
        pytest.param(["--token", " padded"], {}, "token", id="token-padded"),
    ],
)
def test_cli_usage_errors_exit_2_before_sending(
    server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as info:
        main([str(img), "--url", server.url, *argv_tail])

    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert server.requests == []


def test_cli_requires_url_and_image(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["img.jpg", "--token", TOKEN], ["--url", "http://127.0.0.1:1/", "--token", TOKEN]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_cli_missing_file_exits_2(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["no/such/image.jpg", "--url", server.url, "--token", TOKEN])
    assert info.value.code == 2
    assert "no/such/image.jpg" in capsys.readouterr().err
    assert server.requests == []


@pytest.mark.parametrize("status", [pytest.param(401, id="401"), pytest.param(413, id="413")])
def test_cli_api_error_exits_1_with_one_line(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    server.answer(Canned(status, _error_body(status, "nope", "UNAUTHENTICATED", "some_reason")))

    assert main([str(img), "--url", server.url, "--token", TOKEN]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"send2api: error: HTTP {status}: nope [some_reason]\n"
    assert TOKEN not in err


def test_cli_connection_refused_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    url = f"http://127.0.0.1:{_free_port()}/"

    assert main([str(img), "--url", url, "--token", TOKEN, "--timeout", "5"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert f"cannot connect to {url}" in err
    assert TOKEN not in err


def test_cli_timeout_exits_2(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    server.answer(Canned(delay_s=1.0))

    assert main([str(img), "--url", server.url, "--token", TOKEN, "--timeout", "0.2"]) == 2

    assert "no answer from" in capsys.readouterr().err


def test_cli_malformed_url_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    assert main([str(img), "--url", "127.0.0.1:5000", "--token", TOKEN]) == 2
    assert "request to 127.0.0.1:5000 failed" in capsys.readouterr().err


def test_cli_as_module_end_to_end(server: FakeServer, tmp_path: Path) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(b"a")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["API_TOKEN"] = TOKEN

    proc = run_python("-m", "client.send2api", str(img), "--url", server.url, env=env)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == OK_BODY
    assert server.requests[0].headers["X-Api-Token"] == TOKEN


# --- the split into modules: every public name where it was ------------------------------


def test_every_public_name_is_still_importable_from_send2api() -> None:
    from client import _http, repository, send2api

    assert set(repository.__all__) - {"main"} <= set(send2api.__all__)
    for name in send2api.__all__:
        assert hasattr(send2api, name), name
    # The same objects, not copies: an `except send2api.ApiError` catches what any part raises.
    assert send2api.ApiError is _http.ApiError
    assert send2api.upload is repository.upload
    assert send2api.delete_image is repository.delete_image


def test_repository_command_runs_through_the_send2api_entry(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "dog.jpg"
    img.write_bytes(b"jpeg bytes")
    stored = {"image": {"id": "A" * 22}, "duplicate": False}
    server.answer(Canned(201, json.dumps(stored).encode()))

    argv = ["upload", str(img), "--no-detect", "--url", server.url, "--token", TOKEN]
    assert main(argv) == 0

    assert json.loads(capsys.readouterr().out) == stored
    sent = server.requests[0]
    assert sent.path == "/v1/images"
    assert sent.headers["X-Api-Token"] == TOKEN
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    assert b'filename="dog.jpg"' in sent.body
    assert b"jpeg bytes" in sent.body
    assert b'name="detect"\r\n\r\nfalse' in sent.body
