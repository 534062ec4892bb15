# Datasets: ../shared/datasets when it exists (CI and the dev machines), else CONVLENS_HOME/datasets.
VENV ?= .venv
PY := $(VENV)/bin/python
# A Python that runs and that TensorFlow 2.21 has wheels for (the code needs 3.11+); 3.11, the tested one, first.
PYTHON ?= $(firstword $(foreach v,3.11 3.12 3.13,$(shell python$(v) -c 'import sys' 2>/dev/null && echo python$(v))))
SHARED_DATA := $(abspath ../shared/datasets)
export CONVLENS_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install lock test test-fast test-cifar test-services test-combos test-browser lint docs demo bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "need python3.11, 3.12 or 3.13 on PATH (or make PYTHON=/path/to/python)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# Silences only setuptools' note that every editable install gets ("folders named like the package may shadow
	@# it"): there is no `convlens` folder here. Any other packaging warning still prints.
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -c constraints.txt -e '.[cpu,dev,export]'
	touch $@

install: $(VENV)/.installed

# After a dependency change and a green suite: pin what passed, so every fresh clone installs the same versions.
lock: install
	{ sed -n 1,2p constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(CURDIR)/site

# The guides under docs/ as a site in site/ (`$(VENV)/bin/mkdocs serve` to browse them live).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(CURDIR)/site

# No PostgreSQL, no CIFAR-10, no worker processes: about half a minute.
test-fast: install lint
	$(VENV)/bin/pytest -q tests/fast

# Real CIFAR-10, no services: the ml/ code on real data.
test-cifar: install lint
	$(VENV)/bin/pytest -q tests -m "cifar and not services and not browser"

# Real Redis, PostgreSQL, RabbitMQ, worker and API processes (no browser).
test-services: install lint
	$(VENV)/bin/pytest -q tests -m "services and not browser"

# Features that meet: model sources x consumers x brokers x artifact stores x databases, all pairs.
test-combos: install lint
	$(VENV)/bin/pytest -q tests -m combos

# The dashboard and the study report in Debian's chromium.
test-browser: install lint
	$(VENV)/bin/pytest -q tests -m browser

test: install lint
	$(VENV)/bin/pytest -q --durations=30 tests

demo: install
	$(VENV)/bin/convlens demo

bench: install
	$(PY) bench/bench_seed.py
	$(PY) bench/bench_classify.py
	$(PY) bench/bench_fast.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_dashboard.py
	$(PY) bench/bench_jobs.py

clean:
	rm -rf $(VENV) .convlens .pytest_cache
