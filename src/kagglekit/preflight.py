"""Deprecated module path: moved to :mod:`kagglekit.experiment.preflight` (the stage layout of ARCHITECTURE.md).

``import kagglekit.preflight`` still works — the name is bound to the new module itself — so
scripts and notebooks written before the move keep running."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("kagglekit.experiment.preflight")
