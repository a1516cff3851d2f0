# `make demo` and `make test` each do their own set-up: a virtualenv in .venv, the install,
# Redis >= 7 and PostgreSQL >= 15 reachable (configured ones, else local ones under .run/),
# migrations, then the job.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENV_FILE := .run/services.env
WITH_SERVICES := set -a && . ./$(ENV_FILE) && set +a &&

.PHONY: help install services migrate browser demo test unit lint format clean

help:
	@echo "make demo    run orderd end to end on this machine"
	@echo "make test    lint, type-check and run the whole test suite"
	@echo "make unit    the fast unit tests only (no servers)"
	@echo "make lint    ruff, mypy and the import contracts"
	@echo "make browser install Chromium for the browser tests (Debian's chromium) if missing"
	@echo "make clean   stop local servers started under .run/ and remove .run/ and .venv/"

install: $(STAMP)

$(STAMP): pyproject.toml .ci/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "orderd needs Python 3.11 or newer as '$(PYTHON)' (set PYTHON=/path/to/python3.11)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
	    apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "cannot create a virtualenv: install the venv module (Debian: apt-get install python3-venv)"; exit 2; fi; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c .ci/constraints.txt -e '.[test,dev]'
	@touch $(STAMP)

services: $(STAMP)
	@$(BIN)/python .ci/services.py --env-file $(ENV_FILE)

migrate: services
	@$(WITH_SERVICES) $(BIN)/orderd migrate

# The browser tests drive the system's Chromium; nothing is downloaded when they run.
browser:
	@test -x /usr/bin/chromium || command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "the browser tests need Chromium at /usr/bin/chromium (Debian: apt-get install chromium)"; exit 2; fi; }

demo: migrate
	@$(WITH_SERVICES) $(BIN)/orderd demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests .ci/services.py
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Three workers on two cores: most tests wait on servers and daemons rather than compute.
# Each test has its own schema and key prefix, so any worker may take any test; an idle
# worker takes tests from a busy one (worksteal), so a long test does not leave one alone.
test: lint migrate browser
	@$(WITH_SERVICES) $(BIN)/pytest -n 3 --dist worksteal
	@echo "the tests that exercise Redis, again on a local Redis Cluster (3 masters, 3 replicas):"
	@$(WITH_SERVICES) ORDERD_TEST_REDIS_CLUSTER=1 $(BIN)/pytest -n 3 --dist worksteal $(CLUSTER_TESTS)

# What runs a second time on a Redis Cluster: every integration test that uses Redis,
# directly or through a daemon. Left out: those that use no Redis (migrations, the report,
# the README's key list), the cluster harness's own (clusters of their own), and the demo's
# runs (the demo, and the browser over it), which carry nothing the others do not.
CLUSTER_TESTS := tests/integration \
	$(addprefix --ignore=tests/integration/,test_migrations.py test_report.py \
	test_paid_at_copies.py test_readme_keys.py test_redis_cluster_harness.py \
	test_demo_dashboard.py test_browser_smoke.py) \
	--deselect=tests/integration/test_cli.py::test_demo_completes_its_orders_reports_and_leaves_nothing_reserved

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	-@test -x $(BIN)/python && $(BIN)/python .ci/services.py --stop
	rm -rf .run $(VENV)
