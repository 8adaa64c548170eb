"""The prepared GPU check (bench/gpu_check.py) rehearsed on CPU so it cannot rot between GPU leases:
the seed-sized configurations it would train, and its --smoke run end to end."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_configs_are_the_seeds_model_sizes_on_demo_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check = load_check()
    seg = check.track_config("segmentation", False, 20, "fp16", tmp_path / "out")
    assert (seg.backbone, seg.crop_h, seg.crop_w, seg.batch_size) == ("tu-convnext_base", 576, 768, 4)
    assert seg.data_dir == "input/nyuv2_demo" and seg.pretrained == "" and seg.amp == "fp16"
    assert seg.max_steps_per_epoch == 20 and seg.epochs == 2 and seg.ema_decay > 0 and seg.channels_last
    doors = check.track_config("multilabel", False, 20, "bf16", tmp_path / "out")
    assert (doors.backbone, doors.image_size, doors.batch_size) == ("mobilenetv3_large_100", 384, 64)
    mice = check.track_config("behaviour", False, 20, "fp16", tmp_path / "out")
    assert mice.batch_size == 384 and mice.window == 100 and mice.lstm_hidden == 256
    det = check.track_config("detection", False, 20, "fp16", tmp_path / "out")
    assert (det.backbone, det.batch_size, det.test_min_size, det.init_weights) == ("resnet50", 4, 800, "")
    assert (det.max_iters, det.eval_period) == (40, 20)  # iteration-based seed: two periods of 20
    kp = check.track_config("keypoints", False, 20, "fp16", tmp_path / "out")
    assert kp.backbone == "resnet50" and kp.image_size == 480 and kp.init_weights == ""
    assert str(tmp_path / "out") == seg.output_dir


def test_gpu_check_refuses_without_cuda_unless_smoke(tmp_path):
    check = load_check()
    if check.torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert check.main(["--workdir", str(tmp_path)]) == 2


def run_smoke(tmp_path: Path, *extra: str) -> tuple[int, str, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--workdir",
                           str(tmp_path), *extra], capture_output=True, text=True, env=env, timeout=1800)
    report = (tmp_path / "RESULTS-gpu.md").read_text() if (tmp_path / "RESULTS-gpu.md").exists() else ""
    results = json.loads((tmp_path / "RESULTS-gpu.json").read_text()) if report else {}
    assert proc.returncode == 0, proc.stderr[-3000:] + report
    return proc.returncode, report, results


def assert_track_ran(results: dict, track: str, amp: str, resumed: bool) -> None:
    run, speed = results[f"run/{track}/{amp}"], results[f"speed/{track}/{amp}"]
    assert run["ok"] and run["periods"] == 2 and run["resumed"] is resumed
    assert run["score"] is not None and run["score"] == run["score"]  # a number, not NaN
    assert run["stores"], f"{track}: no OOF store / evaluation records written"
    assert speed["ok"] and speed["library"]["samples_s"] > 0 and speed["bare"]["samples_s"] > 0
    assert speed["ratio"] == pytest.approx(speed["library"]["samples_s"] / speed["bare"]["samples_s"])


# every track in make test (10–30 s each on 2 idle cores); both precisions + torchrun in make test-slow
@pytest.mark.parametrize("track", ["behaviour", "multilabel", "segmentation", "detection", "keypoints"])
def test_gpu_check_smoke_each_track(tmp_path, track):
    """Killed after period 1 and resumed, evaluated with TTA into the store, throughput measured."""
    _, report, results = run_smoke(tmp_path, "--tracks", track, "--precisions", "fp16", "--no-ddp")
    assert_track_ran(results, track, "fp16", resumed=True)
    assert "not a GPU figure" in report and f"| {track} |" in report and "## Failures\n\nnone" in report


@pytest.mark.slow
def test_gpu_check_smoke_both_precisions_and_ddp(tmp_path):
    _, report, results = run_smoke(tmp_path, "--tracks", "segmentation")
    assert_track_ran(results, "segmentation", "fp16", resumed=True)
    assert_track_ran(results, "segmentation", "bf16", resumed=False)
    assert results["ddp"]["ok"] and results["ddp"]["world_size"] == 1
