# Everything a fresh machine needs: `make demo` and `make test` create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export LEAD_ASSETS_HOME ?= $(CURDIR)/.lead_assets
export GX_ANALYTICS_ENABLED := False
export MLFLOW_ENABLE_ASYNC_LOGGING := false
PORT ?= 3000

.PHONY: install demo test dev mlflow-ui bench bench-quick clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,deploy]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/lead-assets demo

test: install
	$(BIN)/python -m pytest -q

dev: install
	$(BIN)/lead-assets init
	DAGSTER_HOME=$${DAGSTER_HOME:-$(LEAD_ASSETS_HOME)/dagster} $(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(LEAD_ASSETS_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

bench: install
	$(BIN)/python -m benchmarks.run

bench-quick: install
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(LEAD_ASSETS_HOME) .pytest_cache
