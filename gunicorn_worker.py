"""The gunicorn worker class the service runs with: one process, one request at a time (like
gunicorn's sync worker, which suits CPU-bound inference), behind a small buffering front in the
same process that reads every request whole before the application sees it.

Why (docs/operations.md, "Slow clients"): the sync worker reads the request line, the headers
and the body with blocking calls and no deadline, so two clients that send `POST / HT` and stop
hold both workers of a two-core machine, probes included. Here one selector loop per worker
accepts connections and reads whatever arrives on any of them without blocking; only a request
that is complete (head and body, by Content-Length or by its chunked framing) is handed to
gunicorn's own parser and the WSGI application. A client that is too slow is cut at a deadline:
the head must arrive within REQUEST_HEAD_TIMEOUT seconds of the connection's opening (or of the
first byte after the previous response, on a kept-alive connection), the body within
REQUEST_BODY_TIMEOUT of the head; either way it gets a 408 in the service's JSON envelope and
the connection is closed.
Everything runs on the standard library and gunicorn: `make run` needs nothing more.

It also answers gunicorn's own protocol errors (400, 414, 431, 501, ...) with the service's
JSON envelope instead of gunicorn's HTML page, keeps connections alive between requests (the
sync worker closes each after one response), and writes responses with a deadline
(RESPONSE_SEND_TIMEOUT), so that a client that does not read cannot hold the worker either.

Imported by the gunicorn master (to find the worker class), so it imports nothing that loads a
model or a native library: only gunicorn, the standard library, `config` and `errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gunicorn import http, util
from gunicorn.http import errors as gerrors
from gunicorn.http import wsgi
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers import base

from config import FrontConfig, load_front_config
from http_front import (
    MORE,
    NOW,
    ChunkScan,
    chunked_body_end,
    error_answer,
    has_bare_lf,
    protocol_error,
)

# The longest request head buffered (request line and headers); a longer one is answered 431.
# Real heads are under 2 KiB; gunicorn's own limits (limit_request_line and _fields) still apply
# to the heads under this one.
MAX_HEAD_BYTES = 64 * 1024
# How long a closed connection keeps draining what the client still sends, so that the kernel
# does not reset it before the client has read the error answer.
LINGER_S = 2.0
RECV_BYTES = 256 * 1024
# How long a stopping worker keeps its idle kept-alive connections, for a request a client may
# already be sending on one (answered, with Connection: close).
STOP_LINGER_S = 2.0
ACCEPTS_PER_WAKE = 64


class _Feed:
    """The socket gunicorn's parser reads from: the bytes received so far, handed out only up
    to `limit` (the end of the request being parsed), so that it never waits for more."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.limit = 0

    def recv(self, size: int) -> bytes:
        size = min(size, self.limit)
        if size <= 0:
            return b""
        chunk = bytes(self.data[:size])
        del self.data[:size]
        self.limit -= size
        return chunk


# Connection states
IDLE, HEAD, BODY, READY, LINGER = "idle", "head", "body", "ready", "linger"


@dataclass
class Connection:
    sock: socket.socket
    addr: Any
    server: Any
    deadline: float
    feed: _Feed = field(default_factory=_Feed)
    parser: Any = None
    state: str = IDLE
    req: Any = None
    # Offsets already searched for the end of the head, so that a slow head is scanned once.
    scanned: int = 0
    body_length: int | None = None
    chunks: ChunkScan | None = None
    # The request's framing could not be followed: the connection closes after the answer.
    must_close: bool = False
    eof: bool = False


class BufferingWorker(base.Worker):  # type: ignore[misc]
    """See the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.front: FrontConfig = load_front_config(os.environ)
        self.selector: selectors.BaseSelector | None = None
        self.connections: dict[int, Connection] = {}
        self.accepting = False
        self.alive: bool = True
        self.last_sweep = time.monotonic()

    # --- the loop

    def init_process(self) -> None:
        self.selector = selectors.DefaultSelector()
        super().init_process()

    def run(self) -> None:
        assert self.selector is not None
        for listener in self.sockets:
            listener.setblocking(False)
        self._set_accepting(True)
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        while self.alive:
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            self._turn()
            self._set_accepting(len(self.connections) < self.cfg.worker_connections)
        self._drain()
        self._shutdown()

    def _turn(self) -> None:
        """One turn of the loop: read what arrived, accept, serve what is whole, expire."""
        assert self.selector is not None
        self.notify()
        try:
            events = self.selector.select(self._select_timeout())
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
            events = []
        listeners = []
        for key, _ in events:
            if key.fileobj == self.PIPE[0]:
                with contextlib.suppress(OSError):
                    os.read(self.PIPE[0], 4096)
            elif key.data is None:
                listeners.append(key.fileobj)
            else:
                self._on_readable(key.data)
        for listener in listeners:
            if self.alive:
                self._accept(listener)
        self._serve_ready()
        now = time.monotonic()
        if now - self.last_sweep >= 0.25:
            self.last_sweep = now
            self._expire(now)

    def _drain(self) -> None:
        """Stopping (SIGTERM, a reload, max_requests): accept nothing more, but finish the
        requests already begun, within graceful_timeout, and give kept-alive connections a
        moment for a request their client may be sending already (answered with close)."""
        self._set_accepting(False)
        now = time.monotonic()
        deadline = now + self.cfg.graceful_timeout
        linger = now + STOP_LINGER_S
        for conn in self.connections.values():
            if conn.state == IDLE:
                conn.deadline = min(conn.deadline, linger)
        while self.connections and time.monotonic() < deadline:
            busy = any(c.state in (HEAD, BODY, READY) for c in self.connections.values())
            if not busy and time.monotonic() >= linger:
                break
            self._turn()

    def _select_timeout(self) -> float:
        if any(c.state == READY for c in self.connections.values()):
            return 0.0
        return 0.25 if self.connections else 1.0

    def _set_accepting(self, enabled: bool) -> None:
        assert self.selector is not None
        if enabled == self.accepting or (enabled and not self.alive):
            return
        for listener in self.sockets:
            if enabled:
                self.selector.register(listener, selectors.EVENT_READ, None)
            else:
                self.selector.unregister(listener)
        self.accepting = enabled

    def _waiting(self) -> int:
        return sum(1 for c in self.connections.values() if c.state == READY)

    def _accept(self, listener: Any) -> None:
        """Take new connections, but none once a request here waits to be served: a worker
        that has work leaves new connections to the idle ones (as the sync worker does by
        not accepting while busy). Slow clients are taken in bulk; they cost nothing."""
        assert self.selector is not None
        for _ in range(ACCEPTS_PER_WAKE):
            if self._waiting():
                return
            try:
                client, addr = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                raise
            client.setblocking(False)
            util.close_on_exec(client)
            conn = Connection(
                client,
                addr,
                listener.getsockname(),
                deadline=time.monotonic() + self.front.head_timeout_s,
            )
            conn.parser = http.get_parser(self.cfg, conn.feed, addr)
            self.connections[client.fileno()] = conn
            self.selector.register(client, selectors.EVENT_READ, conn)
            # The request is usually there already: read it now, so that a complete one
            # stops the accepting above.
            self._on_readable(conn)

    def _on_readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn.state == LINGER:
            if not data:
                self._close(conn)
            return
        if not data:
            conn.eof = True
        elif conn.state == READY:
            # A pipelined request behind one not yet served: kept for later.
            conn.feed.data += data
            return
        else:
            conn.feed.data += data
        self._advance(conn)

    # --- following a request until it is whole

    def _advance(self, conn: Connection) -> None:
        if conn.state in (IDLE, HEAD):
            if conn.feed.data and conn.state == IDLE:
                conn.state = HEAD
                if conn.req is not None:  # kept alive: the head's deadline starts now
                    conn.deadline = time.monotonic() + self.front.head_timeout_s
            if not self._head_complete(conn):
                return
        if conn.state == BODY:
            self._body_complete(conn)

    def _head_complete(self, conn: Connection) -> bool:
        data = conn.feed.data
        if not data:
            if conn.eof:
                self._close(conn)
            return False
        start = max(0, conn.scanned - 3)
        end = data.find(b"\r\n\r\n", start)
        # A line ending in a bare LF will never end the head the way gunicorn reads it: the
        # parser refuses it now rather than wait for a CRLF.
        bare_lf = has_bare_lf(data, conn.scanned, end if end >= 0 else len(data))
        conn.scanned = len(data)
        if end < 0 and not bare_lf:
            if len(data) > MAX_HEAD_BYTES:
                self._answer_and_close(conn, 431, "bad_request", "the request head is too large")
            elif conn.eof:
                self._answer_and_close(
                    conn, 400, "bad_request", "the request ended before its head"
                )
            return False
        conn.feed.limit = end + 4 if end >= 0 and not bare_lf else len(data)
        try:
            conn.req = next(conn.parser)
        except StopIteration:
            self._close(conn)
            return False
        except Exception as exc:  # gunicorn's parse errors: answered in our envelope
            self.handle_error(None, conn.sock, conn.addr, exc)
            self._linger(conn)
            return False
        conn.scanned = 0
        conn.chunks = None
        conn.body_length = None
        reader = getattr(conn.req.body, "reader", None)
        if isinstance(reader, ChunkedReader):
            conn.chunks = ChunkScan()
        elif isinstance(reader, LengthReader):
            conn.body_length = reader.length
        else:
            conn.body_length = 0
        conn.state = BODY
        conn.deadline = time.monotonic() + self.front.body_timeout_s
        if conn.req._expected_100_continue:
            # Sent here, because the body is read here; gunicorn would send it again.
            conn.req._expected_100_continue = False
            if conn.body_length is None or conn.body_length <= self.front.max_body_bytes:
                _send_now(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _body_complete(self, conn: Connection) -> None:
        data = conn.feed.data
        if conn.chunks is not None:
            end = chunked_body_end(data, conn.chunks, self.front.max_body_bytes)
        else:
            length = conn.body_length or 0
            if length > self.front.max_body_bytes:
                end = NOW  # the application answers 413 without reading it
            else:
                end = length if len(data) >= length else MORE
        if end == MORE:
            if conn.eof:
                self._answer_and_close(
                    conn,
                    400,
                    "invalid_body",
                    "the body ended before its Content-Length or its last chunk",
                )
            return
        if end == NOW:
            conn.must_close = True
            end = len(data)
        conn.feed.limit = end
        conn.state = READY

    # --- serving

    def _serve_ready(self) -> None:
        # Also while stopping: a request read whole is answered (with Connection: close).
        for conn in [c for c in self.connections.values() if c.state == READY]:
            self.notify()
            if conn.sock.fileno() < 0:
                continue
            if not self._serve(conn):
                self._linger(conn)
                continue
            conn.state = IDLE
            conn.deadline = time.monotonic() + max(1, self.cfg.keepalive)
            conn.must_close = False
            if conn.feed.data or conn.eof:
                self._advance(conn)

    def _serve(self, conn: Connection) -> bool:
        """Run the application on the complete request; whether the connection stays open."""
        req = conn.req
        conn.sock.settimeout(self.front.send_timeout_s)
        try:
            keep = self.handle_request(conn, req)
        except (gerrors.NoMoreData, StopIteration):
            keep = False
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
            keep = False
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.addr, exc)
            keep = False
        finally:
            with contextlib.suppress(OSError):
                conn.sock.setblocking(False)
        if getattr(req.body, "failed", False) or conn.must_close or conn.eof:
            return False
        return keep and conn.parser.finish_body()

    def handle_request(self, conn: Connection, req: Any) -> bool:
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.addr, conn.server, self.cfg)
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                self.alive = False
            # Kept alive only while no other request waits here: a connection of a busy
            # worker is closed after its answer, and the client's next connection goes to
            # whichever worker is free (kept-alive connections would stay on this one).
            if not self.alive or not self.cfg.keepalive or conn.must_close or self._waiting() > 1:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            util.reraise(*sys.exc_info())
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent:
                # Timeout abort is SystemExit; the response has begun, so no error page.
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's error page, as the service's JSON envelope (gunicorn's own is HTML)."""
        status, code, message = protocol_error(exc)
        ip = addr[0] if isinstance(addr, tuple) and addr else ""
        if status == 500:
            self.log.exception("Error handling request (%s)", type(exc).__name__)
        else:
            # The class only: the exception's text holds request bytes, which may hold a token.
            self.log.warning("Invalid request from ip=%s: %s", ip, type(exc).__name__)
        _send_now(client, error_answer(status, code, message))

    # --- deadlines and closing

    def _expire(self, now: float) -> None:
        for conn in list(self.connections.values()):
            if conn.deadline > now or conn.state == READY:
                continue
            if conn.state == LINGER or (conn.state == IDLE and not conn.feed.data):
                self._close(conn)
                continue
            part = "head" if conn.state == HEAD else "body"
            limit = self.front.head_timeout_s if part == "head" else self.front.body_timeout_s
            self.log.warning(
                "Request timeout from ip=%s: the %s took longer than %d s",
                conn.addr[0] if isinstance(conn.addr, tuple) else "",
                part,
                limit,
            )
            self._answer_and_close(
                conn,
                408,
                "request_timeout",
                f"the request's {part} did not arrive within {limit} s",
            )

    def _answer_and_close(self, conn: Connection, status: int, code: str, message: str) -> None:
        _send_now(conn.sock, error_answer(status, code, message))
        self._linger(conn)

    def _linger(self, conn: Connection) -> None:
        """Half-close and drain for a moment, so the client reads the answer before the close."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state = LINGER
        conn.feed = _Feed()
        conn.deadline = time.monotonic() + LINGER_S

    def _close(self, conn: Connection) -> None:
        fileno = conn.sock.fileno()
        if fileno >= 0 and self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn.sock)
        self.connections.pop(fileno, None)
        util.close(conn.sock)

    def _shutdown(self) -> None:
        for listener in self.sockets:
            with contextlib.suppress(OSError):
                listener.close()
        for conn in list(self.connections.values()):
            self._close(conn)


def _send_now(sock: Any, data: bytes) -> None:
    """Best effort, without blocking: small answers fit the socket's send buffer."""
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass
