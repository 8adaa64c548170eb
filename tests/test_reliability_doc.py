"""RELIABILITY.md's figures are the counts the reliability tests execute (so the table cannot drift)."""
from __future__ import annotations

from pathlib import Path

import test_atomic_writes as atomic
import test_fuzz as fuzz
import test_kill_resume as kill
import test_lifecycle as lifecycle

DOC = (Path(__file__).resolve().parents[1] / "RELIABILITY.md").read_text()


def test_figures_match_the_tests():
    disk_full = len(atomic.DISK_FULL_WRITERS) * 2 * len(atomic.DISK_FULL_BUDGETS)
    figures = [
        f"**{len(kill.RUNS)}** tasks killed + resumed in CI",
        f"**{len(kill.SLOW_RUNS)}** more in the slow suite",
        f"**{atomic.N_RANDOM_KILLS}** SIGKILLs",
        f"at least {atomic.N_RANDOM_KILLS // 4} must land inside a write",
        f"**{atomic.N_IO_BOUNDARIES}** fsync/rename/unlink points",
        f"**{disk_full}** mid-write ENOSPC cases",
        f"**{sum(fuzz.FUZZ_EXAMPLES.values())}** generated cases",
        f"over {len(fuzz.FUZZ_EXAMPLES)} properties",
        f"**{len(lifecycle.DATASETS)}** tasks' pre-flight checks",
        f"**{len(lifecycle.SIGNALS)}** signals sent to a real `exp093_5 --demo` run",
        f"all {lifecycle.REAL_RUN_EPOCHS} history rows",
    ]
    for text in figures:
        assert text in DOC, f"RELIABILITY.md does not say {text!r}; update the table"
    assert sorted(kill.RUNS) == ["behaviour", "multilabel", "segmentation"]
    assert sorted(kill.SLOW_RUNS) == ["detection", "keypoints"]
