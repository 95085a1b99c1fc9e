# A fresh machine needs Python >= 3.12 and make; then `make run` or `make test`. See README.md.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# One shell per recipe: `make run` keeps the pids of the processes it starts in variables.
.ONESHELL:
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install; older than pyproject.toml means "install again".
STAMP := $(VENV)/.installed-from-pyproject
WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8000

# Prints the path of the newest usable Python >= 3.12, or explains what is missing.
# Order: $PYTHON if set, then PATH (python3.13, python3.12, python3), then pyenv's versions.
# Every candidate is run, not just found: a pyenv shim for a version that is not selected
# exists on PATH but fails when started.
define find_python_script
found=()

usable() {
	"$$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

describe() {
	local version
	version="$$("$$1" -c 'import platform; print(platform.python_version())' 2>/dev/null)" \
		|| version="does not run"
	found+=("$$1 ($$version)")
}

try() {
	if usable "$$1"; then
		"$$1" -c 'import sys; print(sys.executable)'
		exit 0
	fi
	describe "$$1"
}

if [ -n "$${PYTHON:-}" ]; then
	try "$$PYTHON"
fi
for name in python3.13 python3.12 python3; do
	if command -v "$$name" >/dev/null 2>&1; then
		try "$$name"
	fi
done
if command -v pyenv >/dev/null 2>&1; then
	pyenv_root="$$(pyenv root)"
	# Plain X.Y.Z versions only (no virtualenvs, no other distributions), newest first.
	versions="$$(pyenv versions --bare | grep -E '^3\.[0-9]+\.[0-9]+$$' | sort -t. -k2,2nr -k3,3nr)"
	for version in $$versions; do
		candidate="$$pyenv_root/versions/$$version/bin/python"
		if [ ! -x "$$candidate" ]; then
			candidate="$$(PYENV_VERSION="$$version" pyenv which python 2>/dev/null)" || continue
		fi
		try "$$candidate"
	done
fi

{
	if [ $${#found[@]} -eq 0 ]; then
		found=("no python3 at all")
	fi
	echo "need Python >= 3.12; found: $$(IFS=,; echo "$${found[*]}" | sed 's/,/, /g')"
	echo "Install one (your OS package python3.12, or 'pyenv install 3.12'),"
	echo "or point at one: make PYTHON=/path/to/python3.12 ..."
} >&2
exit 1
endef
export find_python_script

.PHONY: help install run test lint stop bench clean

help: ## Show this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the project with its dev tools

$(STAMP): pyproject.toml
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
		python="$$(bash -c "$$find_python_script")"
		echo "==> creating $(VENV) with $$python"
		rm -rf $(VENV)
		"$$python" -m venv $(VENV)
	fi
	# Installing into the existing venv is "rebuilding" it for a changed pyproject.toml
	# without breaking processes that run from it; `make clean` starts from scratch.
	echo "==> installing the project and its dev tools into $(VENV)"
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) ## Migrate, then run the web server and the worker until Ctrl-C
	@echo "==> migrating the database"
	$(PY) manage.py migrate --noinput
	admin_login="$$($(PY) manage.py ensure_admin)"
	echo "$$admin_login"
	echo "==> starting web (daphne) and worker (runworker)"
	# Job control puts each in its own process group, out of reach of the terminal's Ctrl-C:
	# this shell alone turns Ctrl-C into one SIGTERM each (a second signal would force them).
	set -m
	$(PY) -m daphne -b $(WEB_HOST) -p $(WEB_PORT) config.asgi:application </dev/null &
	web=$$!
	$(PY) manage.py runworker </dev/null &
	worker=$$!
	# SIGTERM makes both shut down gracefully; a second Ctrl-C kills them.
	stopping=0
	stop_both() {
		[ $$stopping -eq 0 ] || return 0
		stopping=1
		echo "==> stopping web and worker (Ctrl-C again to kill them)"
		trap 'kill -KILL $$web $$worker 2>/dev/null || true' INT TERM HUP
		kill -TERM $$web $$worker 2>/dev/null || true
	}
	trap stop_both INT TERM HUP
	health_host="$${WORKER_HEALTH_HOST:-127.0.0.1}"
	health_port="$${WORKER_HEALTH_PORT:-8001}"
	# The banner goes after the servers' start-up lines, where it is seen: wait (at most
	# ~20 s) until both listen, or one of them has died.
	listening() {
		$(PY) -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' \
			"$$1" "$$2" 2>/dev/null
	}
	for _ in $$(seq 100); do
		listening $(WEB_HOST) $(WEB_PORT) && listening "$$health_host" "$$health_port" && break
		[ $$stopping -eq 0 ] && kill -0 $$web 2>/dev/null && kill -0 $$worker 2>/dev/null || break
		sleep 0.2
	done
	if [ $$stopping -eq 0 ]; then
		echo "==> running; the logs of both follow"
		echo "    admin:         http://$(WEB_HOST):$(WEB_PORT)/admin/"
		[ -z "$$admin_login" ] || echo "    $$admin_login"
		echo "    worker health: http://$$health_host:$$health_port/healthz"
		echo "    stop:          Ctrl-C (the embedded database keeps running; 'make stop' stops it)"
	fi
	# Whichever ends first (Ctrl-C, or a crash) ends the other one too.
	first_exit=0
	wait -n $$web $$worker || first_exit=$$?
	interrupted=$$stopping
	stop_both
	web_exit=0
	wait $$web || web_exit=$$?
	worker_exit=0
	wait $$worker || worker_exit=$$?
	echo "==> stopped: web exit code $$web_exit, worker exit code $$worker_exit"
	if [ $$interrupted -eq 0 ]; then
		echo "one of them ended on its own (exit code $$first_exit); see its log above" >&2
		exit 1
	fi
	[ $$web_exit -eq 0 ] && [ $$worker_exit -eq 0 ]

test: $(STAMP) ## Run the whole test suite (python -m pytest)
	@status=0
	$(PY) -m pytest $(PYTEST_ARGS) || status=$$?
	if [ $$status -eq 5 ]; then
		echo "pytest collected no tests (exit code 5): that is a failure here" >&2
	fi
	exit $$status

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	@$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

stop: ## Stop the embedded PostgreSQL, Redis and MQTT broker
	@if [ -x $(PY) ]; then
		$(PY) manage.py embedded stop
	else
		echo "no $(VENV), so no embedded servers were started from here"
	fi

bench: $(STAMP) ## Run every bench/*.py
	@shopt -s nullglob
	scripts=(bench/*.py)
	if [ $${#scripts[@]} -eq 0 ]; then
		echo "no benchmarks in bench/"
	fi
	for script in "$${scripts[@]}"; do
		echo "==> $$script"
		$(PY) "$$script"
	done

clean: ## Remove .venv (the embedded servers' data in .local/ stays)
	@rm -rf $(VENV)
	echo "removed $(VENV)"
