"""ModelEma.update with cached foreach lists: bit-identical to the per-step ``state_dict`` walk it
replaced (kept here as :func:`old_update`), through BN buffers, integer buffers, warmup, reloads,
model swaps and dtype changes."""
from __future__ import annotations

import copy

import torch
from torch import nn

from kagglekit.engine.ema import ModelEma


@torch.no_grad()
def old_update(ema: ModelEma, model: nn.Module, step: int) -> None:
    """The implementation before the cache (engine/ema.py up to this change), verbatim."""
    decay = ema.decay_at(step)
    ema_state = ema.module.state_dict()
    for name, live in model.state_dict().items():
        target = ema_state[name]
        if target.dtype.is_floating_point:
            target.lerp_(live.detach().to(target.dtype), 1.0 - decay)
        else:
            target.copy_(live)


class Net(nn.Module):
    """Conv + BatchNorm (float running stats, int64 ``num_batches_tracked``) + an int32 buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)
        self.register_buffer("seen", torch.zeros((), dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 4)
        self.seen += x.shape[0]
        return self.head(self.bn(self.conv(x)).mean((2, 3)))


def train_step(model: nn.Module, gen: torch.Generator) -> None:
    """A forward in train mode (BN stats and ``seen`` move) and a random in-place weight update."""
    model.train()
    model(torch.randn(4, 3, 6, 6, generator=gen) * 3 + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def assert_bit_equal(a: ModelEma, b: ModelEma) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def twins(model: nn.Module, decay: float = 0.999, warmup: bool = True) -> tuple[ModelEma, ModelEma]:
    return ModelEma(model, decay, warmup), ModelEma(model, decay, warmup)


def test_update_is_bit_identical_to_the_state_dict_walk():
    gen = torch.Generator().manual_seed(0)
    model = Net()
    new, old = twins(model)
    for step in range(12):  # warmup decays 0.1 .. 0.6 (weights < and > 0.5: both lerp branches)
        train_step(model, gen)
        new.update(model, step)
        old_update(old, model, step)
        assert_bit_equal(new, old)
    assert int(new.module.bn.num_batches_tracked) == 12 and int(new.module.seen) == 48


def test_no_warmup_and_high_decay():
    gen = torch.Generator().manual_seed(1)
    model = Net()
    new, old = twins(model, decay=0.9998, warmup=False)
    for step in range(5):
        train_step(model, gen)
        new.update(model, 1000 + step)
        old_update(old, model, 1000 + step)
    assert_bit_equal(new, old)


def test_cache_survives_load_state_dict_and_follows_a_new_live_model():
    gen = torch.Generator().manual_seed(2)
    model = Net()
    new, old = twins(model)
    new.update(model, 0)
    old_update(old, model, 0)
    cached = new._pairs
    snapshot = copy.deepcopy(old.state_dict())
    train_step(model, gen)
    new.load_state_dict(snapshot)  # in-place copies: same tensors, cache kept
    old.load_state_dict(snapshot)
    new.update(model, 1)
    old_update(old, model, 1)
    assert new._pairs is cached
    assert_bit_equal(new, old)
    other = Net()  # a different live model object: lists rebuilt against it
    train_step(other, gen)
    new.update(other, 2)
    old_update(old, other, 2)
    assert new._pairs is not cached and new._pairs.live_model is other
    assert_bit_equal(new, old)


def test_replaced_tensors_and_dtype_changes_rebuild_the_cache():
    """``ema.module.double()`` replaces the buffers and changes the dtypes: the float pairs then
    take the ``.to(ema.dtype)`` path, as the old loop did."""
    gen = torch.Generator().manual_seed(3)
    model = Net()
    new, old = twins(model)
    new.update(model, 0)
    old_update(old, model, 0)
    new.module.double()
    old.module.double()
    for step in range(1, 4):
        train_step(model, gen)
        new.update(model, step)
        old_update(old, model, step)
    assert new._pairs.cast_pairs and not new._pairs.lerp_ema
    assert_bit_equal(new, old)
    assert new.module.conv.weight.dtype == torch.float64


def test_moving_the_live_model_in_place_is_seen():
    """``model.to(...)`` swaps a Parameter's data but keeps the object: the cache must read through
    it (no stale detached views)."""
    model = Net()
    new, old = twins(model, decay=0.5, warmup=False)
    new.update(model, 0)
    old_update(old, model, 0)
    model.conv.weight.data = model.conv.weight.data + 1.0  # what Module.to does to a parameter
    new.update(model, 1)
    old_update(old, model, 1)
    assert_bit_equal(new, old)


def test_tied_weights_are_averaged_once():
    """One tensor under two keys: updated once per step (the old walk applied the decay twice)."""
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight

    model = Tied()
    ema = ModelEma(model, decay=0.5, warmup=False)
    start = model.a.weight.detach().clone()
    with torch.no_grad():
        model.a.weight.add_(2.0)
    ema.update(model, 0)
    assert ema.module.b.weight is ema.module.a.weight
    torch.testing.assert_close(ema.module.a.weight, start + 1.0)  # twice would give start + 1.5
