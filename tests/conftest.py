from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations' import-time version check is a network call
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download weights (huggingface_hub reads this at import)

import pytest  # noqa: E402
import torch

from kagglekit.paths import shared_data

torch.set_flush_denormal(True)
torch.set_num_threads(2)


def sets(items: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` → ``["--set", "a=1", "--set", "b=2"]`` for an experiment's CLI."""
    return [a for s in items for a in ("--set", s)]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside ``tmp_path`` (input/, output/ of demo runs land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def require_shared(name: str):
    """Path of ``../shared/data/<name>``; skips the test with a clear reason when it is absent."""
    path = shared_data(name)
    if not path.exists():
        pytest.skip(f"real data {path} not found (set KAGGLEKIT_SHARED to the shared folder)")
    return path


@pytest.fixture
def nyuv2_labels13():
    return require_shared("nyuv2_labels13")
