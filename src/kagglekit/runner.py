"""Deprecated module path: moved to :mod:`kagglekit.experiment.runner` (the stage layout of ARCHITECTURE.md).

``import kagglekit.runner`` still works — the name is bound to the new module itself — so
scripts and notebooks written before the move keep running."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("kagglekit.experiment.runner")
