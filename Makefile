# beam-expand: every target creates .venv and installs on first use; only python3 is needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

DATASET ?= shapes
SOURCE  ?=
COPIES  ?= 5
# SOURCE alone (no DATASET on the command line) is any labelled folder, archive or record file.
SOURCE_ONLY := $(and $(SOURCE),$(filter file,$(origin DATASET)))
OUT     ?= out/$(if $(SOURCE_ONLY),$(basename $(notdir $(SOURCE))),$(DATASET))
SEED    ?= 0
ARGS    ?=

# Beam, TensorFlow and friends print a lot on import; keep runs quiet and offline-friendly.
export TF_CPP_MIN_LOG_LEVEL := 3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: expand test bench demo-train lint clean help preview

help:
	@echo "make expand [DATASET=shapes|flowers] [SOURCE=path|url] [COPIES=5] [OUT=dir] [SEED=0] [ARGS='--flag ...']"
	@echo "make preview [DATASET=...] | make test | make bench | make demo-train | make lint | make clean"

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

expand: $(VENV)/.runtime
	$(BIN)/beam-expand run $(if $(SOURCE_ONLY),,--dataset $(DATASET)) $(if $(SOURCE),--source $(SOURCE)) \
	  --copies $(COPIES) --output $(OUT) --seed $(SEED) --overwrite $(ARGS)

test: $(VENV)/.dev
	$(BIN)/pytest -q $(ARGS)

bench: $(VENV)/.dev
	$(PY) -m tests.bench $(ARGS)

# Trains the same small Keras CNN on the raw photos and on their expansion; prints both per epoch (a demo).
demo-train: $(VENV)/.dev
	$(PY) -m tests.demo_train $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check beam_jobs transforms schemas tests
	$(BIN)/ruff format --check beam_jobs transforms schemas tests

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .ruff_cache

preview: $(VENV)/.runtime
	$(BIN)/beam-expand preview $(if $(SOURCE_ONLY),,--dataset $(DATASET)) $(if $(SOURCE),--source $(SOURCE)) -n 8 \
	  --out out/preview-$(DATASET).png $(ARGS)
