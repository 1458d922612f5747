# Object-detection HTTP service: gunicorn + Flask + onnxruntime, CPU only.
#
#   docker build -t detection-service .
#   docker run --rm -p 5000:5000 -e API_TOKENS=... detection-service
#
# docs/operations.md ("Docker image") has what the build expects and how to run it read-only;
# `make image-test` builds this file unchanged with podman and smoke-tests the image.
#
# API_TOKENS is read at run time and is never baked into the image (anyone who can pull an
# image can read its layers and ENV). Other settings the service reads from the environment
# (PORT, WEB_CONCURRENCY, ...) are passed the same way with -e.

# The weights mirror for the model step below. `--build-context model-mirror=PATH` replaces this
# stage with a folder that holds the weights (see below). Without it, this stage is mounted
# instead: the base image itself, already there and holding no weights, so that a plain
# `docker build .` downloads them from the manifest's upstream URL (rather than an empty
# `FROM scratch` stage, whose bind mount builders have handled differently). Keep its tag the
# same as the service's FROM below.
FROM python:3.11.14-slim-bookworm AS model-mirror

# A specific patch release on a specific Debian release, so that a rebuild gets the same Python
# and the same system libraries; bump it on purpose (for security fixes), not by accident.
# slim: no compilers, no curl; every runtime dependency below ships as a manylinux wheel.
FROM python:3.11.14-slim-bookworm

# No .pyc files written at run time (the app user may not write to /app anyway), log lines
# straight to stdout/stderr for `docker logs`, and no pip cache left in the image layers.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock file changes, not on every code
# change. requirements.lock is the one lock file `make` installs from too: every package, direct
# or not, pinned with its sha256 hashes; --require-hashes refuses anything it does not list.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# Fetch and verify the model before copying the code, so that code changes do not fetch it
# again. fetch_model.py reads models/<name>.json (URL and sha256), writes models/<name>.onnx
# (mode 0644: the app user must read it) and fails the build if the checksum does not match.
#
# Only the default model's manifest and its label list are copied: the image holds no manifest
# whose weights it lacks (the service would warn about it at every worker start). To ship
# another model, copy its manifest here and name it in the RUN below.
#
# The weights are taken from the model-mirror build context when it holds them, else downloaded
# from the manifest's upstream URL. Without network access, or to skip the download:
#   docker build --build-context model-mirror=../shared/models -t detection-service .
# MODEL_MIRROR is where that context is mounted; set it to "" to force the download.
COPY scripts/ scripts/
COPY models/yolox_nano.json models/coco80.txt models/
ARG MODEL_MIRROR=/mnt/model-mirror
RUN --mount=type=bind,from=model-mirror,target=/mnt/model-mirror \
    MODEL_MIRROR="$MODEL_MIRROR" python scripts/fetch_model.py yolox_nano

# The service itself: every module it imports, its gunicorn config, the OpenAPI document it
# serves at /openapi.json and the web UI's files it serves at /ui/. tests/test_dockerfile.py checks this list against what serve_http.py,
# gunicorn.conf.py and scripts/check_models.py import, transitively. One file per line; a
# package (a folder) needs a COPY of its own, `COPY pkg/ pkg/`, because COPY puts a folder's
# contents, not the folder, at the target.
COPY auth.py \
    base64_image.py \
    config.py \
    cpu_quota.py \
    detection_types.py \
    errors.py \
    families.py \
    gunicorn.conf.py \
    gunicorn_worker.py \
    http_front.py \
    image_header.py \
    image_io.py \
    logs.py \
    manifests.py \
    master_models.py \
    metrics.py \
    openapi.json \
    predict.py \
    registry.py \
    render.py \
    request_body.py \
    serve_http.py \
    stages.py \
    utils_serve.py \
    ./
COPY dialects/ dialects/
COPY compat/ compat/
COPY repository/ repository/
# The web UI: ui/routes.py and the static files it serves at /ui/ (its UI_FILES).
COPY ui/ ui/

# The image repository keeps its files (and its SQLite database, unless REPO_DB_URL names a
# PostgreSQL) under DATA_DIR: a volume, owned by the app user, so that it outlives the
# container. Several containers share it only with PostgreSQL (docs/operations.md).
ENV DATA_DIR=/data

# Run as an unprivileged user that owns nothing: the code and the model stay root-owned and
# read-only to it; the only writable places are /tmp (world-writable in the base image, and
# where gunicorn puts its worker heartbeat files by default) and the DATA_DIR volume, so the
# container can also run with --read-only --tmpfs /tmp -v repository-data:/data.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
RUN mkdir -p /data && chown 10001:10001 /data
VOLUME ["/data"]
USER 10001:10001

# gunicorn.conf.py binds 0.0.0.0:$PORT; keep the default here so that EXPOSE and the health
# check agree with it.
ENV PORT=5000
EXPOSE 5000

# slim has no curl: ask Python. urlopen raises on a refused connection, a timeout or a non-2xx
# status, and the uncaught exception is exit status 1 (unhealthy). Exec form, no shell: the
# port is read from the environment by Python (the container's PORT, as gunicorn.conf.py reads
# it). The start period covers gunicorn starting its workers and each worker loading the model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '5000') + '/healthz', timeout=4)"]

# Exec form: gunicorn is PID 1 and gets docker stop's SIGTERM directly (graceful shutdown).
# Bind address, workers (WEB_CONCURRENCY) and the WSGI app are set in gunicorn.conf.py.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
