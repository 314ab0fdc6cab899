VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check extractor tests
