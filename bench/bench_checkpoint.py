"""Benchmark: time a checkpoint costs the training thread, ~128 MiB state (model + AdamW moments).

Run: ``.venv/bin/python bench/bench_checkpoint.py [--repeats 5] [--dir DIR] [--threads N]``.

Per checkpoint, training-path time (best of ``--repeats``), all writing into one temp folder:

(a) plain ``torch.save(state, file)`` (no hash, no fsync, no manifest): the baseline;
(b) ``save_checkpoint`` synchronously (sha256 while writing, fsync, manifest, atomic rename);
(c) ``snapshot_to_cpu`` + ``BackgroundWriter.submit`` of the same ``save_checkpoint``, with
    simulated training steps (matmuls + in-place weight updates, ~1.5x the measured (b) time)
    between submits, so the write overlaps compute; the time of those steps is not counted.

Each time includes building the state dict (``model.state_dict()`` / ``optimizer.state_dict()``).
Also printed: the wall time of ``--repeats`` checkpoints + steps with (b) vs (c) (the overlap gain).
Goal: (c) / (a) <= 1.1.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from kagglekit.engine.background import BackgroundWriter, snapshot_to_cpu
from kagglekit.engine.checkpoint import save_checkpoint, verify_checkpoint


def build(layers: int = 11, width: int = 1024) -> tuple[nn.Module, torch.optim.Optimizer]:
    """``layers`` Linear(width, width): 11 x 1024^2 fp32 weights = 44 MiB, x3 with AdamW's two
    moments = ~132 MiB of state. One optimiser step so the moments exist."""
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(8, width)).square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return model, opt


def state_of(model: nn.Module, opt: torch.optim.Optimizer, step: int) -> dict[str, Any]:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}


def state_bytes(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def best_of(fn: Callable[[int], None], repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times)


def train_steps(model: nn.Module, seconds: float, x: torch.Tensor) -> None:
    """Simulated training for about ``seconds``: matmuls, then an in-place update of every weight
    (what makes the snapshot necessary)."""
    params = list(model.parameters())
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for layer in model:
            x = torch.tanh(layer(x))
        with torch.no_grad():
            torch._foreach_add_(params, 1e-6)


def background_run(model, opt, folder: Path, repeats: int, compute_s: float) -> tuple[list[float], float]:
    """(training-path seconds of each checkpoint, wall seconds of the whole run incl. the drain).
    A submit waits for the previous write: a write slower than the steps shows up here."""
    x, path, path_times = torch.randn(256, 1024), folder / "bg.pt", []
    t_start = time.perf_counter()
    with BackgroundWriter("bench-writer") as writer:
        for i in range(repeats):
            t0 = time.perf_counter()
            snap = snapshot_to_cpu(state_of(model, opt, i))
            writer.submit(lambda snap=snap: save_checkpoint(path, snap))
            path_times.append(time.perf_counter() - t0)
            del snap
            train_steps(model, compute_s, x)
    wall = time.perf_counter() - t_start
    assert verify_checkpoint(path) is not None
    return path_times, wall


def sync_run(model, opt, folder: Path, repeats: int, compute_s: float) -> float:
    """Wall seconds of the same loop with synchronous ``save_checkpoint``."""
    x, path = torch.randn(256, 1024), folder / "sync_loop.pt"
    t_start = time.perf_counter()
    for i in range(repeats):
        save_checkpoint(path, state_of(model, opt, i))
        train_steps(model, compute_s, x)
    return time.perf_counter() - t_start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where the temp folder goes (default: system temp)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="torch threads for the simulated steps (default leaves one core to the writer)")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, opt = build()
    mib = state_bytes(state_of(model, opt, 0)) / 2**20
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_ckpt_") as tmp:
        folder = Path(tmp)
        plain = best_of(lambda i: torch.save(state_of(model, opt, i), folder / "plain.pt"), args.repeats)
        sync = best_of(lambda i: save_checkpoint(folder / "sync.pt", state_of(model, opt, i)), args.repeats)
        compute_s = 1.5 * sync
        path_times, bg_wall = background_run(model, opt, folder, args.repeats, compute_s)
        sync_wall = sync_run(model, opt, folder, args.repeats, compute_s)
    print(f"state {mib:.0f} MiB, folder under {args.dir or tempfile.gettempdir()}, {args.threads} compute thread(s), "
          f"best of {args.repeats}")
    print(f"  (a) torch.save                    {plain * 1e3:8.1f} ms / checkpoint")
    print(f"  (b) save_checkpoint (sync)        {sync * 1e3:8.1f} ms / checkpoint")
    background, median = min(path_times), statistics.median(path_times)
    print(f"  (c) snapshot + submit (training)  {background * 1e3:8.1f} ms / checkpoint "
          f"(median {median * 1e3:.1f} ms, max {max(path_times) * 1e3:.1f} ms)")
    print(f"(b)/(a) = {sync / plain:.2f}x   (c)/(a) = {background / plain:.2f}x (goal <= 1.1)")
    steps = f"{args.repeats} x ({compute_s * 1e3:.0f} ms of steps + a checkpoint)"
    print(f"wall of {steps}: sync {sync_wall:.2f} s, background {bg_wall:.2f} s "
          f"(steps alone {args.repeats * compute_s:.2f} s); background / sync = {bg_wall / sync_wall:.2f}x")
    if math.isclose(plain, 0.0):
        raise SystemExit("plain torch.save took no time: nothing measured")


if __name__ == "__main__":
    main()
