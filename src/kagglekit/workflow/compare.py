"""The experiment comparison page: ``<output>/compare.md`` with its figures in ``<output>/compare/``.

Everything comes from what the runs left on disk, never from a task's code:

- each experiment's ``metrics.json`` (metric, mode, cv, per_fold, extras) and ``fold0/config.json``;
- each ensemble's ``ensemble/<name>/weights.json`` (metric, mode, cv, members, weights, config);
- the OOF prediction stores (``oof_merged/`` or the folds' ``oof/``: manifest + ids + probs);
- the ledger ``ledger.csv`` (CV vs public LB per submission).

Experiments are grouped by (metric, task): numbers of different metrics never share an axis or a
table. Per group the page shows CV mean ± std over folds (table + per-fold plot), CV vs public LB,
a per-class table (the first ``per_*`` table of ``metrics.json``, best per class in bold), the
Pearson correlation of the members' OOF probabilities, and each experiment's config diff against
the group's best. Experiments without a complete ``metrics.json`` are listed as unfinished.

``kagglekit compare [EXP ...] [--output DIR] [--diff A B]``; also refreshed after every finished
experiment (``experiment.finish``) and ensemble (:func:`write_compare_page`, which only logs a
warning when the page cannot be drawn).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kagglekit.io import file_lock, load_json, write_text
from kagglekit.report.markdown import format_value, markdown_table
from kagglekit.store.arrays import StoredPredictions, read_predictions

log = logging.getLogger("kagglekit")

PAGE = "compare.md"
FIGURES = "compare"
FOLD_DIR = re.compile(r"^fold(\d+)$")
SKIP_DIRS = {"checkpoints", "oof", "test", "oof_merged", "members", "evaluation", FIGURES, ".git", "__pycache__"}
MAX_DEPTH = 5
MAX_VALUES = 1_000_000  # OOF values per experiment entering the correlation (deterministic subsample above)
MIN_ROWS = 1000  # subsampling keeps whole rows while at least this many fit
CHUNK_BYTES = 32 * 2**20  # rows read from a store at once
IDENTITY_KEYS = frozenset({"name", "config_hash"})  # differ between any two runs by construction
COUNT_FIELDS = frozenset({"support", "n", "tp", "fp", "fn", "tn", "thr", "threshold", "valid", "share",
                          "predicted_share", "count", "frames"})
PREFERRED_FIELDS = ("iou", "ap", "f1", "score", "accuracy")
ABSENT = "(absent)"
FONT = {"title": 11, "label": 10, "tick": 9}


# --------------------------------------------------------------------------- what is on disk
@dataclass
class Entry:
    """One experiment or ensemble: its summary (metrics.json / weights.json) and config snapshot."""

    name: str
    path: Path
    kind: str  # "experiment" | "ensemble"
    status: str = "finished"
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def metric(self) -> str:
        return str(self.summary.get("metric", ""))

    @property
    def mode(self) -> str:
        return "min" if self.summary.get("mode") == "min" else "max"

    @property
    def cv(self) -> float:
        return float(self.summary["cv"])

    @property
    def per_fold(self) -> list[float | None]:
        return [number(v) for v in self.summary.get("per_fold") or []]

    @property
    def group(self) -> str:
        task = self.summary.get("task") or self.config.get("task")
        return f"{self.metric} ({task})" if task else self.metric


def number(value: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(content, None) or (None, why it could not be read)."""
    try:
        return load_json(path), None
    except (OSError, ValueError) as exc:
        return None, str(exc)


def _scored(summary: Any) -> bool:
    """A summary in the current schema: a metric name and a finite ``cv``."""
    return (isinstance(summary, dict) and isinstance(summary.get("metric"), str)
            and number(summary.get("cv")) is not None)


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Experiment folders (holding ``fold<k>/``) and ensemble folders (``ensemble/<name>/``) under root."""
    experiments, ensembles = [], []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if any(FOLD_DIR.match(d) for d in dirnames):
            experiments.append(here)
            dirnames[:] = []
        elif here != root and here.parent.name == "ensemble":
            ensembles.append(here)
            dirnames[:] = []
        else:
            dirnames[:] = [] if depth >= MAX_DEPTH else sorted(d for d in dirnames if d not in SKIP_DIRS)
    return sorted(experiments), sorted(ensembles)


def _unfinished(exp_dir: Path, config: Mapping[str, Any]) -> str:
    """Why an experiment without ``metrics.json`` is not comparable yet: how many folds are done."""
    folds = [d for d in exp_dir.iterdir() if d.is_dir() and FOLD_DIR.match(d.name)]
    done = sum((d / "metrics.json").is_file() for d in folds)
    n_folds = config.get("n_folds") if isinstance(config.get("n_folds"), int) else len(folds)
    return f"unfinished: {done}/{n_folds} folds done, no metrics.json yet"


def read_experiment(root: Path, exp_dir: Path) -> Entry:
    """An experiment folder as an :class:`Entry`; status says why it is not comparable yet."""
    config, _ = _read_json(exp_dir / "fold0" / "config.json")
    entry = Entry(exp_dir.relative_to(root).as_posix(), exp_dir, "experiment",
                  config=config if isinstance(config, dict) else {})
    if not (exp_dir / "metrics.json").is_file():
        entry.status = _unfinished(exp_dir, entry.config)
        return entry
    summary, error = _read_json(exp_dir / "metrics.json")
    if error:
        entry.status = f"metrics.json unreadable ({error})"
    elif not _scored(summary):
        entry.status = "metrics.json has no metric / cv (written before the current schema?); run `kagglekit finish`"
    else:
        entry.summary = summary
    return entry


def read_ensemble(root: Path, ens_dir: Path) -> Entry:
    """An ensemble folder as an :class:`Entry` (finished when its ``weights.json`` exists)."""
    entry = Entry(ens_dir.relative_to(root).as_posix(), ens_dir, "ensemble")
    if not (ens_dir / "weights.json").is_file():
        entry.status = "unfinished: no weights.json yet"
        return entry
    summary, error = _read_json(ens_dir / "weights.json")
    if error:
        entry.status = f"weights.json unreadable ({error})"
    elif not _scored(summary):
        entry.status = "weights.json has no metric / cv"
    else:
        entry.summary = summary
        entry.config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    return entry


def discover(root: str | os.PathLike, names: Sequence[str] | None = None) -> list[Entry]:
    """Every experiment and ensemble under ``root`` (or only ``names``: relative path or last component)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"output folder {root} not found; pass --output <folder with experiments>")
    experiments, ensembles = _walk(root)
    entries = [read_experiment(root, d) for d in experiments] + [read_ensemble(root, d) for d in ensembles]
    return select(entries, names, root) if names else entries


def select(entries: Sequence[Entry], names: Sequence[str], root: Path) -> list[Entry]:
    """The entries named (in the order given); FileNotFoundError naming the unknown ones."""
    chosen: list[Entry] = []
    unknown = []
    for name in names:
        hits = [e for e in entries if name.strip("/") in (e.name, e.path.name)]
        unknown += [] if hits else [name]
        chosen += [e for e in hits if e not in chosen]
    if unknown:
        known = ", ".join(e.name for e in entries) or "(none)"
        raise FileNotFoundError(f"no experiment or ensemble {', '.join(unknown)} under {root}; known: {known}")
    return chosen


def groups(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Finished entries by (metric, task), each group best first in its metric's direction."""
    out: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.finished:
            out.setdefault(entry.group, []).append(entry)
    return {g: sorted(es, key=lambda e: e.cv, reverse=es[0].mode == "max") for g, es in sorted(out.items())}


# --------------------------------------------------------------------------- CV per fold
def fold_stats(per_fold: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and population std (ddof=0) of the folds that have a score."""
    values = [v for v in per_fold if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def cv_rows(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """One table row per entry: OOF CV, fold mean ± std, and each fold's score."""
    width = max((len(e.per_fold) for e in entries), default=0)
    rows = []
    for e in entries:
        mean, std = fold_stats(e.per_fold)
        row: dict[str, Any] = {"experiment": e.name, "kind": e.kind, "CV (OOF)": e.cv, "fold mean": mean,
                               "fold std": std}
        row.update({f"fold {k}": (e.per_fold[k] if k < len(e.per_fold) else None) for k in range(width)})
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- per-class numbers
def _field_for(rows: Sequence[Mapping[str, Any]], metric: str) -> str | None:
    """The numeric field of per-class records that matches the metric's name (``ap`` for mAP, ``f1``
    for macro F1), else the first preferred one, else the first numeric non-count field."""
    fields = [k for k in rows[0] if k not in COUNT_FIELDS and all(number(r.get(k)) is not None or r.get(k) is None
                                                                  for r in rows)
              and any(number(r.get(k)) is not None for r in rows)]
    if not fields:
        return None
    lowered = metric.lower()
    named = sorted((f for f in fields if f.lower() in lowered), key=len, reverse=True)
    preferred = [f for p in PREFERRED_FIELDS for f in fields if f.lower() == p]
    return (named or preferred or fields)[0]


def _class_table(value: Any, metric: str) -> tuple[str, dict[str, float | None]] | None:
    """``{class: number}``, ``{class: {field: number}}`` or ``[{class|name: ..., field: number}]`` →
    (the field used, ``{class: number or None}``); None when ``value`` is none of those."""
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        label = next((k for k in ("class", "name", "label") if all(k in r for r in value)), None)
        value = {str(r[label]): r for r in value} if label else None
    if not isinstance(value, dict) or not value:
        return None
    if all(v is None or number(v) is not None for v in value.values()):
        table = {str(k): number(v) for k, v in value.items()}
        return ("", table) if any(v is not None for v in table.values()) else None
    if all(isinstance(v, dict) for v in value.values()):
        chosen = _field_for(list(value.values()), metric)
        return (chosen, {str(k): number(v.get(chosen)) for k, v in value.items()}) if chosen else None
    return None


def find_per_class(summary: Mapping[str, Any], metric: str) -> tuple[str, dict[str, float | None]] | None:
    """The first ``per_*`` table of a summary, breadth first (test-set results left out): its
    location (e.g. ``per_class_iou``, ``oof.per_attr.ap``) and ``{class: number}``."""
    queue: list[tuple[str, Mapping[str, Any]]] = [("", summary)]
    while queue:
        prefix, node = queue.pop(0)
        for key, value in node.items():
            where = f"{prefix}{key}"
            if key.startswith("per_") and key != "per_fold" and (found := _class_table(value, metric)):
                return (f"{where}.{found[0]}" if found[0] else where), found[1]
            if isinstance(value, dict) and not key.lower().startswith("test"):
                queue.append((f"{where}.", value))
    return None


def best_per_class(values: Mapping[str, Mapping[str, float | None]], mode: str) -> dict[str, list[str]]:
    """For each class, the experiment(s) with the best number (ties: all of them)."""
    classes = list(dict.fromkeys(c for table in values.values() for c in table))
    best: dict[str, list[str]] = {}
    for cls in classes:
        scored = {exp: table.get(cls) for exp, table in values.items() if table.get(cls) is not None}
        if scored:
            top = (max if mode == "max" else min)(scored.values())
            best[cls] = [exp for exp, v in scored.items() if v == top]
    return best


def per_class_tables(entries: Sequence[Entry]) -> list[tuple[str, dict[str, dict[str, float | None]]]]:
    """Per location of the per-class numbers: ``{experiment: {class: number}}`` (entries without any left out)."""
    by_source: dict[str, dict[str, dict[str, float | None]]] = {}
    for e in entries:
        found = find_per_class(e.summary, e.metric)
        if found:
            by_source.setdefault(found[0], {})[e.name] = found[1]
    return list(by_source.items())


def unit_name(where: str) -> str:
    """What a per-class table's rows are, from its key: ``per_class_iou`` → class, ``per_lab`` → lab."""
    key = next((p for p in where.split(".") if p.startswith("per_")), "per_class")
    return key[len("per_"):].split("_")[0] or "class"


def per_class_markdown(values: Mapping[str, Mapping[str, float | None]], mode: str, unit: str = "class") -> str:
    """Classes × experiments, the best per class in bold (ties: each), and a last row counting
    the classes each experiment is best on."""
    best = best_per_class(values, mode)
    classes = list(dict.fromkeys(c for table in values.values() for c in table))
    rows = []
    for cls in classes:
        row = {unit: cls}
        for exp, table in values.items():
            cell = format_value(table.get(cls))
            row[exp] = f"**{cell}**" if exp in best.get(cls, []) else cell
        rows.append(row)
    wins = {exp: sum(exp in winners for winners in best.values()) for exp in values}
    rows.append({unit: f"best on (of {len(best)})", **{exp: str(n) for exp, n in wins.items()}})
    return markdown_table(rows)


# --------------------------------------------------------------------------- OOF correlation
@dataclass
class OofSource:
    """An experiment's OOF probabilities: its stores and, per row key (the id; ``id#k`` for its
    k-th repeat), which store and row hold it (pandas index: millions of frame rows stay fast)."""

    stores: list[StoredPredictions]
    keys: pd.Index  # unique row keys, in store order
    store_of: np.ndarray  # (N,) store of each key
    row_of: np.ndarray  # (N,) row within that store
    row_shape: tuple[int, ...]

    @property
    def row_size(self) -> int:
        return int(np.prod(self.row_shape)) if self.row_shape else 1

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """Per-row shape, row count and an order-free hash of the keys: equal for the same id set."""
        hashes = pd.util.hash_array(self.keys.to_numpy(dtype=object))
        return self.row_shape, len(self.keys), int(hashes.sum(dtype=np.uint64))


def _store_dirs(exp_dir: Path) -> list[Path] | None:
    """``oof_merged/`` when complete, else every fold's ``oof/`` (None when a fold has none)."""
    if (exp_dir / "oof_merged" / "manifest.json").is_file():
        return [exp_dir / "oof_merged"]
    folds = sorted((d for d in exp_dir.iterdir() if d.is_dir() and FOLD_DIR.match(d.name)),
                   key=lambda d: int(FOLD_DIR.match(d.name).group(1)))
    if not folds or not all((d / "oof" / "manifest.json").is_file() for d in folds):
        return None
    return [d / "oof" for d in folds]


def row_keys(ids: Sequence[str]) -> pd.Index:
    """Ids as unique keys: a repeated id's k-th repeat (k ≥ 1) becomes ``id#k``."""
    series = pd.Series(np.asarray(ids, dtype=object))
    repeat = series.groupby(series, sort=False).cumcount()
    if repeat.any():
        series = series.where(repeat == 0, series + "#" + repeat.astype(str))
    return pd.Index(series.to_numpy(dtype=object))


def oof_source(exp_dir: Path) -> OofSource | None:
    """The experiment's array OOF store(s); None when it has none (record stores, missing folds,
    unreadable or inconsistent arrays)."""
    dirs = _store_dirs(Path(exp_dir))
    if dirs is None:
        return None
    try:
        stores = [read_predictions(d) for d in dirs]
    except (OSError, ValueError) as exc:
        log.info("compare: %s OOF store not read (%s)", exp_dir, exc)
        return None
    shapes = {tuple(s.probs.shape[1:]) for s in stores}
    if len(shapes) != 1:
        return None
    sizes = [len(s.ids) for s in stores]
    return OofSource(stores, row_keys([i for s in stores for i in s.ids]),
                     np.repeat(np.arange(len(stores)), sizes), np.concatenate([np.arange(n) for n in sizes]),
                     shapes.pop())


def sample_plan(n_rows: int, row_size: int, max_values: int = MAX_VALUES,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows (evenly spaced) and positions within a row (seeded) so that rows × positions ≤ max_values:
    everything when it fits; whole rows while at least ``MIN_ROWS`` of them fit (small rows: frames,
    per-image class scores); else every row (or ``max_values``) at the same positions (images)."""
    if n_rows * row_size <= max_values:
        return np.arange(n_rows), np.arange(row_size)
    if row_size * min(n_rows, MIN_ROWS) <= max_values:
        per_row = row_size
    else:
        per_row = max(1, min(row_size, max_values // max(1, n_rows)))
    n_take = min(n_rows, max(1, max_values // per_row))
    rows = np.unique(np.linspace(0, n_rows - 1, n_take).round().astype(np.int64))
    positions = (np.arange(row_size) if per_row == row_size else
                 np.sort(np.random.default_rng(seed).choice(row_size, per_row, replace=False)))
    return rows, positions


def gather(source: OofSource, keys: pd.Index, positions: np.ndarray) -> np.ndarray:
    """The stored values (float64, as stored: Pearson does not depend on the uint8 scale) of ``keys``
    at ``positions`` within each row, flattened key by key."""
    where = source.keys.get_indexer(keys)
    if (where < 0).any():
        raise ValueError(f"{int((where < 0).sum())} of the shared OOF ids are missing from a store")
    stores, rows = source.store_of[where], source.row_of[where]
    out = np.empty((len(keys), len(positions)), dtype=np.float64)
    chunk = max(1, CHUNK_BYTES // max(1, source.row_size * 2))
    for s_idx, store in enumerate(source.stores):
        picked = np.flatnonzero(stores == s_idx)
        for start in range(0, len(picked), chunk):
            sel = picked[start:start + chunk]
            out[sel] = np.asarray(store.probs[rows[sel]]).reshape(len(sel), -1)[:, positions]
    return out.ravel()


def oof_correlation(sources: Sequence[OofSource], max_values: int = MAX_VALUES) -> tuple[np.ndarray, str]:
    """Pearson correlation (M, M) of the members' OOF probabilities over the ids they share, and a
    line saying how many values entered it. Rows are taken in a fixed order of the ids (their
    hash), so the subsample never depends on how folds laid the rows out."""
    common = sources[0].keys
    for s in sources[1:]:
        common = common.intersection(s.keys)
    common = common[np.argsort(pd.util.hash_array(common.to_numpy(dtype=object)), kind="stable")]
    row_size = sources[0].row_size
    rows, positions = sample_plan(len(common), row_size, max_values)
    chosen = common[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(np.stack([gather(s, chosen, positions) for s in sources]))
    n_values = len(chosen) * len(positions)
    if len(chosen) == len(common) and len(positions) == row_size:
        note = f"{n_values:,} values per experiment: all {len(common):,} shared ids × {row_size:,} values each"
    else:
        note = (f"{n_values:,} values per experiment: {len(chosen):,} of {len(common):,} shared ids (evenly spaced "
                f"in id-hash order) × {len(positions):,} of {row_size:,} values each (fixed seeded positions, the "
                "same for every experiment)")
    return np.atleast_2d(matrix), note


def oof_clusters(entries: Sequence[Entry]) -> list[tuple[list[Entry], list[OofSource]]]:
    """Experiments whose OOF stores hold the same ids with the same per-row shape (≥ 2 per cluster)."""
    clusters: dict[Any, tuple[list[Entry], list[OofSource]]] = {}
    for e in entries:
        source = oof_source(e.path) if e.kind == "experiment" else None
        if source is not None:
            members = clusters.setdefault(source.fingerprint, ([], []))
            members[0].append(e)
            members[1].append(source)
    return [c for c in clusters.values() if len(c[0]) >= 2]


def correlation_notes(names: Sequence[str], matrix: np.ndarray) -> str:
    """The least and most correlated pairs: where a blend has most to gain."""
    pairs = [(matrix[i, j], names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))
             if np.isfinite(matrix[i, j])]
    if not pairs:
        return "- Correlation undefined (constant predictions).\n"
    low, high = min(pairs), max(pairs)
    mean = float(np.mean([p[0] for p in pairs]))
    spread = (f"- `{low[1]}` / `{low[2]}`: r = {low[0]:.4f}.\n" if len(pairs) == 1 else
              f"- Least correlated: `{low[1]}` / `{low[2]}` (r = {low[0]:.4f}); most: `{high[1]}` / `{high[2]}` "
              f"(r = {high[0]:.4f}); mean off-diagonal r = {mean:.4f}.\n")
    return (spread + "- An ensemble gains most from members that are each accurate but weakly correlated; r close to 1 "
            "means they make the same mistakes and a blend adds little.\n")


# --------------------------------------------------------------------------- config diff
def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (lists kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any],
                ignore: Iterable[str] = IDENTITY_KEYS) -> dict[str, tuple[Any, Any]]:
    """``{key: (a's value, b's value)}`` for exactly the keys whose values differ (absent on one
    side: :data:`ABSENT`), sorted by key; ``ignore`` (top-level keys) left out."""
    fa, fb = flatten_config(a), flatten_config(b)
    skip = set(ignore)
    keys = sorted(k for k in set(fa) | set(fb) if k.split(".")[0] not in skip)
    return {k: (fa.get(k, ABSENT), fb.get(k, ABSENT)) for k in keys if fa.get(k, ABSENT) != fb.get(k, ABSENT)}


def _show(value: Any, width: int = 60) -> str:
    """A config value as inline code (JSON for lists / booleans), shortened to ``width``."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"`{text[:width - 1]}…`" if len(text) > width else f"`{text}`"


def diff_markdown(name_a: str, name_b: str, diff: Mapping[str, tuple[Any, Any]]) -> str:
    """The diff as a ``key | A | B`` table (or one line when the configs are the same)."""
    if not diff:
        return f"`{name_a}` and `{name_b}`: same config (apart from {', '.join(sorted(IDENTITY_KEYS))}).\n"
    return markdown_table([{"key": k, name_a: _show(va), name_b: _show(vb)} for k, (va, vb) in diff.items()],
                          align="left")


def config_diff_section(entries: Sequence[Entry]) -> str:
    """Each experiment of a group against the group's best experiment: only the keys that differ."""
    experiments = [e for e in entries if e.kind == "experiment"]
    if len(experiments) < 2:
        return ""
    best, rows = experiments[0], []
    for e in experiments[1:]:
        if not e.config or not best.config:
            rows.append({"experiment": e.name, "key": "(no fold0/config.json)", "best": "", "this": ""})
            continue
        diff = config_diff(best.config, e.config)
        rows += [{"experiment": e.name, "key": k, "best": _show(va), "this": _show(vb)} for k, (va, vb) in diff.items()]
        rows += [] if diff else [{"experiment": e.name, "key": "(same config)", "best": "", "this": ""}]
    head = (f"### Config diff against the best experiment `{best.name}`\n\n"
            f"Only keys that differ ({', '.join(sorted(IDENTITY_KEYS))} left out).\n\n")
    return head + markdown_table([{"experiment": r["experiment"], "key": r["key"], f"{best.name} (best)": r["best"],
                                   "this experiment": r["this"]} for r in rows], align="left")


# --------------------------------------------------------------------------- CV vs public LB
def lb_points(ledger: Any, entries: Sequence[Entry]) -> list[tuple[str, float, float]]:
    """(label, CV, public LB) of the ledger rows with a public LB that belong to ``entries``; CV is
    the row's own (``cv_oof``, else ``cv_mean``), else the entry's."""
    by_name = {e.name: e for e in entries}
    rows = [r for _, r in ledger.iterrows()
            if r["experiment"] in by_name and number(_float(r["public_lb"])) is not None]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["experiment"]] = counts.get(r["experiment"], 0) + 1
    points = []
    for r in rows:
        own = [number(_float(r.get(col))) for col in ("cv_oof", "cv_mean")]
        cv = next((v for v in own if v is not None), by_name[r["experiment"]].cv)
        several = counts[r["experiment"]] > 1 and r["config_hash"]
        label = r["experiment"] + (f" ({r['config_hash'][:8]})" if several else "")
        points.append((label, float(cv), float(r["public_lb"])))
    return points


def _float(text: Any) -> float | None:
    """A ledger cell (text) as a float, None when empty or not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def lb_correlation(points: Sequence[tuple[str, float, float]]) -> float | None:
    """Pearson r of CV vs public LB with ≥ 3 points (None below, or when one side is constant)."""
    if len(points) < 3:
        return None
    cv, lb = np.asarray([p[1] for p in points]), np.asarray([p[2] for p in points])
    if np.ptp(cv) == 0 or np.ptp(lb) == 0:
        return None
    return float(np.corrcoef(cv, lb)[0, 1])


# --------------------------------------------------------------------------- figures
def _figure(width: float, height: float) -> Any:
    """A bare matplotlib Figure on the Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # Agg: never a display backend
    return fig


def _save(fig: Any, path: Path) -> Path:
    """Lay out, render and write the PNG atomically (report.plots.save_figure)."""
    from kagglekit.report.plots import save_figure
    fig.tight_layout()
    return save_figure(fig, path)


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels and tick labels at legible sizes (≥ 9 pt), light grid."""
    ax.set_title(title, fontsize=FONT["title"])
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.tick_params(labelsize=FONT["tick"])
    ax.grid(alpha=0.3)


def plot_cv(group: str, entries: Sequence[Entry], path: Path) -> Path:
    """Per-fold scores (one colour per fold), fold mean ± std and the OOF CV per experiment, best on top."""
    fig = _figure(8.0, 1.6 + 0.45 * len(entries))
    ax = fig.add_subplot(1, 1, 1)
    labelled: set[str] = set()
    for i, e in enumerate(entries):
        for k, v in enumerate(e.per_fold):
            if v is not None:
                label = f"fold {k}" if f"fold {k}" not in labelled else None
                ax.scatter([v], [i], color=f"C{k % 10}", s=30, label=label, zorder=3)
                labelled.add(f"fold {k}")
        mean, std = fold_stats(e.per_fold)
        if mean is not None:
            ax.errorbar([mean], [i], xerr=[std], fmt="|", color="black", capsize=5, markersize=14,
                        label=None if "mean" in labelled else "fold mean ± std", zorder=4)
            labelled.add("mean")
        ax.scatter([e.cv], [i], marker="D", facecolors="none", edgecolors="black", s=45, zorder=5,
                   label=None if "cv" in labelled else "OOF CV")
        labelled.add("cv")
    mode = entries[0].mode
    ax.axvline(entries[0].cv, ls="--", color="tab:green", label=f"best CV ({mode})")
    ax.set_yticks(range(len(entries)), [e.name + ("  (best)" if i == 0 else "") for i, e in enumerate(entries)])
    ax.set_ylim(len(entries) - 0.5, -0.5)
    better = "higher is better →" if mode == "max" else "← lower is better"
    _style(ax, f"{group}: CV per fold", f"{entries[0].metric}  ({better})", "experiment")
    ax.legend(fontsize=FONT["tick"], loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_lb(group: str, points: Sequence[tuple[str, float, float]], r: float | None, path: Path) -> Path:
    """CV (x) vs public LB (y), each point labelled; a least-squares line with ≥ 3 points."""
    fig = _figure(6.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    cv, lb = np.asarray([p[1] for p in points]), np.asarray([p[2] for p in points])
    ax.scatter(cv, lb, color="tab:blue", s=40, zorder=3)
    ax.margins(x=0.2, y=0.12)  # room for the labels
    for label, x, y in points:
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=FONT["tick"])
    if r is not None:
        slope, intercept = np.polyfit(cv, lb, 1)
        xs = np.linspace(cv.min(), cv.max(), 2)
        ax.plot(xs, slope * xs + intercept, ls="--", color="tab:gray", label="least-squares fit")
        ax.legend(fontsize=FONT["tick"])
    suffix = f" (Pearson r = {r:.3f}, n = {len(points)})" if r is not None else f" (n = {len(points)})"
    _style(ax, f"{group}: CV vs public LB{suffix}", "CV (OOF)", "public LB")
    return _save(fig, path)


def plot_correlation(title: str, names: Sequence[str], matrix: np.ndarray, path: Path) -> Path:
    """Heatmap of the correlation matrix, each cell annotated."""
    n = len(names)
    fig = _figure(2.5 + 0.8 * n, 2.0 + 0.7 * n)
    ax = fig.add_subplot(1, 1, 1)
    finite = matrix[np.isfinite(matrix)]
    low = float(min(finite.min(), 0.99)) if finite.size else 0.0
    image = ax.imshow(matrix, vmin=low, vmax=1.0, cmap="viridis")
    fig.colorbar(image, ax=ax).set_label("Pearson r", fontsize=FONT["label"])
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            ax.text(j, i, "N/A" if not np.isfinite(value) else f"{value:.3f}", ha="center", va="center",
                    fontsize=FONT["tick"], color="white" if np.isfinite(value) and value < (low + 1) / 2 else "black")
    ax.set_xticks(range(n), list(names), rotation=45, ha="right")
    ax.set_yticks(range(n), list(names))
    _style(ax, title, "experiment", "experiment")
    ax.grid(False)
    return _save(fig, path)


# --------------------------------------------------------------------------- the page
def slug(text: str) -> str:
    """A file-name part for a group (``mIoU (segmentation)`` → ``miou_segmentation``)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "metric"


@dataclass
class PageContext:
    """Where the page goes, the ledger it reads, and the figures written so far."""

    root: Path
    ledger: Any
    written: list[Path] = field(default_factory=list)

    @property
    def figures(self) -> Path:
        return self.root / FIGURES

    def figure(self, path: Path) -> str:
        """Record a written PNG; its markdown image link relative to the page."""
        self.written.append(path)
        return f"![{path.stem}]({FIGURES}/{path.name})\n"


def cv_section(group: str, key: str, entries: Sequence[Entry], ctx: PageContext) -> str:
    """Table of OOF CV, fold mean ± std and each fold (best in bold) + the per-fold plot."""
    rows = cv_rows(entries)
    note = (f"CV (OOF) = `cv` of metrics.json / weights.json; fold mean ± std = mean and population std (ddof=0) "
            f"of `per_fold`. {'Higher' if entries[0].mode == 'max' else 'Lower'} is better (mode "
            f"`{entries[0].mode}`); best first, in bold.\n\n")
    figure = ctx.figure(plot_cv(group, entries, ctx.figures / f"cv_{key}.png"))
    return "### CV per experiment and fold\n\n" + note + markdown_table(rows, bold_row=0) + "\n" + figure


def lb_section(group: str, key: str, entries: Sequence[Entry], ctx: PageContext) -> str:
    """CV vs public LB from the ledger: table, Pearson r from 3 points on, scatter."""
    points = lb_points(ctx.ledger, entries)
    head = "### CV vs public LB\n\n"
    if not points:
        return head + ("No public LB yet (no ledger row of these experiments has `public_lb`; record one with "
                       "`kagglekit ledger --lb SCORE --submission FILE`).\n")
    r = lb_correlation(points)
    table = markdown_table([{"submission of": p[0], "CV": p[1], "public LB": p[2], "LB − CV": p[2] - p[1]}
                            for p in points])
    line = (f"Pearson r (CV, LB) = {r:.4f} over {len(points)} points.\n" if r is not None
            else f"{len(points)} point(s): correlation shown from 3 points on.\n")
    figure = ctx.figure(plot_lb(group, points, r, ctx.figures / f"cv_vs_lb_{key}.png"))
    return head + table + "\n" + line + "\n" + figure


def per_class_section(entries: Sequence[Entry]) -> str:
    """One classes × experiments table per location of per-class numbers in metrics.json."""
    tables = per_class_tables(entries)
    head = "### Per class\n\n"
    if not tables:
        return head + "No per-class numbers in these experiments' metrics.json.\n"
    parts = [f"`{where}` of metrics.json; the best per {unit_name(where)} in bold ({entries[0].mode}; ties: "
             "each).\n\n"
             + per_class_markdown(values, entries[0].mode, unit_name(where)) for where, values in tables]
    return head + "\n".join(parts)


def correlation_section(group: str, key: str, entries: Sequence[Entry], ctx: PageContext) -> str:
    """Per cluster of experiments with the same OOF ids: correlation table, notes, heatmap."""
    head = "### OOF correlation (what an ensemble can gain)\n\n"
    clusters = oof_clusters(entries)
    if not clusters:
        return head + "Fewer than two experiments with array OOF stores over the same ids.\n"
    parts = []
    for i, (members, sources) in enumerate(clusters):
        names = [e.name for e in members]
        matrix, note = oof_correlation(sources)
        suffix = f"_{i + 1}" if len(clusters) > 1 else ""
        rows = [{"experiment": n, **{m: matrix[a, b] for b, m in enumerate(names)}} for a, n in enumerate(names)]
        path = plot_correlation(f"{group}: OOF Pearson r", names, matrix, ctx.figures / f"oof_corr_{key}{suffix}.png")
        parts.append(f"Pearson r of the flattened OOF probabilities over shared ids ({note}).\n\n"
                     + markdown_table(rows) + "\n" + correlation_notes(names, matrix) + "\n" + ctx.figure(path))
    return head + "\n".join(parts)


def ensemble_section(entries: Sequence[Entry]) -> str:
    """Each ensemble's members, weights and gain over its best member (from weights.json)."""
    rows = []
    for e in (x for x in entries if x.kind == "ensemble"):
        members = e.summary.get("member_oof_score") or {}
        scores = [v for v in (number(s) for s in members.values()) if v is not None]
        best = (max if e.mode == "max" else min)(scores) if scores else None
        weights = dict(zip(e.summary.get("members") or [], e.summary.get("weights") or []))
        rows.append({"ensemble": e.name, "members (weight)": ", ".join(f"{m} ({w:.3f})" for m, w in weights.items()),
                     "blend CV": e.cv, "best member CV": best,
                     "gain": None if best is None else (e.cv - best) * (1 if e.mode == "max" else -1)})
    return "### Ensembles\n\n" + markdown_table(rows) if rows else ""


def group_section(group: str, entries: Sequence[Entry], ctx: PageContext, key: str) -> str:
    """Everything about one metric group (entries best first)."""
    parts = [f"## {group}\n", cv_section(group, key, entries, ctx), lb_section(group, key, entries, ctx),
             per_class_section(entries), correlation_section(group, key, entries, ctx),
             ensemble_section(entries), config_diff_section(entries)]
    return "\n".join(p for p in parts if p)


def unfinished_section(entries: Sequence[Entry]) -> str:
    """Experiments and ensembles without a usable summary, with the reason."""
    rows = [{"experiment": e.name, "kind": e.kind, "status": e.status} for e in entries if not e.finished]
    return "## Unfinished\n\n" + (markdown_table(rows, align="left") if rows else "None.\n")


def render_page(root: Path, entries: Sequence[Entry], ledger: Any) -> tuple[str, list[Path]]:
    """The page's markdown and the PNGs written for it."""
    ctx = PageContext(root, ledger)
    by_group = groups(entries)
    finished = sum(e.finished for e in entries)
    written = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = (f"# Experiment comparison\n\nOutput root `{root}`: {finished} finished, {len(entries) - finished} "
            f"unfinished (written {written}). Experiments are grouped by metric and task: different metrics are "
            "never compared on one axis. Per group: CV per fold, CV vs public LB, per class, OOF correlation, "
            "ensembles, config diffs against the best.\n")
    sections, keys = [head], set()
    for group, members in by_group.items():
        key = slug(group)
        key = key if key not in keys else f"{key}_{len(keys)}"
        keys.add(key)
        sections.append(group_section(group, members, ctx, key))
    if not by_group:
        sections.append("No finished experiment yet.\n")
    sections.append(unfinished_section(entries))
    return "\n".join(sections), ctx.written


def _remove_stale(figures: Path, keep: Sequence[Path]) -> None:
    """Delete PNGs of ``compare/`` that the page no longer shows."""
    keep_names = {p.name for p in keep}
    for png in figures.glob("*.png") if figures.is_dir() else []:
        if png.name not in keep_names:
            png.unlink(missing_ok=True)


def _write_page(root: Path, names: Sequence[str] | None) -> Path:
    """Discover, render, write the page, then drop stale figures."""
    from kagglekit.workflow.ledger import LEDGER_COLUMNS, load_ledger
    entries = discover(root, names)
    try:
        ledger = load_ledger(root / "ledger.csv")
    except ValueError as exc:  # an unreadable ledger costs the LB section, not the page
        log.warning("compare: %s; the page is drawn without public LB scores", exc)
        ledger = pd.DataFrame(columns=LEDGER_COLUMNS)
    text, figures = render_page(root, entries, ledger)
    page = write_text(root / PAGE, text)
    _remove_stale(root / FIGURES, figures)
    return page


def write_compare_page(output_root: str | os.PathLike, experiments: Sequence[str] | None = None,
                       *, strict: bool = False) -> Path | None:
    """Write ``<output_root>/compare.md`` + ``<output_root>/compare/*.png`` (all experiments and
    ensembles, or only ``experiments``). Returns the page; with ``strict=False`` (after an
    experiment or ensemble) a failure is logged as a warning and None returned."""
    root = Path(output_root)
    try:
        if not root.is_dir():
            raise FileNotFoundError(f"output folder {root} not found; pass --output <folder with experiments>")
        with file_lock(root / ".compare.lock"):  # runs finishing at once take turns
            return _write_page(root, experiments)
    except Exception as exc:  # noqa: BLE001 — the page must never fail the run that asked for it
        if strict:
            raise
        log.warning("comparison page %s not written: %s: %s", root / PAGE, type(exc).__name__, exc)
        return None


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compare`` command's flags."""
    parser.add_argument("experiments", nargs="*", metavar="EXP",
                        help="experiments / ensembles to compare (default: every one under --output)")
    parser.add_argument("--output", help="output root holding the experiments; the page is written there "
                                         "(default: output/)")
    parser.add_argument("--diff", nargs=2, metavar=("A", "B"), help="print the config diff of A and B (writes nothing)")


def diff_text(root: Path, a: str, b: str) -> str:
    """The config diff of two experiments (ensembles: their ensemble config) as markdown."""
    first, second = (select(discover(root), [n], root)[0] for n in (a, b))
    for e in (first, second):
        if not e.config:
            raise FileNotFoundError(f"{e.name}: no config snapshot "
                                    f"({e.path / 'fold0' / 'config.json'} missing or unreadable)")
    return diff_markdown(first.name, second.name, config_diff(first.config, second.config))


def cmd_compare(args: argparse.Namespace, api: Any = None) -> int:
    """``kagglekit compare``: write the page (or ``--diff A B``: print a config diff)."""
    from kagglekit.paths import output_root
    root = Path(args.output) if args.output else output_root()
    if args.diff:
        print(diff_text(root, *args.diff), end="")
        return 0
    page = write_compare_page(root, args.experiments or None, strict=True)
    print(f"comparison page {page} (figures in {root / FIGURES}/)")
    return 0
