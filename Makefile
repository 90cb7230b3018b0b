# Every target bootstraps what it needs: the virtual environment (.venv, pinned by
# requirements.lock) and, when DATABASE_URL is unset, Debian's PostgreSQL binaries for
# the embedded server under .var/pg.

SHELL := /bin/bash
PY := .venv/bin/python
VAR := $(CURDIR)/.var
STAMP := .venv/.installed
BENCH_STAMP := .venv/.bench-installed

# Keep every tool's state inside the project, never in $HOME.
export NUMBA_CACHE_DIR := $(VAR)/numba
export JUPYTER_CONFIG_DIR := $(VAR)/jupyter/config
export JUPYTER_DATA_DIR := $(VAR)/jupyter/data
export JUPYTER_RUNTIME_DIR := $(VAR)/jupyter/runtime
export JUPYTER_PLATFORM_DIRS := 1
export IPYTHONDIR := $(VAR)/ipython
export MPLCONFIGDIR := $(VAR)/matplotlib
export XDG_CACHE_HOME := $(VAR)/cache
export XDG_CONFIG_HOME := $(VAR)/config
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help live test lint research lab bench kill halt status resume limits clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: TESTS=<pytest args> (make test), BENCH=<name> (make bench),"
	@echo "             DURATION=<s> SPEED=<market s per wall s> MODE=sim|paper|auto"
	@echo "             STRATEGY=<name> VERSION=<v> (make live: a promoted artefact in models/)"
	@echo "             FLATTEN=1 (make kill: also close every position)"

$(STAMP): requirements.lock pyproject.toml
	@test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements.lock
	.venv/bin/pip install -q --no-deps -e .
	@touch $@

# vectorbt and backtrader (the `bench` extra) only for `make bench`, held to the lock's pins.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	.venv/bin/pip install -q -c requirements.lock -e '.[bench]'
	@touch $@

.var/.postgres:
	@mkdir -p .var
	@if [ -z "$$DATABASE_URL" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing PostgreSQL server binaries (Debian package 'postgresql')"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL binaries missing: install 'postgresql' or set DATABASE_URL" >&2; exit 1; fi; \
	fi
	@touch $@

live: $(STAMP) .var/.postgres ## run the daemon (sim mode without Alpaca keys); DURATION=120 to stop after 120 s
	$(PY) -m live run $(if $(DURATION),--duration $(DURATION)) $(if $(SPEED),--speed $(SPEED)) $(if $(MODE),--mode $(MODE)) $(if $(STRATEGY),--strategy $(STRATEGY)) $(if $(VERSION),--version $(VERSION))

# The browser test drives Debian's chromium (Playwright's own download does not work here).
.var/.chromium:
	@mkdir -p .var
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Chromium (Debian package 'chromium') for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's 'chromium' (the browser test is skipped)" >&2; fi; \
	fi
	@touch $@

test: $(STAMP) .var/.postgres .var/.chromium lint ## lint, type-check and run every test (TESTS=tests/unit runs a subset)
	$(PY) -m pytest -q -p no:cacheprovider $(TESTS)

lint: $(STAMP) ## ruff (lint + format check) and mypy over trader/ and live/
	.venv/bin/ruff check trader live tests bench
	.venv/bin/ruff format --check trader live tests bench
	.venv/bin/mypy

research: $(STAMP) ## run the notebooks through papermill into runs/<timestamp>/
	$(PY) -m trader.research

lab: $(STAMP) ## start JupyterLab on the notebooks
	.venv/bin/jupyter lab --notebook-dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: $(STAMP) $(BENCH_STAMP) ## every benchmark in bench/ in one run (BENCH=name: bench/name.py only); installs the bench extra
	@set -e; for f in $(if $(BENCH),bench/$(BENCH).py,bench/*.py); do echo "== $$f"; $(PY) $$f; done

kill: $(STAMP) ## halt the running daemon and cancel its open orders (FLATTEN=1: also close every position)
	$(PY) -m live kill --reason "make kill" --by "$${USER:-operator}" $(if $(FLATTEN),--flatten)

halt: $(STAMP) ## stop new orders of the running daemon, leave its open orders working
	$(PY) -m live halt --reason "make halt" --by "$${USER:-operator}"

limits: $(STAMP) ## print the running daemon's risk limits and their utilisation
	$(PY) -m live limits

status: $(STAMP) ## print the running daemon's status
	$(PY) -m live status

resume: $(STAMP) ## release the kill switch (and a halt) of the running daemon
	$(PY) -m live resume --by "$${USER:-operator}"

clean: ## remove run-time state (.var: embedded Postgres, logs, caches) and runs/
	@if [ -d .var/pg ]; then runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D $$(readlink -f .var/pg) -m fast stop 2>/dev/null || true; fi
	rm -rf .var runs
