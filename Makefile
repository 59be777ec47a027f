# Two commands on a fresh machine:
#   make run    the main job: the GUI on the bundled sample (headless overlay video without a display)
#   make test   the whole test suite (what CI runs)
# Both create/refresh the local virtualenv in .venv themselves.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned so pip takes the local CPU build instead
# of pulling a multi-GB CUDA build; override on a GPU machine, e.g.
#   make TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cu128' run
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,gui,dev

.PHONY: venv run test lint typecheck clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# tensorrt-stubs declares a dependency on tensorrt, which needs NVIDIA's
	# package index; only the stubs are needed to type-check our TensorRT calls.
	$(PY) -m pip install -q --no-deps tensorrt-stubs
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/rtseg $(ARGS)

test: venv
	$(VENV)/bin/ruff check rtseg tests scripts tools
	$(VENV)/bin/lint-imports
	# every TensorRT call type-checked against tensorrt-stubs (TensorRT itself cannot install here)
	$(PY) tools/typecheck_trt.py
	# The Qt tests run in their own process: a process that has run the real Qt window
	# and then waits on a subprocess crashed natively (no Python frame to show) in
	# test_sigterm_saves_the_resume_state; alone, each half passes.
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q --ignore-glob='tests/test_gui_*' $(PYTEST_ARGS)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/test_gui_window.py tests/test_gui_parts.py tests/test_gui_cli.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out build dist *.egg-info
