"""Find an experiment (or ensemble) under an output root and rebuild its task from the config it
was trained with, so the workflow commands (`validate --exp`, `submit --exp`, `finish`) need only
a name."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kagglekit.config import ConfigError, from_dict
from kagglekit.io import load_json
from kagglekit.store.arrays import OOFError


def saved_config(root: Path, exp: str) -> Any:
    """The resolved config ``exp`` was trained with (``<root>/<exp>/fold0/config.json``)."""
    from kagglekit.tasks import CONFIGS
    path = root / exp / "fold0" / "config.json"
    if not path.exists():
        raise OOFError(f"{path} not found: train the experiment first (python exp/{exp}.py --fold all)")
    data = load_json(path)
    if data.get("task") not in CONFIGS:
        raise ConfigError(f"{path}: task {data.get('task')!r} unknown; use one of {sorted(CONFIGS)}")
    return from_dict(CONFIGS[data["task"]](), data)


def experiment_config(root: Path, name: str) -> Any:
    """An experiment's config, or for an ensemble (``<root>/ensemble/<name>/weights.json``) its first member's."""
    if (root / name / "fold0" / "config.json").exists():
        return saved_config(root, name)
    weights = root / "ensemble" / name / "weights.json"
    if weights.exists():
        return saved_config(root, load_json(weights)["members"][0])
    raise FileNotFoundError(f"no experiment {name!r} under {root} (neither {root / name}/fold0/config.json nor "
                            f"{weights}); pass --output <the folder holding it>")


def experiment_task(root: Path, name: str) -> Any:
    from kagglekit.experiment.runner import build_task
    return build_task(experiment_config(root, name))
