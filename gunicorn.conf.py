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
worker_class = "sync"

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
    """Check the models before every reload (SIGHUP) in a child process.

    On SIGHUP gunicorn starts new workers and stops the old ones at once; a worker that cannot
    load its models would then halt the whole server. Loading them first in a separate process
    (never in the master: onnxruntime sessions must not exist before a fork) lets a broken model
    file leave the old workers serving, with the reason in the log.
    """
    _start_metrics_server(server)
    import subprocess
    import sys

    check_script = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "scripts", "check_models.py"
    )
    reload_workers = server.reload

    def checked_reload():  # type: ignore[no-untyped-def]
        try:
            check = subprocess.run(
                [sys.executable, check_script],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            server.log.error(
                "reload refused, old workers keep serving: model check failed: %s", exc
            )
            return
        # Not the exit status: the master's SIGCHLD handler reaps this child like a worker,
        # so the status is lost; the check's last line says whether every model loaded.
        lines = check.stdout.strip().splitlines()
        if not lines or lines[-1] != "all models loaded":
            reason = check.stderr.strip().splitlines()[-1:] or ["the model check printed nothing"]
            server.log.error("reload refused, old workers keep serving: %s", reason[0])
            return
        server.log.info("models checked, reloading: %s", " | ".join(lines[:-1]))
        reload_workers()

    server.reload = checked_reload
