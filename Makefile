# tombola: `make run` starts the pack; `make test` runs the tests against the real services.

PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test bench clean

run: $(VENV)/.runtime
	exec $(VENV)/bin/tombola up

test: $(VENV)/.runtime $(VENV)/.test
	$(VENV)/bin/python -m tests.services
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(VENV)/.runtime $(VENV)/.test
	$(VENV)/bin/python -m tests.services
	$(VENV)/bin/python -m loadtests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when the requirements or the project's metadata change.
$(VENV)/.runtime: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	touch $@

# The tests also validate heat/ with Heat's own engine and smoke-run the benchmark.
$(VENV)/.test: requirements-test.txt requirements-heat.txt requirements-bench.txt $(VENV)/.runtime
	$(PIP) install -r requirements-test.txt -r requirements-heat.txt -r requirements-bench.txt
	touch $@
