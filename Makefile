# Two commands do everything (README): `make run` and `make test`. Both first bring .venv/ up to
# date with requirements/lock.txt; with nothing changed that step installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
PYTEST_ARGS ?=

.PHONY: setup run test test-fast lint format lock clean

setup: $(STAMP)

# The lock is installed with --no-deps (no resolver, same set everywhere). torchrec needs the CPU
# build of FBGEMM (fbgemm-gpu-cpu) although its metadata names fbgemm-gpu, and pyspark-client
# (needed by the Airflow Spark provider) shares pyspark's folder, so the full pyspark is
# re-installed last: see ../shared/ENVIRONMENT.md.
$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements/lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --force-reinstall pyspark==4.1.1
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m embeddings.warmup
	touch $(STAMP)

run: $(STAMP)
	$(PY) jobs/refresh.py $(ARGS)

test: $(STAMP) lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop: the tests not marked slow (end to end, spark-submit, Airflow, multi-rank, training, GX).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Re-resolve requirements/base.in into requirements/lock.txt (run by hand when changing a pin).
lock:
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install -q -r requirements/base.in
	/tmp/lock-venv/bin/pip install -q --no-deps torchrec==1.9.2
	/tmp/lock-venv/bin/pip freeze --all --exclude-editable > requirements/lock.txt

clean:
	rm -rf data spark-warehouse metastore_db derby.log
