"""Detection TTA: box flipping, un-flipping of flipped views, NMS / WBF merging, torchvision detector."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kagglekit.tta.detection import (Detections, hflip_boxes, make_detection_views, merge_detections,
                                     merge_nms, merge_wbf, predict_tta, set_min_size, torchvision_predictor)


def det(boxes, scores, labels) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      torch.tensor(scores, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64))


# ---------------------------------------------------------------- hflip


def test_hflip_boxes_hand_case_and_involution():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 100.0, 50.0], [90.0, 1.0, 100.0, 2.0]])
    flipped = hflip_boxes(boxes, 100)
    torch.testing.assert_close(flipped, torch.tensor([[70.0, 5.0, 90.0, 25.0], [0.0, 0.0, 100.0, 50.0],
                                                      [0.0, 1.0, 10.0, 2.0]]))
    assert (flipped[:, 2] > flipped[:, 0]).all()  # still valid xyxy
    torch.testing.assert_close(hflip_boxes(flipped, 100), boxes)
    torch.testing.assert_close(hflip_boxes(boxes, 100.0), flipped)
    assert hflip_boxes(torch.zeros(0, 4), 7).shape == (0, 4)


def test_hflip_boxes_matches_image_flip():
    """The box of a bright square in image.flip(-1) is hflip_boxes of the original box."""
    img = square_image(60, 100, top=10, left=7, side=13)
    box = bright_box(img)
    torch.testing.assert_close(bright_box(img.flip(-1)), hflip_boxes(box[None], 100)[0])


# ---------------------------------------------------------------- fake asymmetric detector


def square_image(h: int, w: int, top: int, left: int, side: int) -> torch.Tensor:
    img = torch.zeros(3, h, w)
    img[:, top:top + side, left:left + side] = 1.0
    return img


def bright_box(img: torch.Tensor) -> torch.Tensor:
    """xyxy pixel-edge box of the pixels brighter than 0.5 in (3, H, W)."""
    ys, xs = torch.nonzero(img.mean(0) > 0.5, as_tuple=True)
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


def make_square_detector(calls: list[tuple[int, bool]]):
    """Fake detector: resizes (nearest) so the shorter side is ``min_size``, finds the bright square,
    maps the box back to the given image's pixels — as a torchvision detector does internally."""
    def predict(img: torch.Tensor, min_size: int) -> Detections:
        s = min_size / min(img.shape[-2:])
        small = F.interpolate(img[None], scale_factor=s, mode="nearest")[0]
        calls.append((min_size, bool(small[:, :, : small.shape[-1] // 2].sum() == 0)))  # square on right?
        return Detections(bright_box(small)[None] / s, torch.tensor([0.9]), torch.tensor([1]))
    return predict


@pytest.mark.parametrize("method", ["nms", "wbf"])
def test_flipped_views_are_mapped_back_to_original_position(method):
    img = square_image(60, 100, top=10, left=10, side=20)  # off-centre, left part: flip moves it
    calls: list[tuple[int, bool]] = []
    out = predict_tta(make_square_detector(calls), img, sizes=(60, 120), flip=True, method=method)
    # every view ran, the flipped ones really saw the square on the right
    assert calls == [(60, False), (60, True), (120, False), (120, True)]
    assert len(out) == 1, f"views not merged into one box (un-flip missing?): {out.boxes}"
    torch.testing.assert_close(out.boxes[0], torch.tensor([10.0, 10.0, 30.0, 30.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.scores, torch.tensor([0.9]))  # all 4 views agree → no WBF down-weighting
    assert out.labels.tolist() == [1]


def test_only_flipped_view_without_unflip_would_be_mirrored():
    """Sanity of the fake: the flipped view's raw box is at the mirrored position."""
    img = square_image(60, 100, top=10, left=10, side=20)
    raw = make_square_detector([])(img.flip(-1), 60)
    torch.testing.assert_close(raw.boxes[0], torch.tensor([70.0, 10.0, 90.0, 30.0]))


def test_single_view_is_returned_unchanged_and_image_size_rescales():
    img = square_image(60, 100, top=10, left=10, side=20)
    calls: list[tuple[int, bool]] = []
    single = predict_tta(make_square_detector(calls), img, sizes=(120,), flip=False, method="wbf")
    assert calls == [(120, False)]
    torch.testing.assert_close(single.boxes, torch.tensor([[10.0, 10.0, 30.0, 30.0]]))
    # the image handed in is a half-size copy of a (120, 200) original
    big = predict_tta(make_square_detector([]), img, sizes=(60,), flip=True, image_size=(120, 200))
    torch.testing.assert_close(big.boxes, torch.tensor([[20.0, 20.0, 60.0, 60.0]]))


def test_make_detection_views_order():
    views = make_detection_views((160, 224), flip=True)
    assert [v.name for v in views] == ["m160", "m160-flip", "m224", "m224-flip"]


# ---------------------------------------------------------------- real torchvision detector


def test_torchvision_fasterrcnn_tta_boxes_inside_image_and_min_size_restored():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3,
                                                  box_score_thresh=0.0).eval()
    original = model.transform.min_size
    seen: list[tuple[int, int]] = []
    hook = model.backbone.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    img = torch.rand(3, 200, 300)
    for method in ("nms", "wbf"):
        seen.clear()
        out = predict_tta(torchvision_predictor(model), img, sizes=(160, 224), flip=True, method=method,
                          max_dets=50)
        # shorter side 200 → 160 (×0.8 → 160×240) and 224 (×1.12 → 224×336), padded to /32 by the model
        assert seen == [(160, 256), (160, 256), (224, 352), (224, 352)]
        assert 0 < len(out) <= 50
        assert out.boxes.dtype == torch.float32 and out.labels.dtype == torch.int64
        b = out.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 300).all() and (b[:, 3] <= 200).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        assert set(out.labels.tolist()) <= {1, 2}
        assert (out.scores[:-1] >= out.scores[1:]).all()
        assert model.transform.min_size == original
    hook.remove()


def test_set_min_size_restores_on_error():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    assert model.transform.min_size == (320,)
    with pytest.raises(RuntimeError, match="boom"):
        with set_min_size(model, 128):
            assert model.transform.min_size == (128,)
            raise RuntimeError("boom")
    assert model.transform.min_size == (320,)
    with pytest.raises(TypeError, match="min_size"):
        with set_min_size(torch.nn.Linear(2, 2), 128):
            pass


# ---------------------------------------------------------------- NMS


def test_nms_merges_same_class_keeps_other_class():
    a = det([[0, 0, 10, 10]], [0.6], [1])
    b = det([[1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.5, 0.7], [1, 2, 1])
    out = merge_nms([a, b], iou_thr=0.5)  # IoU(a, b0) = 81 / 119 ≈ 0.68
    torch.testing.assert_close(out.boxes, torch.tensor([[1.0, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]]))
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.7, 0.5]))
    assert out.labels.tolist() == [1, 1, 2]
    assert len(merge_nms([a, b], iou_thr=0.7)) == 4  # below threshold → not suppressed
    assert merge_nms([a, b], max_dets=2).scores.tolist() == pytest.approx([0.9, 0.7])
    assert len(merge_nms([Detections.empty(), Detections.empty()])) == 0


# ---------------------------------------------------------------- WBF


def test_wbf_fuses_score_weighted_average_by_hand():
    a = det([[10, 10, 50, 50]], [0.9], [0])
    b = det([[14, 14, 54, 54]], [0.7], [0])  # IoU = 36² / (2·40² − 36²) ≈ 0.68 > 0.55
    out = merge_wbf([a, b], image_size=(100, 200))
    lo, hi = (0.9 * 10 + 0.7 * 14) / 1.6, (0.9 * 50 + 0.7 * 54) / 1.6  # 11.75, 51.75
    torch.testing.assert_close(out.boxes, torch.tensor([[lo, lo, hi, hi]]), atol=1e-3, rtol=0)
    # avg conf = (0.9 + 0.7) / 2, × min(2 models, 2 boxes) / sum(weights)=2 → 0.8
    torch.testing.assert_close(out.scores, torch.tensor([0.8]))
    assert out.labels.tolist() == [0] and out.labels.dtype == torch.int64
    # weights [2, 1]: coords weighted by score·weight, score = (1.8 + 0.7) / 2 · 2 / 3
    wtd = merge_wbf([a, b], image_size=(100, 200), weights=[2.0, 1.0])
    lo, hi = (1.8 * 10 + 0.7 * 14) / 2.5, (1.8 * 50 + 0.7 * 54) / 2.5
    torch.testing.assert_close(wtd.boxes, torch.tensor([[lo, lo, hi, hi]]), atol=1e-3, rtol=0)
    torch.testing.assert_close(wtd.scores, torch.tensor([2.5 / 2 * 2 / 3]))


def test_wbf_empty_views_rescaling_and_image_frame():
    empty = Detections.empty()
    one = det([[150, 20, 190, 60]], [0.8], [2])  # x beyond h=100: swapped (h, w) would clip it away
    out = merge_wbf([one, empty], image_size=(100, 200))
    torch.testing.assert_close(out.boxes, one.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(out.scores, torch.tensor([0.4]))  # found by 1 of 2 views → score halved
    assert out.labels.tolist() == [2]
    assert len(merge_wbf([empty, empty], image_size=(100, 200))) == 0
    assert len(merge_wbf([empty], image_size=(100, 200))) == 0
    clipped = merge_wbf([det([[-5, -5, 250, 40]], [0.5], [1])], image_size=(100, 200))
    torch.testing.assert_close(clipped.boxes, torch.tensor([[0.0, 0, 200, 40]]), atol=1e-3, rtol=0)
    far = det([[0, 0, 10, 10]], [0.3], [0])
    two = merge_wbf([one, far], image_size=(100, 200), max_dets=1)
    assert two.labels.tolist() == [2]  # sorted by score, cut at max_dets


def test_merge_detections_dispatch_and_errors():
    a = det([[10, 10, 50, 50]], [0.9], [0])
    b = det([[14, 14, 54, 54]], [0.7], [0])
    assert merge_detections([a, b], (100, 200), "nms").scores.tolist() == pytest.approx([0.9])
    assert merge_detections([a, b], (100, 200), "wbf").scores.tolist() == pytest.approx([0.8])
    with pytest.raises(ValueError, match="method 'soft'"):
        merge_detections([a, b], (100, 200), "soft")
    with pytest.raises(ValueError, match="method"):
        predict_tta(make_square_detector([]), torch.zeros(3, 8, 8), sizes=(8,), flip=True, method="mean")
    with pytest.raises(ValueError, match="conf_type"):
        merge_wbf([a, b], (100, 200), conf_type="median")
    with pytest.raises(ValueError, match="weights"):
        merge_wbf([a, b], (100, 200), weights=[1.0])
    with pytest.raises(ValueError, match="view"):
        merge_nms([])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Detections(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.int64))
