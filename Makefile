# Entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite CI runs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.raydq-installed
# Local single-machine runs: Ray 2.60's token auth is turned off for the local cluster the scripts start.
export RAY_AUTH_MODE ?= disabled
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) jobs/demo.py

test: $(STAMP)
	$(VENV)/bin/ruff check raydq jobs tests bench
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

lint: $(STAMP)
	$(VENV)/bin/ruff check raydq jobs tests bench

bench: $(STAMP)
	$(PY) bench/query.py
	$(PY) bench/embed.py
	$(PY) bench/serve.py
