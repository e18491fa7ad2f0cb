# tekton-notifications: every target sets up what it needs (a fresh machine has only Python).
PYTHON ?= python3
VENV ?= .venv
FF_VENV ?= .venv-ff
BIN := $(VENV)/bin
FUNCTIONS := policy-filter template-renderer task-launcher status-recorder tekton-relay delivery-tracker scheduler
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
WHEEL := tekton_notifications-$(VERSION)-py3-none-any.whl
PYTEST_ARGS ?=

.PHONY: help install install-ff build test lint fix demo demo-tools bench fuzz clean

help:
	@echo "make demo    run the local end-to-end demo (functions, router, API emulator)"
	@echo "make test    run every test (sets up .venv and .venv-ff first)"
	@echo "make lint    ruff + mypy + import contracts (.importlinter) + generated docs, read-only;  make fix  applies ruff's fixes, regenerates the docs' variable tables"
	@echo "make build   put the core wheel into each functions/*/vendor/ for kn func deploy"
	@echo "make bench   benchmarks: issue 16's table and bench/bench.png (not part of make test)"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# functions-framework pins cloudevents<=1.12 and func-python needs >=2: its own venv.
$(FF_VENV)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(FF_VENV)
	$(FF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FF_VENV)/bin/python -m pip install --quiet -e '.[functions-framework]' 'pytest>=8.3' 'pytest-timeout>=2.3' 'httpx>=0.27'
	touch $@

install-ff: $(FF_VENV)/bin/.installed

# The functions vendor the core without the CLI and dev tools (packaging/function-core),
# with cel-python's parser tables saved beside celparse.py (saves ~0.5 s of each start).
build: install
	$(BIN)/python -c 'from tekton_notifications import celparse; celparse.install()'
	rm -rf dist && $(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist packaging/function-core
	for fn in $(FUNCTIONS); do \
		mkdir -p functions/$$fn/vendor && rm -f functions/$$fn/vendor/*.whl && \
		cp dist/$(WHEEL) functions/$$fn/vendor/; \
	done

test: install build install-ff
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@# Each function is its own project named `function`: its own tests run from its folder.
	for fn in $(FUNCTIONS); do \
		(cd functions/$$fn && ../../$(BIN)/python -m pytest tests -q -p no:cacheprovider) || exit 1; \
	done

lint: install
	$(BIN)/ruff check src tests functions bench
	$(BIN)/ruff format --check src tests functions bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m tekton_notifications.cli.variablesdoc --check

fix: install
	$(BIN)/ruff check --fix src tests functions bench
	$(BIN)/ruff format src tests functions bench
	$(BIN)/python -m tekton_notifications.cli.variablesdoc

demo: install demo-tools
	$(BIN)/python -m tekton_notifications.devtools.demo $(DEMO_ARGS)

# What the catalog tasks' scripts need when make demo runs them (devtools/checktools.py):
# installed with apt-get where it exists and we are root; otherwise the demo names what is missing.
demo-tools:
	@missing=""; for tool in sh:dash curl:curl openssl:openssl unshare:util-linux; do \
		command -v $${tool%%:*} >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing the demo's tools:$$missing"; \
			{ apt-get update -qq && apt-get install -y -qq $$missing; } \
				|| echo "could not install$$missing (make demo will say what each is for)"; \
		else echo "not installed (make demo will say what each is for):$$missing"; fi; \
	fi

# Benchmarks print ratios measured side by side in one run; never part of make test.
# By default issue 16's table and bench/bench.png (~5 min); BENCH_ARGS=--quick, or --only all.
bench: install build install-ff
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

# Bounded fuzzing of the event parser, matcher and renderer (hypothesis/atheris).
fuzz: install
	$(BIN)/python -m pytest tests/fuzz -p no:cacheprovider --fuzz $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) $(FF_VENV) dist functions/*/vendor .pytest_cache .mypy_cache .ruff_cache
