# MiniSQL Cluster -- developer and CI entry points.
#
#   make deps     system packages (apt) + .venv, each only when missing / out of date
#   make up       run the whole stack on this machine (Ctrl-C stops it)
#   make test     run the test suite
#   make bench    run the benchmark (bench/run.sh)
#   make status   show the running cluster's regions, tables and leader
#   make clean    remove the local stack's data (.minisql)
#   make compat   third-party suites against one MariaDB and through a 3-region cluster, side by side (SUITES=pymysql,connector,connector-lenient,sqlalchemy,sqlalchemy-backend[,mtr])
#   make fuzz     fuzz the proxy (protocol + SQL) for FUZZ_BUDGET seconds (default 600), report in FUZZ_REPORT
#   make chaos    bank transfers through 2 proxies while processes are killed / frozen (CHAOS_DURATION=600 s, a fault every CHAOS_INTERVAL=30 s), and a proxy killed XA_KILL_ROUNDS=10 times at each point of the commit

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV      := .venv
VENV_PY   := $(VENV)/bin/python
STAMP     := $(VENV)/.deps-stamp
DATA_DIR  ?= .minisql
UP_ARGS   ?=
PYTEST_ARGS ?=

APT_PACKAGES := mariadb-server mariadb-client zookeeper sysbench iproute2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The first Python >= 3.11 on PATH (override: make deps PYTHON=/path/to/python3).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	    command -v $$p; break; fi; done)

.PHONY: help deps system-deps python-deps up test bench status clean chaos

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

deps: system-deps python-deps

# MariaDB, ZooKeeper (+ Java) and sysbench from Debian, only if something is missing.
system-deps:
	@missing=""; \
	{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } || missing="$$missing mariadbd"; \
	command -v mariadb-install-db >/dev/null 2>&1 || missing="$$missing mariadb-install-db"; \
	command -v mariadb >/dev/null 2>&1 || missing="$$missing mariadb"; \
	[ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper.jar"; \
	[ -f /usr/share/java/slf4j-simple.jar ] || missing="$$missing slf4j-simple.jar"; \
	command -v java >/dev/null 2>&1 || missing="$$missing java"; \
	command -v sysbench >/dev/null 2>&1 || missing="$$missing sysbench"; \
	{ command -v tc >/dev/null 2>&1 || [ -x /usr/sbin/tc ] || [ -x /sbin/tc ]; } || missing="$$missing tc"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: missing:$$missing -- installing $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES) libslf4j-java; \
	fi

python-deps: $(STAMP)

$(VENV_PY):
	@if [ -z "$(PYTHON)" ]; then echo "deps: need Python >= 3.11 on PATH (or make PYTHON=...)" >&2; exit 1; fi
	@echo "deps: creating $(VENV) with $(PYTHON)"
	@if ! $(PYTHON) -m venv $(VENV); then \
	  echo "deps: venv failed; installing python3-venv" >&2; rm -rf $(VENV); \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; \
	  $(PYTHON) -m venv $(VENV); \
	fi

# Reinstall only when the project's requirements changed (or the venv is new).
$(STAMP): pyproject.toml constraints.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

up: deps
	$(VENV)/bin/minisql up --data-dir $(DATA_DIR) $(UP_ARGS)

test: deps
	$(VENV_PY) -m pytest -q $(PYTEST_ARGS)

CHAOS_DURATION ?= 600
CHAOS_INTERVAL ?= 30
XA_KILL_ROUNDS ?= 10
chaos: deps
	CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_INTERVAL=$(CHAOS_INTERVAL) XA_KILL_ROUNDS=$(XA_KILL_ROUNDS) \
	  $(VENV_PY) -m pytest -q -s tests/fault/test_bank_under_faults.py tests/integration/test_atomic_commit.py

bench: deps
	@if [ ! -f bench/run.sh ]; then echo "bench: bench/run.sh does not exist yet" >&2; exit 1; fi
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash bench/run.sh

status: python-deps
	$(VENV)/bin/minisql status --data-dir $(DATA_DIR)

clean:
	@if [ -f $(DATA_DIR)/up.lock ] && ! flock -n $(DATA_DIR)/up.lock true; then \
	  echo "clean: a 'minisql up' is still running on $(DATA_DIR); stop it first" >&2; exit 1; fi
	rm -rf $(DATA_DIR)

# The long run of tests/fuzz: every family (including any the default run still
# excludes as pending), a 10-minute budget, the JSON report kept in $(DATA_DIR).
FUZZ_BUDGET ?= 600
FUZZ_SEED   ?= 20240611
FUZZ_REPORT ?= $(CURDIR)/$(DATA_DIR)/fuzz-report.json
.PHONY: fuzz
fuzz: deps
	MINISQL_FUZZ_BUDGET=$(FUZZ_BUDGET) MINISQL_FUZZ_SEED=$(FUZZ_SEED) MINISQL_FUZZ_FAMILIES=all \
	  MINISQL_FUZZ_MAX_RESTARTS=$${MINISQL_FUZZ_MAX_RESTARTS:-50} MINISQL_FUZZ_REPORT=$(FUZZ_REPORT) \
	  $(VENV_PY) -m pytest -q -s -p no:cacheprovider tests/fuzz $(PYTEST_ARGS)

# Third-party suites (PyMySQL 0.10.1, Connector/Python 26.10, SQLAlchemy 2.0 dialect compliance;
# optional: mtr) against one plain MariaDB and through a fresh 3-region `minisql up`, printed side by
# side with the tests that fail only through the cluster (tests/compat/runner.py; docs/compat.md).
# Each server + suite runs under `flock $(COMPAT_LOCK)`, released between suites.  Logs, summary.json
# and table.md in $(COMPAT_WORK).  Not part of `make test`, which (like CI) runs only
# tests/compat/test_pymysql_suite.py and test_sqlalchemy_suite.py: PyMySQL's suite and SQLAlchemy's
# dialect compliance suite through a cluster against their known-failures lists, which may only shrink.
SUITES      ?= pymysql,connector,connector-lenient,sqlalchemy,sqlalchemy-backend
COMPAT_WORK ?= $(DATA_DIR)/compat
COMPAT_LOCK ?= /tmp/minisql-cluster.lock
.PHONY: compat
compat: deps
	$(VENV_PY) -m tests.compat.runner --suites $(SUITES) --work $(COMPAT_WORK) --lock $(COMPAT_LOCK)
