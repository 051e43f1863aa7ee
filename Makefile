# Everything a fresh machine needs: `make demo` and `make test` create .venv and install first,
# from the pinned versions in requirements.lock (`make lock` regenerates it; see the README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
EXTRAS := dev,deploy
export LEAD_ASSETS_HOME ?= $(CURDIR)/.lead_assets
export GX_ANALYTICS_ENABLED := False
export MLFLOW_ENABLE_ASYNC_LOGGING := false
PORT ?= 3000
# dg runs the project from its own .venv; saying so keeps it from warning about another one.
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg

.PHONY: install lock demo test dev serve mlflow-ui bench bench-quick clean

$(VENV)/.installed: pyproject.toml setup.py $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

# Resolve pyproject.toml's ranges afresh in a throwaway venv and pin the result.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	{ echo "# Pinned by \`make lock\` from pyproject.toml's ranges with extras [$(EXTRAS)]; install with"; \
	  echo "# pip install -c $(LOCK) -e '.[$(EXTRAS)]'. Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())')."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv

demo: install
	$(BIN)/lead-assets demo

# Three workers on two cores: most served and deployment tests wait on servers, not the CPU.
# A module's tests stay on one worker, the deployment tests on one, and the modules marked slow
# start first, slowest first (lead_assets_tests/conftest.py; xdist's own reordering is off).
# The tests' files (data homes, Dagster and MLflow SQLite stores) go to a scratch folder in RAM
# when /dev/shm is writable: SQLite syncs every event to disk (the in-process mixed-batch test took
# 50 s on this machine's disk, 36 s in RAM). The folder is removed when pytest ends, whatever happened.
TEST_WORKERS ?= 3
TEST_TMP ?= $(shell test -d /dev/shm -a -w /dev/shm && echo /dev/shm || echo $${TMPDIR:-/tmp})
test: install
	$(DG) check defs
	scratch=$$(mktemp -d $(TEST_TMP)/lead_assets_tests.XXXXXX) && trap 'rm -rf "$$scratch"' EXIT && \
	TMPDIR=$$scratch $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder \
	--durations=25 --basetemp=$$scratch/pytest

# A local inbox tick watches the folder for up to 4 s, so a dropped file is seen within ~0.25 s, and
# a file no process writes any more lands without waiting the 2 s settle time (core/inbox/writers.py).
# Ctrl-C or a SIGTERM to make (make passes it to its child: `exec`, so no shell dies in between)
# stops every process dev started within ~10 s: lead_assets.devserver waits that long for dg dev
# to stop by itself, then kills what is left, run workers in sessions of their own included.
dev: install
	$(BIN)/lead-assets init
	exec env DAGSTER_HOME=$${DAGSTER_HOME:-$(LEAD_ASSETS_HOME)/dagster} \
	LEAD_ASSETS_TICK_WATCH_SECONDS=$${LEAD_ASSETS_TICK_WATCH_SECONDS:-4} \
	LEAD_ASSETS_SETTLE_CLOSED_FILES=$${LEAD_ASSETS_SETTLE_CLOSED_FILES:-1} \
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/python -m lead_assets.devserver \
	$(BIN)/dg dev --host 127.0.0.1 --port $(PORT)

# The champion over HTTP on 127.0.0.1 (MLflow's protocol), following promotions and rollbacks.
SERVE_PORT ?= 5050
serve: install
	$(BIN)/lead-assets serve --port $(SERVE_PORT)

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(LEAD_ASSETS_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

bench: install
	$(BIN)/python -m benchmarks.run

bench-quick: install
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(LEAD_ASSETS_HOME) .pytest_cache
