"""One-file predictor: round trip, thresholds + state map, metadata validation, unsafe pickles."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.engine.checkpoint import CheckpointError, save_checkpoint
from kagglekit.tasks.multilabel.model_wrap import TimmClassifier
from kagglekit.tasks.multilabel.predictor import Predictor, PredictorMeta, save_predictor
from kagglekit.tta.classification import View

DOOR_STATES = {"1,0": "open", "0,1": "closed", "1,1": "mixed", "0,0": "unknown"}


def door_meta(**kw) -> PredictorMeta:
    base = dict(backbone="mobilenetv3_small_050", kind="multilabel", attributes=["has_open", "has_close"],
                thresholds=[0.3, 0.8], image_size=64, state_map=dict(DOOR_STATES), version="v-test")
    return PredictorMeta(**{**base, **kw})


def images(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * i, 80, 3), dtype=np.uint8) for i in range(n)]


def test_round_trip_reproduces_logits_exactly(tmp_path):
    torch.manual_seed(0)
    model = TimmClassifier("mobilenetv3_small_050", num_classes=2)
    model.train()
    with torch.no_grad():  # non-trivial BN running stats, so the eval-mode path matters
        for _ in range(3):
            model({"image": torch.randn(4, 3, 64, 64) * 3 + 1})
    model.eval()
    meta = door_meta()
    path = save_predictor(tmp_path / "best.pt", model.state_dict(), meta)
    pred = Predictor.from_checkpoint(path)
    assert pred.meta == meta
    x = pred.preprocess(images())
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32
    with torch.no_grad():
        ref, got = model({"image": x})["logits"], pred.model({"image": x})["logits"]
    assert torch.equal(ref, got)
    np.testing.assert_array_equal(pred.predict_proba(images(), batch_size=2), torch.sigmoid(ref).numpy())
    fresh = Predictor(TimmClassifier("mobilenetv3_small_050", num_classes=2), meta)
    assert not np.allclose(fresh.predict_proba(images()), torch.sigmoid(ref).numpy())  # weights did load


def test_preprocess_resizes_and_normalises_with_stored_mean_std():
    pred = Predictor(nn.Identity(), door_meta(mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0]))
    img = np.zeros((30, 50, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 51
    x = pred.preprocess([img])
    assert x.shape == (1, 3, 64, 64)
    torch.testing.assert_close(x[0, :, 5, 7], torch.tensor([1.0, -1.0, 0.2]))
    with pytest.raises(ValueError, match="uint8"):
        pred.preprocess([img.astype(np.float32)])


class BiasModel(nn.Module):
    """logits = a stored (K,) bias for every image, plus (right - left) brightness per column."""

    def __init__(self, k: int, side: bool = False) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(k))
        self.side = side

    def forward(self, batch: dict) -> dict:
        x = batch["image"]
        out = self.bias.expand(x.shape[0], -1).clone()
        if self.side:
            w = x.shape[-1] // 2
            left, right = x[..., :w].mean((1, 2, 3)), x[..., w:].mean((1, 2, 3))
            out = out + torch.stack([left - right, right - left], 1)
        return {"logits": out}


def test_thresholds_and_state_map_applied(tmp_path):
    pred = Predictor(nn.Identity(), door_meta(state_map={"1,0": "open", "0,1": "closed", "0,0": "unknown"}))
    probs = np.array([[0.31, 0.79], [0.29, 0.80], [0.9, 0.9], [0.1, 0.1]], np.float32)
    table = pred.decide(probs)
    assert table["has_open"].tolist() == [1, 0, 1, 0]  # 0.31 ≥ 0.3 (a 0.5 cut would say 0)
    assert table["has_close"].tolist() == [0, 1, 1, 0]  # 0.80 ≥ 0.8, 0.79 < 0.8
    assert table["state"].tolist() == ["open", "closed", "?", "unknown"]  # (1,1) unmapped → "?"
    np.testing.assert_array_equal(table["has_open_prob"].to_numpy(), probs[:, 0])
    # end to end: the stored thresholds and state map come from the file
    model = BiasModel(2)
    with torch.no_grad():
        model.bias.copy_(torch.logit(torch.tensor([0.35, 0.75])))
    path = save_predictor(tmp_path / "p.pt", model.state_dict(), door_meta())
    loaded = Predictor.from_checkpoint(path, build_model=lambda m: BiasModel(len(m.labels)))
    out = loaded.predict(images(2))
    assert out["state"].tolist() == ["open", "open"]
    assert out["has_close"].tolist() == [0, 0]


def test_softmax_kind_gives_class_probabilities_and_argmax(tmp_path):
    meta = PredictorMeta(backbone="x", kind="softmax", classes=["open", "closed", "mixed"], image_size=32)
    model = BiasModel(3)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.0, 2.0, 1.0]))
    path = save_predictor(tmp_path / "s.pt", model.state_dict(), meta)
    pred = Predictor.from_checkpoint(path, build_model=lambda m: BiasModel(3))
    table = pred.predict(images(2))
    assert table["class"].tolist() == ["closed", "closed"]
    probs = table[["open_prob", "closed_prob", "mixed_prob"]].to_numpy()
    np.testing.assert_allclose(probs[0], torch.softmax(torch.tensor([0.0, 2.0, 1.0]), 0).numpy(), rtol=1e-6)


def test_missing_thresholds_is_a_clear_error(tmp_path):
    meta = door_meta()
    bad = meta.to_dict()
    del bad["thresholds"]
    path = save_checkpoint(tmp_path / "old.pt", {"model": BiasModel(2).state_dict(), "predictor": bad})
    with pytest.raises(CheckpointError, match="no thresholds; re-export it with thresholds from validation"):
        Predictor.from_checkpoint(path, build_model=lambda m: BiasModel(2))
    with pytest.raises(ValueError, match="no thresholds"):
        save_predictor(tmp_path / "x.pt", {}, door_meta(thresholds=[]))
    with pytest.raises(CheckpointError, match="2 attributes"):
        PredictorMeta.from_dict({**meta.to_dict(), "thresholds": [0.5]})
    with pytest.raises(CheckpointError, match="not a predictor checkpoint"):
        Predictor.from_checkpoint(save_checkpoint(tmp_path / "plain.pt", {"model": {}}))


def test_degenerate_threshold_refused_unless_allowed(tmp_path):
    meta = door_meta(thresholds=[1.0, 0.18])  # seed v20260515 val-SWA: thr(has_open) = 1.0
    with pytest.raises(ValueError, match="saturated"):
        save_predictor(tmp_path / "d.pt", BiasModel(2).state_dict(), meta)
    with pytest.warns(UserWarning, match="saturated"):
        path = save_predictor(tmp_path / "d.pt", BiasModel(2).state_dict(), meta, strict_thresholds=False)
    with pytest.raises(CheckpointError, match="has_open"):
        Predictor.from_checkpoint(path, build_model=lambda m: BiasModel(2))
    with pytest.warns(UserWarning, match="saturated"):
        Predictor.from_checkpoint(path, build_model=lambda m: BiasModel(2), strict_thresholds=False)


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = save_predictor(tmp_path / "p.pt", BiasModel(2).state_dict(), door_meta())
    with pytest.raises(CheckpointError, match="do not fit"):
        Predictor.from_checkpoint(path)  # default builder: timm layout, not BiasModel's


class Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil(str(marker)), "predictor": door_meta().to_dict()}, path)
    with pytest.raises(CheckpointError, match="safely"):
        Predictor.from_checkpoint(path)
    assert not marker.exists()
    # the payload is live: plain unpickling (what an unsafe load does) runs it
    import pickle
    pickle.loads(pickle.dumps(Evil(str(tmp_path / "ran"))))
    assert (tmp_path / "ran").exists()


def test_flip_tta_uses_stored_flip_permutation():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = 255  # bright left half
    meta = door_meta(attributes=["left", "right"], state_map={}, flip_permutation=[1, 0])
    pred = Predictor(BiasModel(2, side=True), meta)
    plain = pred.predict_proba([img])
    assert plain[0, 0] > plain[0, 1]
    np.testing.assert_allclose(pred.predict_proba([img], views=[View(1.0, True)]), plain, rtol=1e-6)
    meta.flip_permutation = []
    unpermuted = pred.predict_proba([img], views=[View(1.0, True)])
    assert unpermuted[0, 0] < unpermuted[0, 1]  # without the permutation the flip answers left ↔ right
    assert "state" not in pred.predict([img]).columns
