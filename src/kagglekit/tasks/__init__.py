"""Task registry: config ``task`` name → factory taking the config (see runner.build_task)."""
from __future__ import annotations

from typing import Any, Callable


def _segmentation(cfg: Any) -> Any:
    from kagglekit.tasks.segmentation.task import SegmentationTask
    return SegmentationTask(cfg)


def _segmentation_config() -> type:
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    return SegmentationConfig


def _behavior(cfg: Any) -> Any:
    from kagglekit.tasks.behavior.task import GroupedBehaviorTask
    if cfg.view == "pairs":
        from kagglekit.tasks.behavior.pairs import PairBehaviorTask
        return PairBehaviorTask(cfg)
    if cfg.view != "grouped":
        raise ValueError(f"behaviour view {cfg.view!r} unknown; use grouped or pairs")
    return GroupedBehaviorTask(cfg)


def _behavior_config() -> type:
    from kagglekit.tasks.behavior.config import BehaviorConfig
    return BehaviorConfig


def _multilabel(cfg: Any) -> Any:
    from kagglekit.tasks.multilabel.task import MultiLabelTask
    return MultiLabelTask(cfg)


def _multilabel_config() -> type:
    from kagglekit.tasks.multilabel.config import MultiLabelConfig
    return MultiLabelConfig


def _detection(cfg: Any) -> Any:
    from kagglekit.tasks.detection.task import DetectionTask
    return DetectionTask(cfg)


def _detection_config() -> type:
    from kagglekit.tasks.detection.config import DetectionConfig
    return DetectionConfig


def _keypoints(cfg: Any) -> Any:
    from kagglekit.tasks.keypoints.task import KeypointTask
    return KeypointTask(cfg)


def _keypoints_config() -> type:
    from kagglekit.tasks.keypoints.config import KeypointConfig
    return KeypointConfig


TASKS: dict[str, Callable[[Any], Any]] = {"segmentation": _segmentation, "behavior": _behavior,
                                          "multilabel": _multilabel, "detection": _detection,
                                          "keypoints": _keypoints}
CONFIGS: dict[str, Callable[[], type]] = {"segmentation": _segmentation_config,  # task → config class
                                          "behavior": _behavior_config, "multilabel": _multilabel_config,
                                          "detection": _detection_config, "keypoints": _keypoints_config}
