# Two commands do everything on a machine with only Python 3.11 and pip:
#   make run    set up, fetch and verify the default model, serve it with gunicorn
#   make test   set up, fetch the models, run ruff, mypy and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast model test-models newman browser ui-screenshots lint typecheck pytest lock bench clean \
	clients-venv clients-lock

# Installs come only from the lock files (every package pinned with its hashes), never straight
# from requirements*.txt: requirements-dev.lock for make run/test, requirements.lock for the
# Docker image.
$(STAMP): requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes -r requirements-dev.lock
	touch $(STAMP)

# Regenerates both lock files from the direct pins in requirements*.txt, with uv (pinned in
# requirements-dev.txt) from PyPI, taking the newest release of every indirect dependency.
# The dev lock is compiled first and constrains the runtime one, so that every package the two
# share has the same version in both (tests/test_setup.py checks it).
UV_COMPILE = $(BIN)/uv pip compile --quiet --upgrade --generate-hashes --python-version 3.11 \
	--custom-compile-command "make lock"

lock: $(STAMP)
	$(UV_COMPILE) requirements-dev.txt -o requirements-dev.lock
	$(UV_COMPILE) requirements.txt -c requirements-dev.lock -o requirements.lock
	$(UV_COMPILE) benchmarks/peers/requirements.txt -c requirements.lock \
		-o benchmarks/peers/requirements.lock

model: $(STAMP)
	$(BIN)/python scripts/fetch_model.py yolox_nano

# Second-family model used by the tests; taken from a mirror folder when one holds it (under
# CI=true it must be there: fetch_model.py then ignores --optional).
test-models: model
	$(BIN)/python scripts/fetch_model.py nanodet_m_416 --optional

# newman runs the Postman collection (tests/test_newman.py); pinned by
# client/postman/package-lock.json, run with the Node.js that requirements-dev.lock installs.
NEWMAN_STAMP := client/postman/node_modules/.installed

$(NEWMAN_STAMP): $(STAMP) client/postman/package.json client/postman/package-lock.json
	$(BIN)/python scripts/install_newman.py
	touch $(NEWMAN_STAMP)

newman: $(NEWMAN_STAMP)

# Debian's Chromium (and a font) for the UI's browser tests (tests/test_ui_browser.py), with
# apt-get when missing; Playwright drives it and never downloads a browser. Under CI=true a
# failed install fails the run; elsewhere (not root, no apt-get) the browser tests skip and
# say so.
BROWSER_OPTIONAL := $(if $(filter true 1,$(CI)),,yes)

browser:
	@./scripts/install_tools.sh chromium || { [ -n "$(BROWSER_OPTIONAL)" ] && \
		echo "Chromium is not installed: the browser tests will skip (sudo scripts/install_tools.sh chromium)"; }

# The third-party clients (deepstack-python, inference-sdk, tritonclient, kserve, pydoods, ...)
# that tests/test_clients_e2e.py runs unchanged against live gunicorn. They live in their own
# virtual environment, installed only from tests/clients/requirements.lock (pinned with hashes):
# their dependencies (OpenCV, pandas, grpc, ...) would conflict with the service's lock. The
# stamp depends on that lock file, so the environment is rebuilt only when it changes.
CLIENTS_VENV := .venv-clients
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed

$(CLIENTS_STAMP): tests/clients/requirements.lock
	rm -rf $(CLIENTS_VENV)
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/python -m pip install --disable-pip-version-check -q --require-hashes \
		-r tests/clients/requirements.lock
	touch $(CLIENTS_STAMP)

# node-red-contrib-deepstack, pinned by tests/clients/node/package-lock.json, installed with
# the same Node as newman and without install scripts.
NODE_CLIENTS_STAMP := tests/clients/node/node_modules/.installed

$(NODE_CLIENTS_STAMP): $(STAMP) tests/clients/node/package.json tests/clients/node/package-lock.json
	$(BIN)/python scripts/install_newman.py --dir tests/clients/node \
		--expect node_modules/node-red-contrib-deepstack/deepstack-integration.js
	touch $(NODE_CLIENTS_STAMP)

clients-venv: $(CLIENTS_STAMP) $(NODE_CLIENTS_STAMP)

# Recompiles tests/clients/requirements.lock from the direct pins in tests/clients/requirements.txt.
clients-lock: $(STAMP)
	$(UV_COMPILE) tests/clients/requirements.txt -o tests/clients/requirements.lock

run: model
	@PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/run.sh

# The service against the in-process pipeline and the naive pattern, side by side (a few
# minutes; prints a table and the targets, never fails on the figures). wrk comes from
# Debian's packages. BENCH_ARGS=--quick for a short run, --peers adds FastAPI/uvicorn.
bench: model
	./scripts/install_tools.sh
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# openapi.json is built from the code's tables and openapi/*.json by scripts/build_openapi.py
# (run it to rewrite the file); this fails, with a diff, when the committed file is stale.
.PHONY: openapi-check
openapi-check: $(STAMP)
	$(BIN)/python scripts/build_openapi.py --check

lint: openapi-check

typecheck: $(STAMP)
	$(BIN)/mypy .

# HAProxy (tests/test_scaleout.py) and wrk, from Debian's packages. Off CI, on a machine where
# they cannot be installed (not root, no apt-get), the tests run without them and the
# scale-out test skips, saying why; under CI=true a failed install fails.
.PHONY: tools
tools:
	@./scripts/install_tools.sh || { [ "$(CI)" != true ] && \
		echo "tools not installed: tests/test_scaleout.py will skip"; }

# The web UI's screenshots that docs/ui.md shows, taken again by its browser tests.
ui-screenshots: model browser
	UI_SCREENSHOT_DIR=$(CURDIR)/docs/ui $(BIN)/python -m pytest tests/test_ui_browser.py

pytest: test-models newman clients-venv tools browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test: lint typecheck pytest

# Unit and HTTP tests only (seconds): no real gunicorn, newman, fuzzing or real-model photo runs.
test-fast: test-models
	$(BIN)/python -m pytest -m "not (e2e or newman or fuzz or real_model)"

clean:
	rm -rf $(VENV) $(CLIENTS_VENV) .pytest_cache .mypy_cache .ruff_cache client/postman/node_modules \
		tests/clients/node/node_modules

# Kubernetes manifests (deploy/kubernetes), checked offline: yamllint over every YAML file,
# then each manifest against the strict API schemas of two Kubernetes versions bundled with
# kubernetes-validate. Cross-checks between the manifests are in tests/test_kubernetes.py.
.PHONY: k8s-validate
k8s-validate: $(STAMP)
	$(BIN)/yamllint --strict .
	$(BIN)/python scripts/validate_kubernetes.py deploy/kubernetes

test: k8s-validate

# ----------------------------------------------------------------------------- container image
# `make test` also lints the Dockerfile and, when CI=true or when run as root on a machine with
# apt-get, runs `make image-test`: rootful podman builds the unchanged Dockerfile and smoke-tests
# the image (scripts/image_test.py; docs/operations.md, "Docker image").
.PHONY: hadolint image-test image-test-skipped

IMAGE_TEST_NOT_ROOT := this is not root (rootful podman needs root)
IMAGE_TEST_NO_APT := there is no apt-get to install podman with
IMAGE_TEST_APT := $(shell command -v apt-get 2>/dev/null)
IMAGE_TEST_AS_ROOT := $(if $(IMAGE_TEST_APT),,$(IMAGE_TEST_NO_APT))
IMAGE_TEST_SKIP_REASON := $(if $(filter true,$(CI)),,$(if \
	$(filter 0,$(shell id -u)),$(IMAGE_TEST_AS_ROOT),$(IMAGE_TEST_NOT_ROOT)))

test: hadolint $(if $(IMAGE_TEST_SKIP_REASON),image-test-skipped,image-test)

hadolint: $(STAMP)
	$(BIN)/hadolint Dockerfile

image-test: $(STAMP)
	$(BIN)/python scripts/image_test.py

image-test-skipped:
	@echo "image-test skipped: CI is not true and $(IMAGE_TEST_SKIP_REASON); run: sudo make image-test"
