"""torchrun / DistributedDataParallel helpers (NCCL on CUDA, gloo on CPU)."""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> bool:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def local_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    if is_distributed():
        dist.barrier()


T = TypeVar("T")


class RankZeroFailed(RuntimeError):
    """Raised on the other ranks when rank 0 failed inside :func:`run_on_main` / :func:`main_first`
    with an exception that could not be sent to them as it was."""


def broadcast_object(value: Any) -> Any:
    """``value`` of rank 0 on every rank (pickled through ``broadcast_object_list``)."""
    if not is_distributed():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling (so other ranks raise the same type and message)."""
    import pickle
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception is summarised instead
        return RankZeroFailed(f"rank 0 failed: {type(exc).__name__}: {exc}")


def run_on_main(fn: Callable[[], T]) -> T:
    """Call ``fn`` on rank 0 only and hand its result to every rank; when it raises, every rank
    raises the same error. This is how a decision that reads and then writes shared files (the
    fold-folder guard, write-once files) is made once, before any other rank can see a half-made
    state: a check-then-write on each rank races with rank 0's write."""
    if not is_distributed():
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, fn())
        except BaseException as exc:  # noqa: BLE001 - also Ctrl-C: re-raised after telling the other ranks
            outcome = (False, _sendable(exc))
            broadcast_object(outcome)
            raise
    ok, value = broadcast_object(outcome)
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the body first (making write-once files: demo data, folds.csv, converted
    annotations); the other ranks run it after rank 0 finished, when those files exist and are
    only read. If rank 0 fails, the others raise instead of waiting forever at a barrier."""
    if not is_distributed():
        yield
        return
    if is_main():
        try:
            yield
        except GeneratorExit:
            raise
        except BaseException as exc:  # also Ctrl-C, so no rank waits at the broadcast
            broadcast_object(_sendable(exc))
            raise
        broadcast_object(None)
        return
    failure = broadcast_object(None)
    if failure is not None:
        raise failure
    yield


def all_reduce_mean(value: float, device: torch.device) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
