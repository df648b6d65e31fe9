# RaptorFlow — `make run` serves the embedded default; `make test` runs lint and the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make run HOST=0.0.0.0 PORT=8080`: where the embedded default serves.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint fmt fuzz bench clean install install-dev browser e2e

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "RaptorFlow needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/raptorflow migrate
	$(BIN)/raptorflow serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests migrations bench
	$(BIN)/ruff check --fix src tests migrations bench

# Two pytest processes side by side (2 cores; each mostly waits on one): the API fuzzer, the browser tests
# and the serve fault tests (each with servers of its own) in one, the rest in the other, so the two take
# about as long. Each has its own databases. Both outputs are shown; either failing fails.
SIDE_TESTS := tests/test_fuzz.py tests/e2e tests/platform/test_serve_faults.py
test: lint browser
	@$(BIN)/pytest $(SIDE_TESTS) -p no:cacheprovider $(PYTEST_ARGS) > .side-test.log 2>&1 & side=$$!; \
	$(BIN)/pytest $(addprefix --ignore=,$(SIDE_TESTS)) $(PYTEST_ARGS); rest=$$?; \
	wait $$side; sided=$$?; echo "--- $(SIDE_TESTS) (run alongside) ---"; \
	if [ $$sided -ne 0 ]; then cat .side-test.log; else tail -n 12 .side-test.log; fi; \
	test $$rest -eq 0 -a $$sided -eq 0

# Debian's Chromium for the console's browser tests (Playwright drives it; never `playwright install`).
browser:
	@test -x /usr/bin/chromium || apt-get install -y chromium >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y chromium >/dev/null)

e2e: $(VENV)/.installed-dev browser
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

fuzz: $(VENV)/.installed-dev
	RAPTORFLOW_FUZZ_EXAMPLES=500 $(BIN)/pytest tests/test_fuzz.py $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || (apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null))
	$(BIN)/python bench/run.py $(ARGS)
	$(BIN)/python bench/imports.py $(ARGS)
	$(BIN)/python bench/sharing.py $(ARGS)
	$(BIN)/python bench/console.py $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
