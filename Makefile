# Two commands on a fresh machine (Python 3.11+): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
# Exact versions (the lock): every install below is constrained by it.
LOCK   := constraints.txt

.PHONY: run test lint install bench clean fhir-server audit chromium wrk

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e '.[test,bench]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-audit: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e '.[audit]'
	touch $@

install: $(VENV)/.installed-run

## The test FHIR server (sekmet-fhir) in its own venv, so its pins never meet ours.
FHIR_VENV ?= .venv-fhir
$(FHIR_VENV)/.installed:
	$(PYTHON) -m venv $(FHIR_VENV)
	$(FHIR_VENV)/bin/pip install -q 'sekmet-fhir==0.1.1'
	touch $@

fhir-server: $(FHIR_VENV)/.installed

## fhir.resources 7.1 (the last release with DSTU2 models) in its own venv: the tests validate
## suggested orders written for DSTU2 clients (MedicationOrder) with it; ours uses 8.x.
DSTU2_VENV ?= .venv-fhir-dstu2
$(DSTU2_VENV)/.installed:
	$(PYTHON) -m venv $(DSTU2_VENV)
	$(DSTU2_VENV)/bin/pip install -q 'fhir.resources==7.1.0'
	touch $@

## Set up and start the service on the embedded defaults (SQLite under ./var, port 8080).
run: $(VENV)/.installed-run
	CDS_ENV=$${CDS_ENV:-development} $(BIN)/diazepam-cds serve --host 127.0.0.1 --port $(PORT)

## Debian's chromium for the dashboard's browser test (Playwright drives it by path and never
## downloads a browser). Installed when missing and we are root; otherwise the test skips
## saying why (and fails under CI=true).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "make: chromium not installed (not root?); the browser test will skip"

## wrk, the benchmark's load generator, whose token script has a test of its own: installed
## when missing and we are root; otherwise that test skips saying why.
wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
		echo "make: wrk not installed (not root?); the wrk script test will skip"

## Set up and run the whole test suite (lint included).
test: $(VENV)/.installed-test $(FHIR_VENV)/.installed $(DSTU2_VENV)/.installed chromium wrk
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

## Known advisories in the locked versions (pip-audit): fails only on one with a fixed
## version; an unreachable advisory service is a loud warning (scripts/audit_deps.py).
audit: $(VENV)/.installed-audit
	$(BIN)/python scripts/audit_deps.py $(LOCK)

## Service (auth on and off) vs. the bare and protocol floors under the same gunicorn (wrk;
## results in bench/results/).
## Installs wrk with apt when possible, else falls back to a Python load generator.
BENCH_ARGS ?=
bench: $(VENV)/.installed-test $(FHIR_VENV)/.installed
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq wrk >/dev/null; } || \
		echo "bench: wrk unavailable; using the Python load generator (figures not comparable)"
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache $(FHIR_VENV) $(DSTU2_VENV)
