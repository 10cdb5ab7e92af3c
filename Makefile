# tombola: `make run` starts the pack; `make test` runs the tests against the real services.

PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: run test clean

run: $(VENV)/.runtime
	exec $(VENV)/bin/tombola up

test: $(VENV)/.runtime $(VENV)/.test
	$(VENV)/bin/python -m tests.services
	$(VENV)/bin/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when the requirements or the project's metadata change.
$(VENV)/.runtime: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.test: requirements-test.txt $(VENV)/.runtime
	$(PIP) install -r requirements-test.txt
	touch $@
