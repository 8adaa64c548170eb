"""Check-then-write across processes (issue 17): write-once files are claimed by exactly one
process, read-modify-write files are locked, and a rank-0 decision reaches every rank.

Each test starts real processes that hit the same file at the same moment (a shared barrier /
start time), so an unguarded check-then-write would show up as two winners or a lost update."""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kagglekit.config import ExperimentConfig
from kagglekit.cv import load_folds, write_folds
from kagglekit.io import atomic_open, file_lock, save_json
from kagglekit.experiment.runner import claim_fold_dir

CTX = mp.get_context("spawn")
N_PROCS = 4


def _claim(fold_dir: str, start: float, queue) -> None:
    from kagglekit.experiment import runner
    save_config = runner.save_config

    def slow_save(*args, **kwargs):  # every process checks before any writes: the race, every time
        time.sleep(0.5)
        return save_config(*args, **kwargs)

    runner.save_config = slow_save
    time.sleep(max(0.0, start - time.time()))
    try:
        queue.put(claim_fold_dir(Path(fold_dir), ExperimentConfig(name="race"), resume=False, overwrite=False))
    except FileExistsError as exc:
        queue.put(f"refused: {exc}")


def _write_folds(path: str, folds: list[int], start: float, queue) -> None:
    from kagglekit import cv
    save_csv = cv.save_csv

    def slow_save(*args, **kwargs):
        time.sleep(0.5)
        return save_csv(*args, **kwargs)

    cv.save_csv = slow_save
    frame = pd.DataFrame({"id": [f"img{i:03d}" for i in range(len(folds))], "fold": folds})
    time.sleep(max(0.0, start - time.time()))
    try:
        write_folds(frame, path, "id")
        queue.put("ok")
    except ValueError as exc:
        queue.put(f"refused: {exc}")


def _race(target, *args) -> list[str]:
    """Start N_PROCS processes that call ``target(*args, start, queue)`` at the same instant."""
    queue = CTX.Queue()
    start = time.time() + 3.0  # spawn start-up (imports) finishes well before this
    procs = [CTX.Process(target=target, args=(*args, start, queue)) for _ in range(N_PROCS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def test_fresh_fold_is_claimed_by_exactly_one_process(tmp_path):
    fold_dir = tmp_path / "exp" / "fold0"
    results = _race(_claim, str(fold_dir))
    assert sorted(results).count("fresh") == 1, results
    refused = [r for r in results if r != "fresh"]
    assert len(refused) == N_PROCS - 1 and all("refused" in r for r in refused), results
    assert '"name": "race"' in (fold_dir / "config.json").read_text()
    assert not list(fold_dir.glob(".*.tmp"))


def test_folds_csv_written_once_by_concurrent_processes(tmp_path):
    path = tmp_path / "folds.csv"
    folds = list(np.arange(40) % 5)
    assert _race(_write_folds, str(path), folds) == ["ok"] * N_PROCS  # same assignment: all agree
    assert load_folds(path, "id")["fold"].tolist() == folds
    other = list((np.arange(40) + 1) % 5)
    assert all(r.startswith("refused") and "different fold assignment" in r for r in _race(_write_folds, str(path), other))
    assert load_folds(path, "id")["fold"].tolist() == folds  # the first file stays


def test_exclusive_write_refuses_an_existing_file_and_leaves_it(tmp_path):
    path = tmp_path / "config.json"
    save_json(path, {"v": 1}, exclusive=True)
    with pytest.raises(FileExistsError):
        save_json(path, {"v": 2}, exclusive=True)
    assert '"v": 1' in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temp file left
    with atomic_open(path, "w") as fh:  # non-exclusive writes still replace
        fh.write("{}")
    assert path.read_text() == "{}"


def test_file_lock_serialises_read_modify_write(tmp_path):
    """Eight writers each add 25 rows to one CSV: with the lock none is lost (without it, most are)."""
    path, lock = tmp_path / "ledger.csv", tmp_path / ".ledger.lock"
    path.write_text("n\n")

    def add_rows() -> None:
        for _ in range(25):
            with file_lock(lock):
                rows = path.read_text().splitlines()
                time.sleep(0.001)  # widen the window a lost update needs
                path.write_text("\n".join([*rows, str(len(rows))]) + "\n")

    threads = [threading.Thread(target=add_rows) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text().splitlines()[1:] == [str(i) for i in range(1, 201)]


def _ranks(rank: int, port: int, fail_on_main: bool, queue) -> None:
    import torch.distributed as dist

    from kagglekit.engine import distributed as D
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        def decide() -> str:
            if fail_on_main:
                raise FileExistsError("fold0 already exists")
            return f"decided by rank {D.rank()}"
        try:
            queue.put((rank, "value", D.run_on_main(decide)))
        except FileExistsError as exc:
            queue.put((rank, "error", str(exc)))
        try:
            with D.main_first():
                if fail_on_main and D.is_main():
                    raise ValueError("bad input/demo")
                queue.put((rank, "body", D.rank()))
        except ValueError as exc:
            queue.put((rank, "body-error", str(exc)))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("fail_on_main", [False, True])
def test_rank0_decision_and_failure_reach_every_rank(fail_on_main):
    queue = CTX.Queue()
    port = _free_port()
    procs = [CTX.Process(target=_ranks, args=(r, port, fail_on_main, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = sorted(queue.get(timeout=120) for _ in range(4))
    for p in procs:
        p.join(timeout=60)
    if fail_on_main:  # rank 1 raises rank 0's own error instead of waiting at a barrier
        assert got == [(0, "body-error", "bad input/demo"), (0, "error", "fold0 already exists"),
                       (1, "body-error", "bad input/demo"), (1, "error", "fold0 already exists")]
    else:
        assert got == [(0, "body", 0), (0, "value", "decided by rank 0"), (1, "body", 1), (1, "value", "decided by rank 0")]
