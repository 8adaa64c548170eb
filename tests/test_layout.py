"""The package layout: old module paths still import (rule 8), and ARCHITECTURE.md names every module."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "kagglekit"
ALIASES = {"kagglekit.oof": "kagglekit.store.arrays", "kagglekit.blend": "kagglekit.ensemble.runner",
           "kagglekit.blend_cli": "kagglekit.ensemble.cli", "kagglekit.runner": "kagglekit.experiment.runner",
           "kagglekit.preflight": "kagglekit.experiment.preflight"}


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_old_module_paths_are_the_moved_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_ensemble_package_still_exports_the_search():
    from kagglekit.ensemble import search_weights, slsqp_weights
    from kagglekit.ensemble.search import search_weights as s, slsqp_weights as w
    assert (search_weights, slsqp_weights) == (s, w)


def _modules() -> list[Path]:
    aliases = {SRC / (name.split(".", 1)[1].replace(".", "/") + ".py") for name in ALIASES}
    return sorted(p for p in SRC.rglob("*.py") if p.name not in ("__init__.py", "__main__.py") and p not in aliases)


def test_architecture_page_names_every_module():
    """A newcomer finds any capability from the folder names and ARCHITECTURE.md alone: each
    module is named by its path, or by its file name in the row of its folder."""
    text = (SRC.parents[1] / "ARCHITECTURE.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    missing = []
    for path in _modules():
        rel = path.relative_to(SRC.parent).as_posix()  # kagglekit/engine/fit.py
        folder = path.parent.relative_to(SRC.parent).as_posix() + "/"
        stem_mentions = re.compile(rf"`{re.escape(path.name)}`|{re.escape(path.stem)}\.py|`{re.escape(folder)}")
        named = f"src/{rel}" in text or any(f"src/{folder}" in row and stem_mentions.search(row) for row in rows)
        if not named:
            missing.append(rel)
    assert not missing, f"ARCHITECTURE.md does not name: {missing}"
