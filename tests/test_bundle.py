"""`kagglekit bundle` end to end: train two tiny demo experiments + an ensemble, bundle them, install
the bundle's wheel into a FRESH venv that sees the heavy dependencies only through a `.pth` (the
Kaggle image emulation), run its infer.py offline and compare with the library's blended submission.
Any task bundles through the Task contract: a multilabel ensemble (one member's final version is
SWA) and a k-fold detection experiment, inferred in-process from a copy of their data folder, write
the library's own submission byte for byte.

The .pth points at a folder of symlinks to /work/main/.venv's site-packages entries *minus*
kagglekit's own (``__editable__.kagglekit*.pth`` and ``kagglekit-*.dist-info``): a plain .pth path
line would not import the editable kagglekit (nested .pth files are not processed), but its
dist-info would still be visible to pip / importlib.metadata, and pip would then refuse the wheel
as "already installed with the same version". Excluding them makes kagglekit truly absent.

The demo bundle assumes the whole dev venv is installed on the target (``--assume-installed`` = its
freeze), so wheels/ holds kagglekit's wheel alone; the slow test removes a few inference
dependencies from the emulated image and installs them from the bundle's repacked wheels."""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from conftest import sets
from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.cli import main as exp_main
from kagglekit.tasks.segmentation.config import SegmentationConfig
from kagglekit.workflow import bundle as B
from kagglekit.workflow import wheels as W

TINY = ["n_folds=2", "epochs=1", "demo_train=8", "demo_test=3", "input_h=64", "input_w=96", "crop_h=64", "crop_w=96",
        "infer_h=64", "infer_w=96", "tta_scales=0.75,1.0", "temperatures=0.7,1.0", "batch_size=4", "valid_batch_size=4",
        "num_workers=0"]
EXPS = (SegmentationConfig(name="seg_a", use_depth_input=True), SegmentationConfig(name="seg_b", boundary_weight=2.0))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle_demo")
    old = Path.cwd()
    os.chdir(root)
    try:
        for cfg in EXPS:
            assert exp_main(cfg, ["--demo", *[a for s in TINY for a in ("--set", s)], "--fold", "all"]) == 0
        run_ensemble(EnsembleConfig(name="blend", members=("seg_a", "seg_b"), max_pixels_per_image=500).demo())
        freeze = root / "dev_freeze.txt"  # the target image has every dependency: wheels/ = kagglekit's alone
        freeze.write_text("".join(f"{d.metadata['Name']}=={d.version}\n" for d in md.distributions()))
        args = argparse.Namespace(exps=["seg_a", "seg_b"], ensemble="blend", out=root / "bundle",
                                  output=root / "output/demo", overwrite=False, no_wheel=False, assume_installed=freeze)
        assert B.main(args) == 0
        yield root
    finally:
        os.chdir(old)


def test_bundle_layout_and_manifest(demo):
    bundle = demo / "bundle"
    for rel in ("weights/seg_a/fold0.safetensors", "weights/seg_b/fold1.safetensors", "configs/seg_a.json",
                "configs/seg_b.json", "metrics/seg_a/fold0.json", "metrics/seg_b/fold1.json", "ensemble.json",
                "infer.py", "README.txt", "MANIFEST.json"):
        assert (bundle / rel).is_file(), rel
    assert [p.name for p in (bundle / "wheels").iterdir()] == [next((bundle / "wheels").glob("kagglekit-*.whl")).name]
    wheels = json.loads((bundle / "wheels.json").read_text())
    assert [(w["name"], w["source"]) for w in wheels["wheels"]] == [("kagglekit", W.BUILT)]
    assert {"torch", "numpy", "timm"} <= set(wheels["assumed_installed"]) and wheels["modules"]["sklearn"] == "scikit-learn"
    spec = json.loads((bundle / "ensemble.json").read_text())
    weights = json.loads((demo / "output/demo/ensemble/blend/weights.json").read_text())
    assert spec["members"] == ["seg_a", "seg_b"] and spec["weights"] == weights["weights"] and spec["n_folds"] == 2
    assert spec["task"] == "segmentation" and spec["decisions"] == weights and spec["data_paths"] == {"seg_a": {}, "seg_b": {}}
    for m in ("seg_a", "seg_b"):  # each fold's metrics (its OOF-chosen temperature) travel with the weights
        for k in range(2):
            packed = json.loads((bundle / f"metrics/{m}/fold{k}.json").read_text())
            assert packed == json.loads((demo / f"output/demo/{m}/fold{k}/metrics.json").read_text())
            # the OOF-chosen T (the search may widen the configured grid): one of the temperatures it scored
            assert packed["best_temperature"] in [row["temperature"] for row in packed["temperature_table"]]
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert {e["path"] for e in manifest["files"]} == {p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
                                                      if p.is_file() and p.name != "MANIFEST.json"}
    B.verify_manifest(bundle)
    from safetensors.torch import load_file
    tensors = load_file(bundle / "weights/seg_a/fold0.safetensors")
    from kagglekit.engine.checkpoint import load_checkpoint
    state = load_checkpoint(demo / "output/demo/seg_a/fold0/checkpoints/best.pt")["model"]
    assert set(tensors) == set(state) and all((tensors[k] == state[k]).all() for k in state)
    assert "--no-index --no-deps wheels/*.whl" in (bundle / "README.txt").read_text()


def test_errors_are_clear(demo, tmp_path):
    out = tmp_path / "b"
    with pytest.raises(B.BundleError, match=r"seg_x/fold0/config.json not found.*exp/seg_x.py --fold all"):
        B.build_bundle(["seg_x"], out, output=demo / "output/demo", wheel=False)
    with pytest.raises(B.BundleError, match="weights.json not found"):
        B.build_bundle(None, out, output=demo / "output/demo", ensemble="nope", wheel=False)
    with pytest.raises(B.BundleError, match="differ from the members"):
        B.build_bundle(["seg_b", "seg_a"], out, output=demo / "output/demo", ensemble="blend", wheel=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        B.build_bundle(["seg_a"], demo / "bundle", output=demo / "output/demo", wheel=False)
    assert not out.exists() and not list(tmp_path.glob(".b.*"))  # nothing half-written left behind
    bad = tmp_path / "bad"
    B.build_bundle(["seg_a"], bad, output=demo / "output/demo", wheel=False)
    (bad / "configs/seg_a.json").write_text("{}")
    with pytest.raises(B.BundleError, match="sha256 differ"):
        B.verify_manifest(bad)


def _kaggle_venv(tmp: Path, *, pip: bool = False, without: tuple[str, ...] = ()) -> Path:
    """Fresh venv (no network; pip only if asked) + `.pth` → symlinks to the dev venv's site-packages minus
    kagglekit and minus the distributions in ``without`` (their top-level entries: package, .dist-info)."""
    venv = tmp / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", *([] if pip else ["--without-pip"]), str(venv)], check=True)
    image = tmp / "kaggle_image"
    image.mkdir()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    removed = {f.parts[0] for name in without for f in md.distribution(name).files if f.parts[0] not in ("..", "__pycache__")}
    for entry in dev_site.iterdir():
        if not entry.name.startswith(("__editable__", "kagglekit")) and entry.name not in removed:
            (image / entry.name).symlink_to(entry)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "kaggle_image.pth").write_text(f"{image}\n")
    return py


def _run(py: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KAGGLEKIT", "VIRTUAL_ENV"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", NO_PROXY="*", HTTP_PROXY="http://0.0.0.0:9",
               HTTPS_PROXY="http://0.0.0.0:9")
    return subprocess.run([str(py), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_infer_in_fresh_venv_matches_library(demo, tmp_path):
    py = _kaggle_venv(tmp_path)
    before = _run(py, "-c", "import torch, segmentation_models_pytorch; import kagglekit", cwd=tmp_path)
    assert before.returncode != 0 and "No module named 'kagglekit'" in before.stderr, before.stderr
    meta = _run(py, "-c", "import importlib.metadata as m; m.version('kagglekit')", cwd=tmp_path)
    assert meta.returncode != 0 and "PackageNotFoundError" in meta.stderr
    bundle = demo / "bundle"
    wheel = next((bundle / "wheels").glob("kagglekit-*.whl"))
    install = _run(py, "-m", "pip", "install", "--no-index", "--no-deps", str(wheel), cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    where = _run(py, "-c", "import kagglekit; print(kagglekit.__file__)", cwd=tmp_path)
    assert str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr
    sub = tmp_path / "submission.csv"
    infer = _run(py, str(bundle / "infer.py"), "--data", str(demo / "input/nyuv2_demo"), "--out", str(sub),
                 "--device", "cpu", cwd=tmp_path)
    assert infer.returncode == 0, infer.stdout + infer.stderr[-3000:]
    from kagglekit.submission import validate
    data = demo / "input/nyuv2_demo"
    validate(sub, data / "sample_submission.csv", image_shape=(120, 160))
    ours, library = pd.read_csv(sub), pd.read_csv(demo / "submissions/demo/blend.csv")
    key = ours.columns[0]
    pd.testing.assert_frame_equal(ours.sort_values(key).reset_index(drop=True),
                                  library.sort_values(key).reset_index(drop=True))
    missing = _run(py, str(bundle / "infer.py"), "--data", str(tmp_path), "--out", str(sub), cwd=tmp_path)
    assert missing.returncode == 2 and "test.csv not found" in missing.stderr


REMOVED = ("timm", "segmentation-models-pytorch", "safetensors", "albumentations", "albucore", "huggingface-hub",
           "hf-xet", "stringzilla", "simsimd")  # inference dependencies the reduced image lacks (torch/numpy stay)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bundle_installs_missing_dependencies_offline(demo, tmp_path, monkeypatch):
    """An image without timm, SMP, safetensors, albumentations... (and their exclusive deps): the bundle,
    built with --assume-installed = that image's pip freeze, carries them as wheels (pip download cannot
    reach an index → repacked from the installed distributions); after installing only the kagglekit
    wheel infer.py names the missing packages and the command; `pip install --no-index --no-deps
    wheels/*.whl` then makes infer.py write the library's submission byte for byte."""
    py = _kaggle_venv(tmp_path, pip=True, without=REMOVED)
    gone = _run(py, "-c", "import timm", cwd=tmp_path)
    assert gone.returncode != 0 and "No module named 'timm'" in gone.stderr
    freeze = _run(py, "-m", "pip", "list", "--format=freeze", cwd=tmp_path)
    assert freeze.returncode == 0 and "torch==" in freeze.stdout and "timm==" not in freeze.stdout, freeze.stderr
    (tmp_path / "image_freeze.txt").write_text(freeze.stdout)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    bundle = B.build_bundle(None, tmp_path / "bundle", output=demo / "output/demo", ensemble="blend",
                            deps=W.WheelOptions(assume_installed=tmp_path / "image_freeze.txt"))
    info = json.loads((bundle / "wheels.json").read_text())
    sources = {w["name"]: w["source"] for w in info["wheels"]}
    assert sources.pop("kagglekit") == W.BUILT and set(sources) == set(REMOVED), sources
    assert set(sources.values()) == {W.REPACKED} and "torch" in info["assumed_installed"]
    assert "repacked from the installed distribution" in (bundle / "README.txt").read_text()
    wheels = sorted(str(p) for p in (bundle / "wheels").glob("*.whl"))
    only = _run(py, "-m", "pip", "install", "--no-index", "--no-deps", next(w for w in wheels if "/kagglekit-" in w), cwd=tmp_path)
    assert only.returncode == 0, only.stdout + only.stderr
    sub = tmp_path / "submission.csv"
    infer = [str(bundle / "infer.py"), "--data", str(demo / "input/nyuv2_demo"), "--out", str(sub), "--device", "cpu"]
    half = _run(py, *infer, cwd=tmp_path)
    assert half.returncode == 1 and "is not installed (No module named" in half.stderr, half.stderr[-3000:]
    assert f"pip install --no-index --find-links {bundle}/wheels " in half.stderr and "timm" in half.stderr
    assert f"pip install --no-index --no-deps {bundle}/wheels/*.whl" in half.stderr
    install = _run(py, "-m", "pip", "install", "--no-index", "--no-deps", *wheels, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    where = _run(py, "-c", "import timm, safetensors; print(timm.__file__, safetensors.__file__)", cwd=tmp_path)
    assert where.stdout.count(str(tmp_path / "venv")) == 2, where.stdout + where.stderr
    done = _run(py, *infer, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert sub.read_bytes() == (demo / "submissions/demo/blend.csv").read_bytes()


def test_ensemble_with_own_tta_reuses_its_repredictions(tmp_path):
    """An ensemble that re-predicted its members (tta_scales set) is reproduced with that TTA, and the
    fold metrics (temperatures) come from the re-prediction, not from the member's own folds."""
    ens = tmp_path / "ensemble/e"
    (ens / "weights.json").parent.mkdir(parents=True)
    (ens / "weights.json").write_text(json.dumps({"members": ["a", "b"], "weights": [0.25, 0.75],
                                                  "config": {"tta_scales": [1.0], "tta_flip": True, "infer_h": 0}}))
    members, weights, _ = B.resolve_members(tmp_path, None, "e")
    assert [m.name for m in members] == ["a", "b"] and weights == [0.25, 0.75]
    assert members[0].pred_dir == ens / "members/a" and members[0].exp_dir == tmp_path / "a"
    assert members[0].overrides == {"tta_scales": (1.0,), "tta_flip": True}
    (ens / "members/a/fold0").mkdir(parents=True)
    (ens / "members/a/fold0/metrics.json").write_text(json.dumps({"best_temperature": 0.8}))
    assert B.fold_metrics(members[0].pred_dir, 0, "a") == {"best_temperature": 0.8}
    with pytest.raises(B.BundleError, match="members/a/fold1/metrics.json not found"):
        B.fold_metrics(members[0].pred_dir, 1, "a")


def _infer_in_process(bundle: Path, data: Path, out: Path, *extra: str) -> None:
    assert B.infer_main(["--data", str(data), "--out", str(out), "--device", "cpu", *extra], bundle) == 0


def _moved_data(src: Path, dst: Path, *derived: str) -> Path:
    """A copy of a data folder without what the library derived from it: inference must not need
    the training-time location nor its derived files (they go to a scratch input root)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("folds.csv", *derived))
    return dst


@pytest.mark.timeout(600)
def test_multilabel_ensemble_bundle_writes_the_library_submission(in_tmp, monkeypatch):
    """Two multilabel experiments (ml_a's final version is SWA of its last two epochs), their
    ensemble, bundled and inferred: the blend's OOF thresholds and the SWA weights are what the
    library used, so the submission is the library's byte for byte."""
    from kagglekit.tasks.multilabel.config import MultiLabelConfig
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))  # generated doors (fast), not the real set
    tiny = ["n_folds=2", "epochs=2", "image_size=64", "batch_size=32", "keep_epoch_checkpoints=2"]
    for cfg in (MultiLabelConfig(name="ml_a", swa_n=2), MultiLabelConfig(name="ml_b", loss="focal")):
        assert exp_main(cfg, ["--demo", "--fold", "all", *sets(tiny)]) == 0
    out = in_tmp / "output/demo"
    assert json.loads((out / "ml_a/fold0/metrics.json").read_text())["final"] == "swa"
    blend = run_ensemble(EnsembleConfig(name="ml_blend", members=("ml_a", "ml_b"), method="greedy").demo())
    bundle = B.build_bundle(None, in_tmp / "bundle", output=out, ensemble="ml_blend", wheel=False)
    spec = json.loads((bundle / "ensemble.json").read_text())
    assert spec["task"] == "multilabel" and spec["decisions"]["thresholds"] == blend["thresholds"]
    assert spec["external_paths"]["ml_a"]["test_csv"].endswith("doors_demo_test/test.csv")  # absolute, outside data_dir
    from safetensors.torch import load_file
    from kagglekit.engine.checkpoint import load_checkpoint
    swa = load_checkpoint(out / "ml_a/fold1/swa_predictor.pt")["model"]
    packed = load_file(bundle / "weights/ml_a/fold1.safetensors")
    assert set(packed) == set(swa) and all((packed[k] == swa[k]).all() for k in swa)
    data = _moved_data(in_tmp / "input/doors_demo", in_tmp / "kaggle/doors")
    sub = in_tmp / "ml_bundle.csv"
    _infer_in_process(bundle, data, sub)
    assert sub.read_bytes() == Path(blend["submission"]).read_bytes()
    assert not (data / "folds.csv").exists()  # nothing written into --data


@pytest.mark.timeout(600)
def test_detection_kfold_bundle_writes_the_library_submission(in_tmp, monkeypatch):
    """A 2-fold detection experiment on the generated YOLO shapes: inference converts a copy of the
    YOLO folder into a scratch input root, predicts each fold and WBF-fuses the folds as the
    library's epilogue did; the submission is the library's byte for byte."""
    from test_task_lifecycle import DET_TINY
    from kagglekit.tasks.detection.config import DetectionConfig
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))  # the generated shapes set, not COCO128
    cfg = DetectionConfig(name="det_k2")
    assert exp_main(cfg, ["--demo", "--fold", "all", *sets(DET_TINY + ["split_mode=kfold", "n_folds=2", "max_iters=2", "eval_period=2"])]) == 0
    summary = json.loads((in_tmp / "output/demo/det_k2/metrics.json").read_text())
    assert summary["submission"]
    bundle = B.build_bundle(["det_k2"], in_tmp / "bundle", output=in_tmp / "output/demo", wheel=False)
    spec = json.loads((bundle / "ensemble.json").read_text())
    assert spec["task"] == "detection" and spec["weights"] == [1.0] and spec["n_folds"] == 2
    data = _moved_data(in_tmp / "input/shapes_demo", in_tmp / "kaggle/shapes", "annotations")
    sub = in_tmp / "det_bundle.csv"
    _infer_in_process(bundle, data, sub)
    assert sub.read_bytes() == Path(summary["submission"]).read_bytes()
    assert not (data / "annotations").exists()  # the YOLO → COCO conversion went to the scratch input root
    empty = in_tmp / "empty"
    empty.mkdir()
    assert B.infer_main(["--data", str(empty), "--out", str(in_tmp / "x.csv"), "--device", "cpu"], bundle) == 2
    assert not (in_tmp / "x.csv").exists()
