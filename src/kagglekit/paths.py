"""Where things live. Every path in the library is derived from these roots (env overrides), so
no module hard-codes an absolute path.

- ``KAGGLEKIT_ROOT``: project root holding ``input/``, ``output/``, ``submissions/`` (default: cwd).
- ``KAGGLEKIT_INPUT`` / ``KAGGLEKIT_OUTPUT`` / ``KAGGLEKIT_SUBMISSIONS``: override one root each.
- ``KAGGLEKIT_SHARED``: the read-only shared folder with real data (default: ``../shared`` of the repo).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    return Path(os.environ.get("KAGGLEKIT_ROOT", os.getcwd())).resolve()


def input_root() -> Path:
    return Path(os.environ.get("KAGGLEKIT_INPUT", project_root() / "input"))


def output_root() -> Path:
    return Path(os.environ.get("KAGGLEKIT_OUTPUT", project_root() / "output"))


def submissions_root() -> Path:
    return Path(os.environ.get("KAGGLEKIT_SUBMISSIONS", project_root() / "submissions"))


def shared_root() -> Path:
    return Path(os.environ.get("KAGGLEKIT_SHARED", REPO_ROOT.parent / "shared"))


def shared_data(name: str) -> Path:
    """``<shared>/data/<name>`` (may not exist: callers/tests check and skip with a reason)."""
    return shared_root() / "data" / name
