# tonrail — the two commands are `make run` and `make test`; everything else supports them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
PG_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test

.PHONY: setup run test lint typecheck pytest bench fmt clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard's browser tests"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

setup: $(STAMP) $(NPM_STAMP)

run: setup
	$(BIN)/tonrail run

lint: setup
	$(BIN)/ruff check src tests benchmarks migrations
	$(BIN)/ruff format --check src tests benchmarks migrations

typecheck: setup
	$(BIN)/mypy src

pytest: setup $(CHROMIUM)
	TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

fmt: setup
	$(BIN)/ruff format src tests benchmarks migrations
	$(BIN)/ruff check --fix src tests benchmarks migrations

bench: setup
	TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) $(BIN)/python -m benchmarks.run

.PHONY: screenshots
screenshots: setup $(CHROMIUM)  # PNGs of the dashboard with live demo traffic -> docs/img/
	$(BIN)/python scripts/screenshots.py

.PHONY: bench-fees
bench-fees: setup  # the fee optimizer against naive and fixed batching (docs/FEES.md)
	$(BIN)/python -m benchmarks.bench_fees

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache var
