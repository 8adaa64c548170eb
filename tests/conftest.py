from __future__ import annotations

import pytest
import torch

from kagglekit.paths import shared_data

torch.set_flush_denormal(True)
torch.set_num_threads(2)


def require_shared(name: str):
    """Path of ``../shared/data/<name>``; skips the test with a clear reason when it is absent."""
    path = shared_data(name)
    if not path.exists():
        pytest.skip(f"real data {path} not found (set KAGGLEKIT_SHARED to the shared folder)")
    return path


@pytest.fixture
def nyuv2_labels13():
    return require_shared("nyuv2_labels13")
