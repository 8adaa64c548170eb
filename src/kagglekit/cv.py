"""Cross-validation folds: made once per competition, written to ``input/<comp>/folds.csv`` and
reused by every experiment so out-of-fold (OOF) predictions align row for row.

Strategies (``make_folds(..., strategy=...)``):

- ``kfold``: shuffled ``sklearn.model_selection.KFold``.
- ``stratified``: ``StratifiedKFold`` on one class column ``y``.
- ``group``: every group in exactly one fold; fold sizes (rows) balanced greedily, largest group
  first into the lightest fold (the LPT rule, as in sklearn's unshuffled ``GroupKFold``), with
  ties between equal-size groups and equally light folds broken by ``seed``.
- ``stratified_group``: ``StratifiedGroupKFold(shuffle=True, random_state=seed)``.
- ``multilabel_stratified``: iterative stratification of Sechidis, Tsoumakas & Vlahavas (2011),
  "On the Stratification of Multi-Label Data", ECML PKDD, LNCS 6913, pp. 145-158 (Algorithm 1),
  implemented here; labels that are missing (NaN or -1) count as unknown, never as positive.

The folds file holds two columns, the id column and ``fold`` (ints 0..K-1). Ids are text end to
end: written as given and read back with ``dtype=str``, so ``"0001"`` stays ``"0001"`` (a folds file
an older ``kagglekit folds`` wrote with the leading zeros dropped still matches, one to one, with a
warning). ``write_folds`` never overwrites a file with a different assignment: delete it
explicitly to regenerate.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.multiclass import type_of_target

from kagglekit.io import save_csv

FOLD_COLUMN = "fold"
STRATEGIES = ("kfold", "stratified", "group", "stratified_group", "multilabel_stratified")
_GROUP_STRATEGIES = ("group", "stratified_group")
_MISSING_LABEL = -1

PathLike = str | os.PathLike
log = logging.getLogger("kagglekit.cv")


# --------------------------------------------------------------------------- argument checks
def _require_column(df: pd.DataFrame, column: Any, role: str) -> str:
    if not isinstance(column, str):
        raise ValueError(f"{role} must be a column name (str), got {column!r}")
    if column not in df.columns:
        cols = ", ".join(map(str, list(df.columns)[:20]))
        raise ValueError(f"{role} column {column!r} not found in the DataFrame (columns: {cols})")
    return column


def _require_no_nan(df: pd.DataFrame, column: str, role: str, fix: str) -> None:
    n_nan = int(df[column].isna().sum())
    if n_nan:
        raise ValueError(f"{role} column {column!r} has {n_nan} missing values; {fix}")


def _check_n_splits(n_splits: Any, n_units: int, unit: str) -> None:
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)):
        raise ValueError(f"n_splits must be an int, got {n_splits!r}")
    if n_splits < 2:
        raise ValueError(f"n_splits={n_splits}: need at least 2 folds")
    if n_splits > n_units:
        raise ValueError(
            f"n_splits={n_splits} is greater than the number of {unit} ({n_units}); "
            f"use n_splits <= {n_units}"
        )


def _single_y(y: str | Sequence[str] | None, strategy: str) -> str:
    if y is None:
        raise ValueError(f"strategy {strategy!r} needs y=<class column name>")
    if not isinstance(y, str):
        y = list(y)
        if len(y) != 1:
            raise ValueError(
                f"strategy {strategy!r} stratifies on one column, got y={y!r}; "
                "use strategy='multilabel_stratified' for several binary label columns"
            )
        y = y[0]
    return y


def _class_labels(df: pd.DataFrame, y: str, strategy: str) -> np.ndarray:
    """Class column ``y`` as an array (n_rows,) checked to be binary/multiclass, no NaN."""
    _require_column(df, y, "y")
    _require_no_nan(df, y, "y", "drop or fill those rows before making folds")
    values = df[y].to_numpy()
    kind = type_of_target(values)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"strategy {strategy!r}: y column {y!r} looks {kind}, not class labels; "
            f"bin a continuous target first (e.g. pd.qcut(df[{y!r}], 10, labels=False))"
        )
    return values


def _group_labels(df: pd.DataFrame, groups: str | None, strategy: str, n_splits: int) -> np.ndarray:
    """Group column as integer codes (n_rows,); checks n_splits <= number of groups."""
    if groups is None:
        raise ValueError(f"strategy {strategy!r} needs groups=<group column name>")
    _require_column(df, groups, "groups")
    _require_no_nan(df, groups, "groups", "fill them (e.g. with the row id) so each row has a group")
    codes, uniques = pd.factorize(df[groups], sort=True)
    _check_n_splits(n_splits, len(uniques), f"distinct groups in {groups!r}")
    return codes


# --------------------------------------------------------------------------- strategies
def _folds_from_splitter(splits: Any, n_rows: int) -> np.ndarray:
    folds = np.full(n_rows, -1, dtype=np.int64)
    for k, (_, valid_idx) in enumerate(splits):
        folds[valid_idx] = k
    return folds


def _kfold(df: pd.DataFrame, n_splits: int, y: Any, groups: Any, seed: int) -> np.ndarray:
    splitter = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return _folds_from_splitter(splitter.split(np.zeros(len(df))), len(df))


def _stratified(df: pd.DataFrame, n_splits: int, y: Any, groups: Any, seed: int) -> np.ndarray:
    column = _single_y(y, "stratified")
    labels = _class_labels(df, column, "stratified")
    largest = int(pd.Series(labels).value_counts().max())
    if n_splits > largest:
        raise ValueError(
            f"n_splits={n_splits} is greater than the size of every class in y={column!r} "
            f"(largest has {largest} rows); use n_splits <= {largest}"
        )
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return _folds_from_splitter(splitter.split(np.zeros(len(df)), labels), len(df))


def _balanced_group_assignment(sizes: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold per group (n_groups,): largest group first into the lightest fold (LPT rule, as in
    sklearn's unshuffled GroupKFold); ties among equal sizes / equally light folds broken by seed.
    Fold sizes differ by at most the largest group's size."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(sizes)), -sizes))  # size desc, random among equal sizes
    fold_rows = np.zeros(n_splits, dtype=np.int64)
    group_fold = np.empty(len(sizes), dtype=np.int64)
    for g in order:
        lightest = np.flatnonzero(fold_rows == fold_rows.min())
        k = int(rng.choice(lightest))
        group_fold[g] = k
        fold_rows[k] += sizes[g]
    return group_fold


def _group(df: pd.DataFrame, n_splits: int, y: Any, groups: Any, seed: int) -> np.ndarray:
    codes = _group_labels(df, groups, "group", n_splits)
    sizes = np.bincount(codes)
    return _balanced_group_assignment(sizes, n_splits, seed)[codes]


def _stratified_group(df: pd.DataFrame, n_splits: int, y: Any, groups: Any, seed: int) -> np.ndarray:
    column = _single_y(y, "stratified_group")
    labels = _class_labels(df, column, "stratified_group")
    codes = _group_labels(df, groups, "stratified_group", n_splits)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return _folds_from_splitter(splitter.split(np.zeros(len(df)), labels, codes), len(df))


def _multilabel_matrix(df: pd.DataFrame, y: str | Sequence[str] | None) -> np.ndarray:
    """Binary label columns -> bool matrix (n_rows, n_labels) of *known positives*.

    Allowed values: 0/1/True/False, and NaN or -1 for a missing (unknown) label.
    """
    if y is None:
        raise ValueError("strategy 'multilabel_stratified' needs y=[<binary label columns>]")
    columns = [y] if isinstance(y, str) else list(y)
    if not columns:
        raise ValueError("strategy 'multilabel_stratified' needs at least one label column in y")
    positives = np.zeros((len(df), len(columns)), dtype=bool)
    for i, col in enumerate(columns):
        _require_column(df, col, "y")
        values = pd.to_numeric(df[col], errors="coerce").astype("float64")
        bad = df[col].notna() & ~values.isin([0.0, 1.0, float(_MISSING_LABEL)])
        if bad.any():
            examples = df.loc[bad, col].unique()[:5].tolist()
            raise ValueError(
                f"y column {col!r} must hold 0/1 labels (NaN or -1 for missing), found {examples}"
            )
        positives[:, i] = (values == 1.0).to_numpy()
    return positives


def _pick_fold(label_need: np.ndarray, row_need: np.ndarray, rng: np.random.Generator) -> int:
    """Sechidis et al. 2011, Alg. 1: the fold that most needs this label; ties -> the fold that
    most needs rows; remaining ties -> random."""
    cand = np.flatnonzero(label_need == label_need.max())
    if len(cand) > 1:
        cand = cand[row_need[cand] == row_need[cand].max()]
    return int(cand[0]) if len(cand) == 1 else int(rng.choice(cand))


def _iterative_stratification(positives: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold per row (n_rows,) for a bool positives matrix (n_rows, n_labels), equal fold ratios.

    Sechidis, Tsoumakas & Vlahavas 2011, Algorithm 1. Desired counts are kept multiplied by
    n_splits so they stay exact integers (c_j = n/k becomes n, one row costs k).
    """
    rng = np.random.default_rng(seed)
    n_rows, _ = positives.shape
    pos_int = positives.astype(np.int64)
    row_need = np.full(n_splits, n_rows, dtype=np.int64)  # k * desired rows per fold
    label_need = np.tile(pos_int.sum(axis=0), (n_splits, 1))  # k * desired positives (k, L)
    remaining_pos = pos_int.sum(axis=0)  # positives per label among unassigned rows
    folds = np.full(n_rows, -1, dtype=np.int64)
    order = rng.permutation(n_rows)  # visiting order of rows: the seed's shuffle
    while remaining_pos.sum() > 0:
        # label with the fewest (but > 0) remaining positives, ties at random
        live = np.where(remaining_pos > 0, remaining_pos, np.iinfo(np.int64).max)
        label = int(rng.choice(np.flatnonzero(live == live.min())))
        rows = order[positives[order, label] & (folds[order] < 0)]
        for r in rows:
            k = _pick_fold(label_need[:, label], row_need, rng)
            folds[r] = k
            label_need[k] -= pos_int[r] * n_splits
            row_need[k] -= n_splits
            remaining_pos -= pos_int[r]
    for r in order[folds[order] < 0]:  # rows with no known positive: fill the folds' row needs
        cand = np.flatnonzero(row_need == row_need.max())
        k = int(cand[0]) if len(cand) == 1 else int(rng.choice(cand))
        folds[r] = k
        row_need[k] -= n_splits
    return folds


def _multilabel(df: pd.DataFrame, n_splits: int, y: Any, groups: Any, seed: int) -> np.ndarray:
    return _iterative_stratification(_multilabel_matrix(df, y), n_splits, seed)


_STRATEGY_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "kfold": _kfold,
    "stratified": _stratified,
    "group": _group,
    "stratified_group": _stratified_group,
    "multilabel_stratified": _multilabel,
}


def make_folds(
    df: pd.DataFrame,
    n_splits: int,
    strategy: str,
    y: str | Sequence[str] | None = None,
    groups: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Copy of ``df`` (n_rows rows, index kept) with an int64 ``fold`` column in 0..n_splits-1.

    Row ``i`` is in the validation set of fold ``df.fold[i]`` and in the training set of every
    other fold. Deterministic given ``seed``. ``y``: class column (``stratified``,
    ``stratified_group``) or list of binary label columns (``multilabel_stratified``);
    ``groups``: group column (``group``, ``stratified_group``). An existing ``fold`` column is
    replaced in the copy.
    """
    if strategy not in _STRATEGY_FUNCS:
        raise ValueError(f"unknown fold strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"make_folds needs a pandas DataFrame, got {type(df).__name__}")
    if groups is not None and strategy not in _GROUP_STRATEGIES:
        raise ValueError(
            f"groups={groups!r} given but strategy {strategy!r} ignores groups (rows of one group "
            f"could leak across folds); use strategy 'group' or 'stratified_group', or drop groups"
        )
    _check_n_splits(n_splits, len(df), "rows")
    folds = _STRATEGY_FUNCS[strategy](df, int(n_splits), y, groups, int(seed))
    assert (folds >= 0).all(), "internal error: a row was left without a fold"
    out = df.copy()
    out[FOLD_COLUMN] = folds.astype(np.int64)
    return out


# --------------------------------------------------------------------------- folds file
def _check_fold_values(folds: pd.Series, where: str) -> int:
    """Check a fold column holds ints 0..K-1 with every fold present; returns K."""
    values = pd.to_numeric(folds, errors="coerce")
    if values.isna().any() or (values % 1 != 0).any():
        bad = folds[values.isna() | (values % 1 != 0)].unique()[:5].tolist()
        raise ValueError(f"{where}: column 'fold' must hold integers, found {bad}")
    present = sorted(set(values.astype(np.int64).tolist()))
    n_folds = present[-1] + 1 if present else 0
    if present != list(range(n_folds)) or n_folds < 2:
        raise ValueError(
            f"{where}: folds must be contiguous integers 0..K-1 with K >= 2, found {present[:20]}; "
            "regenerate the folds"
        )
    return n_folds


def _check_ids(ids: pd.Series, id_column: str, where: str) -> None:
    if ids.isna().any():
        raise ValueError(f"{where}: id column {id_column!r} has {int(ids.isna().sum())} missing ids")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise ValueError(
            f"{where}: id column {id_column!r} has {len(dup)} duplicated ids "
            f"(e.g. {dup.unique()[:5].tolist()}); ids must be unique"
        )


def load_folds(path: PathLike, id_column: str, *, id_dtype: Any = None) -> pd.DataFrame:
    """Read and validate a folds file -> DataFrame with columns [id_column, 'fold'] (n_rows, 2).

    Ids are parsed like ``pd.read_csv`` would (so they compare with a train.csv read the same
    way); pass ``id_dtype=str`` to keep ids such as ``"001"`` verbatim.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"folds file {path} not found; create it once per competition with "
            "kagglekit.cv.get_or_make_folds(path, df, id_column, n_splits, strategy) "
            "(or make_folds + write_folds)"
        )
    try:
        frame = pd.read_csv(path, dtype={id_column: id_dtype} if id_dtype is not None else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc}); delete it and regenerate") from None
    for col in (id_column, FOLD_COLUMN):
        if col not in frame.columns:
            raise ValueError(
                f"{path}: missing column {col!r} (columns: {list(frame.columns)}); "
                f"check id_column or delete the file and regenerate"
            )
    _check_ids(frame[id_column], id_column, str(path))
    _check_fold_values(frame[FOLD_COLUMN], str(path))
    frame = frame[[id_column, FOLD_COLUMN]].copy()
    frame[FOLD_COLUMN] = pd.to_numeric(frame[FOLD_COLUMN]).astype(np.int64)
    return frame


def _assignment_from_df(df_with_fold: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """[id_column, fold] of a frame from make_folds, validated (ids unique, folds 0..K-1)."""
    if not isinstance(df_with_fold, pd.DataFrame):
        raise ValueError(f"expected a DataFrame, got {type(df_with_fold).__name__}")
    where = "df_with_fold"
    for col, role in ((id_column, "id"), (FOLD_COLUMN, "fold")):
        if col not in df_with_fold.columns:
            hint = " (make it with kagglekit.cv.make_folds)" if col == FOLD_COLUMN else ""
            raise ValueError(f"{where}: {role} column {col!r} not found{hint}")
    _check_ids(df_with_fold[id_column], id_column, where)
    _check_fold_values(df_with_fold[FOLD_COLUMN], where)
    out = df_with_fold[[id_column, FOLD_COLUMN]].reset_index(drop=True).copy()
    out[FOLD_COLUMN] = pd.to_numeric(out[FOLD_COLUMN]).astype(np.int64)
    return out


def _without_leading_zeros(text: str) -> str:
    """``"0007"`` → ``"7"`` (all-digit ids only): how ``pd.read_csv`` without ``dtype=str`` wrote them."""
    return str(int(text)) if text.isascii() and text.isdigit() else text


def _file_ids_by_id(file_ids: Sequence[str], ids: Sequence[str], path: PathLike) -> dict[str, str] | None:
    """Each of ``ids`` → its spelling in the folds file: itself, or — a folds.csv written by an
    older ``kagglekit folds``, which read the ids as numbers — the id without its leading zeros,
    when that matches one to one. None when the ids differ otherwise."""
    file_set, ids = set(file_ids), [str(i) for i in ids]
    if file_set == set(ids):
        return {i: i for i in ids}
    stripped = {i: _without_leading_zeros(i) for i in ids}
    if len(set(stripped.values())) != len(ids) or set(stripped.values()) != file_set:
        return None
    changed = [i for i, s in stripped.items() if s != i]
    log.warning("%s: %d ids are written without their leading zeros (e.g. %s for %r; an older `kagglekit folds` "
                "read them as numbers); matched to them one to one", path, len(changed),
                stripped[changed[0]], changed[0])
    return stripped


def _zeros_hint(file_ids: Sequence[str], ids: Sequence[str]) -> str:
    """Why a folds file that looks written with leading zeros dropped still cannot be matched."""
    file_set, stripped = set(file_ids), [_without_leading_zeros(i) for i in ids]
    if len(file_set & set(stripped)) <= len(file_set & set(ids)):
        return ""
    groups: dict[str, list[str]] = {}
    for i, key in zip(ids, stripped):
        groups.setdefault(key, []).append(i)
    clashes = [g for g in groups.values() if len(g) > 1]
    differ = sorted(set(stripped) ^ file_set)
    details = ([f"{len(clashes)} group(s) of ids become equal without them, e.g. {clashes[0]}"] if clashes else []) + \
              ([f"{len(differ)} ids differ even without them, e.g. {differ[:5]}"] if differ else [])
    return ("; the file's ids look like these ids without their leading zeros (written by an older "
            "`kagglekit folds`), but " + " and ".join(details))


def _assignment_difference(existing: pd.DataFrame, new: pd.DataFrame, id_column: str) -> str | None:
    """None when both map the same ids (compared as text) to the same folds, else a reason."""
    old_map = dict(zip(existing[id_column].astype(str), existing[FOLD_COLUMN]))
    new_map = dict(zip(new[id_column].astype(str), new[FOLD_COLUMN]))
    only_old, only_new = old_map.keys() - new_map.keys(), new_map.keys() - old_map.keys()
    if only_old or only_new:
        return (
            f"ids differ: {len(only_old)} only in the file (e.g. {sorted(only_old)[:3]}), "
            f"{len(only_new)} only in the new frame (e.g. {sorted(only_new)[:3]})"
        )
    moved = sum(old_map[i] != new_map[i] for i in new_map)
    return f"same ids but {moved} of {len(new_map)} rows are in a different fold" if moved else None


def _in_file_spelling(existing: pd.DataFrame, new: pd.DataFrame, id_column: str, path: PathLike) -> pd.DataFrame:
    """``new`` with its ids spelled as in the folds file when they match only without leading
    zeros (:func:`_file_ids_by_id`); unchanged otherwise."""
    spelling = _file_ids_by_id(existing[id_column].tolist(), new[id_column].astype(str).tolist(), path)
    if spelling is None:
        return new
    out = new.copy()
    out[id_column] = new[id_column].astype(str).map(spelling)
    return out


def write_folds(df_with_fold: pd.DataFrame, path: PathLike, id_column: str) -> Path:
    """Write [id_column, fold] of ``df_with_fold`` (n_rows rows) to ``path`` atomically.

    If ``path`` exists with the same ids in the same folds it is returned untouched (no rewrite).
    If it exists with anything else a ValueError is raised: folds are fixed per competition so
    OOF predictions of all experiments align; delete the file explicitly to regenerate.
    """
    path = Path(path)
    new = _assignment_from_df(df_with_fold, id_column)
    if not path.exists():
        try:  # exclusive: of several processes (ranks, machines) making it at once, one wins
            save_csv(path, new, exclusive=True)
            return path
        except FileExistsError:
            pass  # another process wrote it between the check and the write: compare with theirs
    existing = load_folds(path, id_column, id_dtype=str)
    reason = _assignment_difference(existing, _in_file_spelling(existing, new, id_column, path), id_column)
    if reason is None:
        return path
    raise ValueError(
        f"{path} already exists with a different fold assignment ({reason}); folds are fixed "
        f"per competition so OOF predictions align. Delete {path} explicitly to regenerate "
        "(older OOF predictions then no longer align)"
    )


def fold_ids(folds: pd.DataFrame, fold: int, id_column: str) -> tuple[list, list]:
    """(train ids, valid ids) of fold ``fold``: valid = rows whose fold == ``fold``, train = the
    rest; both in the row order of ``folds`` (a frame with [id_column, 'fold'])."""
    for col in (id_column, FOLD_COLUMN):
        if col not in folds.columns:
            raise ValueError(f"folds table has no column {col!r} (columns: {list(folds.columns)})")
    n_folds = _check_fold_values(folds[FOLD_COLUMN], "folds table")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < n_folds:
        raise ValueError(
            f"--fold {fold} but folds.csv has {n_folds} folds (0..{n_folds - 1}); "
            f"pick a fold in that range"
        )
    is_valid = pd.to_numeric(folds[FOLD_COLUMN]).to_numpy() == int(fold)
    ids = folds[id_column]
    return ids[~is_valid].tolist(), ids[is_valid].tolist()


def get_or_make_folds(
    path: PathLike, df: pd.DataFrame, id_column: str, n_splits: int, strategy: str, **kw: Any
) -> pd.DataFrame:
    """Copy of ``df`` with a ``fold`` column: read from ``path`` when it exists (it must cover
    exactly df's ids with ``n_splits`` folds), otherwise made with ``make_folds(df, n_splits,
    strategy, **kw)`` and written to ``path``. ``kw``: y, groups, seed."""
    path = Path(path)
    _require_column(df, id_column, "id")
    _check_ids(df[id_column], id_column, "df")
    if not path.exists():
        out = make_folds(df, n_splits, strategy, **kw)
        write_folds(out, path, id_column)
        return out
    existing = load_folds(path, id_column, id_dtype=str)
    n_existing = int(existing[FOLD_COLUMN].max()) + 1
    if n_existing != n_splits:
        raise ValueError(
            f"{path} has {n_existing} folds but n_splits={n_splits} was requested; use "
            f"n_splits={n_existing} or delete {path} explicitly to regenerate"
        )
    mapping = dict(zip(existing[id_column], existing[FOLD_COLUMN]))
    keys = df[id_column].astype(str)
    spelling = _file_ids_by_id(list(mapping), keys.tolist(), path)
    if spelling is None:
        reason = _assignment_difference(existing, pd.DataFrame({id_column: keys, FOLD_COLUMN: -1}), id_column)
        raise ValueError(f"{path} does not match df ({reason}){_zeros_hint(list(mapping), keys.tolist())}; "
                         f"delete {path} explicitly to regenerate")
    out = df.copy()  # df's ids are kept as they are (the folds file's spelling only looks them up)
    out[FOLD_COLUMN] = keys.map(spelling).map(mapping).to_numpy(dtype=np.int64)
    return out
