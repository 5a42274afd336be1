# Entry points. `make demo` runs the main job end to end; `make test` runs every test (CI calls it).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install test unit demo e2e bench lint-tekton clean

install:
	scripts/install-deps.sh

test: install
	$(PY) -m pytest -p no:cacheprovider tests

unit: install
	$(PY) -m pytest -p no:cacheprovider tests/unit

demo: install
	scripts/demo.sh

e2e: install
	$(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e

bench: install
	scripts/bench.sh

lint-tekton: install
	scripts/lint-tekton.sh

clean:
	rm -rf $(VENV) .demo
