"""One name per meaning across tasks (issue 12, point 7): old key names still work through
``kagglekit.config.RENAMED_KEYS`` — with ``--set`` (one deprecation line naming the new key), in
snapshots (``from_dict``) and when ``--resume`` compares an old ``config.json``
(``config_differences`` / ``runner.claim_fold_dir``); choice fields are ``Literal`` and refuse
other values by name."""
from __future__ import annotations

import json
import logging
import typing

import pytest

from kagglekit.config import (RENAMED_KEYS, ConfigError, apply_overrides, config_differences, field_types, from_dict,
                              save_config, to_dict)
from kagglekit.engine.settings import FitSettings
from kagglekit.io import load_json
from kagglekit.experiment.runner import claim_fold_dir
from kagglekit.tasks.behavior.config import BehaviorConfig
from kagglekit.tasks.detection.config import DetectionConfig
from kagglekit.tasks.keypoints.config import KeypointConfig
from kagglekit.tasks.multilabel.config import MultiLabelConfig
from kagglekit.tasks.segmentation.config import SegmentationConfig

CLASSES = (SegmentationConfig, BehaviorConfig, MultiLabelConfig, DetectionConfig, KeypointConfig)

# (config class, --set item, new key, value the new key gets)
ALIASES = [
    (KeypointConfig, "flip_tta=false", "tta_flip", False),
    (KeypointConfig, "flip_tta=1", "tta_flip", True),
    (SegmentationConfig, "encoder=tu-resnet18", "backbone", "tu-resnet18"),
    (SegmentationConfig, "pretrained_path=w/convnext.safetensors", "pretrained", "w/convnext.safetensors"),
    (MultiLabelConfig, "pretrained_path=w/mnv3.pth", "pretrained", "w/mnv3.pth"),
    (DetectionConfig, "backbone_weights=w/r50.pth", "pretrained", "w/r50.pth"),
    (KeypointConfig, "backbone_weights=w/r50.pth", "pretrained", "w/r50.pth"),
    (DetectionConfig, "detector_weights=w/frcnn_coco.pth", "init_weights", "w/frcnn_coco.pth"),
    (DetectionConfig, "hflip=false", "hflip_p", 0.0),
    (DetectionConfig, "hflip=true", "hflip_p", 0.5),
    (KeypointConfig, "hflip=off", "hflip_p", 0.0),
    (MultiLabelConfig, "hflip=yes", "hflip_p", 0.5),
    (SegmentationConfig, "hflip=false", "hflip_p", 0.0),  # one meaning everywhere
]


@pytest.mark.parametrize("cls,item,new,expected", ALIASES, ids=[f"{c.__name__}-{i}" for c, i, _, _ in ALIASES])
def test_old_name_is_applied_with_one_deprecation_line(cls, item, new, expected, caplog):
    old = item.split("=")[0]
    with caplog.at_level(logging.WARNING, logger="kagglekit"):
        cfg = apply_overrides(cls(), [item])
    value = getattr(cfg, new)
    assert value == expected and type(value) is type(expected)
    assert not hasattr(cfg, old) or old == new
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "deprecated" in lines[0] and f"use {new}" in lines[0] and old in lines[0], lines


def test_every_renamed_key_is_covered_and_none_is_a_field():
    covered = {item.split("=")[0] for _, item, _, _ in ALIASES}
    assert covered == {old for old, r in RENAMED_KEYS.items() if old != r.new}
    for cls in CLASSES:
        names = set(field_types(cls))
        for old, r in RENAMED_KEYS.items():
            assert old == r.new or old not in names, (cls.__name__, old)


def test_new_name_given_after_old_one_wins_and_old_bad_value_is_refused():
    cfg = apply_overrides(DetectionConfig(), ["hflip=true", "hflip_p=0.25"])
    assert cfg.hflip_p == 0.25
    with pytest.raises(ConfigError, match="boolean"):
        apply_overrides(DetectionConfig(), ["hflip=0.3"])  # the old key keeps its old type
    with pytest.raises(ConfigError, match="unknown config key 'encoder'"):
        apply_overrides(BehaviorConfig(), ["encoder=x"])  # no backbone field: not an alias there


def test_compare_to_is_a_tuple_and_a_plain_string_means_one_name(caplog):
    with caplog.at_level(logging.WARNING, logger="kagglekit"):
        assert apply_overrides(DetectionConfig(), ["compare_to=frcnn_run0"]).compare_to == ("frcnn_run0",)
        assert apply_overrides(MultiLabelConfig(), ["compare_to=a,b"]).compare_to == ("a", "b")
    assert not caplog.records  # same name: nothing deprecated
    assert DetectionConfig(compare_to="frcnn_run1").compare_to == ("frcnn_run1",)  # never its characters
    assert DetectionConfig(compare_to="").compare_to == ()
    assert field_types(DetectionConfig)["compare_to"] == field_types(MultiLabelConfig)["compare_to"] == tuple[str, ...]


def _old_snapshot(cfg, renames: dict[str, tuple[str, object]]) -> dict:
    """``cfg``'s config.json as the library wrote it before the renames: new key → (old key, old value)."""
    data = {"config_class": type(cfg).__name__, "config_hash": "0123456789ab", **to_dict(cfg)}
    for new, (old, value) in renames.items():
        del data[new]
        data[old] = value
    return json.loads(json.dumps(data))


SNAPSHOTS = [
    (SegmentationConfig(backbone="tu-resnet18", pretrained="w.safetensors"),
     {"backbone": ("encoder", "tu-resnet18"), "pretrained": ("pretrained_path", "w.safetensors")}),
    (MultiLabelConfig(pretrained="w.pth", hflip_p=0.0, compare_to=("door_v20260511",)),
     {"pretrained": ("pretrained_path", "w.pth"), "hflip_p": ("hflip", False)}),
    (DetectionConfig(pretrained="r50.pth", init_weights="coco.pth", hflip_p=0.5, compare_to=("frcnn_run0",)),
     {"pretrained": ("backbone_weights", "r50.pth"), "init_weights": ("detector_weights", "coco.pth"),
      "hflip_p": ("hflip", True), "compare_to": ("compare_to", "frcnn_run0")}),
    (DetectionConfig(), {"hflip_p": ("hflip", True), "compare_to": ("compare_to", "")}),
    (KeypointConfig(pretrained="r50.pth", hflip_p=0.0, tta_flip=False),
     {"pretrained": ("backbone_weights", "r50.pth"), "hflip_p": ("hflip", False), "tta_flip": ("flip_tta", False)}),
]


@pytest.mark.parametrize("cfg,renames", SNAPSHOTS, ids=[f"{type(c).__name__}{i}" for i, (c, _) in enumerate(SNAPSHOTS)])
def test_old_snapshot_loads_and_compares_equal(cfg, renames, caplog):
    old = _old_snapshot(cfg, renames)
    with caplog.at_level(logging.INFO, logger="kagglekit"):
        assert from_dict(type(cfg), old) == cfg
    assert config_differences(cfg, old) == []


def test_old_snapshot_with_a_real_difference_is_still_found():
    old = _old_snapshot(DetectionConfig(), {"hflip_p": ("hflip", False), "compare_to": ("compare_to", "frcnn_run0")})
    assert sorted(config_differences(DetectionConfig(), old)) == ["compare_to", "hflip_p"]
    old = _old_snapshot(KeypointConfig(), {"tta_flip": ("flip_tta", False)})
    assert config_differences(KeypointConfig(), old) == ["tta_flip"]


def test_snapshot_with_old_and_new_key_disagreeing_is_refused():
    data = {**to_dict(KeypointConfig()), "flip_tta": False}  # tta_flip is True
    with pytest.raises(ConfigError, match="tta_flip twice"):
        from_dict(KeypointConfig, data)


@pytest.mark.parametrize("cls,item,allowed", [
    (DetectionConfig, "tta_merge=avg", ["nms", "wbf"]),
    (DetectionConfig, "split_mode=folds", ["fixed", "kfold"]),
    (SegmentationConfig, "arch=pspnet", ["fpn", "deeplabv3plus", "unet"]),
    (SegmentationConfig, "scheduler=linear", ["cosine", "plateau", "step", "constant"]),
    (BehaviorConfig, "view=frames", ["grouped", "pairs"]),
    (MultiLabelConfig, "kind=sigmoid", ["multilabel", "softmax"]),
    (KeypointConfig, "monitor_mode=maximum", ["min", "max"]),
    (BehaviorConfig, "fold_strategy=random", ["kfold", "stratified", "group", "stratified_group", "multilabel_stratified"]),
])
def test_literal_field_refuses_a_bad_value_naming_the_allowed_ones(cls, item, allowed):
    with pytest.raises(ConfigError) as info:
        apply_overrides(cls(), [item])
    assert f"--set {item}" in str(info.value) and str(allowed) in str(info.value)


def test_task_configs_keep_the_shared_field_types():
    """A task config redeclaring a shared field (a new default) keeps its type: ``monitor_mode: str``
    in a subclass would silently accept ``--set monitor_mode=maximum`` again."""
    from kagglekit.config import ExperimentConfig
    base = field_types(ExperimentConfig)
    for cls in CLASSES:
        types_ = field_types(cls)
        assert {k: types_[k] for k in base} == base, cls.__name__
    shared = {}  # one name, one type, across the tasks
    for cls in CLASSES:
        for name, tp in field_types(cls).items():
            if name in ("backbone", "pretrained", "init_weights", "hflip_p", "tta_flip", "tta_scales", "compare_to"):
                assert shared.setdefault(name, tp) == tp, (cls.__name__, name, tp)


def test_literal_defaults_are_allowed_values():
    for cls in (*CLASSES, FitSettings):
        cfg = cls()
        for name, tp in field_types(cls).items():
            if typing.get_origin(tp) is typing.Literal:
                assert getattr(cfg, name) in typing.get_args(tp), (cls.__name__, name)
                assert apply_overrides(cfg, [f"{name}={getattr(cfg, name)}"]) == cfg


def test_fold_written_with_old_names_resumes(tmp_path):
    """An ``output/<exp>/fold0`` whose config.json has the old names: the runner's guard accepts
    ``--resume`` (no spurious difference) and rewrites the snapshot with the new names."""
    cfg = DetectionConfig(name="frcnn_run2", compare_to=("frcnn_run1",), init_weights="coco.pth", hflip_p=0.5)
    fold_dir = tmp_path / "frcnn_run2" / "fold0"
    fold_dir.mkdir(parents=True)
    (fold_dir / "checkpoints").mkdir()
    old = _old_snapshot(cfg, {"init_weights": ("detector_weights", "coco.pth"), "hflip_p": ("hflip", True),
                              "compare_to": ("compare_to", "frcnn_run1")})
    (fold_dir / "config.json").write_text(json.dumps(old))
    assert claim_fold_dir(fold_dir, cfg, resume=True, overwrite=False) == "resume"
    new = load_json(fold_dir / "config.json")
    assert new["init_weights"] == "coco.pth" and new["hflip_p"] == 0.5 and new["compare_to"] == ["frcnn_run1"]
    assert "detector_weights" not in new and "hflip" not in new
    # and a keypoint fold (flip_tta / backbone_weights) the same way
    kp = KeypointConfig(name="vk", tta_flip=False, pretrained="r50.pth")
    kp_dir = tmp_path / "vk" / "fold0"
    kp_dir.mkdir(parents=True)
    (kp_dir / "config.json").write_text(json.dumps(_old_snapshot(kp, {"tta_flip": ("flip_tta", False),
                                                                      "pretrained": ("backbone_weights", "r50.pth"),
                                                                      "hflip_p": ("hflip", True)})))
    assert claim_fold_dir(kp_dir, kp, resume=True, overwrite=False) == "resume"
    # a changed setting under an old name is still a difference
    save_config(kp, kp_dir / "config.json")
    changed = _old_snapshot(kp, {"tta_flip": ("flip_tta", True)})
    (kp_dir / "config.json").write_text(json.dumps(changed))
    with pytest.raises(ConfigError, match="tta_flip"):
        claim_fold_dir(kp_dir, kp, resume=True, overwrite=False)
