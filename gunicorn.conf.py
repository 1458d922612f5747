"""Gunicorn settings for the detection service. Every value can be overridden from the
environment variables named below; `gunicorn --check-config -c gunicorn.conf.py` validates it
(gunicorn silently ignores misspelt settings, so the test suite runs that check)."""

import os


def _cpu_count() -> int:
    # The cores this process may run on (a container's cpuset), not the host's total.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# The app factory is called in each worker after the fork: an onnxruntime session created
# before forking runs single-threaded, stalls worker recycling and can deadlock.
wsgi_app = "serve_http:create_app()"
preload_app = False

bind = os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Inference is CPU-bound and each worker runs one intra-op thread by default, so one worker
# per core; keep WEB_CONCURRENCY x INTRA_OP_THREADS <= cores (oversubscription halves
# throughput).
workers = int(os.environ.get("WEB_CONCURRENCY") or _cpu_count())
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


def when_ready(server):  # type: ignore[no-untyped-def]
    """Before the first workers: the master's verified copy of the weights, and the model
    check that every reload (SIGHUP) must pass, run off the master's loop (master_models.py)."""
    import master_models

    master_models.install(server)
