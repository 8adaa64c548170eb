"""``kagglekit bundle``: pack trained experiments (and an ensemble's weights) into a folder a Kaggle
code competition can run offline, plus the standalone ``infer.py`` that predicts from it.

Bundle layout::

    weights/<exp>/fold<k>.safetensors   model weights only (from checkpoints/best.pt)
    configs/<exp>.json                  resolved config (output/<exp>/fold0/config.json)
    ensemble.json                       members, blend weights, per-fold temperatures, TTA overrides
    wheels/kagglekit-*.whl              this package (install: pip install --no-index --no-deps wheels/*.whl)
    infer.py                            python infer.py --data <test dir> --out submission.csv [--device cpu]
    README.txt, MANIFEST.json           how to install; size + sha256 of every file

Inference (:func:`infer_main`, which ``infer.py`` calls) reproduces the library's path exactly: each
fold's test TTA at the fold's chosen temperature into a prediction store (same quantisation), the
fold mean per member, Σ wᵢ · member, validated against the data dir's ``sample_submission.csv``.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from kagglekit import paths
from kagglekit.io import load_json, save_json, write_bytes, write_text

log = logging.getLogger("kagglekit.bundle")

INSTALL = "pip install --no-index --no-deps wheels/*.whl"

INFER_PY = '''#!/usr/bin/env python
"""Offline inference for this bundle (written by `kagglekit bundle`).

    pip install --no-index --no-deps wheels/*.whl     # once, no internet needed
    python infer.py --data /kaggle/input/<comp> --out submission.csv [--device cpu]
"""
import sys
from pathlib import Path

try:
    from kagglekit.workflow.bundle import infer_main
except ImportError as exc:
    sys.exit(f"kagglekit is not importable ({exc}); install it offline first: "
             f"pip install --no-index --no-deps {Path(__file__).resolve().parent}/wheels/*.whl")

if __name__ == "__main__":
    sys.exit(infer_main(sys.argv[1:], Path(__file__).resolve().parent))
'''

README = f"""kagglekit inference bundle
==========================

Offline install (no internet, dependencies already in the image):

    {INSTALL}

Predict:

    python infer.py --data <test data dir with test.csv, test/, sample_submission.csv> --out submission.csv [--device cpu]

Members, blend weights and per-fold temperatures: ensemble.json. Checksums: MANIFEST.json
(infer.py verifies them first; --no-verify skips).
"""


class BundleError(RuntimeError):
    """An input of the bundle is missing or inconsistent (the message says how to produce it)."""


@dataclass
class Member:
    name: str
    exp_dir: Path  # where config.json + checkpoints live
    pred_dir: Path  # where the test predictions the blend used live (exp_dir, or the ensemble's re-prediction)
    overrides: dict[str, Any] = field(default_factory=dict)


# ---- CLI ---------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exps", nargs="+", default=None, help="experiments to pack (default: the ensemble's members)")
    parser.add_argument("--ensemble", default=None, help="ensemble name (output/ensemble/<name>/weights.json); uniform weights if omitted")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    parser.add_argument("--output", type=Path, default=None, help="experiments' root (default: output/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--no-wheel", action="store_true", help="skip building wheels/ (the bundle is then not installable offline)")


def main(args: argparse.Namespace) -> int:
    try:
        out = build_bundle(args.exps, args.out, output=args.output, ensemble=args.ensemble,
                           overwrite=args.overwrite, wheel=not getattr(args, "no_wheel", False))
    except (BundleError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"bundle written to {out}; install offline with: cd {out} && {INSTALL}")
    return 0


# ---- build -------------------------------------------------------------------------------------
def build_bundle(exps: Sequence[str] | None, out: Path, *, output: Path | None = None, ensemble: str | None = None,
                 overwrite: bool = False, wheel: bool = True) -> Path:
    """Write the bundle into a temp folder beside ``out`` and rename it into place when complete."""
    root = Path(output) if output else paths.output_root()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite or choose another --out")
    members, weights, ens_cfg = resolve_members(root, exps, ensemble)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        spec = pack_members(members, tmp)
        spec.update(weights=weights, ensemble=ensemble, ensemble_config=ens_cfg)
        save_json(tmp / "ensemble.json", spec)
        write_text(tmp / "infer.py", INFER_PY)
        write_text(tmp / "README.txt", README)
        if wheel:
            build_wheel(tmp / "wheels")
        write_manifest(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_members(root: Path, exps: Sequence[str] | None, ensemble: str | None) -> tuple[list[Member], list[float], dict | None]:
    if not ensemble:
        if not exps:
            raise BundleError("nothing to bundle: pass --exps A B ... and/or --ensemble NAME")
        return [Member(e, root / e, root / e) for e in exps], [1.0 / len(exps)] * len(exps), None
    path = root / "ensemble" / ensemble / "weights.json"
    if not path.exists():
        raise BundleError(f"{path} not found: run the ensemble first (python ensemble.py --exps ... --name {ensemble})")
    summary = load_json(path)
    names, weights = list(summary["members"]), [float(w) for w in summary["weights"]]
    if exps and list(exps) != names:
        raise BundleError(f"--exps {list(exps)} differ from the members of ensemble {ensemble!r} {names} (same order); "
                          "omit --exps to take the ensemble's members")
    cfg = summary.get("config") or {}
    overrides: dict[str, Any] = {}
    if cfg.get("tta_scales"):  # members were re-predicted with the ensemble's TTA: reproduce that
        overrides = {"tta_scales": tuple(cfg["tta_scales"]), "tta_flip": bool(cfg.get("tta_flip", True))}
        if cfg.get("infer_h") and cfg.get("infer_w"):
            overrides.update(infer_h=int(cfg["infer_h"]), infer_w=int(cfg["infer_w"]))
    members = [Member(n, root / n, (root / "ensemble" / ensemble / "members" / n) if overrides else root / n, overrides)
               for n in names]
    return members, weights, cfg


def pack_members(members: Sequence[Member], dst: Path) -> dict[str, Any]:
    """configs/<exp>.json + weights/<exp>/fold<k>.safetensors; returns the inference spec."""
    spec: dict[str, Any] = {"format": 1, "members": [], "n_folds": None, "temperatures": {}, "overrides": {}}
    for m in members:
        config = read_member_config(m.exp_dir)
        if config.get("task") != "segmentation":
            raise BundleError(f"{m.name}: task {config.get('task')!r}; bundles support segmentation experiments only")
        n_folds = int(config["n_folds"])
        if spec["n_folds"] not in (None, n_folds):
            raise BundleError(f"{m.name} has {n_folds} folds, other members {spec['n_folds']}; blend members need the same folds")
        spec["n_folds"] = n_folds
        save_json(dst / "configs" / f"{m.name}.json", config)
        for k in range(n_folds):
            export_weights(m.exp_dir / f"fold{k}" / "checkpoints" / "best.pt", dst / "weights" / m.name / f"fold{k}.safetensors", m.name)
        spec["members"].append(m.name)
        spec["temperatures"][m.name] = fold_temperatures(m.pred_dir, n_folds, m.name)
        spec["overrides"][m.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in m.overrides.items()}
    return spec


def read_member_config(exp_dir: Path) -> dict[str, Any]:
    path = exp_dir / "fold0" / "config.json"
    if not path.exists():
        raise BundleError(f"{path} not found: train the experiment first (python exp/{exp_dir.name}.py --fold all)")
    return load_json(path)


def export_weights(ckpt: Path, dst: Path, exp: str) -> Path:
    """best.pt (loaded weights_only) → the model state dict alone, as safetensors."""
    import torch
    from safetensors.torch import save
    from kagglekit.engine.checkpoint import load_checkpoint
    if not ckpt.exists():
        raise BundleError(f"{ckpt} not found: train that fold first (python exp/{exp}.py --fold all)")
    state = load_checkpoint(ckpt)
    if not isinstance(state, dict) or "model" not in state:
        raise BundleError(f"{ckpt}: no 'model' state dict inside; re-run the fold (--overwrite)")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state["model"].items() if isinstance(v, torch.Tensor)}
    return write_bytes(dst, save(tensors, metadata={"experiment": exp, "source": ckpt.name}))


def fold_temperatures(pred_dir: Path, n_folds: int, exp: str) -> list[float]:
    """The temperature each fold's test predictions used (its OOF-chosen T)."""
    temps = []
    for k in range(n_folds):
        test_manifest, metrics = pred_dir / f"fold{k}" / "test" / "manifest.json", pred_dir / f"fold{k}" / "metrics.json"
        if test_manifest.exists():
            temps.append(float(load_json(test_manifest)["temperature"]))
        elif metrics.exists():
            temps.append(float(load_json(metrics)["best_temperature"]))
        else:
            raise BundleError(f"{test_manifest} and {metrics} not found: finish fold {k} of {exp} "
                              f"(python exp/{exp}.py --fold {k}) or re-run the ensemble")
    return temps


def build_wheel(dst: Path) -> Path:
    """``pip wheel <repo> --no-deps --no-build-isolation`` from a clean copy of the repo (no network,
    no build/ or egg-info left in the working tree)."""
    repo = paths.REPO_ROOT
    if not (repo / "pyproject.toml").exists():
        raise BundleError(f"{repo / 'pyproject.toml'} not found: bundle from a source checkout of kagglekit")
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kagglekit-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(repo / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in"):
            if (repo / name).exists():
                shutil.copy2(repo / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dst)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_INDEX": "1"})
    wheels = sorted(dst.glob("kagglekit-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise BundleError(f"building the wheel failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wheels[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle: Path) -> Path:
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    entries = [{"path": p.relative_to(bundle).as_posix(), "size": p.stat().st_size, "sha256": sha256(p)} for p in files]
    return save_json(bundle / "MANIFEST.json", {"files": entries, "total_bytes": sum(e["size"] for e in entries)})


def verify_manifest(bundle: Path) -> None:
    path = bundle / "MANIFEST.json"
    if not path.exists():
        raise BundleError(f"{path} not found: rebuild the bundle with `kagglekit bundle`")
    for entry in load_json(path)["files"]:
        file = bundle / entry["path"]
        if not file.exists():
            raise BundleError(f"{file} listed in MANIFEST.json is missing; copy the whole bundle folder")
        if file.stat().st_size != entry["size"] or sha256(file) != entry["sha256"]:
            raise BundleError(f"{file}: size/sha256 differ from MANIFEST.json (corrupted or edited); rebuild the bundle")


# ---- inference (called by the bundle's infer.py) -----------------------------------------------
def infer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer.py", description="Predict the test set with this kagglekit bundle.")
    parser.add_argument("--data", required=True, type=Path, help="dir with test.csv, test/{image,depth}/, sample_submission.csv")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"), help="submission CSV to write")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch dir for per-fold predictions (default: a temp dir)")
    parser.add_argument("--no-verify", action="store_true", help="skip the MANIFEST.json checksum check")
    return parser


def infer_main(argv: Sequence[str], bundle: Path) -> int:
    args = infer_parser().parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return run_inference(Path(bundle), args)
    except (BundleError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_inference(bundle: Path, args: argparse.Namespace) -> int:
    if not args.no_verify:
        verify_manifest(bundle)
    for name in ("test.csv", "sample_submission.csv"):
        if not (args.data / name).exists():
            raise BundleError(f"{args.data / name} not found: --data must be the competition dir (test.csv, test/, sample_submission.csv)")
    spec = load_json(bundle / "ensemble.json")
    with tempfile.TemporaryDirectory(prefix="kagglekit-infer-", dir=args.workdir) as tmp:
        sources = [predict_member(bundle, spec, m, args.data, args.device, Path(tmp) / m) for m in spec["members"]]
        path = write_blend(sources, spec["weights"], spec["n_folds"], args.data / "sample_submission.csv", args.out)
    print(f"submission written to {path}")
    return 0


def predict_member(bundle: Path, spec: dict[str, Any], name: str, data: Path, device: str, dst: Path) -> Path:
    """Each fold's weights → test TTA at the fold's temperature → ``dst/fold<k>/test`` store."""
    from safetensors.torch import load_file
    from kagglekit.config import from_dict
    from kagglekit.runner import build_task
    from kagglekit.tasks import CONFIGS
    data_cfg = load_json(bundle / "configs" / f"{name}.json")
    cfg = from_dict(CONFIGS[data_cfg["task"]](), data_cfg)
    cfg = replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in spec["overrides"].get(name, {}).items()},
                  data_dir=str(data), device=device, pretrained_path="", output_dir=str(dst.parent))
    task = build_task(cfg)
    for k, temperature in enumerate(spec["temperatures"][name]):
        model = task.build_model()
        model.load_state_dict(load_file(bundle / "weights" / name / f"fold{k}.safetensors", device="cpu"))
        log.info("predicting %s fold %d (T=%g, TTA %s)", name, k, temperature, list(cfg.tta_scales))
        task._predict_test(task._forward(model), k, dst / f"fold{k}", temperature)
    return dst


def write_blend(sources: Sequence[Path], weights: Sequence[float], n_folds: int, sample_csv: Path, out: Path) -> Path:
    import numpy as np
    from kagglekit.blend import blended_test_chunks
    from kagglekit.tasks.segmentation.finish import write_segmentation_submission
    orig_hw = tuple(load_json(Path(sources[0]) / "fold0" / "test" / "manifest.json")["orig_hw"])
    chunks = blended_test_chunks(sources, np.asarray(weights, dtype=np.float64), n_folds)
    return write_segmentation_submission(chunks, orig_hw, sample_csv, out)
