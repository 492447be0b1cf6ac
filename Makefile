# rtl_core: the two front-door commands are `make reproduce` and `make test`; both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PROFILE ?= default
export PYTHONUNBUFFERED := 1

.PHONY: setup test reproduce bench lab summary clean-artifacts

setup: $(STAMP)

# Idempotent: reinstalls only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name rtl_core --display-name "Python (rtl_core)" >/dev/null
	@touch $@

test: setup
	$(PY) -m pytest -q

reproduce: setup
	$(PY) -m rtl_core.cli reproduce --profile $(PROFILE)

bench: setup
	$(PY) -m rtl_core.cli bench

summary: setup
	$(PY) -m rtl_core.data --summary

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean-artifacts:
	rm -rf artifacts
