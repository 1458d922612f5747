# Two commands do everything on a machine with only Python 3.11 and pip:
#   make run    set up, fetch and verify the default model, serve it with gunicorn
#   make test   set up, fetch the models, run ruff, mypy and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test model test-models newman lint typecheck pytest bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

model: $(STAMP)
	$(BIN)/python scripts/fetch_model.py yolox_nano

# Second-family model used by the tests; taken from a mirror folder when one holds it.
test-models: model
	$(BIN)/python scripts/fetch_model.py nanodet_m_416 --optional

# newman runs the Postman collection (tests/test_newman.py); pinned by
# client/postman/package-lock.json, run with the Node.js that requirements-dev.txt installs.
NEWMAN_STAMP := client/postman/node_modules/.installed

$(NEWMAN_STAMP): $(STAMP) client/postman/package.json client/postman/package-lock.json
	$(BIN)/python scripts/install_newman.py
	touch $(NEWMAN_STAMP)

newman: $(NEWMAN_STAMP)

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

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: test-models newman
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache client/postman/node_modules
