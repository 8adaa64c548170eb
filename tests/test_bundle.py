"""`kagglekit bundle` end to end: train two tiny demo experiments + an ensemble, bundle them, install
the bundle's wheel into a FRESH venv that sees the heavy dependencies only through a `.pth` (the
Kaggle image emulation), run its infer.py offline and compare with the library's blended submission.

The .pth points at a folder of symlinks to /work/main/.venv's site-packages entries *minus*
kagglekit's own (``__editable__.kagglekit*.pth`` and ``kagglekit-*.dist-info``): a plain .pth path
line would not import the editable kagglekit (nested .pth files are not processed), but its
dist-info would still be visible to pip / importlib.metadata, and pip would then refuse the wheel
as "already installed with the same version". Excluding them makes kagglekit truly absent."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from kagglekit.blend import EnsembleConfig, run_ensemble
from kagglekit.cli import main as exp_main
from kagglekit.tasks.segmentation.config import SegmentationConfig
from kagglekit.workflow import bundle as B

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
        args = argparse.Namespace(exps=["seg_a", "seg_b"], ensemble="blend", out=root / "bundle",
                                  output=root / "output/demo", overwrite=False, no_wheel=False)
        assert B.main(args) == 0
        yield root
    finally:
        os.chdir(old)


def test_bundle_layout_and_manifest(demo):
    bundle = demo / "bundle"
    for rel in ("weights/seg_a/fold0.safetensors", "weights/seg_b/fold1.safetensors", "configs/seg_a.json",
                "configs/seg_b.json", "ensemble.json", "infer.py", "README.txt", "MANIFEST.json"):
        assert (bundle / rel).is_file(), rel
    assert len(list((bundle / "wheels").glob("kagglekit-*.whl"))) == 1
    spec = json.loads((bundle / "ensemble.json").read_text())
    weights = json.loads((demo / "output/demo/ensemble/blend/weights.json").read_text())
    assert spec["members"] == ["seg_a", "seg_b"] and spec["weights"] == weights["weights"] and spec["n_folds"] == 2
    assert all(t in (0.7, 1.0) for ts in spec["temperatures"].values() for t in ts)
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


def _kaggle_venv(tmp: Path) -> Path:
    """Fresh venv (no pip, no network) + `.pth` → symlinks to the dev venv's site-packages minus kagglekit."""
    venv = tmp / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    image = tmp / "kaggle_image"
    image.mkdir()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    for entry in dev_site.iterdir():
        if not entry.name.startswith(("__editable__", "kagglekit")):
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


def test_ensemble_with_own_tta_reuses_its_repredictions(tmp_path):
    """An ensemble that re-predicted its members (tta_scales set) is reproduced with that TTA, and the
    temperatures come from the re-prediction, not from the member's own folds."""
    ens = tmp_path / "ensemble/e"
    (ens / "weights.json").parent.mkdir(parents=True)
    (ens / "weights.json").write_text(json.dumps({"members": ["a", "b"], "weights": [0.25, 0.75],
                                                  "config": {"tta_scales": [1.0], "tta_flip": True, "infer_h": 0}}))
    members, weights, _ = B.resolve_members(tmp_path, None, "e")
    assert [m.name for m in members] == ["a", "b"] and weights == [0.25, 0.75]
    assert members[0].pred_dir == ens / "members/a" and members[0].exp_dir == tmp_path / "a"
    assert members[0].overrides == {"tta_scales": (1.0,), "tta_flip": True}
    (ens / "members/a/fold0/test").mkdir(parents=True)
    (ens / "members/a/fold0/test/manifest.json").write_text(json.dumps({"temperature": 0.8}))
    assert B.fold_temperatures(members[0].pred_dir, 1, "a") == [0.8]
    with pytest.raises(B.BundleError, match="fold1/test/manifest.json"):
        B.fold_temperatures(members[0].pred_dir, 2, "a")
