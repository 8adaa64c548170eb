"""Atomic writes under kills, injected faults and a full disk.

Every artefact helper (``save_json``, ``save_npy``, ``write_text``, ``save_csv``,
``save_checkpoint`` with its manifest, ``rotate_checkpoint``, the OOF ``PredictionWriter``) must
leave each file either as the old complete version or the new complete one, whatever happens.

The files written are self-validating, so any torn/mixed/truncated file is detected: JSON carries
the sha256 of its payload; every element of an ``.npy`` (and of the OOF arrays) equals the version
number, so a complete file is constant-valued; text repeats the version on every line and ends with
an END line; checkpoints hold a tensor filled with the version plus its sum (and are verified
against their sha256 manifest).

* :func:`test_sigkill_at_random_points` kills a writer process with SIGKILL ``N_RANDOM_KILLS`` times
  at seeded random delays while it rewrites everything in a loop.
* :func:`test_crash_at_every_io_boundary` kills it (``os._exit``) just before each of the
  ``N_IO_BOUNDARIES`` fsync / rename / unlink calls of one rewrite, deterministically.
* :func:`test_fault_at_every_io_boundary_in_process` raises ``OSError`` at each of those calls
  in-process: the exception propagates and no temp file is left.
* ``test_disk_full_*``: ``ENOSPC`` part-way through a write (after 0, 1, ... bytes), at fsync
  and at temp-file creation: :class:`DiskFullError` naming the path, no temp left, old file intact.

After every kill the on-disk state is validated, then :func:`remove_stale_temps` must remove every
leftover temp file (and nothing else).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kagglekit.engine.checkpoint import load_checkpoint, manifest_path, rotate_checkpoint, save_checkpoint
from kagglekit.io import DiskFullError, load_json, remove_stale_temps, save_csv, save_json, save_npy, write_text
from kagglekit.store.arrays import Manifest, PredictionWriter, read_predictions

TESTS = Path(__file__).resolve().parent

# Counts cited by the reliability table (asserted below, so they stay true).
N_RANDOM_KILLS = 40  # SIGKILLs at seeded random delays into a rewrite loop
KILL_SEED = 20240611
N_IO_BOUNDARIES = 48  # fsync/replace/unlink calls in one steady-state rewrite of all artefacts
# (so N_IO_BOUNDARIES deterministic crashes (os._exit) + N_IO_BOUNDARIES in-process faults)
DISK_FULL_BUDGETS = (0, 1, 10, 100, 1000, -1)  # bytes written before ENOSPC; -1 = all but the last byte
DISK_FULL_WRITERS = ("save_json", "save_npy", "write_text", "save_csv", "save_checkpoint")

OOF_SHAPE = (64, 2, 16, 16)


# ----------------------------------------------------------------------------- the artefacts
def _json_payload(version: int) -> dict:
    return {"version": version, "rows": [[version, i, f"row-{i}-{version}"] for i in range(800)]}


def write_all(root: Path, version: int) -> None:
    """Rewrite every artefact at ``version`` through the real helpers (one 'epoch' of writes)."""
    payload = _json_payload(version)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    save_json(root / "state.json", {"payload": payload, "sha256": digest})
    save_npy(root / "array.npy", np.full((256, 256), version, dtype=np.int64))
    write_text(root / "notes.txt", f"{version}\n" * 4000 + f"END {version}\n")
    save_csv(root / "table.csv", pd.DataFrame({"v": [version] * 500, "w": [f"x{version}"] * 500}))
    save_checkpoint(root / "best.pt", _ckpt(version))
    rotate_checkpoint(root / "last.pt", root / "last_prev.pt")
    save_checkpoint(root / "last.pt", _ckpt(version))
    manifest = Manifest(experiment="x", fold=0, kind="oof", classes=["a", "b"], scale=255.0, dtype="uint8",
                        shape=list(OOF_SHAPE), orig_hw=[16, 16], metric=float(version))
    with PredictionWriter(root / "oof", manifest, with_targets=True) as writer:
        for start in range(0, OOF_SHAPE[0], 16):
            value = (version % 250 + 1)
            writer.write([f"{version}:{i}" for i in range(start, start + 16)],
                         np.full((16, *OOF_SHAPE[1:]), value / 255.0), np.full((16, 16, 16), value, np.uint8))


def _ckpt(version: int) -> dict:
    w = torch.full((128, 128), float(version), dtype=torch.float64)
    return {"w": w, "sum": float(w.sum()), "version": version}


def _check_ckpt(path: Path) -> int:
    state = load_checkpoint(path)  # verifies size + sha256 against the manifest
    v = state["version"]
    assert torch.all(state["w"] == v) and float(state["w"].sum()) == state["sum"] == v * 128 * 128, path
    return v


def validate(root: Path) -> dict[str, int]:
    """Version of each artefact; fails on any file that is not one complete version."""
    got: dict[str, int] = {}
    state = load_json(root / "state.json")
    assert hashlib.sha256(json.dumps(state["payload"], sort_keys=True).encode()).hexdigest() == state["sha256"]
    got["state.json"] = state["payload"]["version"]
    arr = np.load(root / "array.npy")
    assert arr.shape == (256, 256) and arr.min() == arr.max(), "array.npy mixes versions"
    got["array.npy"] = int(arr[0, 0])
    lines = (root / "notes.txt").read_text().splitlines()
    assert len(lines) == 4001 and lines[-1] == f"END {lines[0]}" and len(set(lines[:-1])) == 1, "notes.txt torn"
    got["notes.txt"] = int(lines[0])
    table = pd.read_csv(root / "table.csv")
    assert len(table) == 500 and table["v"].nunique() == 1 and set(table["w"]) == {f"x{table['v'][0]}"}
    got["table.csv"] = int(table["v"][0])
    got["best.pt"] = _check_ckpt(root / "best.pt")
    present = [name for name in ("last.pt", "last_prev.pt") if (root / name).exists()]
    assert present, "both resume points gone"
    for name in present:
        got[name] = _check_ckpt(root / name)
    if len(present) == 2:
        assert got["last_prev.pt"] < got["last.pt"]
    store = read_predictions(root / "oof")  # manifest, ids, shapes agree
    for name, arr in (("probs", store.probs), ("targets", store.targets)):
        arr = np.asarray(arr)
        assert arr.min() == arr.max(), f"oof/{name}.npy mixes versions"
        got[f"oof/{name}.npy"] = int(arr.flat[0])
    ids_versions = {i.split(":")[0] for i in store.ids}
    assert len(ids_versions) == 1 and [i.split(":")[1] for i in store.ids] == [str(i) for i in range(64)]
    got["oof/ids.json"] = int(ids_versions.pop())
    got["oof/manifest.json"] = int(store.manifest.metric)
    return got


def assert_not_older(before: dict[str, int], after: dict[str, int]) -> None:
    for name, v in before.items():
        if name in after and not name.endswith("probs.npy") and not name.endswith("targets.npy"):
            assert after[name] >= v, f"{name} went back from version {v} to {after[name]}"


def temps(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


def cleanup_and_recheck(root: Path) -> int:
    """remove_stale_temps removes every leftover temp file and nothing the validation needs."""
    left = temps(root)
    removed = remove_stale_temps(root)
    assert sorted(removed) == left and not temps(root)
    validate(root)
    return len(left)


# ----------------------------------------------------------------------------- fault injection
class CrashAt:
    """Counts os.fsync / os.replace / os.unlink calls; the k-th one (before it happens) runs ``action``.

    fsync itself is skipped (it only matters for power loss, not for a process dying) to keep the
    rounds fast; the call is still counted as a crash point."""

    NAMES = ("fsync", "replace", "unlink")

    def __init__(self, k: int, action) -> None:
        self.k, self.action, self.calls, self.fired = k, action, 0, False
        self.real = {name: getattr(os, name) for name in self.NAMES}

    def _wrap(self, name):
        real = self.real[name] if name != "fsync" else (lambda fd: None)

        def hooked(*args, **kwargs):
            self.calls += 1
            if self.calls == self.k:
                self.fired = True
                self.action(name)
            return real(*args, **kwargs)
        return hooked

    def install(self) -> None:
        for name in self.NAMES:
            setattr(os, name, self._wrap(name))

    def uninstall(self) -> None:
        for name, real in self.real.items():
            setattr(os, name, real)


def rewrite_fast(root: Path, version: int) -> None:
    """A complete rewrite in this process, fsync skipped (a test set-up step, not under test)."""
    crash = CrashAt(0, None)
    crash.install()
    try:
        write_all(root, version)
    finally:
        crash.uninstall()


ZYGOTE = r"""
import os, sys, time, traceback
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_atomic_writes import CrashAt, write_all
import shutil, tempfile
warm = Path(tempfile.mkdtemp())
write_all(warm, 0)  # lazy imports and first-call set-up happen here once, not in every child
shutil.rmtree(warm)
for line in sys.stdin:
    mode, root, version, k = line.split()
    version, k = int(version), int(k)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            if mode == "loop":
                while True:
                    write_all(Path(root), version)
                    version += 1
            if mode == "crash":  # k = 0: no crash, fsync skipped all the same
                CrashAt(k, lambda name: os._exit(77)).install()
            write_all(Path(root), version)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), time.perf_counter() - t0, flush=True)
"""


class Writer:
    """A process that imports torch once and forks a writer child per command (fast kill rounds)."""

    def __init__(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE.format(tests=str(TESTS))], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def start(self, mode: str, root: Path, version: int, k: int = 0) -> int:
        self.proc.stdin.write(f"{mode} {root} {version} {k}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "writer process died"
        return int(line)

    def wait(self) -> tuple[int, float]:
        code, seconds = self.proc.stdout.readline().split()
        return int(code), float(seconds)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def writer():
    w = Writer()
    yield w
    w.close()


def _initial(writer: Writer, root: Path) -> tuple[dict[str, int], float]:
    """Two complete rewrites (so last_prev.pt exists): the steady state every round starts from."""
    for version in (1, 2):
        writer.start("once", root, version)
        code, seconds = writer.wait()
        assert code == 0
    versions = validate(root)
    assert versions["last.pt"] == 2 and versions["last_prev.pt"] == 1
    return versions, seconds


@pytest.mark.timeout(300)
def test_sigkill_at_random_points(tmp_path, writer):
    root = tmp_path / "art"
    before, seconds = _initial(writer, root)
    rng = random.Random(KILL_SEED)
    interrupted = 0
    for i in range(N_RANDOM_KILLS):
        pid = writer.start("loop", root, 1000 * (i + 1))
        time.sleep(rng.uniform(0.0, 2.5 * seconds))
        os.kill(pid, signal.SIGKILL)
        code, _ = writer.wait()
        assert code == -signal.SIGKILL, f"kill {i}: the writer exited by itself ({code}), see its stderr"
        after = validate(root)
        assert_not_older(before, after)
        before = after
        interrupted += cleanup_and_recheck(root) > 0
    print(f"{interrupted}/{N_RANDOM_KILLS} kills left a temp file (hit a write in progress)")
    # the kills did land inside writes (a temp file was in flight), not only between them
    assert interrupted >= N_RANDOM_KILLS // 4, f"only {interrupted}/{N_RANDOM_KILLS} kills hit a write in progress"


@pytest.mark.timeout(300)
def test_crash_at_every_io_boundary(tmp_path, writer):
    root = tmp_path / "art"
    before, _ = _initial(writer, root)
    for k in range(1, N_IO_BOUNDARIES + 2):
        writer.start("crash", root, 100 + 2 * k, k)
        code, _ = writer.wait()
        if k <= N_IO_BOUNDARIES:
            assert code == 77, f"crash point {k}: expected the writer to die there, got exit {code}"
        else:
            assert code == 0, f"one rewrite has more than N_IO_BOUNDARIES={N_IO_BOUNDARIES} I/O calls; update it"
        after = validate(root)
        assert_not_older(before, after)
        cleanup_and_recheck(root)
        rewrite_fast(root, 101 + 2 * k)  # back to the steady state (both resume points present)
        before = validate(root)


def test_fault_at_every_io_boundary_in_process(tmp_path):
    root = tmp_path / "art"
    write_all(root, 1)
    write_all(root, 2)
    before = validate(root)

    def fail(name):
        raise OSError(errno.EIO, f"injected I/O error in os.{name}")

    for k in range(1, N_IO_BOUNDARIES + 2):
        crash = CrashAt(k, fail)
        crash.install()
        try:
            write_all(root, 100 + 2 * k)
        except OSError as exc:
            assert "injected" in str(exc)
        finally:
            crash.uninstall()
        assert crash.fired == (k <= N_IO_BOUNDARIES), f"k={k}: {crash.calls} I/O calls, N_IO_BOUNDARIES={N_IO_BOUNDARIES}"
        after = validate(root)
        assert_not_older(before, after)
        leftover = [p for p in temps(root) if p.parent.name != "oof"]
        assert not leftover, f"fault {k}: atomic_open left {leftover}"
        cleanup_and_recheck(root)  # the OOF ArrayWriter leaves its temp when commit fails: removed here
        rewrite_fast(root, 101 + 2 * k)  # back to the steady state
        before = validate(root)


# ----------------------------------------------------------------------------- disk full
class FullDisk:
    """A file on a disk that fills up after ``budget`` bytes: the part that fits is written, then
    ``OSError(ENOSPC)`` (like write(2) on a full filesystem)."""

    def __init__(self, fh, budget: int) -> None:
        self._fh, self._left = fh, budget

    def write(self, data):
        chunk = data if isinstance(data, str) else memoryview(data).cast("B")
        if len(chunk) > self._left:
            if self._left:
                self._fh.write(chunk[:self._left])
                self._fh.flush()
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(chunk)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _writers(root: Path) -> dict:
    frame = pd.DataFrame({"a": range(300), "b": ["text"] * 300})
    return {
        "save_json": (root / "x.json", lambda p, v: save_json(p, {"v": v, "rows": list(range(500))})),
        "save_npy": (root / "x.npy", lambda p, v: save_npy(p, np.full((64, 64), v, np.int32))),
        "write_text": (root / "x.txt", lambda p, v: write_text(p, f"{v}\n" * 2000)),
        "save_csv": (root / "x.csv", lambda p, v: save_csv(p, frame.assign(v=v))),
        "save_checkpoint": (root / "x.pt", lambda p, v: save_checkpoint(p, _ckpt(v))),
    }


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _full_size(tmp_path: Path, name: str) -> int:
    scratch = tmp_path / "scratch"
    path, write = _writers(scratch)[name]
    write(path, 7)
    return path.stat().st_size


def _fail_nth_open(monkeypatch, n: int, budget: int) -> None:
    real = os.fdopen
    opened = {"count": 0}

    def fdopen(fd, *args, **kwargs):
        opened["count"] += 1
        fh = real(fd, *args, **kwargs)
        return FullDisk(fh, budget) if opened["count"] == n else fh
    monkeypatch.setattr(os, "fdopen", fdopen)


def _assert_disk_full(exc_info, path: Path, existed: bool) -> None:
    exc = exc_info.value
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    text = str(exc)
    assert f"while writing {path}" in text and "disk full" in text and "free space" in text
    assert ("previous file is unchanged" if existed else "no file was written") in text


@pytest.mark.parametrize("existed", [True, False], ids=["replace", "new"])
@pytest.mark.parametrize("name", DISK_FULL_WRITERS)
def test_disk_full_mid_write(tmp_path, monkeypatch, name, existed):
    root = tmp_path / "d"
    root.mkdir()
    path, write = _writers(root)[name]
    size = _full_size(tmp_path, name)
    if existed:
        write(path, 1)
    before = _snapshot(root)
    for budget in DISK_FULL_BUDGETS:
        budget = size - 1 if budget < 0 else budget
        assert budget < size
        with monkeypatch.context() as m:
            _fail_nth_open(m, 1, budget)
            with pytest.raises(DiskFullError) as info:
                write(path, 2)
        _assert_disk_full(info, path, existed)
        assert _snapshot(root) == before, f"budget {budget}: files changed or a temp file was left"
    if existed:
        assert (load_checkpoint(path)["version"] if name == "save_checkpoint" else True) == 1


def test_disk_full_writing_the_checkpoint_manifest(tmp_path, monkeypatch):
    """ENOSPC on the manifest written before the rename: the checkpoint and its manifest are the
    old ones; on the final manifest rewrite (after the rename): the new checkpoint, verifiable."""
    path = tmp_path / "x.pt"
    save_checkpoint(path, _ckpt(1))
    before = _snapshot(tmp_path)
    with monkeypatch.context() as m:
        _fail_nth_open(m, 2, 10)
        with pytest.raises(DiskFullError) as info:
            save_checkpoint(path, _ckpt(2))
    _assert_disk_full(info, manifest_path(path), True)
    assert _snapshot(tmp_path) == before and _check_ckpt(path) == 1
    with monkeypatch.context() as m:
        _fail_nth_open(m, 3, 10)
        with pytest.raises(DiskFullError):
            save_checkpoint(path, _ckpt(2))
    assert _check_ckpt(path) == 2 and not temps(tmp_path)


@pytest.mark.parametrize("name", DISK_FULL_WRITERS)
def test_disk_full_at_fsync_and_at_temp_creation(tmp_path, monkeypatch, name):
    import tempfile
    path, write = _writers(tmp_path)[name]
    write(path, 1)
    before = _snapshot(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    for target, attr in ((os, "fsync"), (tempfile, "mkstemp")):
        with monkeypatch.context() as m:
            m.setattr(target, attr, no_space)
            with pytest.raises(DiskFullError) as info:
                write(path, 2)
        _assert_disk_full(info, path, True)
        assert _snapshot(tmp_path) == before, attr
