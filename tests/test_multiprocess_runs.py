"""Multi-GPU / multi-machine workflow on CPU: torchrun (2 gloo processes) on a real experiment
file, and folds run as separate processes sharing one output/ folder, then the experiment summary
and an ensemble check that every fold is present."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["n_folds=2", "epochs=1", "demo_train=8", "demo_test=2", "input_h=64", "input_w=96", "crop_h=64", "crop_w=96",
        "infer_h=64", "infer_w=96", "tta_scales=1.0", "tta_flip=false", "temperatures=1.0", "batch_size=4",
        "valid_batch_size=2"]


def args(*extra: str) -> list[str]:
    return ["--demo", *[a for s in TINY for a in ("--set", s)], *extra]


def run(cmd: list[str], cwd: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO / 'src'}:{REPO / 'tests'}", **env_extra}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def torchrun(script: str, *script_args: str) -> list[str]:
    """Two gloo ranks on a free port (``--standalone``), so parallel or repeated launches never collide."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, *script_args]


def late_rank(exp: str, *exp_args: str, delay_s: float = 3.0) -> tuple[list[str], dict[str, str]]:
    """torchrun of ``exp`` with rank 1 held back ``delay_s`` before the fold guard (tests/delayed_rank.py)."""
    return (torchrun(str(REPO / "tests" / "delayed_rank.py"), exp, *exp_args),
            {"KAGGLEKIT_DELAY_RANK": "1", "KAGGLEKIT_DELAY_S": str(delay_s)})


@pytest.mark.timeout(900)
def test_torchrun_and_folds_on_separate_processes(tmp_path):
    exp = str(REPO / "exp" / "exp093_5.py")
    ddp = run(torchrun(exp, *args("--fold", "0")), tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    fold0 = tmp_path / "output/demo/exp093_5/fold0"
    assert (fold0 / "oof/manifest.json").exists() and (fold0 / "report.md").exists()
    # fold 1 on "another machine": a separate process writing to the same output/
    other = run([sys.executable, exp, *args("--fold", "1")], tmp_path)
    assert other.returncode == 0, other.stderr[-3000:]
    assert (tmp_path / "output/demo/exp093_5/metrics.json").exists()  # the last fold finished the experiment
    missing = run([sys.executable, str(REPO / "ensemble.py"), "--demo", "--exps", "exp093_5", "exp093_4"], tmp_path)
    assert missing.returncode == 2 and "exp093_4" in missing.stderr


def test_ensemble_waits_for_members_then_gives_up(tmp_path):
    import threading
    import time

    from kagglekit.ensemble.runner import wait_for_members
    from kagglekit.store.arrays import OOFError
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text("{}")
    threading.Timer(0.3, lambda: ((tmp_path / "b").mkdir(), (tmp_path / "b" / "metrics.json").write_text("{}"))).start()
    start = time.monotonic()
    wait_for_members(tmp_path, ["a", "b"], seconds=10, poll=0.1)
    assert 0.2 < time.monotonic() - start < 5
    with pytest.raises(OOFError, match=r"\['c'\]"):
        wait_for_members(tmp_path, ["a", "c"], seconds=1, poll=0.1)


@pytest.mark.timeout(900)
def test_late_rank_follows_rank0_decision_on_the_fold_folder(tmp_path):
    """Issue 17: rank 1 always reaches the guard after rank 0 has written fold0/config.json. A
    guard decided per rank refuses the fold on rank 1 every time; decided once by rank 0 and
    broadcast, the run trains. A second plain launch is refused on every rank with the same line
    and leaves the finished fold as it was; --resume together with --overwrite is refused."""
    exp = str(REPO / "exp" / "exp093_5.py")
    cmd, env = late_rank(exp, *args("--fold", "0"))
    first = run(cmd, tmp_path, **env)
    assert first.returncode == 0, first.stderr[-3000:]
    fold0 = tmp_path / "output/demo/exp093_5/fold0"
    assert "already exists" not in first.stderr
    metrics = (fold0 / "metrics.json").read_text()
    assert (fold0 / "oof/manifest.json").exists() and (fold0 / "checkpoints/last.pt").exists()

    again = run(cmd, tmp_path, **env)
    assert again.returncode != 0
    # both ranks print rank 0's refusal (their stderr lines may interleave, so count, not split)
    refusals = re.findall(r"error: (\S+) already exists; pass --resume", again.stderr)
    assert refusals == ["output/demo/exp093_5/fold0"] * 2, again.stderr[-3000:]
    assert (fold0 / "metrics.json").read_text() == metrics

    both = run([sys.executable, exp, *args("--fold", "0", "--resume", "--overwrite")], tmp_path)
    assert both.returncode == 2 and "conflict" in both.stderr
    assert (fold0 / "metrics.json").read_text() == metrics


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_torchrun_launch_loop_never_refuses_its_own_fold(tmp_path):
    """Issue 17: N fresh torchrun launches in a row (no injected delay) all train their fold."""
    exp = str(REPO / "exp" / "exp093_5.py")
    for i in range(8):
        here = tmp_path / f"launch{i}"
        here.mkdir()
        result = run(torchrun(exp, *args("--fold", "0")), here)
        assert result.returncode == 0, f"launch {i}: {result.stderr[-3000:]}"
        assert (here / "output/demo/exp093_5/fold0/metrics.json").exists()


def test_ensemble_wait_lets_a_running_epilogue_finish(tmp_path):
    """metrics.json can appear while the member's epilogue still writes (merged OOF, submission):
    the wait also takes the member's epilogue lock, so it returns only after the epilogue ends."""
    import threading
    import time

    from kagglekit.ensemble.runner import wait_for_members
    from kagglekit.io import file_lock
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text("{}")
    held = threading.Event()

    def epilogue() -> None:
        with file_lock(tmp_path / "a" / ".finish.lock"):
            held.set()
            time.sleep(0.6)

    thread = threading.Thread(target=epilogue)
    thread.start()
    held.wait(5)
    start = time.monotonic()
    wait_for_members(tmp_path, ["a"], seconds=10, poll=0.1)
    assert time.monotonic() - start > 0.4
    thread.join()
