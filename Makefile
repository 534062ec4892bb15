# Datasets: ../shared/datasets when it exists (CI and the dev machines), else CONVLENS_HOME/datasets.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/datasets)
export CONVLENS_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test lint demo bench clean

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(VENV)/bin/pytest -q tests

demo: install
	$(VENV)/bin/convlens demo

bench: install
	$(PY) bench/bench_seed.py
	$(PY) bench/bench_classify.py
	$(PY) bench/bench_fast.py

clean:
	rm -rf $(VENV) .convlens .pytest_cache
