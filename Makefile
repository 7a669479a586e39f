# One task runner for people, README.md and CI (.ci/run). Every target runs in the current Python environment
# (after `pip install -e ".[dev]"`); `make lowest-torch` builds its own.
PYTHON ?= python

.PHONY: check lint format types test test-quick doctest lowest-torch test-cuda

check: lint types test  # README's test command and CI's: lint, types and the whole suite

lint:  # ruff's lint rules, the formatter's layout, and the pre-commit hooks (end of file, large files)
	ruff check .
	ruff format --check .
	pre-commit run --all-files

format:
	ruff format .
	ruff check --fix .

types:
	mypy

test:  # every test (CPU); the 20 slowest are listed
	$(PYTHON) -m pytest --durations=20

test-quick:  # without the tests marked slow (ultralytics, DDP, export, compiled training)
	$(PYTHON) -m pytest -m 'not slow' --durations=20

doctest:  # the Examples sections of the docstrings
	$(PYTHON) -m pytest src/freqdyn

# the quick subset on the lowest supported torch (2.13.0) in a fresh venv, without torchvision (PyPI's torchvision
# 0.28 is a CUDA build that cannot load its ops beside the CPU torch wheel): those tests skip there
lowest-torch:
	set -e; lowest="$$(mktemp -d)/venv"; \
	$(PYTHON) -m venv "$$lowest"; \
	PIP_CONSTRAINT="$(CURDIR)/.ci/constraints-lowest.txt" "$$lowest/bin/python" -m pip install -e ".[analysis,export,mmengine]" pytest; \
	"$$lowest/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"; \
	"$$lowest/bin/python" -m pytest -m 'not slow' --durations=20

test-cuda:  # the quick subset, its device-parametrised equivalence tests on a GPU (TF32 off)
	$(PYTHON) -m pytest --device cuda -m 'not slow'
