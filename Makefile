# `make demo` and `make test` each set up .venv on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONVERT_STAMP := $(VENV)/.installed-convert
DEMO_WORKDIR ?= workdirs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test format install install-convert clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# torch's CPU build first: left to the resolver, `torch` brings several GB of CUDA packages.
install-convert: $(CONVERT_STAMP)

$(CONVERT_STAMP): $(STAMP)
	$(PY) -m pip install -q torch==2.13.0
	# torchvision has no CPU build on PyPI; its video models are plain Python and need none of its
	# compiled ops, so the parity tests use the wheel without its CUDA dependencies.
	$(PY) -m pip install -q --no-deps torchvision==0.28.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test,convert,notebooks,captioning]'
	touch $(CONVERT_STAMP)

demo: $(STAMP)
	$(PY) -m jvssl.main --config=configs/videomae_synthetic.py --workdir=$(DEMO_WORKDIR)

# Lint and format check first: seconds, and they fail before the long test run. The tests run in 2 processes
# (CI's 2 cores), a test file to each at a time so that a file's module fixtures are built once, the longest files
# first (tests/conftest.py: SLOW_FILES).
test: $(CONVERT_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests

# Rewrites the tree to what `make test` checks: formatting, then the fixable lint findings (import order).
format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean-venv:
	rm -rf $(VENV)
