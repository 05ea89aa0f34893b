# Everything the project needs is installed by these targets; nothing by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Tests read real MNIST from the shared data folder when it is there (see README, "Data").
export ROBUSTLAB_DATA ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)

.PHONY: demo docs test test-fast test-slow bench lint clean-venv chromium

# What the demo needs: robustlab and its compiled CPU kernels (numba), nothing more.
$(VENV)/.installed-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The small CPU build of torch first, so nothing later pulls a CUDA build or torchvision.
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[fast-cpu]"
	touch $@

# What the tests, benches and export add: pytest, the reference implementations, TensorBoard,
# ONNX (about 420 MB the demo does not need).
$(VENV)/.installed: $(VENV)/.installed-base
	$(PIP) install -e ".[dev,reference,fast-cpu,tensorboard,export]"
	# torchattacks declares torchvision as a dependency it does not need for its attacks.
	$(PIP) install --no-deps "torchattacks==3.5.1"
	# robustbench: its architecture files are the reference of tests/test_wide_resnet.py and
	# tests/test_robustbench_load.py (imported file by file; they need only torch). The package
	# declares torchvision, timm, gdown, ... that robustlab does not use.
	$(PIP) install --no-deps "robustbench==1.1.1"
	# adv-lib: the reference of FMN and DDN (tests/attacks/test_fmn.py, test_ddn.py,
	# bench/min_norm_vs_adv_lib.py); its attack files are loaded one by one, without the
	# torchvision / visdom / scipy its package declares.
	$(PIP) install --no-deps "adv-lib==0.2.8"
	# Foolbox: its PointwiseAttack / SaltAndPepperNoiseAttack are the L0 reference of Sparse-RS
	# and sparse-PGD (tests/attacks/test_sparse_rs.py, test_sparse_pgd.py,
	# bench/sparse_rs_check.py); eagerpy and GitPython (imported by foolbox.zoo) without the
	# requests / scipy pins its package declares.
	$(PIP) install --no-deps "foolbox==3.3.4" "eagerpy==0.30.0" "GitPython==3.2.1" \
		"gitdb==4.0.12" "smmap==5.0.3"
	touch $@

# Ray (the optional `ray` extra) only for the tests of `reproduce --executor ray`; the demo
# does not need it.
$(VENV)/.installed-ray: $(VENV)/.installed
	$(PIP) install -e ".[ray]"
	touch $@

demo: $(VENV)/.installed-base
	$(VENV)/bin/robustlab reproduce --preset quick --workers 2 --download

# Headless Chromium for the test that renders report.html (installed only when absent and
# this user can install packages; otherwise that test skips, or fails in CI).
chromium:
	sh scripts/install-chromium.sh

# Everything but `slow` (what CI runs): unit, property, integration and reference tests.
test: $(VENV)/.installed-ray chromium
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Unit and property tests only, under 2 minutes on 2 cores: no subprocess, no reproduce
# pipeline, no training beyond the session's shared model (tests/conftest.py), no reference
# cross-checks. `make test` runs these too.
test-fast: $(VENV)/.installed-ray
	$(PY) -m pytest -q -m 'not slow and not integration and not reference' $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/train_speed.py
	$(PY) bench/attack_speed.py
	$(PY) bench/kernel_speed.py

# The generated options tables (a test checks they are current).
docs: $(VENV)/.installed-base
	$(PY) -c "from robustlab.attacks.options_doc import markdown; print(markdown(), end='')" > docs/attack-options.md
	$(PY) -c "from robustlab.training.methods.options_doc import markdown; print(markdown(), end='')" > docs/method-options.md

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench

clean-venv:
	rm -rf $(VENV)
