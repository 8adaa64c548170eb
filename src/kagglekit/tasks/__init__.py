"""Task registry: config ``task`` name → factory taking the config (see runner.build_task)."""
from __future__ import annotations

from typing import Any, Callable


def _segmentation(cfg: Any) -> Any:
    from kagglekit.tasks.segmentation.task import SegmentationTask
    return SegmentationTask(cfg)


def _segmentation_config() -> type:
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    return SegmentationConfig


TASKS: dict[str, Callable[[Any], Any]] = {"segmentation": _segmentation}
CONFIGS: dict[str, Callable[[], type]] = {"segmentation": _segmentation_config}  # task → config class
