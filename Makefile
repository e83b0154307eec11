# objdet: `make demo` runs the main job, `make test` runs the test suite.
# Each creates the virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test protos lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m objdet demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15

protos: $(STAMP)
	$(BIN)/python -m objdet.protos.generate

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/objdet

clean:
	rm -rf $(VENV) build *.egg-info
