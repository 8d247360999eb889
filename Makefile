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

# The first line says what runs and about how long it takes (satk8s prints it, from what the
# store and the tiny-model cache already hold); creating .venv, when needed, comes first.
demo:
	@$(MAKE) -q $(STAMP) 2>/dev/null || echo "make demo: installing the pinned stack into $(VENV) first (about 2 min), then the demo"
	@$(MAKE) -s --no-print-directory $(STAMP)
	@$(VENV)/bin/satk8s demo --workdir .demo

# Build and push the step images with docker buildx; records image@digest in images/digests.json.
images:
	REGISTRY="$(REGISTRY)" images/build.sh $(IMAGES)

# Compile a grid to one pipeline and submit it to the KFP server at KFP_HOST (token, namespace,
# experiment from KFP_TOKEN, KFP_NAMESPACE, KFP_EXPERIMENT); prints the run's UI link.
# WAIT=1 then follows the run task by task (`satk8s runs watch`) and exits as the run ended.
submit: $(STAMP)
	mkdir -p build && $(VENV)/bin/satk8s grid compile $(GRID) -o build/$(GRID).yaml && $(VENV)/bin/satk8s submit build/$(GRID).yaml | tee build/$(GRID).submitted && test -n "$$(sed -n 's/^run id: *//p' build/$(GRID).submitted)"
	@if [ "$(WAIT)" = 1 ]; then $(VENV)/bin/satk8s runs watch "$$(sed -n 's/^run id: *//p' build/$(GRID).submitted)"; fi

# One step in its image with the GPU, on the same store: make component C=generate ARGS="--out …"
component: $(STAMP)
	$(VENV)/bin/satk8s component $(C) $(ARGS)

clean:
	rm -rf .demo .cache .satk8s-store build .pytest_cache .ruff_cache
