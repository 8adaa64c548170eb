"""Horizontal-flip TTA for keypoints (kagglekit.tta.keypoints): x' = W - x, left/right slot swap,
instance matching and the merge, checked with a fake mirror-consistent keypoint model."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

import kagglekit.tta.keypoints as tk
from kagglekit.tasks.keypoints.convert import COCO_KEYPOINT_NAMES, flip_pairs_from_names
from kagglekit.tta.detection import hflip_boxes
from kagglekit.tta.keypoints import hflip_keypoints, match_instances, merge_flip_keypoints, predict_flip_tta

COCO_PAIRS = flip_pairs_from_names(COCO_KEYPOINT_NAMES)


# ----------------------------------------------------------------------------------- hflip_keypoints
def test_hflip_keypoints_convention_and_swap():
    k = torch.tensor([[[10.5, 3.0, 2.0], [20.0, 4.0, 1.0], [30.0, 5.0, 0.5]]])
    out = hflip_keypoints(k, 100, [(1, 2)])
    assert out.tolist() == [[[89.5, 3.0, 2.0], [70.0, 5.0, 0.5], [80.0, 4.0, 1.0]]]  # W - x, slots 1 <-> 2
    assert torch.equal(hflip_keypoints(out, 100, [(1, 2)]), k)  # an involution
    assert hflip_keypoints(k[..., :2], 100, [])[0, :, 0].tolist() == [89.5, 80.0, 70.0]  # (N, K, 2), no pairs
    assert k[0, 0, 0] == 10.5  # input untouched
    for bad in ([(0, 3)], [(1, 1)], [(0, 1), (1, 2)], [(0,)]):
        with pytest.raises(ValueError):
            hflip_keypoints(k, 100, bad)
    with pytest.raises(ValueError, match=r"\(\.\.\., K, 2\)"):
        hflip_keypoints(torch.zeros(3, 4), 10, [])


def test_hflip_matches_image_flip_at_pixel_centres():
    """A marker in pixel column i has continuous x = i + 0.5; in image.flip(-1) it sits in column
    W - 1 - i, i.e. x = W - (i + 0.5): the W - x rule, not W - 1 - x."""
    w = 37
    img = torch.zeros(1, 5, w)
    img[0, 2, 6] = 1
    col = int(torch.nonzero(img.flip(-1)[0, 2])[0])
    k = torch.tensor([[[6 + 0.5, 2.5, 1.0]]])
    assert hflip_keypoints(k, w, [])[0, 0, 0] == col + 0.5
    # consistent with hflip_boxes: the box around the points mirrors to the box around the mirrored points
    pts = torch.tensor([[[3.0, 1.0, 1], [9.0, 4.0, 1], [5.0, 2.0, 1]]])
    box = torch.tensor([[3.0, 1.0, 9.0, 4.0]])
    f = hflip_keypoints(pts, w, [(0, 1)])[0]
    assert hflip_boxes(box, w).tolist() == [[f[:, 0].min().item(), 1.0, f[:, 0].max().item(), 4.0]]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: st.tuples(
    st.lists(st.floats(-50, 500, allow_subnormal=False), min_size=3 * k, max_size=3 * k),
    st.permutations(range(k)), st.integers(1, 400))))
def test_hflip_involution_property(item):
    vals, order, w = item
    k = len(order)
    pairs = [(order[2 * i], order[2 * i + 1]) for i in range(k // 2)]
    t = torch.tensor(vals, dtype=torch.float64).reshape(1, k, 3)
    once = hflip_keypoints(t, w, pairs)
    assert torch.allclose(hflip_keypoints(once, w, pairs), t, atol=1e-9, rtol=0)
    for i, j in pairs:
        assert once[0, i, 1] == t[0, j, 1] and once[0, j, 2] == t[0, i, 2]


# ----------------------------------------------------------------------------------- matching / merge
def test_match_instances_greedy_by_score():
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], dtype=torch.float32)
    b = torch.tensor([[0, 0, 10, 11], [100, 100, 110, 110]], dtype=torch.float32)
    # the higher-scored a[1] wins the one candidate both overlap, a[0] stays unmatched
    assert match_instances(a, b, torch.tensor([0.5, 0.9, 0.7])).tolist() == [-1, 0, -1]
    assert match_instances(a, b, torch.tensor([0.9, 0.5, 0.7])).tolist() == [0, -1, -1]
    assert match_instances(a, b).tolist() == [0, -1, -1]  # no scores: given order
    assert match_instances(a, b, iou_thr=0.95).tolist() == [-1, 0, -1]
    lab = torch.tensor([1, 1, 1])
    assert match_instances(a, b, labels_a=lab, labels_b=torch.tensor([2, 1])).tolist() == [-1, -1, -1]
    assert match_instances(a[:0], b).shape == (0,) and match_instances(a, b[:0]).tolist() == [-1, -1, -1]


def test_merge_flip_keypoints_averages_matched_only():
    orig = torch.tensor([[[10.0, 10.0, 1.0]], [[50.0, 50.0, 1.0]]])
    back = torch.tensor([[[12.0, 14.0, 0.0]]])
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [40.0, 40.0, 60.0, 60.0]])
    out = merge_flip_keypoints(orig, back, boxes, torch.tensor([[1.0, 0.0, 21.0, 20.0]]), torch.tensor([0.9, 0.8]))
    assert out.tolist() == [[[11.0, 12.0, 0.5]], [[50.0, 50.0, 1.0]]]  # score channel averaged too
    assert orig[0, 0, 0] == 10.0
    with pytest.raises(ValueError):
        merge_flip_keypoints(orig, torch.zeros(1, 2, 3), boxes, boxes[:1])
    with pytest.raises(ValueError):
        merge_flip_keypoints(orig, back, boxes[:1], boxes[:1])


# ----------------------------------------------------------------------------------- fake model
NAMES = ["nose", "left_eye", "right_eye", "left_wrist", "right_wrist"]
PAIRS = flip_pairs_from_names(NAMES)  # [(1, 2), (3, 4)]
GROUP = {"nose": 1, "eye": 2, "wrist": 3}
H, W = 48, 80

# Two people facing the camera (their left is on the image's right), ASYMMETRIC poses: person 1
# raises the left wrist high and keeps the right one low; person 2 the other way round, off-centre.
PEOPLE = {
    1: {"nose": (20, 12), "left_eye": (22, 10), "right_eye": (17, 11), "left_wrist": (31, 3), "right_wrist": (9, 30)},
    2: {"nose": (61, 20), "left_eye": (64, 18), "right_eye": (59, 18), "left_wrist": (74, 35), "right_wrist": (50, 8)},
}


def _image() -> torch.Tensor:
    """Channel 0: keypoint group at marker pixels; channel 1: a per-marker confidence (travels with
    the physical point); channel 2: person id. Pixel (col, row) -> continuous (col + .5, row + .5)."""
    img = torch.zeros(3, H, W)
    for pid, pts in PEOPLE.items():
        for n, (c, r) in pts.items():
            img[0, r, c] = GROUP[n.split("_")[-1]]
            img[1, r, c] = 0.1 + 0.01 * c + 0.001 * r
            img[2, r, c] = pid
    return img


def fake_keypoint_model(img: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mirror-consistent keypoint 'model': finds the markers of each person and names each pair by
    image side -- the one further right is the person's *left* (the person faces the camera). Given
    a flipped image it therefore reports semantically flipped labels, like a trained model."""
    boxes, scores, kpts, kscores = [], [], [], []
    for pid in (1, 2):
        found: dict[str, tuple[float, float, float]] = {}
        for g_name, g in GROUP.items():
            rows, cols = torch.nonzero((img[0] == g) & (img[2] == pid), as_tuple=True)
            pts = sorted(((c.item() + 0.5, r.item() + 0.5, img[1, r, c].item()) for r, c in zip(rows, cols)))
            if g_name == "nose":
                found["nose"] = pts[0]
            else:
                found[f"right_{g_name}"], found[f"left_{g_name}"] = pts[0], pts[1]
        k = torch.tensor([[found[n][0], found[n][1], 1.0] for n in NAMES])
        kpts.append(k)
        kscores.append(torch.tensor([found[n][2] for n in NAMES]))
        boxes.append(torch.tensor([k[:, 0].min() - 3, k[:, 1].min() - 3, k[:, 0].max() + 3, k[:, 1].max() + 3]))
        scores.append(0.9 if pid == 1 else 0.8)
    return {"boxes": torch.stack(boxes), "scores": torch.tensor(scores), "labels": torch.ones(2, dtype=torch.int64),
            "keypoints": torch.stack(kpts), "keypoints_scores": torch.stack(kscores)}


def test_fake_model_is_mirror_consistent():
    img = _image()
    plain, flipped = fake_keypoint_model(img), fake_keypoint_model(img.flip(-1))
    for pid, i in ((1, 0), (2, 1)):
        for n, (c, r) in PEOPLE[pid].items():
            assert plain["keypoints"][i, NAMES.index(n)].tolist() == [c + 0.5, r + 0.5, 1.0]
    # in the flipped view the physically-left wrist of person 1 is reported as its RIGHT wrist
    assert flipped["keypoints"][0, NAMES.index("right_wrist"), :2].tolist() == [W - 31.5, 3.5]


def test_flip_tta_recovers_original_keypoints():
    img = _image()
    plain = fake_keypoint_model(img)
    out = predict_flip_tta(fake_keypoint_model, img, PAIRS)
    assert torch.allclose(out["keypoints"], plain["keypoints"], atol=1e-5, rtol=0)
    assert torch.allclose(out["keypoints_scores"], plain["keypoints_scores"], atol=1e-6, rtol=0)
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(out[key], plain[key])


def test_flip_tta_test_is_sensitive_to_the_swap_and_the_mirror(monkeypatch):
    """The test above must fail if either half of the flip is wrong."""
    img = _image()
    plain = fake_keypoint_model(img)
    # 1. no left/right remapping: each left point is averaged with its right twin
    no_swap = predict_flip_tta(fake_keypoint_model, img, [])
    assert (no_swap["keypoints"] - plain["keypoints"]).abs().max() > 5
    # 2. no x-mirroring of the keypoints (slots still swapped)
    monkeypatch.setattr(tk, "hflip_keypoints", lambda k, w, p: _swap_only(k, p))
    no_mirror = tk.predict_flip_tta(fake_keypoint_model, img, PAIRS)
    assert (no_mirror["keypoints"] - plain["keypoints"]).abs().max() > 5
    # 3. the pixel-index rule W - 1 - x is off by half a pixel
    monkeypatch.setattr(tk, "hflip_keypoints", lambda k, w, p: hflip_keypoints(k, w - 1, p))
    off = tk.predict_flip_tta(fake_keypoint_model, img, PAIRS)
    assert torch.allclose((off["keypoints"] - plain["keypoints"])[..., 0], torch.tensor(-0.5))


def _swap_only(k: torch.Tensor, pairs) -> torch.Tensor:
    out = k.clone()
    for i, j in pairs:
        out[..., [i, j], :] = k[..., [j, i], :]
    return out


def test_flip_tta_unmatched_instance_unchanged():
    img = _image()

    def flaky(x):  # the flipped view misses person 2 and finds a spurious one far away
        out = fake_keypoint_model(x)
        if torch.equal(x, img):
            return out
        out = {k: v[:1].clone() for k, v in out.items()}
        out["boxes"] = torch.cat([out["boxes"], torch.tensor([[0.0, 40.0, 5.0, 47.0]])])
        out["scores"] = torch.cat([out["scores"], torch.tensor([0.99])])
        out["labels"] = torch.cat([out["labels"], torch.tensor([1])])
        out["keypoints"] = torch.cat([out["keypoints"], torch.full((1, 5, 3), 99.0)])
        out["keypoints_scores"] = torch.cat([out["keypoints_scores"], torch.zeros(1, 5)])
        # and disturb person 1's flipped keypoints so that the average is visible
        out["keypoints"][0, :, 1] += 2.0
        return out

    plain = fake_keypoint_model(img)
    out = predict_flip_tta(flaky, img, PAIRS)
    assert torch.allclose(out["keypoints"][0, :, 1], plain["keypoints"][0, :, 1] + 1.0)  # averaged
    assert torch.equal(out["keypoints"][1], plain["keypoints"][1])  # unmatched: unchanged
    assert out["keypoints"].shape == (2, 5, 3)


def test_flip_tta_with_torchvision_keypointrcnn_output_format():
    """Smoke test with an untrained torchvision keypoint R-CNN: keys, shapes and dtypes line up."""
    from torchvision.models.detection import KeypointRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=0)
    model = KeypointRCNN(backbone, num_classes=2, min_size=64, max_size=96,  # small heads: CPU-cheap
                         keypoint_head=KeypointRCNNHeads(256, (32,)), keypoint_predictor=KeypointRCNNPredictor(32, 17),
                         box_score_thresh=0.0, box_detections_per_img=5, rpn_pre_nms_top_n_test=50,
                         rpn_post_nms_top_n_test=20).eval()
    img = torch.rand(3, 64, 96)

    @torch.no_grad()
    def predict(x):
        return model([x])[0]

    out = predict_flip_tta(predict, img, COCO_PAIRS)
    plain = predict(img)
    assert set(out) == set(plain)
    assert out["keypoints"].shape == plain["keypoints"].shape and out["keypoints"].shape[1:] == (17, 3)
    assert out["keypoints_scores"].shape == plain["keypoints_scores"].shape
    assert torch.equal(out["boxes"], plain["boxes"])
    assert len(plain["boxes"]) > 0 and torch.isfinite(out["keypoints"]).all()
