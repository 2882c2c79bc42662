# rtqa — two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_STAMP := $(VENV)/.installed-peers

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export DO_NOT_TRACK ?= 1

.PHONY: demo test lint typecheck migrations-check serve clean venv perf

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The peers (pymedphys, surface-distance) are only for agreement tests and perf/ benchmarks.
$(PEERS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,peers]'
	touch $(PEERS_STAMP)

demo: $(STAMP)
	$(BIN)/rtqa demo

serve: $(STAMP)
	$(BIN)/rtqa serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

migrations-check: $(STAMP)
	$(BIN)/python -m models.migrate check

# Tests run on every core (pytest-xdist); PYTEST_ARGS adds options, e.g. PYTEST_ARGS="-m 'not slow'".
PYTEST_ARGS ?=
test: $(PEERS_STAMP) lint typecheck migrations-check
	$(BIN)/python -m pytest -n auto --dist load $(PYTEST_ARGS)

perf: $(PEERS_STAMP)
	$(BIN)/python perf/bench_rasterise.py
	$(BIN)/python perf/bench_surface.py
	$(BIN)/python perf/bench_gamma.py
	$(BIN)/python perf/bench_plan_scoring.py
	$(BIN)/python perf/bench_submission.py
	$(BIN)/python perf/bench_upload.py

clean:
	rm -rf $(VENV) .rtqa .pytest_cache .mypy_cache .ruff_cache
