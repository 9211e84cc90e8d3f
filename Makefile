# Two commands do everything (README): `make run` and `make test`. Both first bring .venv/ up to
# date with requirements/lock.txt; with nothing changed that step installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU=1: the same lock with FBGEMM's CUDA build (fbgemm-gpu) in place of its CPU build (fbgemm-gpu-cpu).
GPU ?= 0
ifeq ($(GPU),1)
FLAVOR := gpu
LOCK := requirements/lock-gpu.txt
OTHER_FBGEMM := fbgemm-gpu-cpu
else
FLAVOR := cpu
LOCK := requirements/lock.txt
OTHER_FBGEMM := fbgemm-gpu
endif
STAMP := $(VENV)/.installed-$(FLAVOR)
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
PYTEST_ARGS ?=

.PHONY: setup run test test-fast lint format lock clean

setup: $(STAMP)

# The lock is installed with --no-deps (no resolver, same set everywhere). torchrec needs the CPU
# build of FBGEMM (fbgemm-gpu-cpu) although its metadata names fbgemm-gpu, and pyspark-client
# (needed by the Airflow Spark provider) shares pyspark's folder, so the full pyspark is
# re-installed last: see ../shared/ENVIRONMENT.md. The two FBGEMM builds share one fbgemm_gpu/ folder,
# so switching GPU= uninstalls the other build first (both installed: `import fbgemm_gpu` fails).
$(STAMP): $(LOCK) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	$(PY) -m pip uninstall -q -y --disable-pip-version-check $(OTHER_FBGEMM) 2>/dev/null || true
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r $(LOCK)
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

# Re-resolve requirements/base.in into requirements/lock.txt and its GPU twin (run by hand when changing a pin).
lock:
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install -q -r requirements/base.in
	/tmp/lock-venv/bin/pip install -q --no-deps torchrec==1.9.2
	/tmp/lock-venv/bin/pip freeze --all --exclude-editable > requirements/lock.txt
	sed 's/^fbgemm_gpu-cpu==/fbgemm_gpu==/' requirements/lock.txt > requirements/lock-gpu.txt

clean:
	rm -rf data spark-warehouse metastore_db derby.log
