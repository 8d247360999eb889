# Every target that needs the virtual environment creates it first, so `make demo` and
# `make test` each work as the first command on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GRID ?= arith

.PHONY: install test test-fast lint format demo images clean submit component

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the CPU wheel, so nothing pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip check
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# One torch thread in every task: the tiny model gains nothing from more, and its numbers do not
# then depend on the machine's core count.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/satk8s run smoke --local --store .demo/store --workdir .demo/kfp

# Build and push the step images with docker buildx; records image@digest in images/digests.json.
images:
	REGISTRY="$(REGISTRY)" images/build.sh $(IMAGES)

# Compile a grid to one pipeline and submit it to the KFP server at KFP_HOST (token, namespace,
# experiment from KFP_TOKEN, KFP_NAMESPACE, KFP_EXPERIMENT); prints the run's UI link.
submit: $(STAMP)
	mkdir -p build && $(VENV)/bin/satk8s grid compile $(GRID) -o build/$(GRID).yaml && $(VENV)/bin/satk8s submit build/$(GRID).yaml

# One step in its image with the GPU, on the same store: make component C=generate ARGS="--out …"
component: $(STAMP)
	$(VENV)/bin/satk8s component $(C) $(ARGS)

clean:
	rm -rf .demo .cache .satk8s-store build .pytest_cache .ruff_cache
