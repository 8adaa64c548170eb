"""The prediction store: atomic commit, quantisation, merge in folds.csv order, alignment errors."""
from __future__ import annotations

import numpy as np
import pytest

from kagglekit.store.arrays import Manifest, OOFError, PredictionWriter, dequantise, iter_test_mean, merged_oof, quantise, read_predictions


def manifest(fold: int, n: int, kind: str = "oof") -> Manifest:
    return Manifest("exp", fold, kind, ["a", "b", "c"], 0.5, "uint8", [n, 3, 4, 5], [8, 10])


def random_probs(rng, n):
    logits = rng.normal(size=(n, 3, 4, 5))
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def write_fold(directory, fold, ids, probs, targets=None, kind="oof"):
    w = PredictionWriter(directory, manifest(fold, len(ids), kind), with_targets=targets is not None)
    for s in range(0, len(ids), 2):  # several chunks
        w.write(ids[s:s + 2], probs[s:s + 2], None if targets is None else targets[s:s + 2])
    return w.commit()


def test_quantise_error_bound():
    p = np.random.default_rng(0).random((100, 3)).astype(np.float32)
    assert np.abs(dequantise(quantise(p, "uint8")) - p).max() <= 0.5 / 255 + 1e-7
    assert quantise(p, "float16").dtype == np.float16
    with pytest.raises(OOFError, match="dtype"):
        quantise(p, "int4")


def test_writer_commits_and_abort_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["x1", "x2", "x3"]
    probs, targets = random_probs(rng, 3), rng.integers(0, 3, (3, 4, 5)).astype(np.uint8)
    write_fold(tmp_path / "f0", 0, ids, probs, targets)
    stored = read_predictions(tmp_path / "f0")
    assert stored.ids == ids and isinstance(stored.probs, np.memmap)
    np.testing.assert_array_equal(stored.probs, quantise(probs, "uint8"))
    np.testing.assert_array_equal(stored.targets, targets)
    w = PredictionWriter(tmp_path / "f1", manifest(1, 3), with_targets=False)
    w.write(ids[:1], probs[:1])
    with pytest.raises(OOFError, match="1 rows written, 3 declared"):
        w.commit()
    w.abort()
    assert not any((tmp_path / "f1").glob("*probs*"))
    with pytest.raises(OOFError, match="manifest"):
        read_predictions(tmp_path / "f1")


def test_merged_oof_follows_folds_order_and_is_cached(tmp_path):
    rng = np.random.default_rng(1)
    exp = tmp_path / "exp"
    order = [f"id{i}" for i in range(7)]
    fold_of = [0, 1, 0, 1, 1, 0, 0]
    probs = random_probs(rng, 7)
    targets = rng.integers(0, 3, (7, 4, 5)).astype(np.uint8)
    for k in (0, 1):
        rows = [i for i, f in enumerate(fold_of) if f == k][::-1]  # fold files in a different order
        write_fold(exp / f"fold{k}" / "oof", k, [order[i] for i in rows], probs[rows], targets[rows])
    merged = merged_oof(exp, order, 2, chunk=3)
    assert merged.ids == order
    np.testing.assert_array_equal(merged.probs, quantise(probs, "uint8"))
    np.testing.assert_array_equal(merged.targets, targets)
    mtime = (exp / "oof_merged" / "probs.npy").stat().st_mtime_ns
    merged_oof(exp, order, 2)
    assert (exp / "oof_merged" / "probs.npy").stat().st_mtime_ns == mtime
    with pytest.raises(OOFError, match="no OOF row"):
        merged_oof(exp, order + ["ghost"], 2)
    with pytest.raises(OOFError, match=r"folds \[2\].*--fold 2"):
        merged_oof(exp, order, 3)


def test_test_mean_over_folds(tmp_path):
    rng = np.random.default_rng(2)
    ids = ["t0", "t1", "t2"]
    folds = [random_probs(rng, 3) for _ in range(3)]
    for k, p in enumerate(folds):
        write_fold(tmp_path / f"fold{k}" / "test", k, ids, p, kind="test")
    chunks = list(iter_test_mean(tmp_path, 3, chunk=2))
    assert [c[0] for c in chunks] == [["t0", "t1"], ["t2"]]
    got = np.concatenate([c[1] for c in chunks])
    expected = np.mean([dequantise(quantise(p, "uint8")) for p in folds], axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_per_row_predictions_any_rank(tmp_path):
    """(N, C) stores (classification / per-frame outputs) use the same writer and merge."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
    targets = rng.integers(0, 4, 6).astype(np.uint8)
    ids = [f"r{i}" for i in range(6)]
    for k in (0, 1):
        m = Manifest("exp", k, "oof", list("abcd"), 1.0, "float16", [3, 4], [])
        w = PredictionWriter(tmp_path / f"fold{k}" / "oof", m, with_targets=True)
        w.write(ids[3 * k:3 * k + 3], probs[3 * k:3 * k + 3], targets[3 * k:3 * k + 3])
        w.commit()
    merged = merged_oof(tmp_path, ids[::-1], 2)
    assert merged.probs.shape == (6, 4) and merged.targets.shape == (6,)
    np.testing.assert_allclose(merged.probs, probs[::-1].astype(np.float16))
    np.testing.assert_array_equal(merged.targets, targets[::-1])


def test_writer_context_commits_or_discards(tmp_path):
    probs = np.full((2, 3, 4, 5), 0.5, np.float32)
    with PredictionWriter(tmp_path / "ok", manifest(0, 2), with_targets=False) as w:
        w.write(["a", "b"], probs)
    assert read_predictions(tmp_path / "ok").ids == ["a", "b"]
    with pytest.raises(RuntimeError):
        with PredictionWriter(tmp_path / "bad", manifest(0, 2), with_targets=False) as w:
            w.write(["a"], probs[:1])
            raise RuntimeError("killed mid-write")
    assert not list((tmp_path / "bad").glob("*")) or not (tmp_path / "bad" / "manifest.json").exists()
    assert not list((tmp_path / "bad").glob("*.tmp"))


def _two_fold_exp(exp, rng, order, fold_of):
    probs = random_probs(rng, len(order))
    targets = rng.integers(0, 3, (len(order), 4, 5)).astype(np.uint8)
    for k in (0, 1):
        rows = [i for i, f in enumerate(fold_of) if f == k]
        write_fold(exp / f"fold{k}" / "oof", k, [order[i] for i in rows], probs[rows], targets[rows])
    return probs, targets


def test_merged_cache_is_rebuilt_when_a_fold_changes(tmp_path):
    """Issue 16: the ensemble read a stale oof_merged/ after a fold's ids.json was edited or the
    fold re-run; the merged manifest now records a hash of its sources and is rebuilt."""
    import json
    import os
    rng = np.random.default_rng(4)
    exp, order, fold_of = tmp_path / "exp", ["0001", "0010", "007", "0007", "01", "1"], [0, 1, 0, 1, 0, 1]
    probs, _ = _two_fold_exp(exp, rng, order, fold_of)
    merged = merged_oof(exp, order, 2)
    assert merged.ids == order and len(merged.manifest.sources_sha256) == 64
    np.testing.assert_array_equal(merged.probs, quantise(probs, "uint8"))

    # fold 1 re-run: new predictions (same ids, same manifest) → the cache follows
    rerun = random_probs(rng, 3)
    write_fold(exp / "fold1" / "oof", 1, [order[i] for i in (1, 3, 5)], rerun)
    again = merged_oof(exp, order, 2)
    np.testing.assert_array_equal(again.probs[[1, 3, 5]], quantise(rerun, "uint8"))
    assert again.manifest.sources_sha256 != merged.manifest.sources_sha256

    # fold 0's ids.json edited by hand (two rows swapped) → rows follow the edited ids
    ids_path = exp / "fold0" / "oof" / "ids.json"
    ids_path.write_text(json.dumps(["007", "0001", "01"]))
    swapped = merged_oof(exp, order, 2)
    np.testing.assert_array_equal(swapped.probs[0], quantise(probs, "uint8")[2])  # "0001" is now row 1 of fold 0
    np.testing.assert_array_equal(swapped.probs[2], quantise(probs, "uint8")[0])

    # unchanged sources: reused, not rewritten
    stamp = (exp / "oof_merged" / "probs.npy").stat().st_mtime_ns
    merged_oof(exp, order, 2)
    assert (exp / "oof_merged" / "probs.npy").stat().st_mtime_ns == stamp

    # an old cache (no sources_sha256 in its manifest, a source.json beside it) is rebuilt
    manifest_path = exp / "oof_merged" / "manifest.json"
    old = json.loads(manifest_path.read_text())
    old.pop("sources_sha256")
    manifest_path.write_text(json.dumps(old))
    (exp / "oof_merged" / "source.json").write_text("{}")
    os.utime(exp / "oof_merged" / "probs.npy", ns=(stamp - 10**9, stamp - 10**9))
    rebuilt = merged_oof(exp, order, 2)
    assert rebuilt.manifest.sources_sha256 == swapped.manifest.sources_sha256
    assert not (exp / "oof_merged" / "source.json").exists()
    np.testing.assert_array_equal(rebuilt.probs, swapped.probs)


def test_id_differences_name_the_members_and_the_first_ids():
    from kagglekit.store.arrays import id_difference, require_same_ids
    a = [f"{i:04d}" for i in range(60)]
    b = [str(i) for i in range(60)]  # the same images with their leading zeros dropped
    text = id_difference("exp_a", a, "exp_b", b)
    assert text == ("exp_a has 60 ids, exp_b 60: 60 only in exp_a (first 5: ['0000', '0001', '0002', '0003', '0004']), "
                    "60 only in exp_b (first 5: ['0', '1', '2', '3', '4'])")
    assert id_difference("exp_a", a, "exp_c", list(a)) is None
    moved = a[:3] + [a[4], a[3]] + a[5:]
    assert id_difference("exp_a", a, "exp_d", moved) == ("exp_a and exp_d hold the same 60 ids in another order "
                                                          "(first difference at row 3: '0003' vs '0004')")
    with pytest.raises(OOFError, match=r"members' OOF ids differ: exp_a has 60 ids, exp_b 60: .*; train them"):
        require_same_ids(["exp_a", "exp_c", "exp_b"], [a, a, b], "OOF ids", "train them on the same folds.csv")
