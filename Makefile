# llmgate: every target installs what it needs first (a venv with llmgate and its dev extras).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install browser run migrate test lint typecheck format bench bench-soak bench-workers bench-cluster bench-instructions

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian's chromium for the Dashboard test (tests/e2e/test_dashboard.py), when it is missing.
browser:
	tests/e2e/setup_chromium.sh

# Flags for llmgate serve: make run ARGS="--proxy-listen 127.0.0.1:8080 --log-format json"
run: install
	$(BIN)/llmgate serve $(ARGS)

migrate: install
	$(BIN)/llmgate migrate

# The suite migrates its own stores (SQLite files and a fresh PostgreSQL database); the first
# line checks that the migrations apply to an empty SQLite file from the command line too.
test: install browser
	rm -f build/migrate-check.db && mkdir -p build
	$(BIN)/llmgate migrate --database-url sqlite+aiosqlite:///./build/migrate-check.db
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy src
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy src

# mypy --strict over src/ ([tool.mypy] in pyproject.toml); `lint` and `test` run it too.
typecheck: install
	$(BIN)/mypy src

format: install
	$(BIN)/ruff check --fix src tests migrations bench
	$(BIN)/ruff format src tests migrations bench

# Benchmarks (bench/README.md): bench/setup.sh apt-installs wrk and nginx when they are missing;
# results are printed and written into docs/benchmarks.md.  Pass options with BENCH_ARGS="...".
bench: install
	bench/setup.sh
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Instructions per request under valgrind's callgrind: comparable across commits on a busy box.
bench-instructions: install
	bench/setup.sh
	$(BIN)/python bench/bench_instructions.py $(BENCH_ARGS)

bench-soak: install
	bench/setup.sh
	$(BIN)/python bench/run.py --soak 600 $(BENCH_ARGS)

bench-workers: install
	bench/setup.sh
	$(BIN)/python bench/run.py --workers $(BENCH_ARGS)

# 10,000 routes and 10,000 consumers on PostgreSQL (the test suite's server): consumer PUTs,
# write-to-served delays, data-plane latency during reloads (bench/bench_cluster.py).
bench-cluster: install
	$(BIN)/python bench/bench_cluster.py $(BENCH_ARGS)
