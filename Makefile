# The PKG operator's commands. `make help` lists them.
# Two do all the set-up on a fresh machine: `make demo` and `make test`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TESTBED := PYTHONPATH=testbed $(PY) -m pkg_testbed
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(STAMP) ## create .venv and install the project with its dev tools

.PHONY: testbed-bins
testbed-bins: $(STAMP) ## find or build etcd, kube-apiserver, kubectl, opa, opa-wasm-query, helm, kstatus, promtool (cached in ~/.cache/pkg-operator); install PostgreSQL and Redis
	$(TESTBED) build

.PHONY: test
test: testbed-bins ## run every test (unit, integration, end-to-end) on the real test bed
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5), nothing failed"; rc=0; fi; \
	exit $$rc

.PHONY: chaos
chaos: testbed-bins ## the fault-injection suite, every scenario (< 45 min): a summary table, and RELIABILITY.md regenerated from its records
	@mkdir -p .chaos; results=.chaos/results-$$(date -u +%Y%m%dT%H%M%SZ).jsonl; rc=0; \
	PKG_CHAOS=1 PKG_CHAOS_RESULTS=$$results PKG_FUZZ_CASES=$${PKG_FUZZ_CASES:-100000} \
		$(PY) -m pytest tests/chaos $(PYTEST_ARGS) || rc=$$?; \
	$(PY) tools/reliability_report.py "$$results" || [ $$rc -ne 0 ] || rc=1; \
	exit $$rc

.PHONY: test-unit
test-unit: $(STAMP) ## run the pure unit tests only (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: image
image: $(STAMP) ## build the OCI image with no container daemon: dist/pkg-operator-VERSION.oci.tar and its SBOM (as root)
	@command -v mmdebstrap >/dev/null && command -v umoci >/dev/null || { \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap umoci; }
	PY=$(abspath $(PY)) bash tools/build-image.sh

.PHONY: lint
lint: $(STAMP) ## ruff, mypy --strict, import-linter's layer contracts, squawk on the migrations
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory lint-sql

.PHONY: format
format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: manifests
manifests: $(STAMP) ## regenerate helm/pkg-operator/crds and manifests/ from crds/ and the chart
	$(PY) tools/gen_manifests.py

.PHONY: docs
docs: $(STAMP) ## regenerate docs/crd-reference.md from crds/ (a unit test fails when it is stale)
	$(PY) tools/gen_crd_docs.py

.PHONY: stack
stack: testbed-bins ## start PostgreSQL, Redis, etcd and kube-apiserver and print how to reach them (Ctrl-C stops)
	$(TESTBED) up

.PHONY: demo
demo: testbed-bins ## the whole path on a fresh local stack: operator, sidecars, shadow step, canary, audit (~40 s)
	$(TESTBED) demo

.PHONY: bench-sidecar
bench-sidecar: $(STAMP) ## the sidecar's HTTP API under load on loopback (server on CPU 0, client on CPU 1; ~1 min)
	$(PY) benchmarks/bench_sidecar.py $(BENCH_ARGS)

.PHONY: policies
policies: $(STAMP) ## rebuild policies/*.wasm from their .rego with the real `opa build -t wasm` (the test bed's opa)
	$(PY) policies/build.py

.PHONY: conformance
conformance: testbed-bins ## OPA's own topdown test cases (4,427) in the WASM engine: pass/fail/skip counts by family (builds cached)
	$(PY) tools/opa_conformance.py $(CONFORMANCE_ARGS)

.PHONY: bench-builtins
bench-builtins: testbed-bins ## µs per host builtin call in the WASM engine: direct scalars vs the module's dump/parse, and OPA Go (~2 min)
	$(PY) benchmarks/bench_host_builtins.py $(BENCH_ARGS)

.PHONY: bench-wasm
bench-wasm: $(STAMP) ## the WASM engine beside its public-API baseline and OPA's own evaluator (~1 min)
	$(PY) -m benchmarks.bench_wasm $(BENCH_ARGS)

.PHONY: bench-native
bench-native: $(STAMP) ## the native engine (compiled) beside its reference interpreter, 100 and 1,000 rules (~1 min)
	$(PY) -m benchmarks.bench_native $(BENCH_ARGS)

.PHONY: bench-fleet
bench-fleet: testbed-bins ## fleet scale: every benchmarks/fleet/bench_*.py, then their tables in BENCHMARKS.md (< 20 min)
	$(PY) -m benchmarks.fleet.run $(BENCH_ARGS)

.PHONY: bench
bench: bench-native bench-wasm bench-sidecar bench-fleet ## the whole benchmark suite (method and figures in BENCHMARKS.md)

.PHONY: clean
clean: ## remove the virtualenv and caches in the work tree (not the binary cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info

.PHONY: lint-sql
lint-sql: $(STAMP) ## squawk on the schema migrations (per-file exceptions are justified in the files)
	$(VENV)/bin/squawk --assume-in-transaction --pg-version 15 migrations/[0-9][0-9][0-9][0-9]_*.sql
