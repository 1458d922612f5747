"""The gunicorn worker (gunicorn_worker.py) against real gunicorn over real sockets: slow
clients are cut at their deadline with a 408 while probes are answered and no worker restarts;
malformed requests and bodies get a 4xx in the JSON envelope, never a 5xx or a hang; a body of
exactly MAX_BODY_BYTES is accepted in every encoding and one byte more refused.

Deadlines are short here (2 s head, 3 s body) so that the test is quick; no test asserts a
time: the bounds below only keep a broken server from hanging the suite.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import cv2
import pytest
import requests

import http_front
from dialects import google
from errors import RequestTimeout
from image_io import decode_image
from tests.helpers import SAMPLE_IMAGES
from tests.live_server import LiveServer, live_gunicorn

pytestmark = pytest.mark.e2e

TOKEN = "slow-client-token"
MAX_BODY = 64 * 1024
SLOW_OF_EACH_KIND = 32
# Generous bounds against hangs only.
SOCKET_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "REQUEST_HEAD_TIMEOUT": "2",
        "REQUEST_BODY_TIMEOUT": "3",
        "MAX_BODY_BYTES": str(MAX_BODY),
    }
    with live_gunicorn(tmp_path_factory.mktemp("slow"), [TOKEN], extra_env=env) as live:
        yield live


def _port(server: LiveServer) -> int:
    return int(server.url.rstrip("/").rsplit(":", 1)[1])


def _exchange(server: LiveServer, data: bytes, half_close: bool = True) -> bytes:
    """Send `data`, optionally half-close, read until the server closes."""
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json_body(answer: bytes) -> dict[str, object]:
    body: dict[str, object] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body


def _booted_workers(server: LiveServer) -> int:
    return server.log().count("Booting worker")


def test_the_workers_own_answers_have_the_services_envelope() -> None:
    answer = http_front.error_answer(408, RequestTimeout.code, "too slow")
    assert _json_body(answer) == google.error_envelope(RequestTimeout("too slow"))
    assert b"X-Content-Type-Options: nosniff" in answer


def test_slow_clients_are_cut_while_probes_are_answered(server: LiveServer) -> None:
    booted = _booted_workers(server)
    port = _port(server)
    held: list[socket.socket] = []
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Api-Token: " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    for index in range(2 * SLOW_OF_EACH_KIND):
        sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
        # Half a request line, or a whole head and then a body a byte at a time.
        sock.sendall(b"POST / HT" if index % 2 == 0 else head)
        held.append(sock)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.5):
            for sock in held[1::2]:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        probes = []
        for _ in range(10):
            probes.append(requests.get(server.url + "healthz", timeout=SOCKET_TIMEOUT_S))
            time.sleep(0.1)
        assert [p.status_code for p in probes] == [200] * 10
        answers = []
        for sock in held:
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            answers.append(received)
    finally:
        stop.set()
        dripper.join(timeout=5)
        for sock in held:
            sock.close()
    # Every slow connection got its 408 (head or body) in the envelope, then was closed.
    assert {_status(a) for a in answers} == {408}
    reasons = {_json_body(a)["error"]["message"] for a in answers}  # type: ignore[index]
    assert reasons == {
        "the request's head did not arrive within 2 s",
        "the request's body did not arrive within 3 s",
    }
    assert _booted_workers(server) == booted, "a worker was restarted"
    assert "WORKER TIMEOUT" not in server.log()


HEAD = b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nX-Api-Token: " + TOKEN.encode() + b"\r\n"
JSON_HEAD = HEAD + b"Content-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
            400,
            id="chunk-size-zz",
        ),
        pytest.param(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
            400,
            id="chunk-size-0x2",
        ),
        pytest.param(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab\r\n",
            400,
            id="chunk-size-huge",
        ),
        pytest.param(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", 400, id="no-last-chunk"
        ),
        pytest.param(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
            400,
            id="chunk-without-crlf",
        ),
        pytest.param(
            JSON_HEAD + b'Content-Length: 100\r\n\r\n{"requests": []}',
            400,
            id="body-shorter-than-content-length",
        ),
        pytest.param(
            JSON_HEAD + b"Content-Length: 1x\r\n\r\n{}", 400, id="content-length-not-a-number"
        ),
        pytest.param(
            JSON_HEAD + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            id="content-length-and-chunked",
        ),
        pytest.param(
            HEAD + b"Transfer-Encoding: gzip\r\n\r\n", 400, id="transfer-encoding-without-chunked"
        ),
        pytest.param(b"GET /healthz HTTP/1.1\n\n", 400, id="bare-lf-request-line"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400, id="bare-lf-header"),
        pytest.param(b"GET /healthz HTTP/1.1\r\n\r\n", 400, id="http-1.1-without-host"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nBad Header: y\r\n\r\n", 400, id="space-in-header-name"
        ),
        pytest.param(
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            id="request-line-too-long",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
            431,
            id="too-many-headers",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 70000, 431, id="head-over-64-kib"
        ),
        pytest.param(b"GET /healthz HT", 400, id="half-a-request-line-then-eof"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, id="tls-hello"),
    ],
)
def test_malformed_requests_get_a_4xx_envelope(
    server: LiveServer, request_bytes: bytes, status: int
) -> None:
    answer = _exchange(server, request_bytes)
    assert _status(answer) == status, answer[:300]
    error = _json_body(answer)["error"]
    assert isinstance(error, dict)
    assert error["code"] == status
    assert TOKEN.encode() not in answer


def test_keep_alive_and_pipelining(server: LiveServer) -> None:
    two = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = _exchange(server, two, half_close=False)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert b'"status":"ready"' in answer


def _photo_of(size: int) -> bytes:
    """A real JPEG photo (the cat) padded after its end (decoders ignore it) to `size` bytes."""
    photo = decode_image((SAMPLE_IMAGES / "chelsea.png").read_bytes())
    ok, encoded = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    assert encoded.size < MAX_BODY // 2
    return encoded.tobytes() + b"\0" * (size - encoded.size)


def _json_of(size: int) -> bytes:
    content = base64.b64encode(_photo_of(MAX_BODY // 2)).decode()
    body = json.dumps({"requests": [{"image": {"content": content}}]}).encode()
    return body + b" " * (size - len(body))


def _chunked(body: bytes) -> bytes:
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def _multipart_of(size: int) -> tuple[bytes, bytes]:
    boundary = b"exactlimit"
    image = _photo_of(MAX_BODY // 2)
    start = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"'
        b"\r\nContent-Type: image/jpeg\r\n\r\n" + image + b"\r\n--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\n'
    )
    end = b"\r\n--" + boundary + b"--\r\n"
    body = start + b"x" * (size - len(start) - len(end)) + end
    return body, b"multipart/form-data; boundary=" + boundary


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("encoding", ["json", "raw", "multipart"])
@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)], ids=["exact", "one-more"])
def test_exact_body_limit_in_every_encoding(
    server: LiveServer, framing: str, encoding: str, extra: int, status: int
) -> None:
    size = MAX_BODY + extra
    if encoding == "json":
        body, mimetype = _json_of(size), b"application/json"
    elif encoding == "raw":
        body, mimetype = _photo_of(size), b"image/jpeg"
    else:
        body, mimetype = _multipart_of(size)
    assert len(body) == size
    framed = (
        b"Content-Length: %d\r\n\r\n" % len(body) + body
        if framing == "content-length"
        else b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body)
    )
    request = HEAD + b"Connection: close\r\nContent-Type: " + mimetype + b"\r\n" + framed
    answer = _exchange(server, request, half_close=False)
    assert _status(answer) == status, answer[:400]
    if status == 200:
        assert b'"name":"cat"' in answer


def test_no_answer_was_a_5xx(server: LiveServer) -> None:
    # Runs last in this module (pytest keeps file order): the access log of all of the above.
    log = server.log()
    assert '" 5' not in log, [line for line in log.splitlines() if '" 5' in line][:5]
    assert "Traceback" not in log
