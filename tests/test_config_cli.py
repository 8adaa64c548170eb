"""Strict overrides, type casting, experiment derivation, CLI fold parsing."""
from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import pytest

from kagglekit.cli import parse_folds, resolve_config
from kagglekit.config import ConfigError, apply_overrides, config_hash, from_dict, save_config
from kagglekit.io import load_json
from kagglekit.tasks.segmentation.config import SegmentationConfig

EXP = Path(__file__).resolve().parents[1] / "exp"


def load_exp(name: str):
    sys.path.insert(0, str(EXP))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXP))


def test_unknown_key_lists_close_matches():
    with pytest.raises(ConfigError, match="did you mean ema_decay"):
        apply_overrides(SegmentationConfig(), ["ema_decy=0.9"])


@pytest.mark.parametrize("item,key,expected", [
    ("epochs=7", "epochs", 7), ("epochs=1e2", "epochs", 100), ("lr=3e-4", "lr", 3e-4),
    ("use_depth_input=true", "use_depth_input", True), ("tta_flip=0", "tta_flip", False),
    ("tta_scales=0.75,1.0", "tta_scales", (0.75, 1.0)), ("class_weights=", "class_weights", ()),
    ("backbone=tu-convnext_tiny", "backbone", "tu-convnext_tiny"),
])
def test_values_cast_to_field_type(item, key, expected):
    cfg = apply_overrides(SegmentationConfig(), [item])
    assert getattr(cfg, key) == expected and type(getattr(cfg, key)) is type(expected)


@pytest.mark.parametrize("item", ["epochs=2.5", "epochs=abc", "tta_flip=maybe", "lr=fast", "noequals"])
def test_bad_values_are_errors(item):
    with pytest.raises(ConfigError):
        apply_overrides(SegmentationConfig(), [item])


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SegmentationConfig().lr = 1.0  # type: ignore[misc]


def test_experiments_derive_from_parent_with_stem_names():
    e2, e4, e5, e6 = (load_exp(n).CFG for n in ("exp093_2", "exp093_4", "exp093_5", "exp093_6"))
    assert [c.name for c in (e2, e4, e5, e6)] == ["exp093_2", "exp093_4", "exp093_5", "exp093_6"]
    assert (e2.lr, e2.weight_decay, e2.epochs, e2.batch_size, e2.ema_decay, e2.n_folds) == (1e-4, 1e-4, 50, 4, 0.999, 5)
    assert e2.tta_scales == (0.5, 0.75, 1.0, 1.25, 1.5) and e2.tta_flip
    assert (e2.input_h, e2.input_w, e2.crop_h, e2.crop_w) == (720, 960, 576, 768)
    assert e4.boundary_weight == 2.0 and [i for i, w in enumerate(e4.class_weights) if w == 1.5] == [1, 9, 10]
    assert e5.use_depth_input and not e2.use_depth_input
    assert e6.arch == "deeplabv3plus"
    diff = {f.name for f in dataclasses.fields(e2) if getattr(e2, f.name) != getattr(e5, f.name)}
    assert diff == {"name", "use_depth_input"}


def test_ensemble_experiment_matches_seed():
    cfg = load_exp("exp093_ensemble").CFG
    assert cfg.members == ("exp093_5", "exp093_4") and cfg.method == "slsqp"
    assert cfg.tta_scales == (0.75, 1.0) and cfg.tta_flip and (cfg.infer_h, cfg.infer_w) == (576, 768)


def test_cli_demo_then_overrides():
    cfg, args = resolve_config(SegmentationConfig(name="x"), ["--demo", "--set", "epochs=3", "--fold", "1"])
    assert cfg.epochs == 3 and cfg.backbone == "tu-resnet18" and args.fold == "1"


def test_parse_folds():
    assert parse_folds("all", 5) == [0, 1, 2, 3, 4]
    assert parse_folds("2", 5) == [2]
    with pytest.raises(ConfigError, match="--fold 7 but n_folds=5"):
        parse_folds("7", 5)


def test_snapshot_roundtrip(tmp_path):
    cfg = apply_overrides(SegmentationConfig(), ["tta_scales=1.0", "lr=0.5"])
    save_config(cfg, tmp_path / "config.json")
    data = load_json(tmp_path / "config.json")
    assert data["config_hash"] == config_hash(cfg) and data["tta_scales"] == [1.0]
    assert from_dict(SegmentationConfig, data) == cfg


@pytest.mark.parametrize("item,message", [
    ("tta_scales=0.75,x", "--set tta_scales=0.75,x: 'x' is not a float (expected a comma-separated list of float)"),
    ("tta_scales=(0.75, 1.0, 1,25x)", "--set tta_scales=(0.75, 1.0, 1,25x): '25x' is not a float "
                                      "(expected a comma-separated list of float)"),
    ("class_weights=1,2,three", "--set class_weights=1,2,three: 'three' is not a float "
                                "(expected a comma-separated list of float)"),
    ("epochs=2.5", "--set epochs=2.5: '2.5' is not an int: it is a fraction"),
    ("lr=fast", "--set lr=fast: 'fast' is not a float"),
    ("tta_flip=maybe", "--set tta_flip=maybe: 'maybe' is not a boolean (true/false)"),
    ("arch=segformer", "--set arch=segformer: 'segformer' is not one of ['fpn', 'deeplabv3plus', 'unet']"),
])
def test_set_errors_quote_the_whole_value_and_the_failing_element(item, message):
    """Issue 16: the message quotes what was typed, not only the element that failed."""
    with pytest.raises(ConfigError) as info:
        apply_overrides(SegmentationConfig(), [item])
    assert str(info.value) == message
