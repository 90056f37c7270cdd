# The two commands: `make run` (the whole platform with a seeded demo) and `make test`.
# Both install what they need and can be run again at any time.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
FRONTEND_STAMP := frontend/node_modules/.installed-$(shell cat frontend/package-lock.json 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: help run test setup services frontend migrate seed clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

run: setup migrate  ## Start the whole platform (portal, gateway, worker, beat, metering, Triton) with a demo
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/honcho start

test: setup  ## Run the whole test suite (frontend unit tests, then pytest)
	scripts/ensure_system.sh chromium
	cd frontend && npm test --silent
	$(BIN)/pytest

setup: $(DEPS_STAMP) services frontend/dist/platform.js  ## Install everything and make services available

$(DEPS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python scripts/requirements.py test > $(VENV)/requirements.txt
	$(BIN)/pip install --quiet -r $(VENV)/requirements.txt
	rm -f $(VENV)/.deps-* && touch $@

services: $(DEPS_STAMP)  ## Make PostgreSQL and Redis available (start or install them)
	$(BIN)/python scripts/services.py

$(FRONTEND_STAMP): frontend/package.json frontend/package-lock.json
	scripts/ensure_system.sh
	cd frontend && npm ci --no-audit --no-fund --silent
	rm -f frontend/node_modules/.installed-* && touch $@

frontend/dist/platform.js: $(FRONTEND_STAMP) $(shell find frontend/src -type f 2>/dev/null) frontend/vite.config.js
	cd frontend && npm run build --silent

frontend: frontend/dist/platform.js  ## Build the browser bundle

migrate: setup  ## Apply database migrations
	$(BIN)/python manage.py migrate --noinput -v 0

seed: migrate  ## Seed the demo tenant, model, deployment and key
	$(BIN)/python manage.py seed_demo

clean:  ## Remove the venv, build output and local state
	rm -rf $(VENV) frontend/node_modules frontend/dist var
