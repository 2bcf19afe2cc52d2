# The README's commands. Each one sets itself up from a fresh clone: it checks Java 17+, installs
# a pinned uv, and creates .venv from uv.lock (never re-resolving), so every machine gets the
# same versions.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export KCURE_HOME ?= $(CURDIR)/var
export UV_PYTHON := $(PYTHON)

DEMO_PATIENTS ?= 500
DEMO_SEED ?= 20240101
DEMO_BUILD ?= demo-$(shell date -u +%Y%m%d-%H%M%S)
DEMO_PROJECT ?= kc20261130002
PYTEST_ARGS ?=
# make test runs the test files on this many pytest-xdist workers (each file on one worker, so its
# module fixtures are built once, and the files sharing the secured home together: tests/conftest.py
# SHARED_UNITS). The suite is bound by CPU (docs/performance.md, thirteenth part): one worker per core
TEST_WORKERS ?= 2

.PHONY: help install check-java browser demo airflow workspace bench bench-scaling test test-fast lint fmt clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

check-java:
	@scripts/check_java.sh

$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
	  || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: every installed module is compiled once here. Without it, a machine that sets
# PYTHONDONTWRITEBYTECODE (this one does) compiles Great Expectations, Airflow and pyspark again in
# every process: importing great_expectations took 9.5 s instead of 5.1 s, airflow.models 3.7 s
# instead of 2.2 s, and every stage, Airflow task and test subprocess paid it.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

install: check-java $(VENV)/.synced  ## create .venv from uv.lock (Java 17+ required); Spark's class-data archive in the background
	@$(BIN)/kcure spark-archive --background

AIRFLOW := scripts/airflow.sh
AIRFLOW_PORT ?= 8080

demo: install  ## synthetic population -> Airflow: kcure_ingest, kcure_build_library -> release, report, a query
	@umask 077 && mkdir -p $(KCURE_HOME) && chmod go-rwx $(KCURE_HOME)
	@scripts/demo_secrets.sh .demo-secrets.env
	$(BIN)/kcure generate --patients $(DEMO_PATIENTS) --seed $(DEMO_SEED) --out $(KCURE_HOME)/landing --force
	@$(AIRFLOW) db migrate > /dev/null
	@$(AIRFLOW) dags reserialize > /dev/null 2>&1
	@echo "== airflow dags test kcure_ingest (logs: $(KCURE_HOME)/demo-ingest.log)"
	umask 077 && $(AIRFLOW) dags test kcure_ingest --conf '{"landing": "$(KCURE_HOME)/landing"}' > $(KCURE_HOME)/demo-ingest.log 2>&1 \
	  || { tail -40 $(KCURE_HOME)/demo-ingest.log; exit 1; }
	$(BIN)/kcure ingest-log --by-feed
	@echo "== airflow dags test kcure_build_library (logs: $(KCURE_HOME)/demo-build.log)"
	set -a && . ./.demo-secrets.env && set +a && umask 077 && \
	  $(AIRFLOW) dags test kcure_build_library \
	    --conf '{"build": "$(DEMO_BUILD)", "truth": "$(KCURE_HOME)/landing/_truth"}' > $(KCURE_HOME)/demo-build.log 2>&1 \
	  || { tail -40 $(KCURE_HOME)/demo-build.log; exit 1; }
	$(BIN)/kcure releases show $(DEMO_BUILD)
	$(BIN)/kcure releases
	$(BIN)/kcure query "select DBYEAR as diagnosis_year, count(*) as cancers from RGST group by 1 order by 1"
	@echo "== a research project: submitted, reviewed, provisioned (KCURE_ENV=demo: the custodian's group reviews)"
	@KCURE_ENV=demo $(BIN)/kcure project show $(DEMO_PROJECT) > /dev/null 2>&1 || { \
	  KCURE_ENV=demo $(BIN)/kcure project submit conf/applications/$(DEMO_PROJECT).yaml && \
	  KCURE_ENV=demo $(BIN)/kcure project review $(DEMO_PROJECT) --approve --note "demo review"; }
	KCURE_ENV=demo $(BIN)/kcure project provision $(DEMO_PROJECT) 2> $(KCURE_HOME)/demo-provision.log \
	  || { tail -20 $(KCURE_HOME)/demo-provision.log; exit 1; }
	KCURE_ENV=demo $(BIN)/kcure audit verify --project $(DEMO_PROJECT)

airflow: install  ## airflow standalone with the project's DAGs on http://127.0.0.1:$(AIRFLOW_PORT) (user admin)
	@scripts/demo_secrets.sh .demo-secrets.env
	@$(AIRFLOW) db migrate > /dev/null
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)  user: admin  password: in $(KCURE_HOME)/airflow/simple_auth_manager_passwords.json.generated"
	set -a && . ./.demo-secrets.env && set +a && \
	  AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
	  $(AIRFLOW) standalone

workspace: install  ## the workspace service analysts and reviewers act through (run as the custodian; Ctrl-C stops it)
	umask 077 && mkdir -p $(KCURE_HOME) && $(BIN)/kcure workspace serve

SCALE ?= 0.01
SCALES ?= 0.005 0.01 0.02
CORES ?=

bench: install  ## stage-by-stage benchmark at SCALE (fraction of 2.26 M patients) against the I/O floor (CORES=1: on one core)
	$(BIN)/python bench/run.py --scale $(SCALE) $(if $(CORES),--cores $(CORES))

bench-scaling: install  ## the benchmark at SCALES (each double the one before), with the fitted exponent
	$(BIN)/python bench/run.py --scaling $(SCALES)

browser: ## Debian's chromium for the browser test (apt-get; needs root or sudo)
	@scripts/install_chromium.sh

test: install browser  ## run the whole test suite (unit, spark, airflow, integration, slow): what CI runs
	$(UV) pip check --python $(BIN)/python
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: install  ## the edit loop: unit tests and the quick Spark tier (everything not marked slow)
	$(UV) pip check --python $(BIN)/python
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: install  ## ruff (style, complexity), mypy, import-linter (layers), pylint (duplicate code), hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pylint src/kcure dags jobs bench
	$(BIN)/hadolint Dockerfile

fmt: install  ## format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the environment and everything under KCURE_HOME
	rm -rf $(VENV) $(TOOLS) $(KCURE_HOME)
