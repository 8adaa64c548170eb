"""Checkpoints: atomic writes, safe loads (``weights_only=True``), RNG state capture.

Everything saved is made of tensors, numbers, strings, lists and dicts, so the restricted
``weights_only`` unpickler can read it; a pickle that tries to run code is refused by torch.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kagglekit.io import atomic_open


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or not weights-only loadable."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / unsafe files
        raise CheckpointError(f"{path}: cannot load checkpoint safely ({type(exc).__name__}: {str(exc)[:200]}); "
                              "it may be truncated or contain arbitrary pickled objects — delete it or resume from another") from None


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in weights-only-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, list) else obj
