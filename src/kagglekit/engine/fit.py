"""The one training loop, for every task.

The loop knows nothing about tasks: a model maps a batch dict to an output dict holding ``loss``
(and task outputs such as ``logits``); an evaluator accumulates outputs over the validation set
and returns named metrics. AMP, channels_last and DDP are null objects on CPU
(``autocast(enabled=False)``, ``GradScaler(enabled=False)``, no wrapper), so there is no CPU branch.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from kagglekit.engine import distributed as dist_utils
from kagglekit.engine.background import BackgroundWriter, snapshot_to_cpu
from kagglekit.engine.checkpoint import (CheckpointError, capture_rng, load_checkpoint, remove_checkpoint, restore_rng,
                                         rotate_checkpoint, save_checkpoint)
from kagglekit.engine.data import EpochLoader, resolve_num_workers
from kagglekit.engine.ema import ModelEma
from kagglekit.engine.infer import Inference, to_device
from kagglekit.engine.schedule import LrSchedule, Plateau, build_optimizer
from kagglekit.engine.settings import FitSettings
from kagglekit.engine.stop import StopRequest
from kagglekit.io import save_csv

log = logging.getLogger("kagglekit.fit")


class NonFiniteLossError(RuntimeError):
    """Training produced NaN/inf; the message names the step; earlier checkpoints are untouched."""


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory (``torch.OutOfMemoryError``); the message names the step
    and what to lower. Nothing of the failed epoch is written; earlier checkpoints are untouched."""


def _oom_text(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()
    return first[0] if first else "out of memory"


class Evaluator(Protocol):
    def update(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None: ...
    def compute(self) -> dict[str, float]: ...


@dataclass
class FitResult:
    best_score: float
    best_epoch: int
    history: pd.DataFrame
    eval_model: nn.Module
    stopped_early: bool


def build_schedule(settings: FitSettings, steps_per_epoch: int) -> LrSchedule:
    """Epoch-based runs count warmup/milestones in epochs (converted to steps); iteration-based
    runs (``max_iters > 0``) in optimiser steps, as detectron2's WarmupMultiStepLR does."""
    iters = settings.max_iters > 0
    total = settings.max_iters if iters else settings.epochs * steps_per_epoch
    warmup = settings.warmup_iters if (iters or settings.warmup_iters > 0) else int(round(settings.warmup_epochs * steps_per_epoch))
    milestones = tuple(m if iters else m * steps_per_epoch for m in settings.lr_milestones)
    return LrSchedule(settings.scheduler, settings.lr, total, warmup_steps=warmup,
                      warmup_factor=settings.warmup_factor, min_lr=settings.min_lr,
                      milestones=milestones, gamma=settings.lr_gamma,
                      plateau=Plateau(settings.plateau_patience, settings.plateau_factor, settings.monitor_mode))


def n_periods(settings: FitSettings) -> int:
    """How many train+evaluate rounds: epochs, or ceil(max_iters / eval_period) for iteration runs."""
    if settings.max_iters <= 0:
        return settings.epochs
    period = settings.eval_period if settings.eval_period > 0 else settings.max_iters
    return math.ceil(settings.max_iters / period)


class RunningLoss:
    """Sum and count of a pass's training losses kept on the device, plus the first non-finite
    step and its loss (selected with ``torch.where``), so a training step never waits for the
    accelerator; :meth:`read` is the one host sync (every ``log_every`` steps)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros((), dtype=torch.float32, device=self.device)
        self.bad = torch.full((2,), -1.0, dtype=torch.float32, device=self.device)  # (step, loss)
        self.count = 0

    def add(self, loss: torch.Tensor, step: int) -> None:
        """``loss``: () detached, any float dtype."""
        loss = loss.float()
        finite = torch.isfinite(loss)
        self.total += torch.where(finite, loss, 0.0)
        self.count += 1
        first = (~finite) & (self.bad[0] < 0)
        here = torch.stack([torch.full((), float(step), device=self.device), loss])
        self.bad = torch.where(first, here, self.bad)

    def read(self) -> tuple[float, int, float]:
        """(mean finite loss, first non-finite step or -1, its loss)."""
        total, step, loss = torch.cat([self.total.reshape(1), self.bad]).tolist()
        return total / max(1, self.count), int(step), loss


def enable_grad_checkpointing(model: nn.Module) -> int:
    """Turn on activation checkpointing in every timm module of ``model`` (timm models and SMP
    ``tu-`` feature extractors expose ``set_grad_checkpointing``): activations are recomputed in
    backward, trading ~30 % compute for memory. Returns how many modules took it; none → ValueError."""
    hits = [m for m in model.modules() if callable(getattr(m, "set_grad_checkpointing", None))]
    for module in hits:
        module.set_grad_checkpointing(True)
    if not hits:
        raise ValueError(f"grad_checkpointing=true but {type(model).__name__} holds no timm module with "
                         "set_grad_checkpointing; use a timm backbone or set grad_checkpointing=false")
    log.info("gradient checkpointing on in %d timm module(s)", len(hits))
    return len(hits)


class Trainer:
    """Holds the mutable training state; everything in it is saved by :meth:`state_dict`."""

    def __init__(self, model: nn.Module, settings: FitSettings, steps_per_epoch: int) -> None:
        self.s = settings
        self.inference = Inference.for_device(dist_utils.local_device(settings.device), settings.amp,
                                              settings.channels_last)
        self.device, self.channels_last = self.inference.device, self.inference.channels_last
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if settings.grad_checkpointing:
            enable_grad_checkpointing(model)
        self.model = model
        self.ddp_model = dist_utils.wrap(model, self.device)
        # the training forward only: evaluation / EMA / checkpoints use the plain module (no _orig_mod. keys)
        self.train_model = (torch.compile(self.ddp_model, mode=settings.compile_mode) if settings.torch_compile
                            else self.ddp_model)
        self.optimizer = build_optimizer(model, settings.lr, settings.weight_decay, settings.optimizer,
                                         momentum=settings.momentum, fused=self.device.type == "cuda")
        self.schedule = build_schedule(settings, steps_per_epoch)
        self.num_workers = resolve_num_workers(settings.num_workers, self.device.type == "cuda")
        self.loaders: dict[tuple[int, bool], EpochLoader] = {}
        self.running = RunningLoss(self.device)
        self.dtype = self.inference.dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.ema = ModelEma(model, settings.ema_decay, settings.ema_warmup) if settings.ema_decay > 0 else None
        self.step = 0
        self.epoch = 0  # epochs, or evaluation periods of an iteration-based run
        self.data_epoch = 0  # iteration-based runs: pass over the data and batches consumed in it
        self.data_offset = 0
        self.best_score: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if (self.ema is not None and self.s.eval_ema) else self.model

    def autocast(self):
        return self.inference.autocast()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "plateau": self.schedule.plateau.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step, "epoch": self.epoch, "best_score": self.best_score,
            "data_epoch": self.data_epoch, "data_offset": self.data_offset,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "history": self.history, "rng": capture_rng(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.plateau.load_state_dict(state["plateau"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        for key in ("step", "epoch", "best_score", "best_epoch", "bad_epochs", "history"):
            setattr(self, key, state[key])
        self.data_epoch, self.data_offset = state.get("data_epoch", 0), state.get("data_offset", 0)
        restore_rng(state["rng"])

    def loader(self, dataset: Dataset, train: bool) -> EpochLoader:
        """The run's one loader of ``dataset`` (workers persist across epochs and validations)."""
        key = (id(dataset), train)
        if key not in self.loaders:
            batch = max(1, self.s.batch_size // dist_utils.world_size()) if train else self.s.batch_size
            self.loaders[key] = EpochLoader(dataset, batch, train=train, seed=self.s.seed, num_workers=self.num_workers,
                                            persistent=self.s.persistent_workers, prefetch_factor=self.s.prefetch_factor)
        return self.loaders[key]

    def close_loaders(self) -> None:
        for loader in self.loaders.values():
            loader.close()
        self.loaders.clear()

    def train_step(self, batch: dict[str, Any], micro: int, n_micro: int) -> None:
        """One micro-batch; the optimiser steps every ``accum_steps`` micro-batches (and at the end).
        The loss stays on the device (:class:`RunningLoss`): no host sync here."""
        try:
            with self.autocast():
                out = self.train_model(to_device(batch, self.device, self.channels_last))
            loss = out["loss"]
            self.running.add(loss.detach(), self.step)
            self.scaler.scale(loss / self.s.accum_steps).backward()
            if (micro + 1) % self.s.accum_steps == 0 or micro + 1 == n_micro:
                self._optimizer_step()
            return
        except torch.OutOfMemoryError as exc:
            reason = _oom_text(exc)
            out = loss = None  # noqa: F841 -- drop the failed step's graph before raising
        # raised outside the except block: no __context__ keeping the failed frames' tensors alive
        raise OutOfMemory(
            f"{reason} (on {self.device}) at step {self.step} (epoch {self.epoch}, micro-batch {micro + 1}/{n_micro}) "
            f"with batch_size={self.s.batch_size}, accum_steps={self.s.accum_steps}; lower batch_size (raise "
            "accum_steps to keep the effective batch), the image/crop size, or the number of TTA views; "
            "stopped before writing anything, the last good checkpoint is kept.")

    def _optimizer_step(self) -> None:
        self.schedule.apply(self.optimizer, self.step)
        if self.s.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.s.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.step += 1

    def check_loss(self) -> float:
        """Host sync (every ``log_every`` steps and at the end of a pass): the mean loss so far;
        :class:`NonFiniteLossError` naming the first step whose loss was NaN/inf."""
        mean, bad_step, bad_loss = self.running.read()
        if bad_step >= 0:
            raise NonFiniteLossError(
                f"non-finite loss ({bad_loss}) at step {bad_step} (epoch {self.epoch}); "
                "stopped before writing anything, the last good checkpoint is kept. "
                "Try a lower lr, grad_clip, or amp=bf16/none.")
        return mean

    def improved(self, score: float) -> bool:
        if self.best_score is None or math.isnan(self.best_score):
            return not math.isnan(score)
        return score > self.best_score if self.s.monitor_mode == "max" else score < self.best_score


@torch.no_grad()
def evaluate(model: nn.Module, loader, evaluator: Evaluator, inference: Inference,
             check: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Run ``model`` over ``loader`` on ``inference``'s device / autocast / channels_last;
    ``valid_loss`` is the mean of the batches' ``loss``. ``check`` runs after every batch (the
    loop's stop check: raises when a signal arrived)."""
    model.eval()
    total, count = 0.0, 0
    with tqdm(loader, desc="valid", leave=False, disable=not dist_utils.is_main()) as bar:  # closed on errors too
        for i, batch in enumerate(bar):
            batch = inference.to_device(batch)
            reason = None
            try:
                with inference.autocast():
                    out = model(batch)
            except torch.OutOfMemoryError as exc:
                reason = _oom_text(exc)
            if reason is not None:  # raised outside the except block: no __context__ keeping tensors alive
                raise OutOfMemory(f"{reason} (on {inference.device}) in validation batch {i + 1} "
                                  f"(batch_size={getattr(loader, 'batch_size', None)}); lower batch_size, the "
                                  "image/inference size, or the number of TTA views; stopped before writing "
                                  "anything, the last good checkpoint is kept.")
            n = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
            if "loss" in out:  # summed on the device: no host sync per batch
                total = total + out["loss"].detach().float() * n
                count += n
            evaluator.update({k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                              for k, v in out.items()}, batch)
            check()
    metrics = evaluator.compute()
    if count:
        metrics = {"valid_loss": float(total) / count, **metrics}
    return metrics


def _train_pass(trainer: Trainer, batches: Any, n_micro: int, bar: tqdm, check: Callable[[], None],
                on_batch: Callable[[], None] = lambda: None) -> int:
    """Train on ``batches`` until ``n_micro`` micro-batches are done in this bar; the host reads
    the loss (progress bar, non-finite check) every ``log_every`` steps only. Returns how many ran."""
    done = bar.n
    if done >= n_micro:
        return done
    for batch in batches:
        trainer.train_step(batch, done, n_micro)
        on_batch()
        done += 1
        check()
        bar.update(1)
        if done % max(1, trainer.s.log_every) == 0 or done == n_micro:
            loss = trainer.check_loss()
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{trainer.optimizer.param_groups[0]['lr']:.2e}")
        if done >= n_micro:
            break
    return done


def _train_epoch(trainer: Trainer, dataset: Dataset, check: Callable[[], None]) -> float:
    s = trainer.s
    loader = trainer.loader(dataset, train=True).epoch(trainer.epoch)
    n_micro = len(loader) if s.max_steps_per_epoch <= 0 else min(len(loader), s.max_steps_per_epoch * s.accum_steps)
    trainer.ddp_model.train()
    trainer.running.reset()
    with tqdm(total=n_micro, desc=f"epoch {trainer.epoch + 1}/{s.epochs}", leave=False,
              disable=not dist_utils.is_main()) as bar:  # closed (its line cleared) when the loop raises too
        _train_pass(trainer, loader, n_micro, bar, check)
    return dist_utils.all_reduce_mean(trainer.check_loss(), trainer.device)


def _train_iters(trainer: Trainer, dataset: Dataset, check: Callable[[], None]) -> float:
    """Iteration-based training up to the next evaluation point. The data stream is a sequence of
    seeded passes; ``(data_epoch, data_offset)`` in the checkpoint say where it stands, so a
    resumed run draws exactly the batches the uninterrupted one would have."""
    s = trainer.s
    period = s.eval_period if s.eval_period > 0 else s.max_iters
    end = min(s.max_iters, (trainer.step // period + 1) * period)
    n_micro = (end - trainer.step) * s.accum_steps
    source = trainer.loader(dataset, train=True)
    trainer.ddp_model.train()
    trainer.running.reset()

    def advance() -> None:
        trainer.data_offset += 1

    with tqdm(total=n_micro, desc=f"iter {trainer.step}->{end}/{s.max_iters}", leave=False,
              disable=not dist_utils.is_main()) as bar:  # closed (its line cleared) when the loop raises too
        while bar.n < n_micro:
            loader = source.epoch(trainer.data_epoch, skip_batches=trainer.data_offset)
            if trainer.data_offset == 0 and len(loader) == 0:
                raise ValueError(f"training set of {len(dataset)} items gives no batch of "
                                 f"{loader.batch_size}; lower batch_size")
            if _train_pass(trainer, loader, n_micro, bar, check, advance) < n_micro:
                trainer.data_epoch, trainer.data_offset = trainer.data_epoch + 1, 0
    return dist_utils.all_reduce_mean(trainer.check_loss(), trainer.device)


def epoch_length(dataset: Dataset) -> int:
    """Items drawn per pass: ``len`` or, with repeat factors, their (expected) sum."""
    factors = getattr(dataset, "repeat_factors", None)
    return len(dataset) if factors is None else max(1, int(round(float(sum(factors)))))


def steps_per_epoch(n_train: int, settings: FitSettings) -> int:
    per_rank_batch = max(1, settings.batch_size // dist_utils.world_size())
    micro = max(1, n_train // per_rank_batch // dist_utils.world_size())
    if settings.max_steps_per_epoch > 0:
        micro = min(micro, settings.max_steps_per_epoch * settings.accum_steps)
    return max(1, math.ceil(micro / settings.accum_steps))


def fit(model: nn.Module, train_ds: Dataset, valid_ds: Dataset, make_evaluator: Callable[[], Evaluator],
        settings: FitSettings, ckpt_dir: Path, history_path: Path, resume: bool = False) -> FitResult:
    """Train for ``settings.epochs`` (or ``max_iters`` optimiser steps); writes ``ckpt_dir/{last,best}.pt`` and ``history_path`` each
    epoch (atomically). ``best.pt`` holds the weights that were evaluated (EMA when enabled).

    ``resume``: continue from ``last.pt``, or from ``last_prev.pt`` (the epoch before, with a
    warning) when ``last.pt`` is missing or fails its sha256 manifest; the history is cut back to the
    resume point. Neither usable: :class:`CheckpointError` naming both.

    SIGINT / SIGTERM while it runs (:class:`~kagglekit.engine.stop.StopRequest`): the loop stops at
    the next step boundary with :class:`~kagglekit.engine.stop.Interrupted` (epoch and step in it);
    nothing of the unfinished epoch is written, the last checkpoint stays the resume point, and the
    previous signal handlers are back when ``fit`` returns or raises.

    Checkpoints are written off the training path (:func:`_write_epoch_outputs`): the epoch's
    state is copied to CPU on the training thread and written by a
    :class:`~kagglekit.engine.background.BackgroundWriter` while the next epoch trains. A signal
    or any exception leaving ``fit`` first waits for a pending write to finish; a failed write
    (e.g. :class:`~kagglekit.io.DiskFullError`) fails the run with its own error at the next epoch
    or at the end. The writer is drained before the final barrier and the load of ``best.pt``."""
    trainer = Trainer(model, settings, steps_per_epoch(epoch_length(train_ds), settings))
    total = n_periods(settings)
    try:
        # the writer is the inner context: it drains while StopRequest still only records signals
        with StopRequest(lambda: (min(trainer.epoch + 1, total), trainer.step)) as stop, \
                BackgroundWriter("kagglekit-checkpoint-writer") as writer:
            if resume:
                state, source = _load_resume_point(ckpt_dir, trainer.device)
                if state is not None:
                    trainer.load_state_dict(state)
                    log.info("resumed from %s at epoch %d, step %d", source, trainer.epoch, trainer.step)
                    if dist_utils.is_main():  # drop rows of epochs after the resume point (kill before last.pt)
                        save_csv(history_path, pd.DataFrame(trainer.history))
            stopped = False
            while trainer.epoch < total and not stopped:
                stop.check()
                writer.check()  # a previous epoch's write already failed: stop now, not after this epoch
                try:
                    stopped = _run_epoch(trainer, train_ds, valid_ds, make_evaluator, ckpt_dir, history_path, stop.check,
                                         writer)
                except Exception:
                    if stop.signum is not None:  # e.g. a data-loader worker killed by the same Ctrl-C
                        raise stop.interrupted() from None
                    raise
            writer.wait()  # the last epoch's files are complete before the barrier and the best.pt load
            stop.check()
    finally:  # persistent loader workers stop with the run, not at garbage collection
        trainer.close_loaders()
    dist_utils.barrier()
    best = load_checkpoint(ckpt_dir / "best.pt", trainer.device)
    trainer.eval_model.load_state_dict(best["model"])
    return FitResult(trainer.best_score, trainer.best_epoch, pd.DataFrame(trainer.history),
                     trainer.eval_model, stopped)


RESUME_POINTS = ("last.pt", "last_prev.pt")


def _load_resume_point(ckpt_dir: Path, device: torch.device) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest resume point that loads and verifies: ``last.pt``, else ``last_prev.pt`` (the one
    before, kept by :func:`_write_epoch_outputs`) with a warning. (None, None) when neither exists
    (a fresh start); :class:`CheckpointError` naming both when neither is usable."""
    paths = [ckpt_dir / name for name in RESUME_POINTS]
    if not any(p.exists() for p in paths):
        return None, None
    problems = []
    for path in paths:
        try:
            state = load_checkpoint(path, device)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems:
            log.warning("resume: %s; resuming from the previous resume point %s instead (epochs after it are redone)",
                        "; ".join(problems), path)
        return state, path
    raise CheckpointError(f"cannot resume from {paths[0]} nor {paths[1]}: " + "; ".join(problems)
                          + f". Delete {ckpt_dir} (or run with --overwrite) to start again")


def _run_epoch(trainer: Trainer, train_ds: Dataset, valid_ds: Dataset, make_evaluator, ckpt_dir: Path,
               history_path: Path, check: Callable[[], None] = lambda: None,
               writer: BackgroundWriter | None = None) -> bool:
    s = trainer.s
    t0 = time.perf_counter()
    train_loss = _train_iters(trainer, train_ds, check) if s.max_iters > 0 else _train_epoch(trainer, train_ds, check)
    valid_loader = trainer.loader(valid_ds, train=False).epoch(0)
    metrics = evaluate(trainer.eval_model, valid_loader, make_evaluator(), trainer.inference, check)
    if s.monitor not in metrics:
        raise KeyError(f"monitor {s.monitor!r} not among validation metrics {sorted(metrics)}; set monitor=<one of them>")
    score = metrics[s.monitor]
    trainer.schedule.end_of_epoch(score)
    row = {"epoch": trainer.epoch + 1, **({"iter": trainer.step} if s.max_iters > 0 else {}), "train_loss": train_loss, **metrics,
           "lr": trainer.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
    trainer.history.append(row)
    improved = trainer.improved(score)
    if improved:
        trainer.best_score, trainer.best_epoch, trainer.bad_epochs = score, trainer.epoch + 1, 0
    else:
        trainer.bad_epochs += 1
    trainer.epoch += 1
    stop = 0 < s.early_stopping_patience <= trainer.bad_epochs
    if dist_utils.is_main():
        _write_epoch_outputs(trainer, improved, ckpt_dir, history_path, writer)
        log.info("epoch %d  %s", row["epoch"], "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
    dist_utils.barrier()
    return stop


def _write_epoch_outputs(trainer: Trainer, improved: bool, ckpt_dir: Path, history_path: Path,
                         writer: BackgroundWriter | None = None) -> None:
    """Write the epoch's files as one job on ``writer``'s thread (inline without a writer).

    Everything the job writes is captured here, on the training thread, by
    :func:`_epoch_outputs`: the trainer goes on training (and mutating its tensors) meanwhile.
    The previous job is waited for first, so at most one snapshot is held at a time."""
    if writer is not None:
        writer.wait()
    outputs = _epoch_outputs(trainer, improved)
    keep = trainer.s.keep_epoch_checkpoints
    if writer is None:
        _write_outputs(outputs, ckpt_dir, history_path, keep)
    else:
        writer.submit(lambda: _write_outputs(outputs, ckpt_dir, history_path, keep))


def _epoch_outputs(trainer: Trainer, improved: bool) -> dict[str, Any]:
    """CPU copies (:func:`~kagglekit.engine.background.snapshot_to_cpu`) of what the epoch writes:
    ``best`` (the evaluated weights, when improved, else None), ``epoch`` (the weights, when epoch
    checkpoints are kept, else None) and ``last`` (``trainer.state_dict()``, history included).
    One snapshot call: a tensor reached twice (the model in ``best`` and ``last``) is copied once."""
    epoch = trainer.epoch
    return snapshot_to_cpu({
        "best": {"model": trainer.eval_model.state_dict(), "epoch": epoch, "score": trainer.best_score}
        if improved else None,
        "epoch": {"model": trainer.model.state_dict(), "epoch": epoch} if trainer.s.keep_epoch_checkpoints > 0 else None,
        "last": trainer.state_dict(),
    })


def _write_outputs(outputs: dict[str, Any], ckpt_dir: Path, history_path: Path, keep_epochs: int) -> None:
    """Order matters for crash safety: best first, then history, then last (the resume point).

    The verified ``last.pt`` is first moved to ``last_prev.pt``, so a ``last.pt`` found corrupted
    on resume falls back to the point before it; a kill between the two leaves ``last_prev.pt``.
    Runs on the writer thread: it reads only ``outputs`` (see :func:`_epoch_outputs`)."""
    last = outputs["last"]
    if outputs["best"] is not None:
        save_checkpoint(ckpt_dir / "best.pt", outputs["best"])
    save_csv(history_path, pd.DataFrame(last["history"]))
    if outputs["epoch"] is not None:
        save_checkpoint(ckpt_dir / f"epoch{last['epoch']:03d}.pt", outputs["epoch"])
        for old in sorted(ckpt_dir.glob("epoch[0-9][0-9][0-9].pt"))[:-keep_epochs]:
            remove_checkpoint(old)
    rotate_checkpoint(ckpt_dir / RESUME_POINTS[0], ckpt_dir / RESUME_POINTS[1])
    save_checkpoint(ckpt_dir / RESUME_POINTS[0], last)
