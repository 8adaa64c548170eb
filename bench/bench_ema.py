"""Benchmark: ``ModelEma.update`` vs timm's ``ModelEmaV3.update`` (foreach lerp) on timm resnet50.

Run: ``.venv/bin/python bench/bench_ema.py [--repeats 7] [--updates 20] [--threads N]``.

CPU, float32, random init (no download). Each repeat times ``--updates`` consecutive updates of
each implementation, in alternating order (A B, B A, ...) so drift in machine load hits both;
per-update time is the best repeat's mean. Also shown: the per-step ``state_dict`` walk that
ModelEma used before its cached lists, as a second reference. Equality of ModelEma and the old
walk is asserted first. Goal: ModelEma / ModelEmaV3 <= 1.05.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import timm
import torch
from timm.utils import ModelEmaV3
from torch import nn

from kagglekit.engine.ema import ModelEma


@torch.no_grad()
def old_update(ema: ModelEma, model: nn.Module, step: int) -> None:
    """ModelEma.update before the cache: walks both state dicts every step."""
    decay = ema.decay_at(step)
    ema_state = ema.module.state_dict()
    for name, live in model.state_dict().items():
        target = ema_state[name]
        if target.dtype.is_floating_point:
            target.lerp_(live.detach().to(target.dtype), 1.0 - decay)
        else:
            target.copy_(live)


def check_equal(model: nn.Module) -> None:
    """Three warmup steps of the new and old update give bit-identical EMA weights."""
    new, old = ModelEma(model, 0.999), ModelEma(model, 0.999)
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.999)
        new.update(model, step)
        old_update(old, model, step)
    sa, sb = new.state_dict(), old.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "ModelEma differs from the old state_dict walk"


def time_updates(update: Callable[[int], None], updates: int, start: int) -> float:
    """Mean seconds per update over ``updates`` consecutive calls (steps ``start`` onwards)."""
    t0 = time.perf_counter()
    for i in range(updates):
        update(start + i)
    return (time.perf_counter() - t0) / updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # EMA of tiny weights: denormal arithmetic would dominate the time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False).eval()
    check_equal(model)
    ours, theirs, walk = ModelEma(model, 0.9998), ModelEmaV3(model, decay=0.9998), ModelEma(model, 0.9998)
    impls: dict[str, Callable[[int], None]] = {
        "kagglekit ModelEma": lambda s: ours.update(model, s),
        "timm ModelEmaV3": lambda s: theirs.update(model, step=s),
        "old state_dict walk": lambda s: old_update(walk, model, s),
    }
    for update in impls.values():  # first calls build caches / fault in pages
        update(0)
    best = {name: float("inf") for name in impls}
    names = list(impls)
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            best[name] = min(best[name], time_updates(impls[name], args.updates, 1 + r * args.updates))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"resnet50 ({n_params / 1e6:.1f} M params, {len(model.state_dict())} state tensors), "
          f"{args.threads} thread(s), best of {args.repeats} x {args.updates} updates")
    for name, t in best.items():
        print(f"  {name:22s} {t * 1e3:8.2f} ms / update")
    ratio = best["kagglekit ModelEma"] / best["timm ModelEmaV3"]
    print(f"ModelEma / ModelEmaV3 = {ratio:.3f}x (goal <= 1.05)")
    print(f"old walk / ModelEmaV3 = {best['old state_dict walk'] / best['timm ModelEmaV3']:.3f}x")


if __name__ == "__main__":
    main()
