# The two commands: `make run` (the whole platform with a seeded demo) and `make test`.
# Both install what they need and can be run again at any time: each step is skipped when
# its stamp (keyed on a hash of pyproject.toml or package-lock.json) or its output is current.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
export PYTHON
VENV := .venv
BIN := $(VENV)/bin
# Procfile commands (uvicorn, celery, python) resolve to the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)
DEPS_STAMP := $(VENV)/.deps-$(shell sha1sum < pyproject.toml | cut -c1-12)
FRONTEND_STAMP := frontend/node_modules/.installed-$(shell sha1sum < frontend/package-lock.json | cut -c1-12)
FRONTEND_SOURCES := $(shell find frontend/src -type f) frontend/vite.config.js

# The URLs the demo prints follow the ports the processes listen on.
export PORTAL_URL ?= http://127.0.0.1:$(or $(PORTAL_PORT),8000)
export GATEWAY_URL ?= http://127.0.0.1:$(or $(GATEWAY_PORT),8080)
export TRITON_URL ?= http://127.0.0.1:$(or $(TRITON_HTTP_PORT),8100)

.PHONY: help run test lint setup venv services frontend frontend-test migrate seed bench-gateway bench-keepalive \
	bench-coldstart bench-replay bench-graph bench-billing clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

run: setup migrate  ## Start the whole platform (portal, gateway, worker, beat, metering, Triton) with a demo, under supervisord
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py seed_demo
	exec $(BIN)/python scripts/supervise.py

test: setup frontend-test lint  ## Run the whole test suite (frontend unit tests, the layer and lint checks, then pytest)
	scripts/ensure_system.sh chromium redis
	$(BIN)/pytest

.PHONY: hooks
hooks:  ## Use the project's git hooks (commit-msg: a subject of at most 72 characters, a blank line, a body)
	git config core.hooksPath scripts/git-hooks

.PHONY: lint
lint: venv  ## The one-way layers (import-linter, contracts in pyproject.toml) and ruff
	$(BIN)/lint-imports
	$(BIN)/ruff check .

.PHONY: fuzz
fuzz: venv services  ## Long fuzzing: schemathesis on the API, mutated ONNX uploads (FUZZ_EXAMPLES=N, default 200)
	FUZZ_PROFILE=fuzz $(if $(FUZZ_EXAMPLES),FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)) $(BIN)/pytest tests/fuzz -q \
		--hypothesis-show-statistics

.PHONY: chaos
chaos: setup  ## Kill -9 each Procfile process in turn under load (make run's supervisor); it must serve again, metering exact
	scripts/ensure_system.sh redis
	CHAOS=all $(BIN)/pytest tests/workers/test_supervision.py -k every_process -q -s

setup: venv services frontend  ## Install everything and make PostgreSQL and Redis available

venv: $(DEPS_STAMP)  ## Create .venv with the pinned dependencies (test extra included)

$(DEPS_STAMP): pyproject.toml
	@test -x $(BIN)/pip || { rm -rf $(VENV); scripts/ensure_system.sh venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python scripts/requirements.py test > $(VENV)/requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r $(VENV)/requirements.txt
	rm -f $(VENV)/.deps-* && touch $@

services: venv  ## Make PostgreSQL and Redis available (start them, or install them first)
	$(BIN)/python scripts/services.py

$(FRONTEND_STAMP): frontend/package.json frontend/package-lock.json
	scripts/ensure_system.sh node
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	rm -f frontend/node_modules/.installed-* && touch $@

frontend/dist/platform.js: $(FRONTEND_STAMP) $(FRONTEND_SOURCES)
	cd frontend && npm run --silent build

frontend: frontend/dist/platform.js  ## Build the browser bundle (frontend/dist/platform.js, platform.css)

frontend-test: $(FRONTEND_STAMP)  ## Run the frontend unit tests (vitest)
	cd frontend && npm test --silent

migrate: venv services  ## Apply database migrations
	$(BIN)/python manage.py migrate --noinput -v 0

seed: migrate  ## Seed the demo tenant, model, deployment and key
	$(BIN)/python manage.py seed_demo

bench-gateway: venv  ## Gateway vs Triton direct: 1/8/32 clients, JSON, binary, gRPC; process scaling (BENCH_ARGS=...)
	scripts/ensure_system.sh redis
	$(BIN)/python -m bench.gateway --scaling $(BENCH_ARGS)

bench-keepalive: venv  ## Replay a trace through fixed and adaptive keep-alive (TRACE=dir, default the shared Azure 2019 day)
	$(BIN)/python -m bench.keepalive --trace $(or $(TRACE),../shared/traces/azure-functions-2019)

bench-coldstart: setup  ## First response from zero through the real stack vs Triton's own load time (BENCH_ARGS=--runs N)
	$(BIN)/python -m bench.coldstart $(BENCH_ARGS)

.PHONY: bench-isolation
bench-isolation: setup  ## Noisy neighbours: tenant B's p50/p99 and errors while tenant A floods (BENCH_ARGS=--seconds N)
	$(BIN)/python -m bench.isolation $(BENCH_ARGS)

bench-graph: setup  ## A deployed graph vs its classifier alone and vs the client chaining its steps (BENCH_ARGS=...)
	$(BIN)/python -m bench.graph $(BENCH_ARGS)

bench-billing: venv services  ## A month of 1,000,000 usage events for 100 tenants: rollups, all invoices, the Billing page (BENCH_ARGS=...)
	$(BIN)/python -m bench.billing $(BENCH_ARGS)

bench-replay: setup  ## Time-compressed live replay of a trace slice (1 trace minute = 1 s) against the simulator (TRACE=dir)
	$(BIN)/python -m bench.replay --trace $(or $(TRACE),../shared/traces/azure-functions-2019) $(BENCH_ARGS)

clean:  ## Remove the venv, frontend dependencies and build, and local state (var/)
	rm -rf $(VENV) frontend/node_modules frontend/dist var
