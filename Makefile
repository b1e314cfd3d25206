# Bootstrap: a local .venv with pinned dependencies. Idempotent: a second run installs nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap test demo clean

bootstrap: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on local disk (an open range would pull a CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,dashboard,fleet,lm]'
	touch $@

demo: bootstrap
	$(BIN)/python -m device_sim run --days 30 --seed 7 --device devices/demo --fresh

# Two workers (one per core); a test file runs whole on one worker, and the files that start Ray share one
# worker (tests/conftest.py), so module fixtures are built once and two Ray clusters never compete.
test: bootstrap
	$(BIN)/python -m pytest -n 2 --dist loadgroup

clean:
	rm -rf $(VENV) devices
