"""logs.py: escaping, token redaction, the text and JSON formatters, traceparent; and the
service's request line through the test client. The same formatters on real gunicorn output
(a worker aborted mid-request, a CR/LF path) are in tests/test_ops_e2e.py."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from flask.testing import FlaskClient

from config import ServiceConfig
from logs import (
    REDACTED,
    JsonFormatter,
    Redactor,
    TextFormatter,
    escape,
    parse_traceparent,
    tokens_from_environ,
)
from serve_http import create_app
from tests.helpers import AUTH, TOKEN, FakeDetector, annotate_body, encode_image


@pytest.mark.parametrize(
    ("text", "spaces", "expected"),
    [
        pytest.param("", False, "", id="empty"),
        pytest.param("/v1/detect", False, "/v1/detect", id="plain"),
        # the log-injection of the issue: CR LF becomes two visible escapes
        pytest.param("/x\r\nFAKE-LOG-LINE", False, "/x\\r\\nFAKE-LOG-LINE", id="crlf"),
        # a backslash is escaped too, so a literal "\n" cannot pass for an escape
        pytest.param("a\\nb", False, "a\\\\nb", id="backslash"),
        pytest.param("\x1b[31mred\x00\x7f", False, "\\x1b[31mred\\x00\\x7f", id="controls"),
        # PATH_INFO holds the bytes as latin-1: each non-ASCII byte one \xHH
        pytest.param("/caf\xc3\xa9", False, "/caf\\xc3\\xa9", id="bytes"),
        pytest.param("\u2028\U0001f600", False, "\\u2028\\U0001f600", id="wide"),
        pytest.param("a b", False, "a b", id="space-kept"),
        pytest.param("a b\tc", True, "a\\x20b\\tc", id="space-escaped"),
    ],
)
def test_escape(text: str, spaces: bool, expected: str) -> None:
    assert escape(text, spaces=spaces) == expected


TOKEN_VALUE = "s3cr3t-token-value"


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        pytest.param("Error handling request /?key=abc123&x=1", "abc123", id="query-key"),
        pytest.param("GET /v1/x?format=png&api_key=abc123 HTTP/1.1", "abc123", id="api_key"),
        pytest.param("Authorization: Bearer abc.def-ghi", "abc.def-ghi", id="bearer"),
        pytest.param("headers: {'X-Api-Token': 'abc123'}", "abc123", id="header-dict"),
        pytest.param("x-goog-api-key: abc123", "abc123", id="goog-header"),
        # a configured token anywhere, even where no pattern expects one
        pytest.param(f"odd place {TOKEN_VALUE} here", TOKEN_VALUE, id="by-value"),
        pytest.param("/?k%65y=s3cr3t-token-value", TOKEN_VALUE, id="by-value-encoded-name"),
        pytest.param("token=s3cr3t%2Ftoken", "s3cr3t%2Ftoken", id="percent-encoded"),
    ],
)
def test_redactor(text: str, leaked: str) -> None:
    redact = Redactor([TOKEN_VALUE, "s3cr3t/token"])
    out = redact(text)
    assert leaked not in out
    assert REDACTED in out


def test_redactor_leaves_ordinary_words() -> None:
    # "monkey=" is not "key="; a short token is not searched for by value
    redact = Redactor(["ab"])
    assert redact("monkey=banana ab") == "monkey=banana ab"


def test_tokens_from_environ_takes_the_secrets() -> None:
    assert tokens_from_environ({"API_TOKENS": "alice:one-secret, bare-secret"}) == [
        "one-secret",
        "bare-secret",
    ]


def _record(message: str, *args: object, exc: bool = False, **fields: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nFAKE-LOG-LINE key=abc123")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "gunicorn.error", logging.ERROR, __file__, 1, message, args, exc_info
    )
    if fields:
        record.fields = fields
    return record


def test_text_formatter_one_line_per_message_and_indented_traceback() -> None:
    formatter = TextFormatter("%(levelname)s %(message)s", None, Redactor([]))
    out = formatter.format(
        _record("Error handling request %s", "/x\r\nFAKE-LOG-LINE?key=abc123", exc=True)
    )
    first, *rest = out.split("\n")
    assert first == "ERROR Error handling request /x\\r\\nFAKE-LOG-LINE?key=[redacted]"
    # the traceback keeps its lines, each indented: none starts like a log line
    assert rest
    assert all(line.startswith("    ") for line in rest)
    assert "abc123" not in out


def test_text_formatter_fields_escape_spaces() -> None:
    formatter = TextFormatter("%(message)s", None, Redactor([]))
    out = formatter.format(_record("request", path="/a b\nc", status=200, model=None))
    assert out == "request path=/a\\x20b\\nc status=200"


def test_json_formatter_one_object_per_line() -> None:
    formatter = JsonFormatter(Redactor([TOKEN_VALUE]))
    out = formatter.format(
        _record(
            "request",
            exc=True,
            path="/x\r\n\xff",
            stages_ms={"decode": 1.5},
            note=f"has {TOKEN_VALUE}",
        )
    )
    assert "\n" not in out
    assert out.isascii()
    entry = json.loads(out)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "gunicorn.error"
    assert entry["time"].endswith("Z")
    assert entry["path"] == "/x\r\n\xff"  # JSON escapes it; the value itself is intact
    assert entry["stages_ms"] == {"decode": 1.5}
    assert TOKEN_VALUE not in out
    assert "abc123" not in entry["exception"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
            id="valid",
        ),
        # a future version may add fields; version 00 may not
        pytest.param(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
            id="future-version",
        ),
        pytest.param(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", None, id="v00-extra"
        ),
        pytest.param("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None, id="ff"),
        pytest.param("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None, id="zero"),
        pytest.param("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None, id="upper"),
        pytest.param("00-4bf92f35-00f067aa0ba902b7-01\r\nFAKE", None, id="injection"),
    ],
)
def test_parse_traceparent(header: str | None, expected: tuple[str, str] | None) -> None:
    parsed = parse_traceparent(header)
    assert (None if parsed is None else (parsed.trace_id, parsed.parent_id)) == expected


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_request_line_text(client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.post(
        f"/v1/detect?key={TOKEN}",
        json=annotate_body(encode_image(32, 32)),
        headers={"X-Request-Id": "rid-text", "traceparent": TRACEPARENT},
    )
    client.get("/v1/models/x%0d%0aFAKE-LOG-LINE", headers={**AUTH, "X-Request-Id": "rid-crlf"})
    written = capsys.readouterr().err
    (line,) = [line for line in written.splitlines() if "rid-text" in line]
    for part in (
        "route=/v1/detect",
        "status=200",
        "model=fake",
        "images=1",
        "stages_ms=read_body:",
        "infer:1.0",
        f"trace_id={TRACEPARENT[3:35]}",
        "parent_id=00f067aa0ba902b7",
    ):
        assert part in line
    assert TOKEN not in written
    assert not any(line.startswith("FAKE-LOG-LINE") for line in written.splitlines())
    assert "path=/v1/models/x\\r\\nFAKE-LOG-LINE" in written


def test_request_line_json(config: ServiceConfig, capsys: pytest.CaptureFixture[str]) -> None:
    json_config = ServiceConfig(api_tokens=config.api_tokens, log_format="json")
    client = create_app(json_config, FakeDetector()).test_client()
    client.post(
        f"/v1/detect?key={TOKEN}",
        json=annotate_body(encode_image(32, 32), b"not an image"),
        headers={**AUTH, "X-Request-Id": "rid-json", "traceparent": TRACEPARENT},
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    (entry,) = [e for e in lines if e.get("request_id") == "rid-json" and e["message"] == "request"]
    assert entry["route"] == "/v1/detect"
    assert entry["path"] == "/v1/detect"  # never the query string
    assert entry["status"] == 200
    assert entry["model"] == "fake"
    assert entry["images"] == 1  # the second image was refused...
    assert entry["errors"] == ["invalid_image"]  # ...and answered in its place
    assert set(entry["stages_ms"]) >= {"read_body", "infer", "render", "serialize"}
    assert entry["trace_id"] == TRACEPARENT[3:35]
    assert TOKEN not in json.dumps(lines)


def test_bad_log_format_names_the_variable() -> None:
    from config import ConfigError, load_config

    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config({"API_TOKENS": "a", "LOG_FORMAT": "xml"})
