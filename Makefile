# flowstage — `make run` runs the example project; `make test` lints, type-checks and tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEVSTAMP = $(VENV)/.installed-dev

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP) $@

run: $(STAMP)
	cd examples/demo && ../../$(BIN)/flowstage run shop_setup -q
	cd examples/demo && ../../$(BIN)/flowstage run campaign_launch -q
	cd examples/demo && ../../$(BIN)/flowstage run orders_pipeline -q
	cd examples/demo && ../../$(BIN)/flowstage run daily_sales

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

# the suite runs in parallel (pytest-xdist), two test processes per core: many tests wait on child
# processes, servers and databases, and a second process per core keeps the cores busy meanwhile.
# Each test keeps to its own folders and databases; worksteal hands a long test's neighbours to
# idle workers. PYTEST_ARGS adds options (e.g. -x).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
test: lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/dataflow.py
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
