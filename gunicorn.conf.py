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


def when_ready(server):  # type: ignore[no-untyped-def]
    """Check the models before every reload (SIGHUP) in a child process.

    On SIGHUP gunicorn starts new workers and stops the old ones at once; a worker that cannot
    load its models would then halt the whole server. Loading them first in a separate process
    (never in the master: onnxruntime sessions must not exist before a fork) lets a broken model
    file leave the old workers serving, with the reason in the log.
    """
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
