# Every target that needs the virtual environment creates it first, so `make demo` and
# `make test` each work as the first command on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GRID ?= arith
BUILD ?= build

.PHONY: install test test-fast lint format demo bench images clean submit component

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
# `satk8s demo` runs every task on one thread (SATK8S_THREADS=1 unless set).
demo:
	@$(MAKE) -q $(STAMP) 2>/dev/null || echo "make demo: installing the pinned stack into $(VENV) first (about 2 min), then the demo"
	@$(MAKE) -s --no-print-directory $(STAMP)
	@$(VENV)/bin/satk8s demo --workdir .demo

# Every CPU benchmark once at a CPU-feasible size: one Markdown table of ratios in build/bench.md.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out build/bench.md

# Build and push the step images with docker buildx; records image@digest in images/digests.json.
images:
	REGISTRY="$(REGISTRY)" images/build.sh $(IMAGES)

# Compile a grid for the cluster and submit it to the KFP server at KFP_HOST (token, namespace,
# experiment from KFP_TOKEN, KFP_NAMESPACE, KFP_EXPERIMENT); prints the run's UI link.
#   STORE=s3://bucket/prefix   the store, instead of the namespace's satk8s-settings storeRoot
#   OVERRIDES="seeds=[0] …"    Hydra overrides of the grid, space-separated (each is quoted)
#   SETTINGS=FILE              cluster settings from a file (`satk8s settings export`) instead of
#                              the satk8s-settings ConfigMap read with your kubeconfig
#   DRY_RUN=1                  print the run request instead of sending it
#   WAIT=1                     then follow the run task by task (`satk8s runs watch`) and exit
#                              as the run ended
# The pipeline is written to $(BUILD)/$(GRID).yaml, submit's output to $(BUILD)/$(GRID).submitted.
submit: $(STAMP)
	mkdir -p $(BUILD)
	$(VENV)/bin/satk8s grid compile $(GRID) $(if $(STORE),'store.root=$(STORE)') \
		$(foreach o,$(OVERRIDES),'$(o)') \
		-o $(BUILD)/$(GRID).yaml $(if $(SETTINGS),--settings $(SETTINGS))
	$(VENV)/bin/satk8s submit $(BUILD)/$(GRID).yaml $(if $(SETTINGS),--settings $(SETTINGS)) \
		$(if $(DRY_RUN),--dry-run) > $(BUILD)/$(GRID).submitted; \
		status=$$?; cat $(BUILD)/$(GRID).submitted; exit $$status
	@if [ "$(WAIT)" = 1 ] && [ -z "$(DRY_RUN)" ]; then \
		$(VENV)/bin/satk8s runs watch "$$(sed -n 's/^run id: *//p' $(BUILD)/$(GRID).submitted)"; fi

# One step in its image with the GPU, on the same store: make component C=generate ARGS="--out …"
component: $(STAMP)
	$(VENV)/bin/satk8s component $(C) $(ARGS)

clean:
	rm -rf .demo .cache .satk8s-store build .pytest_cache .ruff_cache
