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
EXTRAS ?= cpu,gui,dev,pretrained,nncf

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
	$(VENV)/bin/mypy rtseg
	# every TensorRT call type-checked against tensorrt-stubs (TensorRT itself cannot install here)
	$(PY) tools/typecheck_trt.py
	# Three pytest processes. In one process, test_sigterm_saves_the_resume_state (it waits on a
	# training subprocess) crashed natively after the rest of the suite on the 2026-11-23 machine
	# (AVX512-BF16/FP16). On 2026-11-30, on a CPU without them, the whole suite passed in one
	# process, also under gdb; there the OpenVINO f16/bf16 tests skip, so they are the suspects.
	# Kept split until it is seen passing in one process on an FP16-capable CPU.
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q --ignore-glob='tests/test_gui_*' --ignore-glob='tests/test_train_*' $(PYTEST_ARGS)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/test_train_*.py $(PYTEST_ARGS)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/test_gui_window.py tests/test_gui_parts.py tests/test_gui_cli.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out build dist *.egg-info
