# Two commands do everything on a fresh clone:
#   make demo   create .venv, install unirank, run the main job on DuckDB with the bundled demo data:
#               dbt build -> train + evaluate per canvas -> reports (prints where the index is)
#               -> score into the recommendations cache -> example recommendations per canvas
#   make test   create .venv, install unirank, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench quality clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/unirank-cli build
	$(BIN)/unirank-cli train
	$(BIN)/unirank-cli score --samples 1

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not dbt and not slow and not spark"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,spark,bench]'
	$(BIN)/python benchmarks/dbt_build.py

# Unified vs per-canvas models on demo, MovieLens and Diginetica (../shared/data): ~20 min.
quality: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,spark,bench]'
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf target logs warehouse data/generated* artifacts reports .pytest_cache
