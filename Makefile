# Two commands matter: `make run` and `make test`. Both install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROJECTS := shared/pyproject.toml services/encoder/pyproject.toml \
            services/search-api/pyproject.toml services/indexer-worker/pyproject.toml \
            tools/pyproject.toml

.PHONY: install run preflight test lint format typecheck clean bench-quality bench-throughput bench-gpu \
        bench-incremental bench-duplicates bench-thumbnails \
        chaos load fuzz
.DEFAULT_GOAL := help

help:
	@echo "make run   [IMAGES_DIR=/path]  install on first use, start the whole stack (http://localhost:8000)"
	@echo "make test                      install on first use (system packages too, as root), lint, type-check, run every test"
	@echo "make bench-quality | bench-throughput | bench-gpu   benchmarks (print a table, write JSON)"
	@echo "make bench-incremental         re-queue of an unchanged folder, sync after changes (table + JSON)"
	@echo "make bench-duplicates          precision/recall of each duplicates tier, and its cost (table + JSON)"
	@echo "make chaos | load              fault campaign, load run (HARDENING.md; table + JSON)"
	@echo "make fuzz  [FUZZ_EXAMPLES=500] schemathesis on every API operation, FUZZ_EXAMPLES cases each"
	@echo "make lint | typecheck | clean"

install: $(STAMP)

$(STAMP): $(PROJECTS) requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e shared -e services/encoder -e services/search-api \
	    -e services/indexer-worker -e tools -r requirements-dev.txt
	# Only the PP-OCR detection model file is used from this wheel; its own dependency
	# on the GUI build of OpenCV would clash with opencv-python-headless.
	$(BIN)/pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	touch $@

run: $(STAMP)
	$(BIN)/python -m imgsearch_devstack $(if $(IMAGES_DIR),--images-dir "$(IMAGES_DIR)")

# What the tests need from the system that pip cannot install: installed with apt-get when
# we are root (CI, a fresh container), else the exact command is printed (and a required
# one stops here). PREFLIGHT_ARGS=--no-install only checks.
preflight: $(STAMP)
	$(BIN)/python -m imgsearch_devstack.preflight $(PREFLIGHT_ARGS)

# Every test, after the system check, the linter, the formatter check and the type checker
# (CI runs exactly this; any finding fails it).
test: preflight lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks are programs, not tests: each prints a table and writes JSON under $(BENCH_OUT).
BENCH_OUT ?= $(or $(DATA_DIR),./data)/bench

bench-quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality --out $(BENCH_OUT) $(BENCH_ARGS)

bench-throughput: $(STAMP)
	$(BIN)/python -m benchmarks.throughput --out $(BENCH_OUT) $(BENCH_ARGS)

# Queuing a folder again: first indexing vs unchanged re-queue vs sync after a few changes.
bench-incremental: $(STAMP)
	$(BIN)/python -m benchmarks.incremental --out $(BENCH_OUT) $(BENCH_ARGS)

# GET /api/duplicates on generated copies of real photos: precision and recall per tier,
# time and memory per 1 000 images (benchmarks/README.md, "Duplicates").
bench-duplicates: $(STAMP)
	$(BIN)/python -m benchmarks.duplicates --out $(BENCH_OUT) $(BENCH_ARGS)

# GET /api/image/{id}/thumbnail of 4096 x 4096 pictures: first (uncached), cached, 304; bytes.
bench-thumbnails: $(STAMP)
	$(BIN)/python -m benchmarks.thumbnails --out $(BENCH_OUT) $(BENCH_ARGS)

# The fault campaign (SIGKILLs while indexing, then a reconciliation) and the load run
# (concurrent searchers with and without indexing): see HARDENING.md.
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos --out $(BENCH_OUT) $(BENCH_ARGS)

load: $(STAMP)
	$(BIN)/python -m benchmarks.load --out $(BENCH_OUT) $(BENCH_ARGS)

# Schemathesis against the API's own OpenAPI document, longer than the run in `make test`
# (20 cases per operation there): FUZZ_EXAMPLES per operation, derandomised (reproducible).
FUZZ_EXAMPLES ?= 500

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:cacheprovider -m fuzz \
	    tests/api/test_fuzz.py -rA --hypothesis-show-statistics $(PYTEST_ARGS)

# On a machine with an NVIDIA GPU (see benchmarks/README.md for the device run).
bench-gpu:
	bash benchmarks/gpu.sh

#: Python code ruff checks and formats; packages mypy checks strictly.
CODE := shared services tools tests benchmarks
TYPED := shared/src services/encoder/src services/search-api/src \
         services/indexer-worker/src tools/src benchmarks

lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

format: $(STAMP)
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(TYPED)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
