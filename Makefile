# Two commands on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.interp-installed
PORT   ?= 6006
ARGS   ?=

.PHONY: install browser train test test-fast lint format docs visualize tensorboard bench gpu-check readme-images face-weights clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes: a second `make train` installs nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python -m interp train $(ARGS)

# Headless Chromium (Debian's package) for the atlas's browser tests; nothing to do when it is there.
browser:
	bash scripts/install_chromium.sh

# Passive OpenMP waiting: the suite starts subprocesses (DDP, notebooks, the CLI) that share the cores.
test: $(STAMP) browser
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python -m pytest -q $(ARGS)

# ruff (lint and format) and mypy over the package, tests and benchmarks.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# HTML API reference of interp.optvis, interp.steps, interp.callbacks and interp.models (pdoc, Google-style
# docstrings) into build/docs/: open build/docs/index.html.
DOCS_MODULES := interp.optvis interp.steps interp.callbacks interp.models interp.records
docs: $(STAMP)
	$(BIN)/pdoc --docformat google --output-directory build/docs $(DOCS_MODULES)
	@echo "API reference: build/docs/index.html"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

visualize: $(STAMP)
	$(BIN)/python -m interp visualize $(or $(ARGS),ckpt=latest units=32)

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir runs --host 127.0.0.1 --port $(PORT)

# Installs torch-lucent and torch-dreams next to our torch (--no-deps: torch stays as it is), then
# runs every benchmark; results go to benchmarks/RESULTS.md.
bench: $(STAMP)
	VENV=$(VENV) bash benchmarks/install_anchors.sh
	$(BIN)/python -m benchmarks.run_all $(ARGS)

# On a machine with a CUDA GPU: the GPU benchmarks and the CUDA tests, into benchmarks/RESULTS-gpu.md.
gpu-check: $(STAMP)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python -m benchmarks.gpu_check $(ARGS)

# Regenerates the two pictures at the top of the README from the newest training run.
readme-images: $(STAMP)
	$(BIN)/python -m interp visualize ckpt=latest units=32 'callbacks=[panel]' experiment=readme
	$(BIN)/python -m interp visualize preset=face 'callbacks=[dream]' size=320 "+callbacks.dream.note='face-api.js 1.7.15 weights: dlib face recognition ResNet'" experiment=readme
	mkdir -p docs
	cp "$$(ls -td runs/readme/*/ | sed -n 2p)interp/panel/dense_1/unit_032.png" docs/panel_dense_1_unit_032.png
	cp "$$(ls -td runs/readme/*/ | sed -n 1p)interp/dream/layer1.png" docs/dream_faceapi_layer1.png

# The trained face-api networks (interp.models.faceapi): npm pack @vladmandic/face-api, checksums checked,
# into $$INTERP_CACHE_DIR/face-api (default ~/.cache/interp/face-api).
face-weights: $(STAMP)
	$(BIN)/python scripts/fetch_face_weights.py

clean:
	rm -rf runs multiruns outputs lightning_logs .pytest_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
