"""The prepared GPU check (``make gpu-check``): every track at the seeds' model sizes, through the
library's own paths, in one command that fits a short GPU lease (about 8 minutes on one H100/H200).

For each track (segmentation exp093_5: FPN + ConvNeXt-B 576×768 batch 4; multi-label
door_v20260515: MobileNetV3-L 384 batch 64; behaviour mabe_v6: Conv1D-BiLSTM batch 384 × 100
frames; detection frcnn_run0: Faster R-CNN R50-FPN ~800 px batch 4; keypoints vk_phase0_v4:
Keypoint R-CNN) on its generated demo data:

1. **run**: ``run_fold`` with ``amp=fp16`` (GradScaler), channels_last and EMA, killed after its
   first epoch (a simulated Ctrl-C once that epoch's checkpoint is written) and continued with
   ``--resume``: evaluation with the seed's TTA into the OOF store, test predictions, report;
   then the same with ``amp=bf16`` uninterrupted.
2. **throughput**: the library's training step (its loader, EMA, schedule, clipping, host sync every
   ``log_every`` steps) against a bare PyTorch loop (autocast + GradScaler + fused AdamW, the same
   model and batches) in the same process: samples/s (and frames/s for (B, T, F) inputs), the
   ratio library ÷ bare and the peak GPU memory of each, fp16 and bf16.
3. **DDP**: one track through ``torchrun --standalone --nproc_per_node=<GPUs present>`` (NCCL).

Writes ``bench/RESULTS-gpu.md`` (``--out``). ``--smoke`` runs the same code tiny on CPU (the demo
configs, 2 steps per epoch, gloo for DDP) and writes into ``--workdir`` only, so the check cannot
rot between GPU leases; it never claims a GPU figure.

Usage: ``python bench/gpu_check.py [--smoke] [--tracks segmentation,detection] [--steps 20]``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "exp"))

TRACKS = {  # track → the seed experiment whose model sizes are checked
    "segmentation": "exp093_5",
    "multilabel": "door_v20260515",
    "behaviour": "mabe_v6",
    "detection": "frcnn_run0",
    "keypoints": "vk_phase0_v4",
}
DDP_TRACK = "segmentation"
# Fields the demo config sets that say where data lives or how long to train: kept from the demo.
# Every other field the demo shrinks (backbone, sizes, batch, heads, TTA, workers) is restored to the seed.
LOCATION_FIELDS = {"data_dir", "output_dir", "submissions_dir", "comp", "image_dir", "test_csv", "n_folds",
                   "class_subset", "data_format", "demo_videos", "demo_frames"}
BUDGET_FIELDS = {"epochs", "max_iters", "eval_period", "lr", "warmup_epochs", "warmup_iters", "lr_milestones",
                 "keep_epoch_checkpoints", "early_stopping_patience", "swa_n", "grad_clip",
                 "pretrained", "init_weights"}  # no downloads on the check machine: random init


def seed_sized(seed_cfg: Any) -> Any:
    """The demo config with the seed's model / input / batch sizes put back."""
    demo = seed_cfg.demo()
    keep = LOCATION_FIELDS | BUDGET_FIELDS
    restore = {f.name: getattr(seed_cfg, f.name) for f in dataclasses.fields(seed_cfg)
               if f.name not in keep and not f.name.startswith(("real_", "synthetic_"))
               and getattr(seed_cfg, f.name) != getattr(demo, f.name)}
    return replace(demo, **restore)


def short_budget(cfg: Any, steps: int, amp: str, name: str) -> Any:
    """Two evaluation periods of ``steps`` optimiser steps each, EMA on, channels_last on."""
    budget: dict[str, Any] = {"name": name, "amp": amp, "channels_last": True, "epochs": 2,
                              "ema_decay": cfg.ema_decay or 0.999, "early_stopping_patience": 0}
    if cfg.max_iters > 0:
        budget.update(max_iters=2 * steps, eval_period=steps, warmup_iters=max(1, steps // 4), lr_milestones=())
    else:
        budget.update(max_steps_per_epoch=steps)
    return replace(cfg, **budget)


def track_config(track: str, smoke: bool, steps: int, amp: str, output: Path) -> Any:
    seed_cfg = importlib.import_module(TRACKS[track]).CFG
    cfg = seed_cfg.demo() if smoke else seed_sized(seed_cfg)
    cfg = short_budget(cfg, steps, amp, f"gpucheck_{track}_{amp}")
    return replace(cfg, output_dir=str(output), submissions_dir=str(output / "submissions"))


@contextlib.contextmanager
def interrupt_after_first_period():
    """A Ctrl-C as the first evaluation period ends (its checkpoint written or being written)."""
    from kagglekit.engine import fit as fit_module
    original = fit_module._run_epoch

    def run_epoch(trainer, *args, **kwargs):
        stop = original(trainer, *args, **kwargs)
        if trainer.epoch == 1:
            raise KeyboardInterrupt
        return stop
    fit_module._run_epoch = run_epoch
    try:
        yield
    finally:
        fit_module._run_epoch = original


def run_track(cfg: Any, interrupt: bool) -> dict[str, Any]:
    """``run_fold`` on fold 0 (killed after period 1 and resumed when ``interrupt``): seconds, the
    fold's score and what the OOF store holds."""
    from kagglekit.experiment import runner
    task = runner.build_task(cfg)
    runner.prepare_demo(task)
    t0 = time.perf_counter()
    resumed = False
    if interrupt:
        with interrupt_after_first_period(), contextlib.suppress(KeyboardInterrupt):
            runner.run_fold(cfg, 0, overwrite=True)
        metrics = runner.run_fold(cfg, 0, resume=True)
        resumed = True
    else:
        metrics = runner.run_fold(cfg, 0, overwrite=True)
    fold_dir = runner.exp_dir(cfg) / "fold0"
    history = (fold_dir / "history.csv").read_text().strip().splitlines()
    stores = sorted(str(p.relative_to(fold_dir)) for p in fold_dir.glob("*/manifest.json"))
    stores += sorted(str(p.relative_to(fold_dir)) for p in fold_dir.glob("evaluation/*"))
    return {"seconds": time.perf_counter() - t0, "score": metrics.get("score"), "metric": metrics.get("metric"),
            "periods": len(history) - 1, "resumed": resumed, "stores": stores}


class Tiled(torch.utils.data.Dataset):
    """``dataset`` repeated to at least ``n`` items (a demo split smaller than the seed's batch)."""

    def __init__(self, dataset: Any, n: int) -> None:
        self.dataset, self.n = dataset, max(n, len(dataset))
        self.collate_fn = getattr(dataset, "collate_fn", None)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i % len(self.dataset)]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def batch_size_of(batch: dict[str, Any]) -> tuple[int, int]:
    """(samples, frames): the first tensor's leading dimension (or a list's length); frames =
    B × T for (B, T, F) sequence inputs, else 0."""
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return value.shape[0], value.shape[0] * value.shape[1] if value.ndim == 3 else 0
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            return len(value), 0
    raise ValueError("batch holds no tensor")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def timed(steps: int, warmup: int, step: Callable[[int], None], device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for i in range(warmup):
        step(i)
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    synchronize(device)
    return time.perf_counter() - t0


def _inference(cfg: Any):
    from kagglekit.engine.distributed import local_device
    from kagglekit.engine.infer import Inference
    return Inference.for_device(local_device(cfg.device), cfg.amp, cfg.channels_last)


def library_throughput(task: Any, cfg: Any, steps: int, warmup: int) -> tuple[dict[str, Any], list[Any]]:
    """The library's training step over its own loader (workers, pinning, per-item seeding), EMA,
    schedule, clipping and a host sync every ``log_every`` steps; also returns a few of its batches
    for the bare loop."""
    from kagglekit.engine.fit import Trainer
    from kagglekit.experiment.runner import fit_settings
    settings = fit_settings(cfg)
    train_ds = Tiled(task.fold_datasets(0)[0], settings.batch_size * (steps + warmup))
    trainer = Trainer(task.build_model(initial_weights=False), settings, steps_per_epoch=steps + warmup)
    reset_peak(trainer.device)
    batches = iter(trainer.loader(train_ds, train=True).epoch(0))
    trainer.ddp_model.train()
    trainer.running.reset()
    kept: list[Any] = []

    def step(i: int) -> None:
        batch = next(batches)
        if len(kept) < 4:
            kept.append(batch)
        trainer.train_step(batch, i, steps + warmup)
        if (i + 1) % max(1, settings.log_every) == 0:
            trainer.check_loss()
    seconds = timed(steps, warmup, step, trainer.device)
    trainer.check_loss()
    result = {"seconds": seconds, "peak_gib": peak_gib(trainer.device)}
    trainer.close_loaders()
    return result, kept


def bare_throughput(task: Any, cfg: Any, batches: list[Any], steps: int, warmup: int) -> dict[str, Any]:
    """A plain PyTorch loop on the same model and batches: autocast, GradScaler, fused AdamW on
    CUDA, channels_last; no EMA, no schedule, no checks."""
    from kagglekit.engine.infer import to_device
    inference = _inference(cfg)
    device, cuda = inference.device, inference.device.type == "cuda"
    model = task.build_model(initial_weights=False).to(device)
    if inference.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=cuda or None)
    scaler = torch.amp.GradScaler("cuda", enabled=inference.dtype == torch.float16)
    reset_peak(device)

    def step(i: int) -> None:
        batch = to_device(batches[i % len(batches)], device, inference.channels_last)
        with torch.autocast(device.type, dtype=inference.dtype, enabled=cuda and inference.dtype != torch.float32):
            loss = model(batch)["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return {"seconds": timed(steps, warmup, step, device), "peak_gib": peak_gib(device)}


def throughput(cfg: Any, steps: int, warmup: int) -> dict[str, Any]:
    """Library vs bare loop, one process, same model and batches: samples/s, frames/s, ratio, memory."""
    from kagglekit.experiment import runner
    task = runner.build_task(cfg)
    runner.prepare_demo(task)
    library, batches = library_throughput(task, cfg, steps, warmup)
    bare = bare_throughput(task, cfg, batches, steps, warmup)
    samples, frames = batch_size_of(batches[0])
    out = {"samples_per_batch": samples, "frames_per_batch": frames}
    for name, r in (("library", library), ("bare", bare)):
        out[name] = {**r, "samples_s": samples * steps / r["seconds"], "frames_s": frames * steps / r["seconds"]}
    out["ratio"] = out["library"]["samples_s"] / out["bare"]["samples_s"]
    return out


def ddp_child(args: argparse.Namespace) -> int:
    """Under torchrun: one track's ``run_fold`` on every rank; rank 0 writes ``ddp.json``."""
    from kagglekit.engine import distributed as dist_utils
    cfg = track_config(DDP_TRACK, args.smoke, args.steps, "bf16", Path(args.workdir) / "output_ddp")
    result = run_track(cfg, interrupt=False)
    result["world_size"] = dist_utils.world_size()
    if dist_utils.is_main():
        (Path(args.workdir) / "ddp.json").write_text(json.dumps(result))
    return 0


def run_ddp(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    n = max(1, torch.cuda.device_count())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(Path(__file__).resolve()), "--ddp-child", "--workdir", str(workdir), "--steps", str(args.steps)]
    cmd += ["--smoke"] if args.smoke else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=args.ddp_timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
    return {**json.loads((workdir / "ddp.json").read_text()), "wall_seconds": time.perf_counter() - t0}


def stage(results: dict[str, Any], key: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one stage; a failure is recorded (last traceback lines) and the check goes on."""
    print(f"[gpu-check] {key} ...", flush=True)
    t0 = time.perf_counter()
    try:
        results[key] = {"ok": True, **fn()}
    except Exception as exc:  # noqa: BLE001 -- one failing stage must not hide the others' figures
        results[key] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                        "traceback": traceback.format_exc()[-1500:]}
    results[key]["stage_seconds"] = time.perf_counter() - t0
    print(f"[gpu-check] {key}: {'ok' if results[key]['ok'] else results[key]['error']} "
          f"({results[key]['stage_seconds']:.1f} s)", flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def machine_line(smoke: bool) -> str:
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        where = f"{torch.cuda.device_count()} × {', '.join(names)}, CUDA {torch.version.cuda}"
    else:
        where = f"CPU only ({os.cpu_count()} cores)"
    mode = "smoke (tiny demo configs, CPU: not a GPU figure)" if smoke else "seed model sizes"
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {where}, torch {torch.__version__}; mode: {mode}"


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "—" if x is None or (isinstance(x, float) and x != x) else format(x, spec)


def report(results: dict[str, Any], args: argparse.Namespace, total_s: float) -> str:
    lines = ["# GPU check (`make gpu-check`)", "", machine_line(args.smoke) + f"; {args.steps} steps per period, "
             f"throughput over {args.steps} timed steps after {args.warmup}; total {total_s:.0f} s.", "",
             "## Runs (run_fold: fp16 killed after period 1 and resumed; bf16 straight)", "",
             "| track | seed | precision | ok | periods | resumed | metric | score | seconds |", "| --- " * 9 + "|"]
    for track in args.tracks:
        for amp in args.precisions:
            r = results.get(f"run/{track}/{amp}", {})
            lines.append(f"| {track} | {TRACKS[track]} | {amp} | {'yes' if r.get('ok') else 'NO'} | {r.get('periods', '—')} | "
                         f"{r.get('resumed', '—')} | {r.get('metric', '—')} | {_fmt(r.get('score'), '.4f')} | {_fmt(r.get('seconds'))} |")
    lines += ["", "## Throughput: library training step vs a bare PyTorch loop (same model, batches, process)", "",
              "| track | precision | samples / batch | library samples/s | bare samples/s | library ÷ bare | "
              "library frames/s | peak GiB library | peak GiB bare |", "| --- " * 9 + "|"]
    for track in args.tracks:
        for amp in args.precisions:
            r = results.get(f"speed/{track}/{amp}", {})
            if not r.get("ok"):
                lines.append(f"| {track} | {amp} | failed: {r.get('error', 'not run')} |" + " |" * 6)
                continue
            lib, bare = r["library"], r["bare"]
            lines.append(f"| {track} | {amp} | {r['samples_per_batch']} | {_fmt(lib['samples_s'])} | {_fmt(bare['samples_s'])} | "
                         f"{r['ratio']:.3f} | {_fmt(lib['frames_s'] or None, '.0f')} | {_fmt(lib['peak_gib'], '.2f')} | "
                         f"{_fmt(bare['peak_gib'], '.2f')} |")
    d = results.get("ddp")
    lines += ["", f"## DDP (torchrun, {DDP_TRACK}, bf16)", "",
              "skipped (--no-ddp)" if d is None else
              (f"world size {d.get('world_size')}, {d.get('periods')} periods, {d.get('metric')} "
               f"{_fmt(d.get('score'), '.4f')}, {_fmt(d.get('wall_seconds'))} s" if d.get("ok") else
               f"failed: {d.get('error')}")]
    failed = [k for k, v in results.items() if not v.get("ok")]
    lines += ["", "## Failures", ""] + ([f"- `{k}`: {results[k]['error']}\n\n```\n{results[k]['traceback']}\n```"
                                         for k in failed] or ["none"])
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny demo configs on CPU (the test suite runs this)")
    p.add_argument("--tracks", default=",".join(TRACKS), help=f"comma-separated subset of {list(TRACKS)}")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per period and timed steps (GPU 20, smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (GPU 5, smoke 1)")
    p.add_argument("--workdir", default="", help="demo data and runs (default: a new temp folder)")
    p.add_argument("--out", default="", help="report path (GPU: bench/RESULTS-gpu.md; smoke: <workdir>/RESULTS-gpu.md)")
    p.add_argument("--precisions", default="fp16,bf16", help="amp settings to run (fp16 is the killed-and-resumed run)")
    p.add_argument("--no-ddp", action="store_true", help="skip the torchrun stage")
    p.add_argument("--ddp-timeout", type=int, default=300)
    p.add_argument("--ddp-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.tracks = [t for t in args.tracks.split(",") if t]
    args.precisions = [a for a in args.precisions.split(",") if a]
    if set(args.precisions) - {"fp16", "bf16"}:
        p.error(f"--precisions: use fp16 and/or bf16, got {args.precisions}")
    unknown = sorted(set(args.tracks) - set(TRACKS))
    if unknown:
        p.error(f"--tracks: unknown {unknown}; choose from {list(TRACKS)}")
    args.steps = args.steps or (2 if args.smoke else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_flush_denormal(True)
    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA device here; run `python bench/gpu_check.py --smoke` for the CPU rehearsal", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kagglekit_gpucheck_")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # demo configs name input/... relative to the project root
    os.environ["KAGGLEKIT_ROOT"] = str(workdir)
    if args.ddp_child:
        return ddp_child(args)
    out = Path(args.out) if args.out else (workdir if args.smoke else REPO / "bench") / "RESULTS-gpu.md"
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for track in args.tracks:
        for amp in args.precisions:
            cfg = track_config(track, args.smoke, args.steps, amp, workdir / "output")
            stage(results, f"run/{track}/{amp}", lambda cfg=cfg, amp=amp: run_track(cfg, interrupt=amp == "fp16"))
            stage(results, f"speed/{track}/{amp}", lambda cfg=cfg: throughput(cfg, args.steps, args.warmup))
    if not args.no_ddp:
        stage(results, "ddp", lambda: run_ddp(args, workdir))
    from kagglekit.io import save_json, write_text
    write_text(out, report(results, args, time.perf_counter() - t0))
    save_json(out.with_suffix(".json"), {k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in results.items()})
    print(f"[gpu-check] wrote {out}", flush=True)
    return 0 if all(v["ok"] for v in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
