"""Tests for kagglekit.cv: fold strategies, the folds file (write once, reuse), fold selection."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from kagglekit.cv import (
    STRATEGIES,
    fold_ids,
    get_or_make_folds,
    load_folds,
    make_folds,
    write_folds,
)

K = 5
LABELS = [f"l{i}" for i in range(6)]


def _table(n_groups: int = 150, seed: int = 0) -> pd.DataFrame:
    """Rows grouped (sizes 1..8), an imbalanced 3-class ``y`` constant within a group (like a
    per-patient diagnosis) and 6 correlated, imbalanced binary labels."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, size=n_groups)
    group = np.repeat(np.arange(n_groups), sizes)
    group_class = rng.choice(3, size=n_groups, p=[0.8, 0.14, 0.06])
    n = len(group)
    df = pd.DataFrame({"id": [f"r{i:05d}" for i in range(n)], "g": group, "y": group_class[group]})
    rates = np.array([0.35, 0.12, 0.05, 0.03, 0.015, 0.008])
    base = rng.random((n, len(rates))) < rates
    base[:, 1] |= base[:, 0] & (rng.random(n) < 0.3)  # co-occurring labels
    base[:, 3] |= base[:, 2] & (rng.random(n) < 0.5)
    for i, name in enumerate(LABELS):
        df[name] = base[:, i].astype(np.int64)
    return df


def _kwargs(strategy: str) -> dict:
    return {
        "kfold": {},
        "stratified": {"y": "y"},
        "group": {"groups": "g"},
        "stratified_group": {"y": "y", "groups": "g"},
        "multilabel_stratified": {"y": LABELS},
    }[strategy]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


# --------------------------------------------------------------------------- every strategy
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_row_in_exactly_one_valid_fold(table: pd.DataFrame, strategy: str) -> None:
    out = make_folds(table, K, strategy, seed=3, **_kwargs(strategy))
    assert out.index.equals(table.index) and "fold" not in table.columns  # a copy, input untouched
    assert out["fold"].dtype == np.int64
    assert sorted(out["fold"].unique()) == list(range(K))
    seen: list[str] = []
    for k in range(K):
        train, valid = fold_ids(out, k, "id")
        assert not set(train) & set(valid)
        assert len(train) + len(valid) == len(out)
        seen += valid
    assert sorted(seen) == sorted(out["id"])  # coverage, and no id in two valid sets


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic_per_seed(table: pd.DataFrame, strategy: str) -> None:
    a = make_folds(table, K, strategy, seed=1, **_kwargs(strategy))["fold"]
    b = make_folds(table, K, strategy, seed=1, **_kwargs(strategy))["fold"]
    c = make_folds(table, K, strategy, seed=2, **_kwargs(strategy))["fold"]
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize("strategy", ["group", "stratified_group"])
def test_no_group_in_two_folds(table: pd.DataFrame, strategy: str) -> None:
    out = make_folds(table, K, strategy, seed=0, **_kwargs(strategy))
    assert (out.groupby("g")["fold"].nunique() == 1).all()


def test_group_fold_sizes_balanced(table: pd.DataFrame) -> None:
    for seed in range(3):
        sizes = make_folds(table, K, "group", groups="g", seed=seed)["fold"].value_counts()
        # greedy largest-first into the lightest fold: spread at most one (largest) group's size
        assert sizes.max() - sizes.min() <= 2  # guaranteed: <= largest group (8); many small groups: ~1


def _class_count_deviation(out: pd.DataFrame, column: str = "y") -> float:
    counts = pd.crosstab(out["fold"], out[column]).to_numpy()
    ideal = counts.sum(axis=0) / K
    return float(np.abs(counts - ideal).max())


def test_stratified_keeps_class_counts(table: pd.DataFrame) -> None:
    out = make_folds(table, K, "stratified", y="y", seed=0)
    assert _class_count_deviation(out) <= 1.0
    # the same data split without stratification misses by far more: the check has teeth
    assert _class_count_deviation(make_folds(table, K, "kfold", seed=0)) > 3.0


def test_stratified_group_keeps_proportions(table: pd.DataFrame) -> None:
    out = make_folds(table, K, "stratified_group", y="y", groups="g", seed=0)
    props = pd.crosstab(out["fold"], out["y"], normalize="index")
    overall = out["y"].value_counts(normalize=True).sort_index()
    assert (props - overall).abs().to_numpy().max() < 0.03
    unstratified = make_folds(table, K, "group", groups="g", seed=0)
    props_u = pd.crosstab(unstratified["fold"], unstratified["y"], normalize="index")
    assert (props_u - overall).abs().to_numpy().max() > 0.03


# --------------------------------------------------------------------------- multi-label
def _label_count_deviation(out: pd.DataFrame, labels: list[str]) -> float:
    positives = out[labels].eq(1)
    counts = positives.groupby(out["fold"]).sum().to_numpy()
    ideal = positives.sum().to_numpy() / K
    return float(np.abs(counts - ideal).max())


def test_multilabel_balances_every_label(table: pd.DataFrame) -> None:
    for seed in range(3):
        out = make_folds(table, K, "multilabel_stratified", y=LABELS, seed=seed)
        assert _label_count_deviation(out, LABELS) <= 1.0  # within +-1 of the ideal
        sizes = out["fold"].value_counts()
        assert sizes.max() - sizes.min() <= 0.02 * len(out)
    plain = make_folds(table, K, "kfold", seed=0)
    assert _label_count_deviation(plain, LABELS) > 4.0


def test_multilabel_missing_labels_are_unknown_not_positive() -> None:
    rng = np.random.default_rng(7)
    n = 600
    df = pd.DataFrame({"id": range(n), "a": rng.random(n) < 0.3, "b": 0.0, "c": np.nan})
    df["a"] = df["a"].astype(float)
    df.loc[rng.choice(n, 100, replace=False), "a"] = np.nan
    b_pos = rng.choice(n, 10, replace=False)
    df.loc[:, "b"] = -1.0  # label b unknown everywhere except 10 known positives
    df.loc[b_pos, "b"] = 1.0
    out = make_folds(df, K, "multilabel_stratified", y=["a", "b", "c"], seed=0)
    assert out.loc[b_pos, "fold"].value_counts().tolist() == [2] * K  # the 10 real positives
    assert _label_count_deviation(out, ["a"]) <= 1.0
    assert sorted(out["fold"].unique()) == list(range(K))  # all-unknown rows still placed


def test_multilabel_rejects_non_binary_values() -> None:
    df = pd.DataFrame({"a": [0, 1, 2, 0, 1, 0], "b": [0, 1, 0, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"'a'.*0/1.*\[2\]"):
        make_folds(df, 2, "multilabel_stratified", y=["a", "b"])


# --------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"strategy": "random"}, r"unknown fold strategy 'random'; valid: kfold, stratified, group"),
        ({"strategy": "stratified", "y": "target"}, r"y column 'target' not found"),
        ({"strategy": "group", "groups": "patient"}, r"groups column 'patient' not found"),
        ({"strategy": "stratified"}, r"'stratified' needs y="),
        ({"strategy": "multilabel_stratified"}, r"needs y="),
        ({"strategy": "group"}, r"'group' needs groups="),
        ({"strategy": "stratified_group", "y": "y"}, r"needs groups="),
        ({"strategy": "kfold", "groups": "g"}, r"ignores groups"),
        ({"strategy": "kfold", "n_splits": 1}, r"n_splits=1: need at least 2"),
        ({"strategy": "kfold", "n_splits": 10_000}, r"greater than the number of rows"),
        ({"strategy": "group", "groups": "g", "n_splits": 151}, r"number of distinct groups in 'g' \(150\)"),
        ({"strategy": "stratified", "y": "cont"}, r"continuous.*pd.qcut"),
        ({"strategy": "stratified", "y": ["y", "g"]}, r"multilabel_stratified"),
    ],
)
def test_make_folds_errors(table: pd.DataFrame, kwargs: dict, pattern: str) -> None:
    df = table.assign(cont=np.linspace(0.0, 1.0, len(table)))
    kwargs = {"n_splits": K, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        make_folds(df, **kwargs)


def test_missing_groups_values_rejected(table: pd.DataFrame) -> None:
    df = table.astype({"g": float})
    df.loc[3, "g"] = np.nan
    with pytest.raises(ValueError, match=r"groups column 'g' has 1 missing"):
        make_folds(df, K, "group", groups="g")


# --------------------------------------------------------------------------- folds file
def test_write_folds_is_idempotent_and_refuses_changes(tmp_path, table: pd.DataFrame) -> None:
    path = tmp_path / "input" / "comp" / "folds.csv"
    out = make_folds(table, K, "stratified", y="y", seed=0)
    assert write_folds(out, path, "id") == path
    assert list(pd.read_csv(path).columns) == ["id", "fold"]
    before = (os.stat(path).st_ino, os.stat(path).st_mtime_ns, path.read_bytes())
    assert write_folds(out.sample(frac=1.0, random_state=0), path, "id") == path  # same, reordered
    assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns, path.read_bytes()) == before

    other_seed = make_folds(table, K, "stratified", y="y", seed=1)
    with pytest.raises(ValueError, match=r"different fold assignment.*rows are in a different fold.*Delete"):
        write_folds(other_seed, path, "id")
    with pytest.raises(ValueError, match=r"ids differ: 0 only in the file.*1 only in the new"):
        write_folds(pd.concat([out, out.iloc[:1].assign(id="extra")]), path, "id")
    assert path.read_bytes() == before[2]  # never overwritten
    assert [f.name for f in path.parent.iterdir()] == ["folds.csv"]  # no temp files left


def test_write_folds_keeps_text_ids_verbatim(tmp_path) -> None:
    df = pd.DataFrame({"id": ["001", "01", "1", "0001"], "fold": [0, 1, 0, 1]})
    path = write_folds(df, tmp_path / "folds.csv", "id")
    write_folds(df, path, "id")  # "001" and "1" must not collide when re-read
    assert load_folds(path, "id", id_dtype=str)["id"].tolist() == ["001", "01", "1", "0001"]
    with pytest.raises(ValueError, match=r"duplicated ids"):
        load_folds(path, "id")  # parsed as numbers they collide: the error says so


def test_write_folds_validates_input(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"fold column 'fold' not found.*make_folds"):
        write_folds(pd.DataFrame({"id": [1, 2]}), tmp_path / "f.csv", "id")
    with pytest.raises(ValueError, match=r"duplicated ids.*\[1\]"):
        write_folds(pd.DataFrame({"id": [1, 1, 2], "fold": [0, 1, 0]}), tmp_path / "f.csv", "id")
    assert not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("image,fold\na,0\nb,1\n", r"missing column 'id'"),
        ("id,split\na,0\nb,1\n", r"missing column 'fold'"),
        ("id,fold\na,0\na,1\nb,1\n", r"duplicated ids.*'a'"),
        ("id,fold\na,0\nb,1\nc,3\n", r"contiguous integers 0..K-1.*\[0, 1, 3\]"),
        ("id,fold\na,0\nb,0\n", r"K >= 2"),
        ("id,fold\na,0\nb,x\n", r"must hold integers.*'x'"),
        ("id,fold\na,0\nb,1.5\n", r"must hold integers"),
        ("id,fold\na,0\nb,\n", r"must hold integers"),
    ],
)
def test_load_folds_rejects_bad_files(tmp_path, content: str, pattern: str) -> None:
    path = tmp_path / "folds.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=pattern):
        load_folds(path, "id")


def test_load_folds_missing_file_says_how_to_create(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"not found; create it .*get_or_make_folds"):
        load_folds(tmp_path / "nope.csv", "id")


def test_load_folds_round_trip(tmp_path, table: pd.DataFrame) -> None:
    out = make_folds(table, K, "group", groups="g", seed=0)
    loaded = load_folds(write_folds(out, tmp_path / "folds.csv", "id"), "id")
    assert loaded["id"].tolist() == out["id"].tolist()
    assert loaded["fold"].tolist() == out["fold"].tolist()


def test_fold_ids_out_of_range(table: pd.DataFrame) -> None:
    out = make_folds(table, K, "kfold")
    for bad in (7, -1, 5):
        with pytest.raises(ValueError, match=rf"--fold {bad} but folds.csv has 5 folds \(0..4\)"):
            fold_ids(out, bad, "id")
    train, valid = fold_ids(out, 4, "id")
    assert valid == out.loc[out["fold"] == 4, "id"].tolist()


def test_get_or_make_folds_reuses_the_file(tmp_path, table: pd.DataFrame) -> None:
    path = tmp_path / "folds.csv"
    first = get_or_make_folds(path, table, "id", K, "stratified", y="y", seed=0)
    assert path.exists()
    # a later experiment asking with another seed still gets the file's folds, in df's row order
    shuffled = table.sample(frac=1.0, random_state=1)
    again = get_or_make_folds(path, shuffled, "id", K, "stratified", y="y", seed=99)
    assert again.set_index("id")["fold"].sort_index().equals(first.set_index("id")["fold"].sort_index())
    assert again.index.equals(shuffled.index)
    with pytest.raises(ValueError, match=r"has 5 folds but n_splits=10.*delete"):
        get_or_make_folds(path, table, "id", 10, "stratified", y="y")
    with pytest.raises(ValueError, match=r"does not match df \(ids differ"):
        get_or_make_folds(path, table.iloc[:-3], "id", K, "stratified", y="y")


ZERO_PADDED = ["0001", "0010", "007", "0007", "01", "1", "0100", "020", "a01", "x"]


def test_zero_padded_ids_round_trip_make_write_get_or_make(tmp_path) -> None:
    """Issue 16: ids such as "0001" stay text through make_folds → folds.csv → get_or_make_folds."""
    df = pd.DataFrame({"id": ZERO_PADDED, "y": [0, 1] * 5})
    out = make_folds(df, 2, "kfold", seed=3)
    path = write_folds(out, tmp_path / "folds.csv", "id")
    lines = path.read_text().splitlines()
    assert lines[0] == "id,fold" and [ln.split(",")[0] for ln in lines[1:]] == ZERO_PADDED  # verbatim in the file
    again = get_or_make_folds(path, df, "id", 2, "kfold", seed=99)  # read back: no false mismatch
    assert again["id"].tolist() == ZERO_PADDED and again["fold"].tolist() == out["fold"].tolist()
    assert write_folds(out, path, "id") == path  # the write-once comparison agrees too


def test_kagglekit_folds_command_keeps_leading_zeros(tmp_path, monkeypatch) -> None:
    """The reported bug: `kagglekit folds` read train.csv with ids parsed as numbers, wrote 1 for
    0001, and the task then reported "N only in the file ... N only in the new frame"."""
    from kagglekit.__main__ import main
    ids = [f"{i:04d}" for i in range(60)]
    csv = tmp_path / "train.csv"
    pd.DataFrame({"id": ids, "y": [0, 1, 2] * 20}).to_csv(csv, index=False)
    out = tmp_path / "folds.csv"
    args = ["folds", "--comp", "c", "--csv", str(csv), "--id", "id", "--strategy", "stratified", "--y", "y",
            "--n-splits", "3", "--out", str(out)]
    assert main(args) == 0
    assert pd.read_csv(out, dtype=str)["id"].tolist() == ids
    task_frame = pd.DataFrame({"id": ids})  # how the tasks hand their ids (file stems / CSV text)
    folds = get_or_make_folds(out, task_frame, "id", 3, "stratified")
    assert folds["id"].tolist() == ids and sorted(folds["fold"].unique()) == [0, 1, 2]
    assert main(args) == 0  # rerun: same assignment, the write-once file is accepted


def test_folds_file_written_without_leading_zeros_still_matches(tmp_path, caplog) -> None:
    """A folds.csv an older `kagglekit folds` wrote (0001 → 1) keeps working: matched one to
    one, with a warning, the task's own ids kept; ambiguous ones (007 and 0007) are refused."""
    ids = ["0001", "0010", "007", "0100"]
    path = tmp_path / "folds.csv"
    path.write_text("id,fold\n1,0\n10,1\n7,0\n100,1\n")
    with caplog.at_level("WARNING", logger="kagglekit.cv"):
        folds = get_or_make_folds(path, pd.DataFrame({"id": ids}), "id", 2, "kfold")
    assert folds["id"].tolist() == ids and folds["fold"].tolist() == [0, 1, 0, 1]
    assert "4 ids are written without their leading zeros" in caplog.text and "'0001'" in caplog.text
    assert write_folds(folds, path, "id") == path and path.read_text() == "id,fold\n1,0\n10,1\n7,0\n100,1\n"
    with pytest.raises(ValueError, match=r"does not match df.*without their leading zeros.*1 group\(s\) of ids become "
                                         r"equal without them, e.g. \['007', '7'\]"):
        get_or_make_folds(path, pd.DataFrame({"id": ids + ["7"]}), "id", 2, "kfold")
    with pytest.raises(ValueError, match=r"e.g. \['007', '0007'\] and 1 ids differ even without them, e.g. \['100'\]"):
        get_or_make_folds(path, pd.DataFrame({"id": ["0001", "0010", "007", "0007"]}), "id", 2, "kfold")
