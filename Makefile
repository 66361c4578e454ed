# The two commands of the README:  make run  and  make test.
#
# The virtualenv is built from the system Python (/usr/bin/python3) when there is one: Apache
# (mod_wsgi) and CGI children run as an unprivileged user, who cannot read an interpreter that
# lives in root's home (a pyenv Python there crash-loops mod_wsgi and gives CGI "permission denied").

SHELL := /bin/bash
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
APP ?= examples.hello:app
# Two test processes; --dist loadgroup keeps each real server's checks on one of them.
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: run test install install-test sysdeps sysdeps-run lint clean bench

$(BIN)/python:
	@bash .ci/sysdeps.sh venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The project with every backend whose system package is there; the rest get a one-line notice.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[all]'
	@$(BIN)/python -m compileall -q launcher backends >/dev/null  # cached bytecode keeps `serve --help` fast
	@bash .ci/install-native.sh $(BIN)/python
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e '.[all,test]'
	@touch $@

install: $(VENV)/.installed

install-test: sysdeps $(VENV)/.installed-test

sysdeps:
	@bash .ci/sysdeps.sh test

sysdeps-run:
	@bash .ci/sysdeps.sh run

run: sysdeps-run install
	$(BIN)/serve $(APP) --bind 127.0.0.1:8000

test: install-test
	$(BIN)/python -m ruff check launcher backends tests benchmarks examples
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/python -m ruff check launcher backends tests benchmarks examples
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
