"""Segmentation TTA: inverse mapping with asymmetric inputs/models, averaging, padding."""
from __future__ import annotations

import pytest
import torch

from kagglekit.tta.segmentation import View, make_views, tta_probs, view_logits


def asymmetric_image() -> torch.Tensor:
    """(1, 3, 40, 56): a left-heavy ramp + a blob in the top-left corner: flip-detectable."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 56), indexing="ij")
    blob = torch.exp(-((xx - 0.2) ** 2 + (yy - 0.25) ** 2) / 0.01)
    return torch.stack([1 - xx, blob, yy * xx]).unsqueeze(0)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x * 4.0  # per-pixel model: equivariant to flips and (approximately) to resizing


def test_flip_view_is_undone():
    img = asymmetric_image()
    back = view_logits(identity, img, View(1.0, True), (40, 56))
    torch.testing.assert_close(back, identity(img))
    assert not torch.allclose(back, identity(img).flip(-1), atol=0.1)


def test_scaled_views_map_back_to_input_resolution():
    img = asymmetric_image()
    for scale in (0.5, 0.75, 1.25, 1.5):
        back = view_logits(identity, img, View(scale, True), (40, 56))
        assert back.shape == (1, 3, 40, 56)
        assert (back - identity(img)).abs().mean() < 0.08, scale


def test_asymmetric_model_flip_view_equals_manual_inverse():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, (3, 5), padding=(1, 2))  # asymmetric kernel: not flip-equivariant
    img = asymmetric_image()
    got = view_logits(conv, img, View(1.0, True), (40, 56), multiple=1)
    torch.testing.assert_close(got, conv(img.flip(-1)).flip(-1))
    assert not torch.allclose(got, conv(img), atol=1e-3)


def test_padding_to_stride_is_cropped():
    seen = []

    def model(x):
        seen.append(tuple(x.shape[-2:]))
        return x[:, :2]

    out = view_logits(model, asymmetric_image(), View(0.75, False), (40, 56), multiple=32)
    assert seen == [(32, 64)] and out.shape == (1, 2, 40, 56)


def test_tta_probs_equals_bruteforce_mean_per_temperature():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    img = asymmetric_image()
    views = make_views((0.5, 1.0, 1.5), flip=True)
    assert len(views) == 6
    got = tta_probs(conv, img, views, (20, 28), temperatures=(0.7, 1.0), multiple=8)
    for t in (0.7, 1.0):
        manual = sum(torch.softmax(view_logits(conv, img, v, (20, 28), 8) / t, 1) for v in views) / len(views)
        torch.testing.assert_close(got[t], manual)
        torch.testing.assert_close(got[t].sum(1), torch.ones(1, 20, 28))
    assert not torch.allclose(got[0.7], got[1.0])


def test_logit_averaging_option():
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    img = asymmetric_image()
    views = make_views((1.0, 0.5), flip=True)
    got = tta_probs(conv, img, views, (40, 56), temperatures=(2.0,), average="logit", multiple=8)[2.0]
    mean_logits = sum(view_logits(conv, img, v, (40, 56), 8) for v in views) / len(views)
    torch.testing.assert_close(got, torch.softmax(mean_logits / 2.0, 1))
    with pytest.raises(ValueError, match="average"):
        tta_probs(conv, img, views, (40, 56), average="median")


def test_seed_views():
    views = make_views((0.5, 0.75, 1.0, 1.25, 1.5), True)
    assert len(views) == 10 and {v.flip for v in views} == {True, False}
