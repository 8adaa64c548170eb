"""The seed's four grouped classes (report 001, MABe V5/V6): Background(0) / Social(1) /
Mating(2) / Aggressive(3), with class weights [1, 5, 8, 8] in the seed.

The seed names the groups but not the action → group table; this mapping is ours, by ethology:
- Mating: mounting and copulation (mount, attemptmount, intromit, ejaculate).
- Aggressive: agonistic acts *and* the reactions to them (attack, chase, tussle, bite, threat,
  dominance displays incl. dominancemount/dominancegroom, defend, submit, escape, flinch).
  ``dominancemount`` is a dominance display, not mating, so it is Aggressive.
- Social: non-agonistic interactions with another animal (sniffing, approach, follow, allogroom,
  huddle, shepherd, avoid, disengage, the rat ``social`` label).
- Background: solitary behaviour (rear, selfgroom, genitalgroom, dig, climb, rest, run, freeze,
  object exploration, rat ``nonsocial``/``freezing``) and unlabelled frames.

When several actions are active on one frame the highest-priority group wins:
Aggressive > Mating > Social > Background, which is simply the maximum group id.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

GROUP_NAMES: tuple[str, ...] = ("background", "social", "mating", "aggressive")
BACKGROUND, SOCIAL, MATING, AGGRESSIVE = 0, 1, 2, 3

_BY_GROUP: dict[int, tuple[str, ...]] = {
    BACKGROUND: ("rear", "selfgroom", "genitalgroom", "dig", "climb", "rest", "run", "exploreobject",
                 "biteobject", "freeze", "nonsocial", "freezing"),
    SOCIAL: ("sniff", "sniffgenital", "sniffbody", "sniffface", "reciprocalsniff", "approach", "follow",
             "allogroom", "huddle", "shepherd", "avoid", "disengage", "social"),
    MATING: ("mount", "attemptmount", "intromit", "ejaculate"),
    AGGRESSIVE: ("attack", "chase", "chaseattack", "tussle", "bite", "defend", "submit", "escape", "flinch",
                 "dominance", "dominancemount", "dominancegroom", "aggression", "lateralthreat", "keepdown",
                 "clinch", "uprightposture"),
}

ACTION_GROUP: dict[str, int] = {name: group for group, names in _BY_GROUP.items() for name in names}


def action_group(action: str) -> int:
    """Group id of one action name; raises ``KeyError`` for a name not in the table (no silent default)."""
    try:
        return ACTION_GROUP[action]
    except KeyError:
        raise KeyError(f"action {action!r} has no group; add it to kagglekit.tasks.behavior.groups") from None


def group_frames(frame_labels: np.ndarray, key_actions: Sequence[str]) -> np.ndarray:
    """Collapse per-action frame labels to one grouped class per frame.

    ``frame_labels`` (T, n_keys) uint8/bool, column j = 1 where ``key_actions[j]`` is active →
    (T,) int64 in {0, 1, 2, 3}; frames with no active action are Background; ties resolved by
    priority (maximum group id). Negative entries (-1 = not labelled) count as inactive.
    """
    labels = np.asarray(frame_labels)
    if labels.ndim != 2 or labels.shape[1] != len(key_actions):
        raise ValueError(f"frame_labels {labels.shape} does not match {len(key_actions)} key_actions")
    groups = np.array([action_group(a) for a in key_actions], dtype=np.int64)
    active = labels.astype(np.int64) > 0
    return np.where(active, groups[None, :], BACKGROUND).max(axis=1, initial=BACKGROUND)
