# ChatSphere: `make run` starts a node, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-full demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# One node on :8080 (WebSocket) and :8081 (HTTP) with SQLite and the in-process bus.
# Settings from the environment win; AUTH_MODE defaults to dev only here.
run: $(STAMP)
	ENVIRONMENT=$${ENVIRONMENT:-development} AUTH_MODE=$${AUTH_MODE:-dev} $(BIN)/chatsphere serve

test: $(BENCH_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

typecheck: $(STAMP)
	$(BIN)/mypy src

demo: $(STAMP)
	$(BIN)/chatsphere demo

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --full

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache chatsphere.db*
