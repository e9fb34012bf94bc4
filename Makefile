# llmgate: every target installs what it needs first (a venv with llmgate and its dev extras).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run migrate test lint format bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: install
	$(BIN)/llmgate serve

migrate: install
	$(BIN)/llmgate migrate

# The suite migrates its own stores (SQLite files and a fresh PostgreSQL database); the first
# line checks that the migrations apply to an empty SQLite file from the command line too.
test: install
	rm -f build/migrate-check.db && mkdir -p build
	$(BIN)/llmgate migrate --database-url sqlite+aiosqlite:///./build/migrate-check.db
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench

format: install
	$(BIN)/ruff check --fix src tests migrations bench
	$(BIN)/ruff format src tests migrations bench
