"""SWA-k checkpoint averaging and BatchNorm recalibration (engine.swa)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kagglekit.engine.checkpoint import CheckpointError, save_checkpoint
from kagglekit.engine.swa import average_checkpoints, average_state_dicts, recompute_batchnorm


class ConvBnNet(nn.Module):
    """image (B, 3, H, W) → logits (B, 2); loss when the batch has 'target' (package contract)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, batch: dict) -> dict:
        x = torch.relu(self.bn(self.conv(batch["image"])))
        logits = self.head(x.mean((2, 3)))
        out = {"logits": logits}
        if "target" in batch:
            out["loss"] = nn.functional.binary_cross_entropy_with_logits(logits, batch["target"])
        return out


def batches(n: int = 4, bs: int = 8, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(bs, 3, 8, 8, generator=g) * 2 + 1,
             "target": torch.randint(0, 2, (bs, 2), generator=g).float()} for _ in range(n)]


def trained_net(seed: int, steps: int = 5) -> ConvBnNet:
    torch.manual_seed(seed)
    net = ConvBnNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for b in batches(steps, seed=seed + 100):
        opt.zero_grad()
        net(b)["loss"].backward()
        opt.step()
    return net


def test_average_equals_manual_mean_and_int_buffers_from_last():
    nets = [trained_net(s) for s in range(3)]
    states = [n.state_dict() for n in nets]
    avg = average_state_dicts(states)
    assert set(avg) == set(states[0])
    for key in ("conv.weight", "bn.weight", "bn.running_mean", "bn.running_var", "head.bias"):
        manual = (states[0][key] + states[1][key] + states[2][key]) / 3
        torch.testing.assert_close(avg[key], manual)
        assert not torch.allclose(avg[key], states[-1][key])  # the nets really differ
    assert avg["bn.num_batches_tracked"].dtype == torch.int64
    states[-1]["bn.num_batches_tracked"].fill_(99)
    assert int(average_state_dicts(states)["bn.num_batches_tracked"]) == 99


def test_mismatched_keys_or_shapes_raise_naming_the_key():
    a, b = ConvBnNet().state_dict(), ConvBnNet().state_dict()
    del b["head.bias"]
    with pytest.raises(KeyError, match="head.bias"):
        average_state_dicts([a, b])
    c = ConvBnNet().state_dict()
    c["conv.bias"] = torch.zeros(5)
    with pytest.raises(ValueError, match="conv.bias"):
        average_state_dicts([a, c])
    with pytest.raises(ValueError):
        average_state_dicts([])


def test_average_checkpoints_via_safe_loader(tmp_path):
    nets = [trained_net(s) for s in range(2)]
    paths = [save_checkpoint(tmp_path / f"ep{i}.pt", {"model": n.state_dict(), "epoch": i})
             for i, n in enumerate(nets)]
    avg = average_checkpoints(paths)
    torch.testing.assert_close(avg["conv.weight"], (nets[0].conv.weight + nets[1].conv.weight).detach() / 2)
    with pytest.raises(CheckpointError, match="ema"):
        average_checkpoints(paths, key="ema")


def pre_bn_stats(model: ConvBnNet, data: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference via a forward hook on the BN input: per-channel mean over all data, and the mean
    of per-batch unbiased variances (what a cumulative BN average of batch statistics equals)."""
    seen: list[torch.Tensor] = []
    handle = model.bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    model.eval()
    with torch.no_grad():
        for b in data:
            model(b)
    handle.remove()
    mean = torch.cat(seen).mean((0, 2, 3))
    var = torch.stack([x.transpose(0, 1).reshape(x.shape[1], -1).var(1, unbiased=True) for x in seen]).mean(0)
    return mean, var


def averaged_model() -> ConvBnNet:
    model = ConvBnNet()
    model.load_state_dict(average_state_dicts([trained_net(s).state_dict() for s in range(3)]))
    return model


def test_recompute_batchnorm_matches_true_pre_bn_statistics():
    data = batches(4, bs=8, seed=7)
    model = averaged_model()
    ref_mean, ref_var = pre_bn_stats(model, data)
    # stale: the averaged running stats do not describe the averaged network's activations
    assert not torch.allclose(model.bn.running_mean, ref_mean, atol=1e-2)
    model.bn.momentum = 0.3
    assert recompute_batchnorm(model, data, "cpu") == 1
    torch.testing.assert_close(model.bn.running_mean, ref_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bn.running_var, ref_var, atol=1e-5, rtol=1e-5)
    assert model.bn.momentum == 0.3


def test_recompute_single_batch_gives_exact_data_variance_and_max_batches():
    data = batches(3, bs=16, seed=3)
    model = averaged_model()
    assert recompute_batchnorm(model, data, "cpu", max_batches=1) == 1
    mean, var = pre_bn_stats(model, data[:1])  # one batch: the exact (unbiased) data variance
    torch.testing.assert_close(model.bn.running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bn.running_var, var, atol=1e-5, rtol=1e-5)
    all_mean, _ = pre_bn_stats(model, data)
    assert not torch.allclose(model.bn.running_mean, all_mean, atol=1e-3)  # later batches not used


@pytest.mark.parametrize("training", [False, True])
def test_modes_restored(training: bool):
    model = averaged_model()
    model.train(training)
    model.head.train(not training)  # a mixed-mode module tree is restored module by module
    recompute_batchnorm(model, batches(1), "cpu")
    assert model.training is training and model.bn.training is training
    assert model.head.training is (not training)


def test_no_batchnorm_is_noop():
    model = nn.Sequential(nn.Linear(3, 2))
    assert recompute_batchnorm(model, [{"x": torch.zeros(1, 3)}], "cpu") == 0
