"""Checkpoint integrity (sha256 manifests), resume fallback to ``last_prev.pt``, safe loading, and
resource faults (NaN loss, out of memory) leaving the last good checkpoint untouched."""
from __future__ import annotations

import builtins
import hashlib
import json
import pickle
import logging
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from kagglekit.engine.checkpoint import (CheckpointError, load_checkpoint, manifest_path, rotate_checkpoint,
                                         save_checkpoint, verify_checkpoint)
from kagglekit.engine.fit import FitSettings, NonFiniteLossError, OutOfMemory, fit
from kagglekit.engine.seed import seed_everything

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyEvaluator, ToyModel, assert_same_run, killer_evaluator  # noqa: E402

SETTINGS = FitSettings(epochs=4, batch_size=8, lr=0.05, weight_decay=0.01, scheduler="cosine", warmup_epochs=1,
                       ema_decay=0.9, monitor="valid_rmse", monitor_mode="min", num_workers=0, seed=3, grad_clip=1.0)


def run_fit(out: Path, settings: FitSettings = SETTINGS, resume: bool = False, model: nn.Module | None = None,
            evaluator=ToyEvaluator):
    seed_everything(settings.seed)
    return fit(model or ToyModel(), ToyDataset(64, 0), ToyDataset(32, 1), evaluator, settings, out / "ckpt",
               out / "history.csv", resume)


def run_killed_after(out: Path, epochs_done: int, settings: FitSettings = SETTINGS) -> None:
    """A run killed during the evaluation of epoch ``epochs_done + 1`` (its outputs not written)."""
    with pytest.raises(KeyboardInterrupt):
        run_fit(out, settings, evaluator=killer_evaluator(epochs_done))


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def flip_tensor_byte(path: Path) -> None:
    """Corrupt one byte inside tensor data: same size, and torch still loads it (silently wrong)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"/data/0") + 200  # well inside the first tensor's record
    data[start] ^= 0x40
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- manifests
def test_manifest_records_size_and_sha256(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(1000.0), "epoch": 3})
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["file"] == "c.pt" and manifest["size"] == path.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and "previous" not in manifest
    assert load_checkpoint(path)["epoch"] == 3


def test_flipped_byte_is_caught_by_the_hash(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(1000)})
    flip_tensor_byte(path)
    assert load_checkpoint(path, verify=False)["w"].abs().sum() > 0  # torch alone does not notice
    with pytest.raises(CheckpointError, match=r"c\.pt is truncated/corrupted \(sha256 mismatch"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_caught_by_the_size(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"c\.pt is truncated/corrupted \(size mismatch"):
        load_checkpoint(path)


def test_checkpoints_without_manifest_still_load(tmp_path):
    torch.save({"w": torch.ones(3), "epoch": 1}, tmp_path / "old.pt")  # an older run's checkpoint
    assert verify_checkpoint(tmp_path / "old.pt") is None
    assert load_checkpoint(tmp_path / "old.pt")["epoch"] == 1
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 2})
    manifest_path(path).unlink()
    assert load_checkpoint(path)["epoch"] == 2


def test_unreadable_manifest_is_an_error_naming_it(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 2})
    manifest_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"c\.pt\.manifest\.json: checkpoint manifest unreadable"):
        load_checkpoint(path)


def test_rotation_keeps_only_a_verified_checkpoint(tmp_path):
    last, prev = tmp_path / "last.pt", tmp_path / "last_prev.pt"
    save_checkpoint(last, {"epoch": 1})
    assert rotate_checkpoint(last, prev) and not last.exists() and not manifest_path(last).exists()
    assert load_checkpoint(prev)["epoch"] == 1
    save_checkpoint(last, {"epoch": 2, "w": torch.zeros(1000)})
    flip_tensor_byte(last)
    good = snapshot(tmp_path)
    assert not rotate_checkpoint(last, prev)  # a corrupted last.pt must not replace the good last_prev.pt
    assert snapshot(tmp_path) == good


# ----------------------------------------------------------------------------- resume fallback
@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "missing"])
def test_resume_falls_back_to_last_prev_and_is_exact(tmp_path, damage, caplog):
    """last.pt damaged after epoch 2 (or missing: killed between the rotation and the write):
    resume from last_prev.pt (epoch 1) redoes epoch 2 and ends identical to an uninterrupted run."""
    full = run_fit(tmp_path / "full")
    part = tmp_path / "part"
    run_killed_after(part, 2)
    last = part / "ckpt" / "last.pt"
    assert load_checkpoint(part / "ckpt" / "last_prev.pt")["epoch"] == 1 and load_checkpoint(last)["epoch"] == 2
    if damage == "flipped_byte":
        flip_tensor_byte(last)
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    else:
        last.unlink()
    with caplog.at_level(logging.WARNING, logger="kagglekit.fit"):
        resumed = run_fit(part, resume=True, evaluator=_HistoryProbe.make(part))
    assert "resuming from the previous resume point" in caplog.text and "last_prev.pt" in caplog.text
    assert _HistoryProbe.rows_at_first_eval == 1, "history.csv was not cut back to the resume point"
    assert_same_run(tmp_path / "full", part, full.eval_model, resumed.eval_model)
    final_a, final_b = (load_checkpoint(d / "ckpt" / "last.pt")["model"] for d in (tmp_path / "full", part))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


class _HistoryProbe(ToyEvaluator):
    """Records how many rows history.csv has when the resumed run first evaluates."""
    rows_at_first_eval: int | None = None
    path: Path

    @classmethod
    def make(cls, out: Path):
        cls.rows_at_first_eval, cls.path = None, out / "history.csv"
        return cls

    def compute(self):
        if type(self).rows_at_first_eval is None:
            type(self).rows_at_first_eval = len(pd.read_csv(self.path))
        return super().compute()


def test_resume_with_no_usable_point_names_both(tmp_path):
    run_killed_after(tmp_path, 2)
    for name in ("last.pt", "last_prev.pt"):
        path = tmp_path / "ckpt" / name
        path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"cannot resume from .*last\.pt nor .*last_prev\.pt") as info:
        run_fit(tmp_path, resume=True)
    assert str(info.value).count("truncated/corrupted") == 2


# ----------------------------------------------------------------------------- safe loading
_PAYLOADS = {
    "os.system": lambda marker: (os.system, (f"touch {marker}",)),
    "builtins.exec": lambda marker: (builtins.exec, (f"open({str(marker)!r}, 'w').write('x')",)),
    "os.mkdir": lambda marker: (os.mkdir, (str(marker),)),
}


@pytest.mark.parametrize("payload", sorted(_PAYLOADS))
@pytest.mark.parametrize("with_manifest", [False, True], ids=["bare", "matching-manifest"])
def test_malicious_checkpoint_never_executes(tmp_path, payload, with_manifest):
    """The pickle is live (an unsafe torch.load runs it), yet load_checkpoint refuses it without
    running it, whether or not a manifest vouches for the file's bytes."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return _PAYLOADS[payload](marker)

    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "x": Evil()}, path)
    pickle.loads(pickle.dumps(Evil()))  # control: the payload really runs when unpickled unsafely (as torch.load without weights_only does)
    assert marker.exists()
    marker.rmdir() if marker.is_dir() else marker.unlink()
    if with_manifest:
        manifest_path(path).write_text(json.dumps({"size": path.stat().st_size,
                                                   "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
        assert verify_checkpoint(path) is not None
    for verify in (True, False):
        with pytest.raises(CheckpointError, match=r"evil\.pt: cannot load checkpoint safely \(UnpicklingError"):
            load_checkpoint(path, verify=verify)
        assert not marker.exists()


# ----------------------------------------------------------------------------- resource faults
class OomModel(ToyModel):
    """Raises CUDA's out-of-memory error (as torch does) at the ``at``-th training forward, or in
    every validation forward with ``in_eval``."""

    def __init__(self, at: int = -1, in_eval: bool = False) -> None:
        super().__init__()
        self.at, self.in_eval, self.n = at, in_eval, 0

    def forward(self, batch):
        if self.training:
            self.n += 1
            if self.n == self.at:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB "
                                             "total capacity)\nsee the PyTorch memory management documentation")
        elif self.in_eval:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return super().forward(batch)


@pytest.mark.parametrize("fault", ["nan", "oom_train", "oom_valid"])
def test_resource_fault_stops_cleanly_and_keeps_every_file(tmp_path, fault):
    """After 2 good epochs, a NaN loss / OOM in epoch 3 raises a clear error and leaves every file
    (best, last, last_prev, manifests, history) byte-identical; the run then resumes normally."""
    run_killed_after(tmp_path, 2)
    before = snapshot(tmp_path)
    model, error, pattern = {
        "nan": (ToyModel(nan_at_step=3), NonFiniteLossError, r"non-finite loss .* at step 19 "),
        "oom_train": (OomModel(at=4), OutOfMemory,
                      r"^CUDA out of memory\. Tried to allocate 2\.00 GiB .* at step 19 \(epoch 2, micro-batch 4/8\) "
                      r"with batch_size=8, accum_steps=1; lower batch_size .*accum_steps.*TTA views"),
        "oom_valid": (OomModel(in_eval=True), OutOfMemory,
                      r"^CUDA out of memory\. Tried to allocate 1\.00 GiB .* in validation batch 1 .*lower batch_size"),
    }[fault]
    with pytest.raises(error, match=pattern) as info:
        run_fit(tmp_path, resume=True, model=model)
    assert "\n" not in str(info.value)
    assert snapshot(tmp_path) == before
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["epoch"] == 2
    run_fit(tmp_path, resume=True)  # the kept resume point still works
    assert len(pd.read_csv(tmp_path / "history.csv")) == 4


def test_cli_reports_out_of_memory_as_one_error_line(tmp_path, monkeypatch, capsys):
    from kagglekit import cli
    from kagglekit.experiment import runner
    from kagglekit.tasks.segmentation.config import SegmentationConfig

    def run_fold(cfg, fold, resume=False, overwrite=False):
        return run_fit(tmp_path, model=OomModel(at=2))
    monkeypatch.setattr(runner, "build_task", lambda cfg: object())
    monkeypatch.setattr(runner, "run_fold", run_fold)
    assert cli.main(SegmentationConfig(name="x", n_folds=2), ["--fold", "0"]) == 2
    err = capsys.readouterr().err  # (tqdm's progress bars also go to stderr)
    assert err.count("error:") == 1
    line = err[err.index("error: "):].split("\n")[0]
    assert line.startswith("error: CUDA out of memory. Tried to allocate 2.00 GiB") and "lower batch_size" in line
    assert "Traceback" not in err
