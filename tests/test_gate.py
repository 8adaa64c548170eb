"""Kill-switch gate: verdict boundaries, exit codes, dotted keys, baseline arm, errors, report."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kagglekit.gate import EXIT_CODES, GateInputError, flatten_numeric, gate, lookup, main

BASE, MARGIN = 0.2199, 0.02


def write(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagglekit.gate", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------
# library
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, verdict", [
    (0.2399, "PASS"),                 # exactly baseline + 2 pp (0.2399 - 0.2199 == 0.01999999999999999 in floats)
    (BASE + MARGIN, "PASS"),
    (0.30, "PASS"),
    (0.2399 - 1e-9, "MARGINAL"),
    (0.23, "MARGINAL"),
    (BASE, "MARGINAL"),               # exactly the baseline
    (BASE - 1e-9, "FAIL"),            # just below
    (0.0, "FAIL"),
    (float("nan"), "FAIL"),
])
def test_verdict_max(value, verdict):
    res = gate({"A": value}, BASE, MARGIN, "A")
    assert res.verdict == verdict and res.exit_code == EXIT_CODES[verdict]
    assert res.line("oks_map").startswith(f"verdict: {verdict}")


@pytest.mark.parametrize("value, verdict", [
    (0.1999, "PASS"),                 # exactly baseline - 2 pp
    (0.10, "PASS"),
    (0.1999 + 1e-9, "MARGINAL"),
    (BASE, "MARGINAL"),
    (BASE + 1e-9, "FAIL"),
    (float("nan"), "FAIL"),
])
def test_verdict_min_is_mirrored(value, verdict):
    assert gate({"A": value}, BASE, MARGIN, "A", mode="min").verdict == verdict


def test_zero_margin_and_contribution():
    res = gate({"A": 0.25, "B": 0.24}, 0.25, 0.0, "A", control="B")
    assert res.verdict == "PASS"  # margin 0: reaching the baseline passes
    assert res.contribution == pytest.approx(0.01) and res.control_value == 0.24
    assert res.delta == pytest.approx(0.0) and res.target == 0.25
    assert gate({"A": 0.25}, 0.2, 0.01, "A").contribution is None


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(candidate="Z"), "candidate arm 'Z'"),
    (dict(control="Z"), "control arm 'Z'"),
    (dict(control="A"), "is the candidate itself"),
    (dict(mode="best"), "mode='best'"),
    (dict(margin=-0.01), "margin must be"),
    (dict(baseline=float("nan")), "baseline must be"),
])
def test_gate_argument_errors(kwargs, pattern):
    args = dict(values={"A": 0.3, "B": 0.2}, baseline=0.2, margin=0.02, candidate="A")
    args.update(kwargs)
    with pytest.raises(GateInputError, match=pattern):
        gate(**args)


def test_lookup_dotted_and_literal_keys():
    m = {"oof": {"miou": 0.31, "acc": 0.8}, "a.b": 1.5, "a": {"b": 9.0}, "name": "x"}
    assert lookup(m, "oof.miou") == 0.31
    assert lookup(m, "a.b") == 1.5  # a literal top-level key wins over the nested path
    with pytest.raises(GateInputError, match=r"m.json: key 'oof.iou' not found; available numeric keys: oof.miou, oof.acc, a.b$"):
        lookup(m, "oof.iou", "m.json")
    assert flatten_numeric(m) == {"oof.miou": 0.31, "oof.acc": 0.8, "a.b": 1.5}
    with pytest.raises(GateInputError, match=r"key 'name' is str"):
        lookup(m, "name")


# ------------------------------------------------------------------------------------------
# CLI (subprocess for the exit codes)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, code", [(0.2399, 0), (BASE, 10), (0.2198999, 20)])
def test_cli_exit_codes_at_the_boundaries(tmp_path, value, code):
    a = write(tmp_path / "a.json", {"oks_map": value, "loss": 1.0})
    b = write(tmp_path / "b.json", {"oks_map": 0.21, "loss": 1.2})
    r = cli("--baseline", "0.2199", "--margin", "0.02", "--arm", f"A={a}", "--arm", f"B={b}",
            "--metric", "oks_map", "--control", "B", cwd=tmp_path)
    assert r.returncode == code, r.stderr
    verdict = {0: "PASS", 10: "MARGINAL", 20: "FAIL"}[code]
    assert f"verdict: {verdict}" in r.stdout
    assert "| metric | A | B | A - B |" in r.stdout  # the report goes to stdout without --report
    assert r.stderr == ""


def test_cli_mode_min(tmp_path):
    a = write(tmp_path / "a.json", {"score": 0.1999})
    assert cli("--baseline", "0.2199", "--margin", "0.02", "--arm", f"A={a}", "--mode", "min", cwd=tmp_path).returncode == 0
    a = write(tmp_path / "a.json", {"score": 0.2200})
    assert cli("--baseline", "0.2199", "--margin", "0.02", "--arm", f"A={a}", "--mode", "min", cwd=tmp_path).returncode == 20


def test_cli_baseline_arm_with_dotted_key_and_report(tmp_path):
    """exp093_5 vs exp093_2 OOF mIoU read from output/<exp>/metrics.json (nested 'oof.miou')."""
    out = tmp_path / "output"
    for exp, miou in (("exp093_2", 0.2541), ("exp093_5", 0.2801)):
        (out / exp).mkdir(parents=True)
        write(out / exp / "metrics.json", {"oof": {"miou": miou, "pixel_acc": 0.7}, "chance_miou": 0.03,
                                           "per_class_iou": {"wall": 0.7}, "temperature_table": [{"t": 1.0}],
                                           "note": "text"})
    report = tmp_path / "reports" / "gate.md"
    r = cli("--baseline-arm", "B", "--margin", "0.02", "--metric", "oof.miou",
            "--arm", f"A={out / 'exp093_5' / 'metrics.json'}", "--arm", f"B={out / 'exp093_2' / 'metrics.json'}",
            "--control", "B", "--report", str(report), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("verdict: PASS: A oof.miou 0.280100 >= target 0.274100")
    assert lines[1] == f"report: {report}"
    md = report.read_text()
    assert "- **Baseline**: 0.254100 (arm B)" in md
    assert "| A | candidate | 0.2801 | +0.0260 |" in md
    assert "| B | control, baseline | 0.2541 | +0.0000 |" in md
    # every numeric leaf shared by the arms, the gated one first and bold; lists/strings left out
    table = md[md.index("## Metrics present in every arm"):]
    assert table.splitlines()[4].startswith("| **oof.miou** |")  # first data row
    assert "| **oof.miou** | **0.2801** | **0.2541** | **+0.0260** |" in md
    assert "| oof.pixel_acc | 0.7000 | 0.7000 | +0.0000 |" in md
    assert "| per_class_iou.wall |" in md and "| chance_miou |" in md
    assert "temperature_table" not in md and "note" not in md
    assert "Contribution (A - B): +0.0260 oof.miou" in md
    assert md.rstrip().endswith("**") and "**verdict: PASS" in md


def test_only_metrics_present_in_every_arm_are_tabulated(tmp_path, capsys):
    a = write(tmp_path / "a.json", {"score": 0.5, "extra": 1.0, "both": 2.0})
    b = write(tmp_path / "b.json", {"score": 0.4, "both": 3.0})
    assert main(["--baseline", "0.4", "--margin", "0.05", "--arm", f"A={a}", "--arm", f"B={b}"]) == 0
    out = capsys.readouterr().out
    assert "| both | 2.0000 | 3.0000 |" in out and "extra" not in out
    assert "| B | - | 0.4000 | +0.0000 |" in out  # no --control: B has no role, no contribution line
    assert "Contribution" not in out


def test_cli_missing_file(tmp_path):
    a = write(tmp_path / "a.json", {"score": 0.5})
    r = cli("--baseline", "0.2", "--margin", "0.02", "--arm", f"A={a}", "--arm", f"B={tmp_path / 'nope.json'}", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.json'}: file not found"]
    assert r.stdout == ""


def test_cli_missing_key_names_file_key_and_available_keys(tmp_path):
    a = write(tmp_path / "a.json", {"oks_map": 0.5})
    b = write(tmp_path / "b.json", {"oof": {"miou": 0.3}, "loss": 0.1})
    r = cli("--baseline", "0.2", "--margin", "0.02", "--arm", f"A={a}", "--arm", f"B={b}", "--metric", "oks_map", cwd=tmp_path)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1
    assert err[0] == f"error: {b}: key 'oks_map' not found; available numeric keys: oof.miou, loss"


@pytest.mark.parametrize("args, pattern", [
    (["--arm", "A"], "expected NAME=PATH"),
    (["--arm", "A=x.json", "--arm", "A=y.json"], "given twice"),
    (["--arm", "A={a}", "--candidate", "Z"], "--candidate 'Z' is not one of the --arm names: A"),
    (["--arm", "A={a}", "--baseline-arm", "A"], "is the candidate itself"),
    (["--arm", "A={a}", "--margin", "-1"], "margin must be"),
    (["--arm", "A={bad}"], "not valid JSON"),
    (["--arm", "A={lst}"], "expected a JSON object"),
])
def test_input_errors_exit_2(tmp_path, capsys, args, pattern):
    a = write(tmp_path / "a.json", {"score": 0.5})
    (tmp_path / "bad.json").write_text("{not json")
    lst = write(tmp_path / "lst.json", [0.5])
    args = [x.format(a=a, bad=tmp_path / "bad.json", lst=lst) for x in args]
    if "--baseline-arm" not in args:
        args += ["--baseline", "0.2"]
    if "--margin" not in args:
        args += ["--margin", "0.02"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and pattern in err and err.count("\n") == 1


def test_usage_errors_exit_2(tmp_path):
    a = write(tmp_path / "a.json", {"score": 0.5})
    # neither --baseline nor --baseline-arm
    assert cli("--margin", "0.02", "--arm", f"A={a}", cwd=tmp_path).returncode == 2
    # both
    assert cli("--baseline", "0.2", "--baseline-arm", "A", "--margin", "0.02", "--arm", f"A={a}", cwd=tmp_path).returncode == 2


def test_nan_metric_fails(tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text('{"score": NaN}')
    assert main(["--baseline", "0.2", "--margin", "0.02", "--arm", f"A={a}"]) == 20
    out = capsys.readouterr().out
    assert "verdict: FAIL: A score is NaN" in out and "| A | candidate | N/A | N/A |" in out
    assert math.isnan(gate({"A": float("nan")}, 0.2, 0.02, "A").delta)
