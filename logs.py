"""Log lines that cannot leak or lie: the formatters of the service's logger and of gunicorn's
(through `GunicornLogger`, gunicorn.conf.py's `logger_class`), in text or JSON (LOG_FORMAT).

Every line goes through one formatter, whoever wrote it (a view, gunicorn's arbiter, a
worker's "Error handling request /?key=..."), and the formatter

- redacts API tokens: the value of any `key=` or `api_key=` parameter, `Bearer` credentials,
  the X-Api-Token and x-goog-api-key headers, and every configured token (API_TOKENS) wherever
  it appears, also percent-encoded;
- escapes what could forge a line or hide in one: CR, LF and every other control character,
  the backslash and every non-ASCII character become `\\r`, `\\n`, `\\\\`, `\\xHH`, `\\uHHHH`.
  A path is logged as its bytes (WSGI's PATH_INFO), so `%0d%0a` shows as `\\r\\n` and `%C3%A9`
  as `\\xc3\\xa9`, in the service's line and in the access log alike. A traceback keeps its line
  breaks, each of its lines escaped and indented, so none can pass for a log line.

JSON lines are `json.dumps` with ASCII output: one object per line whatever the values hold.
Structured fields are passed as `extra={"fields": {...}}` (see `log_event`); the text format
shows them as `key=value` after the message, spaces escaped too.

Also here: the W3C `traceparent` header, parsed so that its ids go on the request's line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gunicorn.glogging import Logger as _GunicornBaseLogger

from config import ApiToken, ConfigError, log_format

REDACTED = "[redacted]"
# A configured token shorter than this is not searched for by value (it would blank out
# ordinary words); the patterns below still catch it where a token is expected.
MIN_TOKEN_CHARS = 4
_PATTERNS = (
    # ?key=..., &api_key=..., also in form bodies and after a space or a quote
    re.compile(r"(?i)((?:^|[^A-Za-z0-9_.-])(?:api_key|key)=)[^&\s\"';#]*"),
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)(\b(?:x-api-token|x-goog-api-key)[\"']?\s*[:=,]\s*[\"']?)[^\s\"',;]+"),
)
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}


def escape(text: str, spaces: bool = False) -> str:
    """`text` with every control, backslash and non-ASCII character as an escape (spaces too
    when `spaces`): the result is printable ASCII and holds no line break."""
    if text.isascii() and text.isprintable() and "\\" not in text and not (spaces and " " in text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0x20 < code < 0x7F or (code == 0x20 and not spaces):
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def wsgi_path(environ: Mapping[str, Any]) -> str:
    """The request path as the bytes it arrived as (PATH_INFO is those bytes as latin-1)."""
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


class Redactor:
    """Blanks out tokens: by pattern, and every configured token by value."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        values = {t for t in tokens if len(t) >= MIN_TOKEN_CHARS}
        values |= {urllib.parse.quote(t, safe="") for t in values}
        # Longest first, so that a token containing another is blanked out whole.
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


def tokens_from_environ(environ: Mapping[str, str]) -> list[str]:
    """The secrets of API_TOKENS, parsed as config.py parses them."""
    entries = [e.strip() for e in environ.get("API_TOKENS", "").split(",") if e.strip()]
    return [ApiToken.parse(entry).secret for entry in entries]


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts) if parts else None


class TextFormatter(logging.Formatter):
    """`fmt` with the message (and `key=value` fields) redacted and escaped."""

    def __init__(self, fmt: str, datefmt: str | None, redact: Redactor) -> None:
        super().__init__(fmt, datefmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        message = escape(self.redact(record.getMessage()))
        for key, value in _fields(record).items():
            if value is not None:
                message += f" {key}={escape(self.redact(_text(value)), spaces=True)}"
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = message, None
        safe.exc_info, safe.exc_text, safe.stack_info = None, None, None
        line = super().format(safe)
        trace = _traceback(self, record)
        if trace:
            line += "".join("\n    " + escape(self.redact(part)) for part in trace.splitlines())
        return line


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, pid, message, the fields, and
    the traceback as one string."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        millis = int((record.created - seconds) * 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
        entry: dict[str, Any] = {
            "time": stamp,
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": self.redact(record.getMessage()),
        }
        for key, value in _fields(record).items():
            entry[key] = self._clean(value)
        trace = _traceback(self, record)
        if trace:
            entry["exception"] = self.redact(trace)
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":"), default=str)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {str(k): self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(item) for item in value]
        return value


def formatter(kind: str, fmt: str, datefmt: str | None, redact: Redactor) -> logging.Formatter:
    return JsonFormatter(redact) if kind == "json" else TextFormatter(fmt, datefmt, redact)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """`event` with structured fields: `event k=v ...` in text, keys of the object in JSON."""
    logger.log(level, event, extra={"fields": fields}, stacklevel=2)


SERVICE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (pytest swaps it for each test)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_service_logger(
    logger: logging.Logger, level: str, kind: str, tokens: Iterable[str]
) -> None:
    """One handler on the service's logger (to stderr), with the formatter of `kind`."""
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if getattr(h, "_detection_service", False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler._detection_service = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    handler.setFormatter(formatter(kind, SERVICE_FORMAT, None, Redactor(tokens)))


class GunicornLogger(_GunicornBaseLogger):  # type: ignore[misc]
    """gunicorn's logger with our formatters on its error and access handlers, and the access
    line as JSON fields when LOG_FORMAT=json."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        try:
            self.log_format = log_format(os.environ)
        except ConfigError as exc:
            raise RuntimeError(str(exc)) from None
        redact = Redactor(tokens_from_environ(os.environ))
        for log, fmt, datefmt in (
            (self.error_log, self.error_fmt, self.datefmt),
            (self.access_log, self.access_fmt, None),
        ):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(formatter(self.log_format, fmt, datefmt, redact))

    def access(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: Any) -> None:
        if self.log_format != "json":
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = {k.lower(): v for k, v in getattr(resp, "headers", [])}
        duration_ms = request_time.seconds * 1000 + request_time.microseconds / 1000
        log_event(
            self.access_log,
            logging.INFO,
            "access",
            remote=environ.get("REMOTE_ADDR", "-"),
            method=environ.get("REQUEST_METHOD"),
            # The bytes of the path, escaped as in the text format; never the query string.
            path=escape(wsgi_path(environ)),
            status=int(status) if str(status).isdigit() else str(status),
            bytes=getattr(resp, "sent", None),
            duration_ms=round(duration_ms, 1),
            request_id=headers.get("x-request-id"),
        )


# --- W3C Trace Context

_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$"
)


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    parent_id: str
    flags: str

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """A valid `traceparent` header (W3C Trace Context, level 1), else None (ignored, as the
    specification says: the request is then the start of a new trace)."""
    if not value or len(value) > 512:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None or match["version"] == "ff":
        return None
    if match["version"] == "00" and match["rest"] is not None:
        return None
    if set(match["trace_id"]) == {"0"} or set(match["parent_id"]) == {"0"}:
        return None
    return TraceContext(match["trace_id"], match["parent_id"], match["flags"])
