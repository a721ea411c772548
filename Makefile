# tonrail — the two commands are `make run` and `make test`; everything else supports them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
VENDORED := src/tonrail/vendor/versions.json
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

# The compliance report's PDF test renders pages to PNG with Debian's pdftoppm (poppler-utils).
PDFTOPPM := /usr/bin/pdftoppm
$(PDFTOPPM):
	@echo "installing Debian's poppler-utils for the report PDF tests"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; }

# htmx, Chart.js, the localnet's chain config and the checkout page's wallet script (bundled
# by esbuild) become package data (src/tonrail/vendor/).
$(VENDORED): $(NPM_STAMP) scripts/vendor_assets.py $(wildcard src/tonrail/paypage/wallet/*.js) \
    $(wildcard src/tonrail/dashboard/wallet/*.js)
	$(PYTHON) scripts/vendor_assets.py

.PHONY: assets
assets: $(VENDORED)

# checkov (Terraform static analysis) has heavy, conflicting dependencies: its own venv.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	@touch $@

.PHONY: checkov-install checkov
checkov-install: $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)  # deploy/terraform: zero failed checks (skips are commented in the code)
	$(CHECKOV_VENV)/bin/checkov -d deploy/terraform --framework terraform --quiet --compact --skip-download

setup: $(STAMP) $(NPM_STAMP) $(VENDORED)

run: setup
	$(BIN)/tonrail run

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts deploy
	$(BIN)/ruff format --check src tests benchmarks scripts deploy
	$(BIN)/hadolint deploy/docker/Dockerfile
	$(BIN)/shellcheck deploy/docker/*.sh

typecheck: setup
	$(BIN)/mypy src

# Test files run in PYTEST_WORKERS processes (pytest-xdist; a file stays in one process, so its
# module fixtures are made once): each has its own PostgreSQL database, SQLite files, Redis key
# prefix and ports. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2
pytest: setup $(CHROMIUM) $(PDFTOPPM) $(CHECKOV_STAMP) podman
	TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test: lint typecheck pytest

fmt: setup
	$(BIN)/ruff format src tests benchmarks scripts deploy
	$(BIN)/ruff check --fix src tests benchmarks scripts deploy

bench: setup
	TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) $(BIN)/python -m benchmarks.run

.PHONY: screenshots
screenshots: setup $(CHROMIUM)  # PNGs of the dashboard with live demo traffic -> docs/img/
	$(BIN)/python scripts/screenshots.py

# The chaos run (docs/CHAOS.md): 2 APIs + 3 workers + the local network on a PostgreSQL
# cluster of the run's own (initdb in the run's folder, free port; the shared server is never
# touched), processes SIGKILLed at random, toncenter faults, that cluster crash-restarted once;
# then every payout is checked on chain. CHAOS_SECONDS (default 300) bounds the chaos.
CHAOS_SECONDS ?= 300
.PHONY: chaos
chaos: setup
	$(BIN)/python -m benchmarks.chaos --seconds $(CHAOS_SECONDS) --restart-postgres

# The soak run (docs/BENCHMARKS.md, Soak): 2 APIs + 2 workers + the local network at a steady
# load for SOAK_MINUTES (default 30); memory, open files and p99 latency must stay flat.
SOAK_MINUTES ?= 30
.PHONY: soak
soak: setup
	TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) $(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES)

# schemathesis against a live server on both databases (docs/API.md, The OpenAPI schema):
# `make test` runs 8 examples an operation; this runs SCHEMATHESIS_MAX_EXAMPLES (default 100).
SCHEMATHESIS_MAX_EXAMPLES ?= 100
.PHONY: schemathesis
schemathesis: setup
	SCHEMATHESIS_MAX_EXAMPLES=$(SCHEMATHESIS_MAX_EXAMPLES) TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) \
	  $(BIN)/pytest tests/api/test_schemathesis.py -v -rP $(PYTEST_ARGS)

.PHONY: bench-fees
bench-fees: setup  # the fee optimizer against naive and fixed batching (docs/FEES.md)
	$(BIN)/python -m benchmarks.run --only fees  # writes its section of docs/BENCHMARKS.md

# The image's pinned Python dependencies (with hashes), resolved from pyproject.toml.
.PHONY: lock
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml deploy/docker/build-requirements.in \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --native-tls --no-header --quiet -o requirements.lock.tmp
	{ echo "# make lock: the image's Python dependencies from pyproject.toml (uv pip compile)."; \
	  cat requirements.lock.tmp; } > requirements.lock && rm requirements.lock.tmp

# ---- containers (docs/CONTAINERS.md): podman on this machine, no registry needed
.PHONY: podman image stack-up stack-down deploy-testnet test-image
podman:  # install and configure podman, buildah, runc, mmdebstrap when missing
	@deploy/docker/setup-podman.sh

image: podman  # localhost/tonrail:<git sha> and :latest; the base is made once (mmdebstrap)
	deploy/docker/build-image.sh

stack-up: podman  # the production-like stack from the image; writes var/stack.env
	deploy/docker/stack.sh up

stack-down:
	deploy/docker/stack.sh down

deploy-testnet: image stack-up  # on this machine: the stack against the local network

# The testnet rehearsal (docs/DEPLOY.md): against var/stack.env (make stack-up) or TONRAIL_*
# settings; with TONRAIL_NETWORK=testnet and a toncenter key, against the real testnet.
.PHONY: test-payments verify-testnet-payments
test-payments: $(STAMP)  # TON, USDT, idempotent retry, bounce, paid invoice through the API
	$(BIN)/tonrail rehearsal pay

verify-testnet-payments: $(STAMP)  # each on chain via toncenter, the books; writes the record
	$(BIN)/tonrail rehearsal verify

test-image: setup podman  # the image and stack proof alone (also part of make test)
	TONRAIL_TEST_POSTGRES_URL=$(PG_TEST_URL) $(BIN)/pytest tests/test_image.py -v $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache var
