# The README's two commands are `make run` and `make test`; CI runs `make test` (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# SAM CLI, cfn-lint and statelint live in a virtualenv of their own: SAM CLI pins an old boto3.
SAM_VENV := .venv-sam
SAM_BIN := $(SAM_VENV)/bin
HOME_DIR ?= $(CURDIR)/.stratoflow
PORT ?= 8321

.PHONY: install native bytecode run test test-scale lint typecheck pytest check-aws sam-venv bench clean ui chromium mariadb

$(BIN)/stratoflow: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Stratoflow needs Python 3.11+; set PYTHON=python3.11" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/stratoflow ui bytecode native

## make native: build native/confine.c into the virtualenv, where the local executor loads it: a
## confined task then enters its Landlock domain in the child, between vfork and exec, instead of
## from a thread the scheduler makes per start (~0.2 ms of its CPU a task; docs/benchmarks.md,
## "Fourteenth round"). Without a C compiler tasks start as before (CI must build it).
CC ?= cc
NATIVE := $(VENV)/lib/stratoflow-native/confine.so
native: $(NATIVE)
$(NATIVE): native/confine.c $(BIN)/stratoflow
	@mkdir -p $(dir $@)
	@if command -v $(CC) >/dev/null && $(CC) -O2 -fPIC -shared -Wall -Wextra $(if $(CI),-Werror) \
	    -Wl,-z,now -o $@.tmp native/confine.c; then chmod 0755 $@.tmp && mv $@.tmp $@; \
	elif [ "$$CI" = true ]; then echo "CI must build native/confine.c with $(CC)" >&2; exit 1; \
	else echo "warning: native/confine.c not built ($(CC)): confined tasks start from a thread each (slower)" >&2; fi

## make bytecode: compile the package and the venv's site-packages to .pyc now: pip does not compile
## an editable install's package, and where PYTHONDONTWRITEBYTECODE is set every process compiled
## what it imported (`stratoflow run` of one task: ~0.1 s of its ~0.4 s of CPU; docs/benchmarks.md,
## "the CLI's start-up").
## A file compileall cannot compile (a dependency's test data) is left to be compiled when imported.
bytecode: $(BIN)/stratoflow
	$(BIN)/python -m compileall -q -j 0 layers/core/stratoflow $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') || true

## make ui: build the web UI (ui/) into the package, where the API serves it at /
UI_STATIC := layers/core/stratoflow/api/static/index.html
UI_SOURCES := ui/package.json ui/package-lock.json ui/index.html ui/vite.config.ts ui/tsconfig.json $(shell find ui/src -type f 2>/dev/null)
ui: $(UI_STATIC)
$(UI_STATIC): $(UI_SOURCES)
	@if ! command -v npm >/dev/null; then \
	  if [ "$$CI" = true ]; then echo "npm is missing: CI must build the web UI" >&2; exit 1; fi; \
	  echo "warning: npm is missing, so the web UI is not built (the API works without it)" >&2; \
	else cd ui && npm ci --no-audit --no-fund && npm run build; fi

## make chromium: Debian's Chromium for the browser tests (tests/browser), when it is missing
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

## make mariadb: the server binaries of Debian's mariadb-server (mariadbd, mariadb-install-db), when
## they are missing: the sql tests (tests/sql) start a MariaDB server of their own from them
mariadb:
	@PATH="$$PATH:/usr/sbin" command -v mariadbd >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q mariadb-server-core; }

## make run: install, then start a local Stratoflow (API on 127.0.0.1:$(PORT)) with the examples applied
## (with the pool and the alert groups they name: apply refuses unknown ones)
run: install
	$(BIN)/stratoflow server --home $(HOME_DIR) --port $(PORT) --pool warehouse=2 \
		--alert-group data-oncall --alert-group data-team --apply examples/

## make test: install, then lint, type-check, run the whole test suite with coverage, and check
## the AWS template and state machines (sam validate --lint, cfn-lint, statelint, sam build)
test: install chromium mariadb lint typecheck pytest check-aws

lint:
	$(BIN)/ruff check layers functions tests benchmarks examples
	$(BIN)/ruff format --check layers functions tests benchmarks examples
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

# two workers (pytest-xdist), a test file each at a time: the moto, Hypothesis and SQL tests are
# one busy thread each, so one pytest process left a core of CI's two idle for most of the run
PYTEST_WORKERS ?= 2
pytest:
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --cov --cov-report=term-missing:skip-covered --durations=25

## make test-scale: the tests of a big run (marker `scale`) at 10,000 tasks, not 1,000 (~10 min)
test-scale: install
	STRATOFLOW_TEST_TASKS=10000 $(BIN)/pytest -m scale --durations=10

$(SAM_BIN)/sam: .ci/requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_BIN)/pip install --quiet --upgrade pip
	$(SAM_BIN)/pip install --quiet -r .ci/requirements-sam.txt
	touch $@

sam-venv: $(SAM_BIN)/sam

## make check-aws: the template and state machine checks alone (no AWS account needed)
check-aws: sam-venv
	.ci/check_aws.sh $(SAM_BIN)

bench: install
	$(BIN)/python benchmarks/bench_local.py

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage ui/node_modules layers/core/stratoflow/api/static artifacts
