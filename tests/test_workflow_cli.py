"""`python -m kagglekit` workflow commands: status, validate, submit, ledger, download, folds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from kagglekit.__main__ import main
from kagglekit.workflow.ledger import load_ledger


class FakeApi:
    """Records calls instead of talking to Kaggle."""

    def __init__(self, zip_source: Path | None = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.zip_source = zip_source

    def competition_submit(self, *args, **kwargs):
        self.calls.append(("submit", args, kwargs))

    def competition_download_files(self, competition, path=None, **kwargs):
        self.calls.append(("download", (competition,), {"path": path, **kwargs}))
        Path(path, f"{competition}.zip").write_bytes(self.zip_source.read_bytes())


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_ROOT", str(tmp_path))
    for var in ("KAGGLEKIT_INPUT", "KAGGLEKIT_OUTPUT", "KAGGLEKIT_SUBMISSIONS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _fold(exp_dir: Path, k: int, best: float, oof: float, cfg_hash: str, n_folds: int = 3) -> None:
    fold = exp_dir / f"fold{k}"
    _json(fold / "config.json", {"config_hash": cfg_hash, "n_folds": n_folds, "monitor": "valid_miou"})
    _json(fold / "metrics.json", {"fold": k, "best_valid_miou": best, "oof_miou": oof})
    _json(fold / "oof" / "manifest.json", {})
    _json(fold / "test" / "manifest.json", {})


@pytest.fixture
def outputs(project):
    out = project / "output"
    for k, (b, o) in enumerate([(0.50, 0.40), (0.60, 0.50), (0.70, 0.60)]):
        _fold(out / "expA", k, b, o, "hashA")
    _json(out / "expA" / "metrics.json", {"oof_miou": 0.5123, "submission": "submissions/expA.csv"})
    _fold(out / "expB", 0, 0.30, 0.20, "hashB")
    _fold(out / "expB", 2, 0.35, 0.25, "hashB")
    (out / "expB" / "fold2" / "test" / "manifest.json").unlink()
    return out


def test_status_table(outputs, capsys):
    assert main(["status", "--output", str(outputs)]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.startswith("| exp")]
    a_mean = next(ln for ln in lines if ln.startswith("| expA | mean"))
    assert "0.6000 ± 0.1000" in a_mean and "0.5000 ± 0.1000" in a_mean and "oof_miou=0.5123" in a_mean
    b_missing = next(ln for ln in lines if ln.startswith("| expB | 1 "))
    assert "missing" in b_missing
    b_fold2 = next(ln for ln in lines if ln.startswith("| expB | 2 "))
    assert "| yes | no |" in b_fold2  # OOF present, test missing
    assert "2/3 folds" in next(ln for ln in lines if ln.startswith("| expB | mean"))
    assert main(["status", "--output", str(outputs), "--exp", "expB"]) == 0
    assert "expA" not in capsys.readouterr().out
    assert main(["status", "--output", str(outputs), "--exp", "nope"]) == 2


SAMPLE = pd.DataFrame({"id": ["a1", "a2", "a3"], "target": [0.5, 0.5, 0.5]})


@pytest.fixture
def sample(project):
    SAMPLE.to_csv(project / "sample_submission.csv", index=False)
    return project / "sample_submission.csv"


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d[d.id != "a2"], "a2"),
    (lambda d: d.assign(extra=1), "extra"),
    (lambda d: d.assign(target=[0.1, None, 0.3]), "empty/NaN"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "expected 3 rows"),
    (lambda d: d.assign(target=["x", "0.2", "0.3"]), "numeric"),
])
def test_validate_refuses(sample, project, capsys, mutate, needle):
    bad = project / "bad.csv"
    mutate(SAMPLE.copy()).to_csv(bad, index=False)
    assert main(["validate", str(bad), "--sample", str(sample)]) == 2
    assert needle in capsys.readouterr().err


def test_validate_ok(sample, project, capsys):
    good = project / "good.csv"
    SAMPLE.assign(target=[0.1, 0.2, 0.3]).to_csv(good, index=False)
    assert main(["validate", str(good), "--sample", str(sample)]) == 0
    assert "OK" in (out := capsys.readouterr().out) and "3 rows" in out


def test_submit_dry_run_and_refusal_make_no_call(sample, project, capsys):
    good, bad = project / "sub ok.csv", project / "bad.csv"
    SAMPLE.to_csv(good, index=False)
    SAMPLE.iloc[:2].to_csv(bad, index=False)
    api = FakeApi()
    argv = ["-c", "comp-x", "-m", "first try", "--sample", str(sample)]
    assert main(["submit", str(good), *argv, "--dry-run"], api=api) == 0
    out = capsys.readouterr().out
    assert f"kaggle competitions submit -c comp-x -f '{good}' -m 'first try'" in out
    assert main(["submit", str(bad), *argv], api=api) == 2
    assert "a3" in capsys.readouterr().err
    assert api.calls == []
    assert not (project / "output" / "ledger.csv").exists()


def test_submit_calls_api_once_and_ledger_records(outputs, sample, project):
    sub = project / "submissions" / "expA.csv"
    sub.parent.mkdir()
    SAMPLE.to_csv(sub, index=False)
    api = FakeApi()
    assert main(["submit", "submissions/expA.csv", "-c", "comp-x", "-m", "msg 1", "--sample", str(sample)], api=api) == 0
    assert api.calls == [("submit", (), {"file_name": "submissions/expA.csv", "message": "msg 1", "competition": "comp-x"})]
    ledger = load_ledger(outputs / "ledger.csv")
    row = ledger[ledger.experiment == "expA"].iloc[0]
    assert row.submission == "submissions/expA.csv" and row.message == "msg 1" and row.submitted_at
    assert len(ledger) == 2  # expA + expB, no extra row for the submission


def test_ledger_upsert_and_lb(outputs, project, capsys):
    assert main(["ledger", "--output", str(outputs)]) == 0
    assert main(["ledger", "--output", str(outputs)]) == 0
    ledger = load_ledger(outputs / "ledger.csv")
    assert sorted(ledger.experiment) == ["expA", "expB"]
    a = ledger[ledger.experiment == "expA"].iloc[0]
    assert a.config_hash == "hashA" and a.folds_done == "3" and a.cv_folds == "0:0.4000;1:0.5000;2:0.6000"
    assert a.cv_mean == "0.5000" and a.cv_oof == "0.5123" and a.git_commit == "unknown"
    assert main(["ledger", "--output", str(outputs), "--lb", "0.4321", "--submission", "submissions/expA.csv"]) == 0
    _fold(outputs / "expB", 1, 0.4, 0.3, "hashB")  # the missing fold arrives: same row updated
    assert main(["ledger", "--output", str(outputs)]) == 0
    ledger = load_ledger(outputs / "ledger.csv")
    assert len(ledger) == 2
    assert ledger[ledger.experiment == "expA"].iloc[0].public_lb == "0.43210"
    assert ledger[ledger.experiment == "expB"].iloc[0].folds_done == "3"
    md = (outputs / "ledger.md").read_text()
    assert "cv_mean" in md and "public_lb" in md and "0.43210" in md
    capsys.readouterr()
    assert main(["ledger", "--output", str(outputs), "--lb", "0.5", "--submission", "other.csv"]) == 2
    assert "submissions/expA.csv" in capsys.readouterr().err


def test_download_unzips(project, tmp_path_factory):
    src = tmp_path_factory.mktemp("zip") / "data.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("train.csv", "id,y\n1,0\n")
        zf.writestr("images/a.txt", "x")
    api = FakeApi(zip_source=src)
    assert main(["download", "comp-x"], api=api) == 0
    dest = project / "input" / "comp-x"
    assert (dest / "train.csv").read_text().startswith("id,y") and (dest / "images" / "a.txt").is_file()
    assert not list(dest.glob("*.zip"))
    assert api.calls[0][0] == "download" and api.calls[0][2]["path"] == str(dest)


def test_missing_credentials_message_has_no_secret(project, monkeypatch, capsys):
    secret = "s3cr3t-value-1234567890"
    for var in ("KAGGLE_USERNAME", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_KEY", secret)
    monkeypatch.setenv("HOME", str(project))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(project / "no_kaggle_dir"))
    assert main(["download", "comp-x"]) == 2
    captured = capsys.readouterr()
    assert "KAGGLE_USERNAME" in captured.err and "kaggle.json" in captured.err
    assert secret not in captured.err + captured.out


def test_folds_command(project, capsys):
    (project / "input" / "c").mkdir(parents=True)
    pd.DataFrame({"id": range(20), "y": [0, 1] * 10}).to_csv(project / "input" / "c" / "train.csv", index=False)
    args = ["folds", "--comp", "c", "--csv", "input/c/train.csv", "--id", "id", "--strategy", "stratified", "--y", "y", "--n-splits", "4"]
    assert main(args) == 0
    folds = pd.read_csv(project / "input" / "c" / "folds.csv")
    assert list(folds.columns) == ["id", "fold"] and sorted(folds.fold.unique()) == [0, 1, 2, 3]
    assert main(args) == 0  # same assignment: write-once file accepted
    assert main([*args[:-1], "5"]) == 2 and "already exists" in capsys.readouterr().err


def test_help_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / "none"))
    res = subprocess.run([sys.executable, "-m", "kagglekit", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    for cmd in ("download", "folds", "status", "validate", "submit", "ledger", "bundle"):
        assert cmd in res.stdout
