# Object-detection HTTP service: gunicorn + Flask + onnxruntime, CPU only.
#
#   docker build -t detection-service .
#   docker run --rm -p 5000:5000 -e API_TOKENS=... detection-service
#
# API_TOKENS is read at run time and is never baked into the image (anyone who can pull an
# image can read its layers and ENV). Other settings the service reads from the environment
# (PORT, WEB_CONCURRENCY, ...) are passed the same way with -e.

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

# Dependencies first: this layer is rebuilt only when requirements.lock changes, not on every
# code change. The lock pins every package with its hashes (`make lock` writes it from
# requirements.txt); pip refuses anything whose hash does not match.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# Fetch and verify the model before copying the code, so that code changes do not download it
# again. fetch_model.py reads models/<name>.json (URL and sha256), writes models/<name>.onnx and
# fails the build if the checksum does not match.
#
# MODEL_MIRROR (optional) names a folder holding the .onnx files, to copy instead of downloading.
# The folder must be visible inside the build: a host path is not. With BuildKit, mount a local
# folder as a named build context, for example by changing the RUN below to
#   RUN --mount=type=bind,from=model-mirror,target=/mnt/model-mirror \
#       MODEL_MIRROR="$MODEL_MIRROR" python scripts/fetch_model.py
# and building with
#   docker buildx build --build-context model-mirror=../shared/models \
#       --build-arg MODEL_MIRROR=/mnt/model-mirror -t detection-service .
# Empty (the default): download from the upstream URL in the manifest.
COPY scripts/ scripts/
# models/*.txt (label lists) are optional; the COPY succeeds as long as the manifests match.
COPY models/*.json models/*.txt models/
ARG MODEL_MIRROR=""
RUN MODEL_MIRROR="$MODEL_MIRROR" python scripts/fetch_model.py

# The service itself: the modules it imports, its gunicorn config and the OpenAPI document
# it serves at /openapi.json.
COPY serve_http.py utils_serve.py errors.py auth.py registry.py image_io.py predict.py \
    manifests.py families.py detection_types.py config.py image_header.py render.py \
    gunicorn.conf.py openapi.json ./
COPY dialects/ dialects/
COPY repository/ repository/

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
# status, and the shell turns that into exit status 1 (unhealthy). The start period covers
# gunicorn starting its workers and each worker loading the model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/healthz', timeout=4)" || exit 1

# Exec form: gunicorn is PID 1 and gets docker stop's SIGTERM directly (graceful shutdown).
# Bind address, workers (WEB_CONCURRENCY) and the WSGI app are set in gunicorn.conf.py.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
