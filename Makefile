# EndoSeek: `make run` starts the service, `make test` runs everything CI runs.
# The install step is idempotent: it only runs again when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.endoseek-installed
PIP_LOG := $(VENV)/pip-install.log
# Test deadlines are base seconds x this factor (tests/timing.py): raise it on a slow or busy box,
# e.g. `make test ENDOSEEK_TEST_TIME_FACTOR=3`.
ENDOSEEK_TEST_TIME_FACTOR ?= 1
export ENDOSEEK_TEST_TIME_FACTOR

.PHONY: run test venv lint format bench services clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing EndoSeek and its dependencies into $(VENV) (first time: a few minutes)..."
	@$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]' > $(PIP_LOG) 2>&1 \
		|| { grep -v 'is ignored: it is neither' $(PIP_LOG) | tail -n 40; exit 1; }
	@touch $@

services:
	@scripts/ensure-services.sh
	@scripts/ensure-test-tools.sh
	@scripts/ensure-axe.sh

run: venv
	@$(BIN)/endoseek migrate
	@$(BIN)/endoseek serve --announce

test: venv services
	@$(BIN)/ruff check .
	@$(BIN)/python -m pytest -n 2 --dist loadfile -q --durations=15

lint: venv
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: venv
	@$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# Benchmarks write their figures to docs/benchmarks.md's sections; each takes minutes on 2 cores.
bench: venv
	@$(BIN)/python bench/embed.py --write-docs docs/benchmarks.md
	@$(BIN)/python bench/search.py --sizes 100000
	@$(BIN)/python bench/ingest.py --vectors 100000
	@$(BIN)/python bench/reindex.py

clean:
	rm -rf var .pytest_cache .ruff_cache
