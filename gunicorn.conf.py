"""Gunicorn settings for the detection service. Every value can be overridden from the
environment variables named below; `gunicorn --check-config -c gunicorn.conf.py` validates it
(gunicorn silently ignores misspelt settings, so the test suite runs that check)."""

import os
from typing import Any

import cpu_quota

# The app factory is called in each worker after the fork: an onnxruntime session created
# before forking runs single-threaded, stalls worker recycling and can deadlock.
wsgi_app = "serve_http:create_app()"
preload_app = False

bind = os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Inference is CPU-bound and each worker runs one intra-op thread by default, so one worker
# per usable CPU: the cgroup CPU quota (a Kubernetes CPU limit) when there is one, else the
# CPU set (cpu_quota.py). Keep WEB_CONCURRENCY x INTRA_OP_THREADS <= CPUs (oversubscription
# halves throughput); WEB_CONCURRENCY, when set, wins.
workers = cpu_quota.default_workers(os.environ, cpu_quota.usable_cpus())
# One request at a time per worker, as the sync worker, behind a buffering front that reads
# requests whole with deadlines, so that slow clients cannot hold the workers (measured against
# sync, gthread and gevent: docs/operations.md, "Slow clients"); stdlib and gunicorn only.
worker_class = "gunicorn_worker.BufferingWorker"
# Connections one worker holds open (idle, kept alive or still sending) at most.
worker_connections = 1000

# A 16-image batch of large photos takes a few seconds on one core; 120 s is far above that
# and still recycles a worker that is truly stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5

# gunicorn >= 25.1 opens a control socket under $XDG_RUNTIME_DIR or $HOME/.gunicorn for its
# `gunicornc` tool. Off: the service is managed with signals (SIGHUP reloads, SIGTERM stops),
# and in a read-only container the app user's home does not exist, so the socket only fails.
control_socket_disable = True

# Access log to stdout without the query string: `?key=` can carry the API key.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
# Every line, gunicorn's own included, redacted (tokens) and escaped (CR, LF, control and
# non-ASCII bytes); JSON lines with LOG_FORMAT=json (logs.py).
logger_class = "logs.GunicornLogger"

# --- Metrics (metrics.py): each worker writes its own files in PROMETHEUS_MULTIPROC_DIR and
# the master serves their sum on METRICS_PORT (0: no metrics). prometheus_client chooses its
# storage when first imported, so the variable is set in on_starting before anything imports
# it, and metrics is only imported in the hooks, never at the top of this file.
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_port() -> int:
    raw = os.environ.get("METRICS_PORT", "").strip() or "9102"
    if not raw.isdigit() or int(raw) > 65535:
        raise RuntimeError(f"METRICS_PORT={raw!r}: must be a port number (0: no metrics)")
    return int(raw)


def on_starting(server):  # type: ignore[no-untyped-def]
    """Before the first worker: pick and empty the metrics folder (a temporary one unless
    PROMETHEUS_MULTIPROC_DIR names one; files of an earlier run would be summed in)."""
    if not _metrics_port():
        return
    if not os.environ.get(_METRICS_DIR):
        import tempfile

        os.environ[_METRICS_DIR] = tempfile.mkdtemp(prefix="detection-metrics-")
        server._metrics_dir_made = os.environ[_METRICS_DIR]
    import metrics

    metrics.prepare_multiproc_dir(os.environ[_METRICS_DIR])


def _start_metrics_server(server: Any) -> None:
    """The master's scrape endpoint, on BIND's host unless METRICS_BIND names one."""
    port = _metrics_port()
    if not port:
        return
    import metrics

    # BIND's host (a Unix socket has none: all interfaces then, as for a container).
    bound = "" if bind.startswith(("unix:", "fd://")) else bind.rsplit(":", 1)[0].strip("[]")
    host = os.environ.get("METRICS_BIND") or bound or "0.0.0.0"
    server._metrics_server = metrics.start_master_server(
        host, port, os.environ[_METRICS_DIR], lambda: list(server.WORKERS)
    )
    server.log.info("metrics on http://%s:%d/metrics", host, port)


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    # A worker never serves the master's metrics port: let go of its socket.
    if getattr(server, "_metrics_server", None) is not None:
        import metrics

        metrics.close_in_worker(server._metrics_server)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # Its in-flight and models-ready gauges go; its counts stay in the sums.
    if _metrics_port():
        import metrics

        metrics.worker_exited(worker.pid, os.environ[_METRICS_DIR])


def on_exit(server):  # type: ignore[no-untyped-def]
    made = getattr(server, "_metrics_dir_made", None)
    if made:
        import shutil

        shutil.rmtree(made, ignore_errors=True)


def when_ready(server):  # type: ignore[no-untyped-def]
    """Before the first workers: the metrics server, the master's verified copy of the
    weights, and the model check that every reload (SIGHUP) must pass, run off the master's
    loop (master_models.py)."""
    import master_models

    _start_metrics_server(server)
    master_models.install(server)
