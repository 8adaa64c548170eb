"""Kill-switch gate: does an experiment beat a baseline by a margin on one metric?

    python -m kagglekit.gate --baseline 0.2199 --margin 0.02 \\
        --arm A=output/exp093_5/metrics.json --arm B=output/exp093_2/metrics.json \\
        [--metric oof_miou] [--candidate A] [--control B] [--mode max|min] [--report gate.md]

    python -m kagglekit.gate --baseline-arm B --margin 0.01 --metric oof_miou --arm A=... --arm B=...

Verdict for the candidate arm (default: the first ``--arm``), mode ``max`` (higher is better):

- ``PASS``      value >= baseline + margin   (boundary inclusive)
- ``MARGINAL``  baseline <= value < baseline + margin
- ``FAIL``      value < baseline (or the value is NaN)

Mode ``min`` mirrors it (PASS if value <= baseline - margin, FAIL if value > baseline). All
comparisons allow ``TOL = 1e-12`` so that decimal boundaries survive float error
(``0.2199 + 0.02`` vs ``0.2399``: ``0.2399 - 0.2199 = 0.019999999999999990``).

Exit codes: PASS 0, MARGINAL 10, FAIL 20, usage or input error 2 (one ``error: ...`` line).

Metrics files are JSON objects; the metric is a top-level key or a dotted path into nested
objects (``oof.miou`` -> ``d["oof"]["miou"]``; a literal top-level key ``"oof.miou"`` wins).
Every numeric leaf present in all arms is tabulated in the report. The library function
:func:`gate` does no file I/O; :func:`main` is the CLI edge.
"""
from __future__ import annotations

import argparse
import math
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from kagglekit.io import load_json, write_text
from kagglekit.report.markdown import markdown_kv, markdown_table

__all__ = [
    "EXIT_CODES",
    "GateInputError",
    "GateResult",
    "TOL",
    "flatten_numeric",
    "gate",
    "load_arm",
    "lookup",
    "main",
    "render_report",
]

TOL = 1e-12
EXIT_CODES = {"PASS": 0, "MARGINAL": 10, "FAIL": 20}
EXIT_USAGE = 2
_MODES = ("max", "min")


class GateInputError(ValueError):
    """Bad arguments or metrics files (the CLI turns it into ``error: ...`` and exit code 2)."""


@dataclass(frozen=True)
class GateResult:
    verdict: str  # PASS | MARGINAL | FAIL
    candidate: str
    value: float
    baseline: float
    margin: float
    mode: str
    control: str | None = None
    control_value: float | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def delta(self) -> float:
        """candidate - baseline (positive = higher; in mode min an improvement is negative)."""
        return self.value - self.baseline

    @property
    def target(self) -> float:
        """The PASS boundary: baseline + margin (max) or baseline - margin (min)."""
        return self.baseline + self.margin if self.mode == "max" else self.baseline - self.margin

    @property
    def contribution(self) -> float | None:
        """candidate - control, when a control arm was given."""
        return None if self.control_value is None else self.value - self.control_value

    def line(self, metric: str = "metric") -> str:
        """One-line verdict, e.g. ``verdict: PASS: A oks_map 0.239900 >= target 0.239900 (baseline 0.219900 + margin 0.020000, mode max; delta +0.020000)``."""
        if math.isnan(self.value):
            why = f"{self.candidate} {metric} is NaN"
        else:
            ge, lt = (">=", "<") if self.mode == "max" else ("<=", ">")
            sign = "+" if self.mode == "max" else "-"
            if self.verdict == "PASS":
                rel = f"{ge} target {self.target:.6f}"
            elif self.verdict == "MARGINAL":
                rel = f"{lt} target {self.target:.6f}, {ge} baseline {self.baseline:.6f}"
            else:
                rel = f"{lt} baseline {self.baseline:.6f}"
            why = (f"{self.candidate} {metric} {self.value:.6f} {rel} "
                   f"(baseline {self.baseline:.6f} {sign} margin {self.margin:.6f}, mode {self.mode}; "
                   f"delta {self.delta:+.6f})")
        return f"verdict: {self.verdict}: {why}"


def gate(
    values: Mapping[str, float],
    baseline: float,
    margin: float,
    candidate: str,
    control: str | None = None,
    mode: str = "max",
) -> GateResult:
    """Verdict of ``values[candidate]`` against ``baseline`` with ``margin`` (see module doc).

    values: arm name -> metric value. control: optional arm whose value is subtracted from the
    candidate's for the contribution. Raises :class:`GateInputError` on unknown arms/mode, a
    negative or non-finite margin, or a non-finite baseline; a NaN candidate value is a FAIL.
    """
    if mode not in _MODES:
        raise GateInputError(f"mode={mode!r}; valid: {', '.join(_MODES)}")
    for name, role in ((candidate, "candidate"), (control, "control")):
        if name is not None and name not in values:
            raise GateInputError(f"{role} arm {name!r} not among the arms: {', '.join(values) or '(none)'}")
    if control is not None and control == candidate:
        raise GateInputError(f"control arm {control!r} is the candidate itself; name a different arm")
    if not _is_number(baseline) or not math.isfinite(baseline):
        raise GateInputError(f"baseline must be a finite number, got {baseline!r}")
    if not _is_number(margin) or not math.isfinite(margin) or margin < 0:
        raise GateInputError(f"margin must be a finite number >= 0, got {margin!r}")
    value = float(values[candidate])
    baseline, margin = float(baseline), float(margin)
    sign = 1.0 if mode == "max" else -1.0
    gain = sign * (value - baseline)  # improvement over the baseline in the metric's good direction
    if math.isnan(value) or gain < -TOL:
        verdict = "FAIL"
    elif gain >= margin - TOL:
        verdict = "PASS"
    else:
        verdict = "MARGINAL"
    control_value = None if control is None else float(values[control])
    return GateResult(verdict, candidate, value, baseline, margin, mode, control, control_value)


# ----------------------------------------------------------------------------------------------
# metrics files
# ----------------------------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def flatten_numeric(obj: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{"a.b.c": value}`` (lists, strings, bools skipped).
    A literal key containing dots wins over the same dotted path into nested dicts, as in
    :func:`lookup`."""
    out: dict[str, float] = {}
    literal = {f"{prefix}{k}" for k, v in obj.items() if _is_number(v)}
    for key, val in obj.items():
        name = f"{prefix}{key}"
        if isinstance(val, Mapping):
            for sub, x in flatten_numeric(val, name + ".").items():
                if sub not in literal:
                    out.setdefault(sub, x)
        elif _is_number(val):
            out[name] = float(val)
    return out


def _available(obj: Mapping[str, Any], limit: int = 40) -> str:
    keys = list(flatten_numeric(obj))
    if not keys:
        return "(no numeric keys)"
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def lookup(metrics: Mapping[str, Any], key: str, source: str = "metrics") -> float:
    """``metrics[key]`` or the dotted path ``key`` into nested dicts, as a float; GateInputError
    naming ``source`` and ``key`` and listing the available numeric keys otherwise."""
    if key in metrics:
        val: Any = metrics[key]
    else:
        val = metrics
        for part in key.split("."):
            if not (isinstance(val, Mapping) and part in val):
                raise GateInputError(f"{source}: key {key!r} not found; available numeric keys: {_available(metrics)}")
            val = val[part]
    if not _is_number(val):
        raise GateInputError(f"{source}: key {key!r} is {type(val).__name__} {str(val)[:60]!r}, not a number; "
                             f"available numeric keys: {_available(metrics)}")
    return float(val)


def load_arm(path: str | Path) -> dict[str, Any]:
    """A metrics JSON object from ``path`` (GateInputError if missing, invalid or not an object)."""
    try:
        data = load_json(path)
    except (FileNotFoundError, ValueError) as exc:
        raise GateInputError(str(exc)) from None
    except OSError as exc:
        raise GateInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise GateInputError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    return data


def _parse_arms(specs: Sequence[str]) -> dict[str, Path]:
    arms: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise GateInputError(f"--arm {spec!r}: expected NAME=PATH, e.g. --arm A=output/exp093_5/metrics.json")
        name = name.strip()
        if name in arms:
            raise GateInputError(f"--arm {name!r} given twice; arm names must be unique")
        arms[name] = Path(path.strip())
    return arms


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "N/A"
    if math.isnan(x):
        return "N/A"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def render_report(
    result: GateResult,
    metric: str,
    arm_values: Mapping[str, Mapping[str, Any]],
    arm_paths: Mapping[str, Any] | None = None,
    baseline_arm: str | None = None,
) -> str:
    """Markdown report: settings, the gated metric per arm with its delta vs the baseline, every
    numeric metric shared by all arms (rows) per arm (columns), the contribution and the verdict.

    arm_values: arm -> metrics dict (nested allowed); arm_paths: arm -> file (shown if given).
    """
    arm_paths = arm_paths or {}
    base_desc = f"{result.baseline:.6f}" + (f" (arm {baseline_arm})" if baseline_arm else " (fixed)")
    settings = {
        "Metric": metric,
        "Mode": f"{result.mode} ({'higher' if result.mode == 'max' else 'lower'} is better)",
        "Baseline": base_desc,
        "Margin": f"{result.margin:.6f}",
        "PASS target": f"{result.target:.6f}",
        "Candidate": result.candidate,
    }
    if result.control is not None:
        settings["Control"] = result.control
    gated_rows = []
    for arm, metrics in arm_values.items():
        roles = [r for r, name in (("candidate", result.candidate), ("control", result.control),
                                   ("baseline", baseline_arm)) if name == arm]
        value = lookup(metrics, metric, str(arm_paths.get(arm, arm)))
        row = {"arm": arm, "role": ", ".join(roles) or "-", metric: _fmt(value),
               "delta vs baseline": _fmt(value - result.baseline, signed=True)}
        if arm in arm_paths:
            row["file"] = str(arm_paths[arm])
        gated_rows.append(row)

    flat = {arm: flatten_numeric(m) for arm, m in arm_values.items()}
    shared = [k for k in next(iter(flat.values()), {}) if all(k in f for f in flat.values())]
    if metric not in shared:
        shared.insert(0, metric)
    else:
        shared.remove(metric)
        shared.insert(0, metric)
    all_rows = []
    for key in shared:
        row: dict[str, Any] = {"metric": key}
        for arm, metrics in arm_values.items():
            row[arm] = flat[arm].get(key, lookup(metrics, key) if key == metric else None)
        if result.control is not None:
            row[f"{result.candidate} - {result.control}"] = _fmt(row[result.candidate] - row[result.control], signed=True)
        all_rows.append(row)

    parts = [f"# Gate: {metric}\n\n", markdown_kv(settings),
             f"\n## Gated metric: {metric}\n\n", markdown_table(gated_rows, align="left"),
             "\n## Metrics present in every arm\n\n", markdown_table(all_rows, bold_row=0, align="left"), "\n"]
    if result.contribution is not None:
        parts.append(f"Contribution ({result.candidate} - {result.control}): {_fmt(result.contribution, signed=True)} {metric}\n\n")
    parts.append(f"**{result.line(metric)}**\n")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kagglekit.gate",
        description="Kill-switch gate of a candidate experiment vs a baseline. "
                    "Exit codes: PASS 0, MARGINAL 10, FAIL 20, usage/input error 2.",
    )
    base = p.add_mutually_exclusive_group(required=True)
    base.add_argument("--baseline", type=float, help="baseline value of the metric")
    base.add_argument("--baseline-arm", metavar="NAME", help="use this arm's value as the baseline")
    p.add_argument("--margin", type=float, required=True, help="required improvement over the baseline (e.g. 0.02 = 2 pp)")
    p.add_argument("--arm", action="append", default=[], metavar="NAME=PATH", required=True,
                   help="an experiment's metrics JSON (repeatable); the first is the default candidate")
    p.add_argument("--metric", default="score", help="gated key, dotted for nested dicts (default: score)")
    p.add_argument("--candidate", metavar="NAME", help="arm to judge (default: the first --arm)")
    p.add_argument("--control", metavar="NAME", help="arm to subtract for the contribution (candidate - control)")
    p.add_argument("--mode", choices=_MODES, default="max", help="max: higher is better (default); min: lower is better")
    p.add_argument("--report", metavar="PATH", help="write the markdown report here (default: print it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # argparse exits 2 on usage errors
    try:
        arms = _parse_arms(args.arm)
        candidate = args.candidate or next(iter(arms))
        for name, flag in ((candidate, "--candidate"), (args.control, "--control"), (args.baseline_arm, "--baseline-arm")):
            if name is not None and name not in arms:
                raise GateInputError(f"{flag} {name!r} is not one of the --arm names: {', '.join(arms)}")
        if args.baseline_arm is not None and args.baseline_arm == candidate:
            raise GateInputError(f"--baseline-arm {args.baseline_arm!r} is the candidate itself; name a different arm")
        data = {name: load_arm(path) for name, path in arms.items()}
        values = {name: lookup(d, args.metric, str(arms[name])) for name, d in data.items()}
        baseline = values[args.baseline_arm] if args.baseline_arm is not None else args.baseline
        result = gate(values, baseline, args.margin, candidate, args.control, args.mode)
        report = render_report(result, args.metric, data, arms, args.baseline_arm)
        if args.report:
            write_text(args.report, report)
    except GateInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # e.g. the report folder is not writable
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.report:
        print(result.line(args.metric))
        print(f"report: {args.report}")
    else:
        print(report, end="")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
