"""Classification TTA: flips, attribute permutation under flip, scales, averaging."""
from __future__ import annotations

import pytest
import torch

from kagglekit.tta.classification import (View, check_flip_permutation, make_views, tta_probs_classification,
                                          view_class_logits)


def left_bright_images() -> torch.Tensor:
    """(2, 3, 24, 32): bright on the left half, dark on the right — flip-detectable."""
    img = torch.zeros(2, 3, 24, 32)
    img[..., :16] = 1.0
    img[1] *= 0.5
    return img


def side_model(x: torch.Tensor) -> torch.Tensor:
    """Attributes [left_bright, right_bright, any_bright] → logits (B, 3); not flip-invariant."""
    w = x.shape[-1]
    left, right = x[..., : w // 2].mean((1, 2, 3)), x[..., w // 2:].mean((1, 2, 3))
    return torch.stack([left, right, (left + right) / 2], 1) * 8 - 2


def test_flip_view_without_permutation_is_wrong_with_permutation_right():
    img = left_bright_images()
    plain = torch.sigmoid(side_model(img))
    assert (plain[:, 0] > plain[:, 1]).all()  # the image is bright on the left
    views = make_views([1.0], flip=True)
    right = tta_probs_classification(side_model, img, views, flip_permutation=[1, 0, 2])
    torch.testing.assert_close(right, plain)
    wrong = tta_probs_classification(side_model, img, views)
    assert not torch.allclose(wrong, plain, atol=0.05)
    torch.testing.assert_close(wrong[:, 0], wrong[:, 1])  # left and right blurred together
    only_flip = tta_probs_classification(side_model, img, [View(1.0, True)])
    assert (only_flip[:, 0] < only_flip[:, 1]).all()  # a flipped view alone answers the mirrored question


def test_average_is_mean_of_activated_views_and_scales_resize():
    torch.manual_seed(0)
    seen: list[tuple[int, int]] = []
    conv = torch.nn.Conv2d(3, 4, (3, 5))  # asymmetric kernel

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape[-2:]))
        return conv(x).amax((2, 3))

    img = torch.rand(2, 3, 24, 32)
    img[..., :8] += 1.0
    views = make_views([0.5, 1.0, 1.5], flip=True)
    got = tta_probs_classification(model, img, views, activation="softmax")
    assert seen == [(12, 16), (12, 16), (24, 32), (24, 32), (36, 48), (36, 48)]
    manual = []
    for v in views:
        x = img.flip(-1) if v.flip else img
        if v.scale != 1.0:
            x = torch.nn.functional.interpolate(x, scale_factor=v.scale, mode="bilinear", align_corners=False)
        manual.append(torch.softmax(conv(x).amax((2, 3)), 1))
    torch.testing.assert_close(got, torch.stack(manual).mean(0))
    torch.testing.assert_close(got.sum(1), torch.ones(2))
    assert got.shape == (2, 4)


def test_single_identity_view_is_plain_prediction():
    img = left_bright_images()
    got = tta_probs_classification(side_model, img, [View(1.0, False)], flip_permutation=[1, 0, 2])
    torch.testing.assert_close(got, torch.sigmoid(side_model(img)))  # permutation only touches flips


def test_invalid_arguments():
    img = left_bright_images()
    with pytest.raises(ValueError, match="permutation"):
        view_class_logits(side_model, img, View(1.0, True), flip_permutation=[0, 0, 2])
    with pytest.raises(ValueError, match="inverse"):
        check_flip_permutation([1, 2, 0], 3)
    with pytest.raises(ValueError, match="activation"):
        tta_probs_classification(side_model, img, make_views([1.0], False), activation="relu")
    with pytest.raises(ValueError, match="view"):
        tta_probs_classification(side_model, img, [])
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        tta_probs_classification(lambda x: x, img, make_views([1.0], False))
