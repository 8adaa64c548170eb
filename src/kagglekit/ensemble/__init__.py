"""Ensembling: the weight search (:mod:`.search`, arrays in, weights out), the task-agnostic
runner (:mod:`.runner`: members → the task's blend objective → weights.json, blended submission,
ledger row) and its command line (:mod:`.cli`, behind ``python ensemble.py``).

The search's public names are re-exported here, so ``from kagglekit.ensemble import
slsqp_weights`` (the module's path before it became a package) keeps working.
"""
from kagglekit.ensemble.search import (
    SearchResult,
    SegmentationBlendObjective,
    blend_argmax_confusion,
    greedy_weights,
    normalize_weights,
    search_weights,
    slsqp_weights,
)

__all__ = ["SearchResult", "SegmentationBlendObjective", "blend_argmax_confusion", "greedy_weights",
           "normalize_weights", "search_weights", "slsqp_weights"]
