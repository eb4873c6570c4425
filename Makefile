# fedsim: `make run` = set up + quickstart federation; `make test` = set up + lint + tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedsim-installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export FLWR_HOME ?= $(CURDIR)/.flwr_home

.PHONY: run test test-fast lint docs bench bench-uplink bench-parataa clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev,docs,tracking]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fedsim run configs/quickstart.toml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py --repeat 3

bench-uplink: $(STAMP)
	$(BIN)/python benchmarks/uplink.py

bench-parataa: $(STAMP)
	$(BIN)/python benchmarks/parataa.py

docs: $(STAMP)
	$(BIN)/python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .flwr_home .pytest_cache .ruff_cache
