# rtl_core: the two front-door commands are `make reproduce` and `make test`; both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PROFILE ?= default
export PYTHONUNBUFFERED := 1

.PHONY: setup browser test test-fast lint format reproduce bench gpu-check lab summary clean-artifacts

setup: $(STAMP)

# Idempotent: reinstalls only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name rtl_core --display-name "Python (rtl_core)" >/dev/null
	@touch $@

# Headless Chromium (Debian's package) for the report rendering tests.
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the report tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser lint
	$(PY) -m pytest -q --durations=15

# The inner loop: every test but the end-to-end ones (`@pytest.mark.slow`); no browser needed.
test-fast: setup lint
	$(PY) -m pytest -q -m "not slow" --durations=10

# ruff (pyproject.toml [tool.ruff]): pyflakes, pycodestyle (lines <= 120), import order and the formatter's layout;
# `make format` applies the fixes.
lint: setup
	$(PY) -m ruff check rtl_core tests notebooks
	$(PY) -m ruff format --check rtl_core tests notebooks

format: setup
	$(PY) -m ruff check --fix rtl_core tests notebooks
	$(PY) -m ruff format rtl_core tests notebooks

reproduce: setup
	$(PY) -m rtl_core.cli reproduce $(if $(CONFIG),--config $(CONFIG),--profile $(PROFILE)) $(if $(SHOW_CODE),--show-code,) \
	  $(if $(LAUNCHER),--launcher $(LAUNCHER),) $(if $(WORKERS),--workers $(WORKERS),)

bench: setup
	$(PY) -m rtl_core.cli bench

# On a machine with a CUDA GPU: the GPU bench and a small study at the paper's settings (pretrain, evaluate,
# analyze), one summary, non-zero exit on any failure (rtl_core/bench/gpu_check.py). Without a GPU it says so and
# fails; CPU_SMOKE=1 runs the study at smoke size on the CPU instead.
gpu-check: setup
	$(PY) -m rtl_core.bench.gpu_check $(if $(CPU_SMOKE),--cpu-smoke,)

summary: setup
	$(PY) -m rtl_core.data --summary

# The notebooks are jupytext sources (notebooks/*.py); this venv's JupyterLab opens .py files as notebooks
# (settings override in the venv only, not in ~/.jupyter).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
lab: setup
	@mkdir -p $(dir $(LAB_OVERRIDES))
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $(LAB_OVERRIDES)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean-artifacts:
	rm -rf artifacts
