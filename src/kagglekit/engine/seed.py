"""Seed every RNG; optionally force deterministic algorithms (needed for bit-exact resume tests)."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False, cudnn_benchmark: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices). ``deterministic``: deterministic algorithms,
    no cuDNN autotuning; else ``cudnn_benchmark`` (CUDA) autotunes convolutions per input shape —
    a gain for fixed sizes, a loss for inputs whose size varies (detection)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = cudnn_benchmark and torch.cuda.is_available()
