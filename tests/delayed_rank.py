"""Launch an experiment file with one rank held back before the fold-folder guard (issue 17).

``torchrun ... tests/delayed_rank.py <exp.py> [exp args]`` with ``KAGGLEKIT_DELAY_RANK=<rank>`` and
``KAGGLEKIT_DELAY_S=<seconds>``: that rank sleeps before it enters ``runner.guard_fold_dir``, so it
always arrives after rank 0 has claimed the fold. A guard that each rank decides on its own then
refuses the fold on the late rank every time (not one launch in five); a guard decided once by
rank 0 and broadcast passes. Test-only: the library has no delay hook.
"""
from __future__ import annotations

import os
import runpy
import sys
import time

from kagglekit.experiment import runner

_guard = runner.guard_fold_dir


def _late_guard(*args, **kwargs):
    if os.environ.get("RANK") == os.environ.get("KAGGLEKIT_DELAY_RANK"):
        time.sleep(float(os.environ.get("KAGGLEKIT_DELAY_S", "3")))
    return _guard(*args, **kwargs)


runner.guard_fold_dir = _late_guard
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python exp/x.py` would (parent imports)
runpy.run_path(sys.argv[0], run_name="__main__")
