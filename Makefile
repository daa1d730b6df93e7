# Two commands do everything on a fresh clone:
#   make demo   create .venv, install unirank (the DuckDB path only), run the main job on the
#               bundled demo data: dbt build -> train + evaluate per canvas -> reports (prints
#               where the index is) -> score into the recommendations cache -> example
#               recommendations per canvas
#   make test   create .venv, install unirank with the test tools and the Spark extra, run the
#               whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per install, so `make demo` never pulls PySpark and `make test` adds what it needs.
CORE := $(VENV)/.installed-core
DEV := $(VENV)/.installed-dev

.PHONY: demo test test-fast lint spark bench quality clean

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	# Bytecode for unirank's own modules now (an editable install has none, and a shell with
	# PYTHONDONTWRITEBYTECODE never writes it): a third of a one-shot command's start otherwise.
	$(BIN)/python -m compileall -q ranker cli
	touch $(CORE)

$(DEV): $(CORE)
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(DEV)

demo: $(CORE)
	$(BIN)/unirank-cli build
	$(BIN)/unirank-cli train
	$(BIN)/unirank-cli score --samples 1

test: $(DEV)
	$(BIN)/pytest

test-fast: $(DEV)
	$(BIN)/pytest -m "not dbt and not slow and not spark"

lint: $(DEV)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# The opt-in for running on Spark outside the tests (docs/spark.md): PySpark and dbt-spark.
spark: $(CORE)
	$(BIN)/pip install --quiet -e '.[spark]'

bench: $(DEV)
	$(BIN)/pip install --quiet -e '.[dev,spark,bench]'
	$(BIN)/python benchmarks/dbt_build.py

# Unified vs per-canvas models on the demo and the example projects (../shared/data), then the
# cross-learning studies (learning curves, canvas weights, stratification, imputation,
# representations): ~2.5 hours.
quality: $(DEV)
	$(BIN)/pip install --quiet -e '.[dev,spark,bench]'
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/learning_curve.py
	$(BIN)/python benchmarks/weighting.py
	$(BIN)/python benchmarks/stratification.py
	$(BIN)/python benchmarks/imputation.py
	$(BIN)/python benchmarks/representations.py

clean:
	rm -rf target logs warehouse data/generated* artifacts reports .pytest_cache
	rm -rf examples/*/target examples/*/logs examples/*/warehouse examples/*/artifacts \
		examples/*/reports examples/*/dbt_packages examples/*/package-lock.yml
