# streamlstm — `make help` lists the targets. `make demo` and `make test` set up everything
# they need (cached virtualenv, Kafka jars, Debian packages) on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: help setup setup-ops demo test test-all chaos lint format bench quality clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## virtualenv (cached outside the clone), Python packages, Kafka jars
	@bash tools/bootstrap.sh

setup-ops: ## setup + Debian prometheus/alertmanager for the operations tests
	@bash tools/bootstrap.sh --ops

demo: setup ## the main job on embedded defaults: local Kafka + Ray + simulator + worker
	$(VENV)/bin/streamlstm demo $(ARGS)

lint: setup ## ruff lint + format check
	$(VENV)/bin/ruff check streamlstm tests
	$(VENV)/bin/ruff format --check streamlstm tests

format: setup ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix streamlstm tests
	$(VENV)/bin/ruff format streamlstm tests

test: setup-ops lint ## lint, then the test suite without the slow chaos cases (what CI runs)
	$(PY) -m pytest -m "not slow" -q $(ARGS)

test-all: setup-ops ## the whole suite, slow cases included
	$(PY) -m pytest -q $(ARGS)

chaos: setup-ops ## the fault-injection matrix only
	$(PY) -m pytest -m chaos -q $(ARGS)

bench: setup ## the benchmarks, as JSON
	$(VENV)/bin/streamlstm bench step --streams 10000 --json

quality: setup ## regenerate docs/quality.md and its plots (synthetic suites, NAB dev, pump dev, baselines)
	$(VENV)/bin/streamlstm quality --out docs/quality.md $(ARGS)

clean: ## remove run outputs (the cached virtualenv and jars stay)
	rm -rf runs out .pytest_cache .ruff_cache .hypothesis
