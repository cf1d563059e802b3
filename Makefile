# taskleak developer entry points. Everything is installed into per-version
# virtualenvs under .venv/; nothing is installed globally.
#
#   make test                 # CPython 3.11
#   make test PY=3.12         # any X.Y that tools/find_python.sh can find
#   make test PYTEST_ARGS='-x -k chain'
#   make test-asan            # ASan+UBSan build of _core, tests under LD_PRELOAD
#   make test PY=3.12 ONCE_PER_CI=deselect   # what .ci/run does off 3.11/3.15
#   make help

PY ?= 3.11

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV      := .venv/py$(PY)
ASAN_VENV := .venv/asan-py$(PY)

# Build/test tools for the venvs. cmake and ninja come from PyPI too, so a
# fresh machine needs nothing but the interpreter (the system cmake is a pyenv
# shim that only works for the global Python).
DEV_DEPS ?= "scikit-build-core>=0.10" "nanobind>=2.4" "pytest>=8" "uvloop>=0.17" "pytest-asyncio>=1.1" anyio "pytest-xdist>=3" objgraph "import-linter>=2.1" "mypy>=1.10" prometheus_client opentelemetry-sdk grpcio selenium cmake ninja $(LINT_DEPS)
# Formatters are pinned: a new release that formats differently must not fail
# a checkout that was clean.
LINT_DEPS ?= "ruff==0.17.6" "clang-format==23.1.5"

PIP_FLAGS ?= --disable-pip-version-check
# Regular (non-editable) install: the wheel is rebuilt from the current sources
# each time; scikit-build-core keeps its CMake build dir under build/, so the
# rebuild is incremental.
INSTALL_FLAGS := --no-build-isolation --force-reinstall --no-deps
ASAN_CONFIG := -C cmake.define.TASKLEAK_SANITIZE=ON -C "build-dir=build/asan-{wheel_tag}"

TESTS ?= tests
PYTEST_ARGS ?=
ASAN_PYTEST_ARGS ?= tests -q -k "not bench"
# pytest exits 5 when it collects no test; set ALLOW_NO_TESTS=1 to accept that.
ALLOW_NO_TESTS ?= 0
# Tests marked once_per_ci (version-independent external components and long
# detector runs; see tests/conftest.py) run by default. ONCE_PER_CI=deselect
# deselects them: .ci/run passes it on every suite step but 3.11 and 3.15.
ONCE_PER_CI ?= run
ifeq ($(ONCE_PER_CI),deselect)
ONCE_PER_CI_ENV := TASKLEAK_DESELECT_ONCE_PER_CI=1
else ifeq ($(ONCE_PER_CI),run)
ONCE_PER_CI_ENV :=
else
$(error ONCE_PER_CI must be run or deselect, not '$(ONCE_PER_CI)')
endif

GCC ?= gcc
# Reports go to files, not stderr: pytest captures fd 2, and a test process
# that aborts takes its captured output (and the report) with it.
ASAN_LOG_DIR = $(CURDIR)/build/asan-logs
ASAN_ENV = LD_PRELOAD="$$($(GCC) -print-file-name=libasan.so) $$($(GCC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:log_path=$(ASAN_LOG_DIR)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_LOG_DIR)/ubsan \
	PYTHONMALLOC=malloc

# run_pytest(python, args): run pytest from the repo root so that it imports the
# installed taskleak, not src/ (src/ must never get a conftest.py).
define run_pytest
	@cd "$(CURDIR)"; \
	$(1) -c "import importlib.util as u; s = u.find_spec('taskleak'); print('taskleak: testing', s.origin if s else '(not importable!)')"; \
	rc=0; $(2) -m pytest -p no:cacheprovider $(3) || rc=$$?; \
	if [ "$$rc" = 5 ] && [ "$(ALLOW_NO_TESTS)" = 1 ]; then \
		echo "taskleak: pytest collected no tests (exit 5); accepted because ALLOW_NO_TESTS=1"; rc=0; \
	fi; \
	exit $$rc
endef

.PHONY: help test test-asan test-asan-run install install-asan demo bench clean lint lint-imports format dist real-suites typecheck

help:
	@echo "taskleak make targets (PY=$(PY); override with PY=X.Y):"
	@echo "  make test         build+install into $(VENV), run pytest $(TESTS) -q \$$PYTEST_ARGS"
	@echo "  make test-asan    ASan/UBSan build into $(ASAN_VENV), run pytest $(ASAN_PYTEST_ARGS)"
	@echo "  make lint         ruff (lint + format check) and clang-format check, then lint-imports (part of make test)"
	@echo "  make format       apply ruff's fixes and formatter and clang-format in place"
	@echo "  make lint-imports check the package layering (import-linter contract in pyproject.toml)"
	@echo "  make typecheck    mypy --strict on src/taskleak and tests/typing/usage.py (part of make test on 3.11)"
	@echo "  make install      only (re)build and install the package into $(VENV)"
	@echo "  make demo         install, then: taskleak run examples/leaky_service.py"
	@echo "  make bench        install, then run every bench/bench_*.py"
	@echo "  make real-suites  run public projects' test suites plain and with --taskleak (downloads)"
	@echo "  make dist         sdist + manylinux wheels for 3.10-3.15 in dist/, each smoke-tested"
	@echo "  make clean        remove build/ and .venv/"
	@echo "Variables: PY, PYTEST_ARGS, ASAN_PYTEST_ARGS, TESTS, ALLOW_NO_TESTS=1 (accept 'no tests collected'),"
	@echo "  ONCE_PER_CI=deselect (leave out tests marked once_per_ci; .ci/run does on all but 3.11 and 3.15)"

# --- virtualenvs ----------------------------------------------------------
# pyvenv.cfg is a real file written by venv (bin/python is a symlink, whose
# mtime make would read from the interpreter itself).
define make_venv
	@interp="$$(tools/find_python.sh $(1))"; \
	echo "taskleak: creating $(@D) with $$interp"; \
	"$$interp" -m venv --clear "$(@D)"
endef
.venv/py%/pyvenv.cfg:
	$(call make_venv,$*)
.venv/asan-py%/pyvenv.cfg:
	$(call make_venv,$*)
# Never delete venvs or stamps as "intermediate" files of the pattern chain.
.SECONDARY:

# Dependencies are reinstalled only when pyproject.toml (or this Makefile,
# which lists them) changes.
%/.deps-stamp: %/pyvenv.cfg pyproject.toml Makefile
	$*/bin/python -m pip install $(PIP_FLAGS) -q -U pip
	$*/bin/python -m pip install $(PIP_FLAGS) -q $(DEV_DEPS)
	@touch $@

# --- build + install (always re-run; incremental) -------------------------
install: $(VENV)/.deps-stamp
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) $(INSTALL_FLAGS) .

install-asan: $(ASAN_VENV)/.deps-stamp
	$(ASAN_VENV)/bin/python -m pip install $(PIP_FLAGS) $(INSTALL_FLAGS) $(ASAN_CONFIG) .

# --- targets ---------------------------------------------------------------
# The layering of docs/internals.md (contract in pyproject.toml), checked on the sources.
lint-imports: $(VENV)/.deps-stamp
	PYTHONPATH=src $(VENV)/bin/lint-imports --no-cache

# ruff (pyproject.toml [tool.ruff]) and clang-format (.clang-format), checked
# without changing a file; `make format` applies them. The pre-commit hook
# (.pre-commit-config.yaml) runs this same target.
PY_SOURCES := src tests bench tools examples
CXX_SOURCES = $$(find src/core -name '*.cpp' -o -name '*.hpp')
lint: $(VENV)/.deps-stamp lint-imports
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/clang-format --dry-run --Werror $(CXX_SOURCES)

format: $(VENV)/.deps-stamp
	$(VENV)/bin/ruff check --fix --exit-zero --quiet $(PY_SOURCES)
	$(VENV)/bin/ruff format $(PY_SOURCES)
	$(VENV)/bin/clang-format -i $(CXX_SOURCES)

# mypy --strict on the package and on a typed use of its public API
# (tests/typing/usage.py, checked against the installed build). Types do not
# depend on the interpreter running the suite, so `make test` checks them
# with the default one only.
typecheck: install
	cd src && ../$(VENV)/bin/mypy --config-file ../pyproject.toml -p taskleak
	$(VENV)/bin/mypy --config-file pyproject.toml tests/typing/usage.py

test: install lint $(if $(filter 3.11,$(PY)),typecheck)
	@if [ "$(ONCE_PER_CI)" = deselect ]; then echo "taskleak: ONCE_PER_CI=deselect: tests marked once_per_ci are deselected"; fi
	$(call run_pytest,$(VENV)/bin/python,$(ONCE_PER_CI_ENV) $(VENV)/bin/python,$(TESTS) -q $(PYTEST_ARGS))

test-asan: install-asan
	@echo "taskleak: ASan runtime: $$($(GCC) -print-file-name=libasan.so)"
	@if [ "$(ONCE_PER_CI)" = deselect ]; then echo "taskleak: ONCE_PER_CI=deselect: tests marked once_per_ci are deselected"; fi
	@rm -rf "$(ASAN_LOG_DIR)"; mkdir -p "$(ASAN_LOG_DIR)"
	@rc=0; $(MAKE) --no-print-directory test-asan-run || rc=$$?; \
	for f in "$(ASAN_LOG_DIR)"/*; do \
		[ -f "$$f" ] || continue; echo "taskleak: sanitizer report $$f:"; head -n 200 "$$f"; \
	done; exit $$rc

test-asan-run:
	$(call run_pytest,$(ASAN_VENV)/bin/python,$(ONCE_PER_CI_ENV) $(ASAN_ENV) $(ASAN_VENV)/bin/python,$(ASAN_PYTEST_ARGS) $(PYTEST_ARGS))

demo: install
	$(VENV)/bin/taskleak run examples/leaky_service.py

# bench/bench_*.py print ratios against plain asyncio and the alternatives;
# they never fail on speed. bench/real_suites.py (public projects' suites,
# downloaded) is run on its own: make real-suites. BENCH_QUICK=1 (CI): fewer
# rounds and smaller sizes (tools/bench_quick_args.sh).
BENCH_QUICK ?= 0
bench: install
	@shopt -s nullglob; files=(bench/bench_*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "taskleak: no bench/*.py yet"; exit 0; fi; \
	rc=0; for f in "$${files[@]}"; do \
		args=""; if [ "$(BENCH_QUICK)" = 1 ]; then args="$$(tools/bench_quick_args.sh "$$f")"; fi; \
		echo "=== $$f $$args"; t=$$SECONDS; $(VENV)/bin/python "$$f" $$args || { echo "taskleak: $$f failed"; rc=1; }; \
		echo "=== $$f took $$((SECONDS - t))s"; \
	done; exit $$rc

real-suites: install
	$(VENV)/bin/python bench/real_suites.py

# sdist + manylinux wheels for 3.10-3.15, each smoke-tested without a compiler.
dist:
	tools/build_dist.sh

clean:
	rm -rf build/ .venv/ dist/
