"""``kagglekit bundle``: pack a trained experiment, or an ensemble of experiments, of any task into
a folder a Kaggle code competition can run offline, plus the standalone ``infer.py`` that predicts
from it. Everything task-specific goes through the Task contract (:mod:`kagglekit.experiment.contract`).

Bundle layout::

    weights/<exp>/fold<k>.safetensors   the weights fold k predicted its test set with (``task.final_checkpoint``)
    configs/<exp>.json                  resolved config (output/<exp>/fold0/config.json [+ the ensemble's TTA overrides])
    metrics/<exp>/fold<k>.json          the fold's metrics.json (``predict_test`` reads its OOF decisions, e.g. the temperature)
    ensemble.json                       task, members, blend weights, decisions (thresholds...), data paths per member
    wheels/*.whl                        this package + every dependency wheel inference needs that the target
                                        does not already have (install: pip install --no-index --no-deps wheels/*.whl)
    wheels.json                         per wheel its name, version and source (pip download / repacked from the
                                        installed distribution / built from the source checkout); the dependencies
                                        and which module each provides (infer.py names a missing package with it)
    infer.py                            python infer.py --data <data dir> --out submission.csv [--device cpu]
    README.txt, MANIFEST.json           how to install and lay out --data; size + sha256 of every file

Dependency wheels (:mod:`kagglekit.workflow.wheels`): kagglekit's runtime ``Requires-Dist``,
transitively, minus ``--assume-installed FILE`` (a ``pip freeze`` of the target image), each from
``pip download`` for ``--platform`` / ``--python-version`` or, offline on the same platform, repacked
from the installed distribution.

Inference (:func:`infer_main`, which ``infer.py`` calls) is the library's own path: each member's task
rebuilt from its config with ``data_dir`` = ``--data`` → per fold ``build_model(initial_weights=False)``
+ the fold's weights → ``predict_test`` into a scratch folder → ``tasks[0].write_blend_submission(tasks,
member_dirs, weights, decisions, out)``, validated before it is written. ``decisions`` are what was
chosen on OOF: the ensemble's ``weights.json`` (its objective's extras, e.g. ``thresholds``) or a
single experiment's ``metrics.json`` summary.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from kagglekit import paths
from kagglekit.io import load_json, save_json, write_bytes, write_text
from kagglekit.workflow import wheels as W

log = logging.getLogger("kagglekit.bundle")

INSTALL = "pip install --no-index --no-deps wheels/*.whl"
FORMAT = 2

INFER_PY = """#!/usr/bin/env python
\"\"\"Offline inference for this bundle (written by `kagglekit bundle`).

    pip install --no-index --no-deps wheels/*.whl     # once, no internet needed
    python infer.py --data /kaggle/input/<comp> --out submission.csv [--device cpu] [--set FIELD=PATH]
\"\"\"
import json
import re
import sys
from importlib import metadata
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(name):
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def missing_message(exc):
    \"\"\"Which package is missing (wheels.json maps modules to packages) and how to install it from here.\"\"\"
    info = json.loads((BUNDLE / "wheels.json").read_text()) if (BUNDLE / "wheels.json").exists() else {}
    every = f"pip install --no-index --no-deps {BUNDLE}/wheels/*.whl"
    module = (getattr(exc, "name", None) or "").partition(".")[0]
    if not module:
        return f"kagglekit cannot be imported ({exc}); install this bundle's wheels: {every}"
    owners = info.get("modules", {}).get(module) or (metadata.packages_distributions().get(module) or [module])[0]
    bundled = {canon(w["name"]): w["name"] for w in info.get("wheels", [])}
    lost = [n for n in info.get("requires", []) if not installed(n)]
    from_here = sorted({bundled[canon(n)] for n in [owners, *lost] if canon(n) in bundled})
    absent = sorted({n for n in [owners, *lost] if canon(n) not in bundled})
    lines = [f"package {owners!r} is not installed (No module named {module!r}), needed by this bundle's inference."]
    if from_here:
        lines.append(f"Install from this bundle: pip install --no-index --find-links {BUNDLE}/wheels "
                     + " ".join(from_here) + f"   (or every wheel: {every})")
    if absent:
        lines.append(f"Not in this bundle (assumed present on the target image when it was built): {', '.join(absent)}; "
                     "install them into the image, or rebuild the bundle with an --assume-installed list that omits them.")
    return "\\n".join(lines)


if __name__ == "__main__":
    try:
        from kagglekit.workflow.bundle import infer_main
        code = infer_main(sys.argv[1:], BUNDLE)
    except ModuleNotFoundError as exc:
        sys.exit(missing_message(exc))
    sys.exit(code)
"""

LAYOUT = """\
  segmentation  test.csv, test/image/ + test/depth/ (PNG per id), sample_submission.csv
  behavior      train.csv (body parts, actions; the pairs view also reads its first video's
                train_tracking/ for the feature width), test.csv, test_tracking/<lab>/<video>.parquet
  multilabel    labels_csv (its image column and attributes), test_csv and the images it lists
  detection     the categories (COCO annotations/instances_train.json, or YOLO classes.txt + train
                labels) and the test split (annotations/instances_test.json + images, or YOLO images/test)
  keypoints     real_train_json (keypoint names), real_test_json and the images under real_image_dir"""

README = """{title}
{rule}

Offline install (no internet; wheels/ holds kagglekit and every dependency inference needs that
the target image was not assumed to have):

    {install}

{wheels}

Predict:

    python infer.py --data <data dir> --out submission.csv [--device cpu] [--set FIELD=PATH ...]

--data replaces each member's data_dir: lay it out like the data folder the experiments were trained
on. What each task reads from it to predict its test split:

{layout}

Config fields that held an absolute path inside the member's data_dir are re-rooted at --data
(ensemble.json: data_paths); other absolute paths (external_paths) are kept as they were, and
`--set FIELD=PATH` (applied to every member's config) points one elsewhere. Files derived from the
data (YOLO -> COCO conversion) go to a scratch folder, never into --data.

Members, blend weights, OOF decisions (thresholds, ...): ensemble.json; each fold's metrics:
metrics/. Checksums: MANIFEST.json (infer.py verifies them first; --no-verify skips).
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
    parser.add_argument("--ensemble", default=None,
                        help="ensemble name (output/ensemble/<name>/weights.json); without it: one experiment, "
                             "or several blended with uniform weights")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    parser.add_argument("--output", type=Path, default=None, help="experiments' root (default: output/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--no-wheel", action="store_true", help="skip building wheels/ (the bundle is then not installable offline)")
    parser.add_argument("--assume-installed", type=Path, default=None, metavar="FILE",
                        help="pip freeze / pip list --format=freeze of the target image: those packages are not bundled")
    parser.add_argument("--platform", default=None, help="target platform tag for pip download (default: this interpreter's)")
    parser.add_argument("--python-version", default=None, help="target Python X.Y (default: this interpreter's)")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR", help="passed to pip download; repeatable")
    parser.add_argument("--index-url", default=None, help="passed to pip download")
    parser.add_argument("--extra-index-url", action="append", default=[], help="passed to pip download; repeatable")
    parser.add_argument("--no-download", action="store_true",
                        help="do not try pip download; repack the installed distributions (same platform/Python only)")


def wheel_options(args: argparse.Namespace) -> W.WheelOptions:
    """The dependency-wheel flags of ``kagglekit bundle`` (absent ones at their defaults)."""
    return W.WheelOptions(assume_installed=getattr(args, "assume_installed", None), platform=getattr(args, "platform", None),
                          python_version=getattr(args, "python_version", None),
                          find_links=list(getattr(args, "find_links", None) or []), index_url=getattr(args, "index_url", None),
                          extra_index_urls=list(getattr(args, "extra_index_url", None) or []),
                          download=not getattr(args, "no_download", False))


def main(args: argparse.Namespace) -> int:
    try:
        out = build_bundle(args.exps, args.out, output=args.output, ensemble=args.ensemble,
                           overwrite=args.overwrite, wheel=not getattr(args, "no_wheel", False), deps=wheel_options(args))
    except (BundleError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"bundle written to {out}; install offline with: cd {out} && {INSTALL}")
    return 0


# ---- build -------------------------------------------------------------------------------------
def build_bundle(exps: Sequence[str] | None, out: Path, *, output: Path | None = None, ensemble: str | None = None,
                 overwrite: bool = False, wheel: bool = True, deps: W.WheelOptions | None = None) -> Path:
    """Write the bundle into a temp folder beside ``out`` and rename it into place when complete; ``wheel``:
    wheels/ with kagglekit + its dependency wheels as ``deps`` says (default: every dependency, this interpreter)."""
    root = Path(output) if output else paths.output_root()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite or choose another --out")
    members, weights, ens_summary = resolve_members(root, exps, ensemble)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        spec = pack_members(members, tmp)
        spec.update(weights=weights, ensemble=ensemble, decisions=blend_decisions(members, weights, ens_summary),
                    ensemble_config=(ens_summary or {}).get("config"))
        save_json(tmp / "ensemble.json", spec)
        write_text(tmp / "infer.py", INFER_PY)
        title = (f"kagglekit inference bundle ({spec['task']}): "
                 + (f"ensemble {ensemble} of {', '.join(spec['members'])}" if ensemble else ", ".join(spec["members"])))
        wheels = bundle_wheels(tmp, deps or W.WheelOptions()) if wheel else None
        write_text(tmp / "README.txt", README.format(title=title, rule="=" * len(title), install=INSTALL, layout=LAYOUT,
                                                     wheels=wheels_text(wheels)))
        write_manifest(tmp, wheels)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_members(root: Path, exps: Sequence[str] | None, ensemble: str | None) -> tuple[list[Member], list[float], dict | None]:
    """The members, their blend weights and the ensemble's ``weights.json`` (None without ``ensemble``:
    one experiment at weight 1, or several at uniform weights)."""
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
    return members, weights, summary


def pack_members(members: Sequence[Member], dst: Path) -> dict[str, Any]:
    """Per member: configs/<exp>.json, weights/<exp>/fold<k>.safetensors, metrics/<exp>/fold<k>.json
    and its data paths; returns the inference spec (ensemble.json without weights and decisions)."""
    spec: dict[str, Any] = {"format": FORMAT, "task": None, "members": [], "n_folds": None, "overrides": {},
                            "data_paths": {}, "external_paths": {}}
    for m in members:
        config = {**read_member_config(m.exp_dir), **{k: list(v) if isinstance(v, tuple) else v for k, v in m.overrides.items()}}
        task = member_task(config, m.name, device="cpu")  # built only to ask it (final_checkpoint)
        if spec["task"] not in (None, task.cfg.task):
            raise BundleError(f"{m.name} is a {task.cfg.task!r} experiment, the others {spec['task']!r}; bundle one task at a time")
        n_folds = int(task.cfg.n_folds)
        if spec["n_folds"] not in (None, n_folds):
            raise BundleError(f"{m.name} has {n_folds} folds, other members {spec['n_folds']}; blend members need the same folds")
        spec["task"], spec["n_folds"] = task.cfg.task, n_folds
        save_json(dst / "configs" / f"{m.name}.json", config)
        for k in range(n_folds):
            fold_dir = m.exp_dir / f"fold{k}"
            checkpoint = task.final_checkpoint(fold_dir, fold_metrics(m.exp_dir, k, m.name))
            export_weights(checkpoint, dst / "weights" / m.name / f"fold{k}.safetensors", m.name)
            save_json(dst / "metrics" / m.name / f"fold{k}.json", fold_metrics(m.pred_dir, k, m.name))
        spec["members"].append(m.name)
        spec["overrides"][m.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in m.overrides.items()}
        spec["data_paths"][m.name], spec["external_paths"][m.name] = data_paths(config)
    return spec


def read_member_config(exp_dir: Path) -> dict[str, Any]:
    path = exp_dir / "fold0" / "config.json"
    if not path.exists():
        raise BundleError(f"{path} not found: train the experiment first (python exp/{exp_dir.name}.py --fold all)")
    return load_json(path)


def member_task(config: dict[str, Any], name: str, overrides: Sequence[str] = (), **changes: Any) -> Any:
    """The member's task, built from its saved config (``changes``, then ``--set`` ``overrides`` applied)."""
    from kagglekit.config import ConfigError, apply_overrides, from_dict
    from kagglekit.experiment.runner import build_task
    from kagglekit.tasks import CONFIGS
    if config.get("task") not in CONFIGS:
        raise BundleError(f"{name}: task {config.get('task')!r} unknown; use one of {sorted(CONFIGS)}")
    try:
        cfg = replace(from_dict(CONFIGS[config["task"]](), config), **changes)
        return build_task(apply_overrides(cfg, overrides))
    except (ConfigError, TypeError, ValueError) as exc:
        raise BundleError(f"{name}: cannot rebuild its task from the saved config ({exc})") from exc


def fold_metrics(pred_dir: Path, fold: int, exp: str) -> dict[str, Any]:
    """``pred_dir/fold<k>/metrics.json``: the fold's OOF decisions (its chosen temperature, final version...)."""
    path = pred_dir / f"fold{fold}" / "metrics.json"
    if not path.exists():
        raise BundleError(f"{path} not found: finish fold {fold} of {exp} (python exp/{exp}.py --fold {fold}) "
                          "or re-run the ensemble")
    return load_json(path)


def blend_decisions(members: Sequence[Member], weights: Sequence[float], ens_summary: dict | None) -> dict[str, Any]:
    """What ``write_blend_submission`` reads, as chosen on OOF: the ensemble's ``weights.json``
    (search result + its objective's extras), one experiment's ``metrics.json`` summary, or for
    several experiments without an ensemble the blend objective's extras at the uniform weights."""
    if ens_summary is not None:
        return ens_summary
    if len(members) == 1:
        path = members[0].exp_dir / "metrics.json"
        if not path.exists():
            raise BundleError(f"{path} not found: finish every fold of {members[0].name} first "
                              f"(python exp/{members[0].name}.py --fold all); its OOF decisions are read from it")
        return load_json(path)
    import numpy as np
    tasks = [member_task(read_member_config(m.exp_dir), m.name, device="cpu") for m in members]
    objective = tasks[0].blend_objective(tasks, [m.pred_dir for m in members])
    return objective.extras(np.asarray(weights, dtype=np.float64))


def data_root(config: dict[str, Any]) -> Path:
    """Where the member read its data (``data_dir``, default ``input/<comp>``), absolute."""
    value = Path(config.get("data_dir") or paths.input_root() / str(config.get("comp", "")))
    return (value if value.is_absolute() else paths.project_root() / value).resolve()


NOT_DATA = ("data_dir", "output_dir", "submissions_dir")  # data_dir is replaced; outputs are not read at inference


def data_paths(config: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The config's absolute path fields: inside the data root (→ relative, re-rooted at ``--data``)
    and outside it (kept as they are; ``--set`` replaces them). Relative values are left alone: the
    tasks read them relative to ``data_dir`` already."""
    root, inside, outside = data_root(config), {}, {}
    for key, value in config.items():
        if key in NOT_DATA or not isinstance(value, str) or not value or not Path(value).is_absolute():
            continue
        try:
            inside[key] = Path(value).resolve().relative_to(root).as_posix()
        except ValueError:
            outside[key] = value
    return inside, outside


def export_weights(ckpt: Path, dst: Path, exp: str) -> Path:
    """A checkpoint ``{"model": state_dict, ...}`` (loaded weights_only) → the state dict alone, as safetensors."""
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


def bundle_wheels(bundle: Path, opts: W.WheelOptions) -> dict[str, Any]:
    """wheels/: kagglekit's wheel (built from the checkout) + its dependency closure minus the assumed
    packages; wheels.json records each wheel's source, the dependency names and module → package."""
    try:
        assumed = W.read_freeze(opts.assume_installed) if opts.assume_installed else {}
        packages, requires = W.dependency_closure(W.ROOT, assumed)
        own = build_wheel(bundle / "wheels")
        records = [{"name": W.ROOT, "version": own.name.split("-")[1], "file": own.name, "source": W.BUILT}]
        records += W.collect_wheels(bundle / "wheels", packages, opts)
    except (W.WheelError, OSError) as exc:
        raise BundleError(str(exc)) from exc
    assumed_used = sorted(n for n in requires if n not in packages)
    info = {"wheels": records, "requires": requires, "assumed_installed": assumed_used,
            "modules": W.module_owners([W.ROOT, *requires]),
            "target": {"platform": opts.platform or W.here_platform(),
                       "python_version": opts.python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"}}
    save_json(bundle / "wheels.json", info)
    log.info("wheels/: %d wheels (%s), %d dependencies assumed installed", len(records),
             ", ".join(f"{sum(r['source'] == s for r in records)} {s}" for s in (W.BUILT, W.DOWNLOADED, W.REPACKED)),
             len(assumed_used))
    return info


def wheels_text(info: dict[str, Any] | None) -> str:
    """README lines: each wheel and where it came from, and what the target must already have."""
    if info is None:
        return "(built with --no-wheel: no wheels/; install kagglekit and its dependencies yourself)"
    lines = ["wheels/ (file: source):"] + [f"  {r['file']}: {r['source']}" for r in info["wheels"]]
    assumed = info["assumed_installed"]
    lines.append("Assumed installed on the target (not bundled): " + (", ".join(assumed) if assumed else "nothing"))
    return "\n".join(lines)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle: Path, wheels: dict[str, Any] | None = None) -> Path:
    """MANIFEST.json: size + sha256 of every file, and which wheel came from where (wheels.json's list)."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    entries = [{"path": p.relative_to(bundle).as_posix(), "size": p.stat().st_size, "sha256": sha256(p)} for p in files]
    sources = {r["file"]: r["source"] for r in (wheels or {}).get("wheels", [])}
    return save_json(bundle / "MANIFEST.json", {"files": entries, "total_bytes": sum(e["size"] for e in entries),
                                                "wheel_sources": sources})


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
    parser.add_argument("--data", required=True, type=Path,
                        help="the data folder, laid out as the experiments' data_dir (README.txt: what each task reads)")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"), help="submission CSV to write")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field of every member (e.g. a path outside the data folder); repeatable")
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


@contextlib.contextmanager
def scratch_input(folder: Path) -> Iterator[Path]:
    """``KAGGLEKIT_INPUT`` → ``folder`` for the block: what a task derives from its data (YOLO → COCO
    conversion, folds.csv) lands there, not beside a read-only ``--data``."""
    old = os.environ.get("KAGGLEKIT_INPUT")
    os.environ["KAGGLEKIT_INPUT"] = str(folder)
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop("KAGGLEKIT_INPUT", None)
        else:
            os.environ["KAGGLEKIT_INPUT"] = old


def run_inference(bundle: Path, args: argparse.Namespace) -> int:
    if not args.no_verify:
        verify_manifest(bundle)
    if not args.data.is_dir():
        raise BundleError(f"--data {args.data} is not a folder; give the data folder (README.txt: what it must hold)")
    spec = load_json(bundle / "ensemble.json")
    if spec.get("format") != FORMAT:
        raise BundleError(f"{bundle / 'ensemble.json'}: bundle format {spec.get('format')}, this kagglekit reads {FORMAT}; "
                          "rebuild the bundle with `kagglekit bundle`")
    with tempfile.TemporaryDirectory(prefix="kagglekit-infer-", dir=args.workdir) as tmp, scratch_input(Path(tmp) / "input"):
        tasks = [inference_task(bundle, spec, name, args) for name in spec["members"]]
        dirs = [predict_member(bundle, task, name, Path(tmp) / "members" / name)
                for task, name in zip(tasks, spec["members"])]
        path = tasks[0].write_blend_submission(tasks, dirs, blend_weights(spec), spec["decisions"], args.out)
    if path is None:
        raise BundleError("no submission written: a member has no test predictions")
    print(f"submission written to {path}")
    return 0


def inference_task(bundle: Path, spec: dict[str, Any], name: str, args: argparse.Namespace) -> Any:
    """The member's task on ``--data``: data_dir and the path fields inside it re-rooted there, the
    device chosen, then ``--set`` overrides."""
    data = args.data.resolve()
    moved = {k: str(data / rel) for k, rel in spec["data_paths"].get(name, {}).items()}
    task = member_task(load_json(bundle / "configs" / f"{name}.json"), name, args.overrides,
                       data_dir=str(data), device=args.device, **moved)
    overridden = {item.partition("=")[0].strip() for item in args.overrides}
    for key, value in spec["external_paths"].get(name, {}).items():
        if key not in overridden and not Path(value).exists():
            log.warning("%s: %s=%s was outside its data_dir when bundled and does not exist here; "
                        "if the task reads it, pass --set %s=PATH", name, key, value, key)
    return task


def predict_member(bundle: Path, task: Any, name: str, dst: Path) -> Path:
    """Each fold's weights → ``task.predict_test`` into ``dst/fold<k>`` (the library's layout)."""
    from safetensors.torch import load_file
    for k in range(task.cfg.n_folds):
        model = task.build_model(initial_weights=False)
        model.load_state_dict(load_file(bundle / "weights" / name / f"fold{k}.safetensors", device="cpu"))
        log.info("predicting the test split with %s fold %d", name, k)
        if not task.predict_test(model, k, dst / f"fold{k}", load_json(bundle / "metrics" / name / f"fold{k}.json")):
            raise BundleError(f"{name}: the data has no test split for this task (the log above says which file is "
                              f"missing; README.txt lists what --data must hold)")
    return dst


def blend_weights(spec: dict[str, Any]) -> Any:
    """The weights as the library passed them, so the arithmetic (and the file) is the same: one
    experiment's ``write_submission`` passes ``[1.0]``, the ensemble runner a float64 array."""
    import numpy as np
    if spec.get("ensemble") is None and len(spec["members"]) == 1:
        return [float(w) for w in spec["weights"]]
    return np.asarray(spec["weights"], dtype=np.float64)
