"""``python -m kagglekit <command>`` (also the ``kagglekit`` console script).

Commands: download, folds, status, validate, submit, ledger, finish, compare, bundle. ``--help`` works without
Kaggle credentials: the ``kaggle`` package is imported only by the commands that call the API.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

COMMANDS = ("download", "folds", "status", "validate", "submit", "ledger", "finish", "compare")


def _add_download(sub: Any) -> None:
    p = sub.add_parser("download", help="download + unzip competition files into input/<COMP>/")
    p.add_argument("competition", metavar="COMP", help="competition slug, e.g. nyu-depth-v2")
    p.add_argument("--dest", help="target folder (default: input/<COMP>)")
    p.add_argument("--keep-zip", action="store_true", help="keep the downloaded archive after extracting")


def _add_folds(sub: Any) -> None:
    from kagglekit.cv import STRATEGIES  # noqa: PLC0415

    p = sub.add_parser("folds", help="write input/<COMP>/folds.csv (write-once)")
    p.add_argument("--comp", required=True, help="competition folder name under input/")
    p.add_argument("--csv", help="training CSV (default: input/<COMP>/train.csv)")
    p.add_argument("--id", required=True, help="id column")
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--y", nargs="+", help="class column (or label columns for multilabel_stratified)")
    p.add_argument("--groups", help="group column (group, stratified_group)")
    p.add_argument("--n-splits", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="folds file (default: input/<COMP>/folds.csv)")


def _add_status_ledger(sub: Any) -> None:
    p = sub.add_parser("status", help="markdown table of experiments / folds under output/")
    p.add_argument("--output", help="output root (default: output/)")
    p.add_argument("--exp", help="only this experiment (name or path relative to --output)")
    p = sub.add_parser("ledger", help="upsert output/ledger.csv + ledger.md (CV vs public LB)")
    p.add_argument("--lb", type=float, help="public LB score of --submission")
    p.add_argument("--submission", help="submission file the --lb score belongs to")
    p.add_argument("--output", help="output root (default: output/)")


def _submission_source(p: Any) -> None:
    """Where the format comes from: an experiment (``--exp``: its task, test ids and sizes) or a
    sample submission (``--sample``, per-image formats); both: the sample is the experiment's reference."""
    p.add_argument("--exp", help="experiment or ensemble name under --output: validate with its task's format")
    p.add_argument("--sample", help="the competition's sample_submission.csv")
    p.add_argument("--image-shape", nargs=2, type=int, metavar=("H", "W"), help="RLE image shape (with --sample)")
    p.add_argument("--output", help="output root holding the experiment and ledger.csv (default: output/)")


def _add_validate_submit(sub: Any) -> None:
    p = sub.add_parser("validate", help="validate a submission CSV (--exp NAME or --sample FILE)")
    p.add_argument("submission", metavar="SUBMISSION")
    _submission_source(p)
    p = sub.add_parser("submit", help="validate, then kaggle competitions submit (ledger records it)")
    p.add_argument("submission", metavar="SUBMISSION")
    p.add_argument("-c", "--competition", required=True)
    p.add_argument("-m", "--message", required=True)
    _submission_source(p)
    p.add_argument("--dry-run", action="store_true", help="print the kaggle command line, send nothing")
    p = sub.add_parser("score", help="score a submission against held-out labels with the experiment's metric")
    p.add_argument("submission", metavar="SUBMISSION")
    p.add_argument("--exp", required=True, help="experiment or ensemble name: its task's format and metric")
    p.add_argument("--solution", required=True,
                   help="held-out labels (segmentation: mask folder or RLE CSV; behaviour: MABe solution CSV or "
                        "data folder; multilabel: labels CSV; detection / keypoints: COCO JSON)")
    p.add_argument("--output", help="output root holding the experiment (default: output/)")
    p = sub.add_parser("finish", help="re-run only the experiment epilogue (all folds done): CV, submission, report")
    p.add_argument("experiment", metavar="EXP")
    p.add_argument("--output", help="output root holding EXP (default: output/)")


def _add_compare(sub: Any) -> None:
    from kagglekit.workflow.compare import add_arguments  # noqa: PLC0415

    p = sub.add_parser("compare", help="output/compare.md + PNGs: CV per fold, CV vs LB, per class, OOF "
                                       "correlation, config diffs (--diff A B: print one diff)")
    add_arguments(p)


def _handler(command: str) -> Any:
    """``cmd_<command>``: ``compare`` from its own module, the others from workflow.commands."""
    if command == "compare":
        from kagglekit.workflow.compare import cmd_compare  # noqa: PLC0415
        return cmd_compare
    from kagglekit.workflow import commands  # noqa: PLC0415
    return getattr(commands, f"cmd_{command}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kagglekit", description="Kaggle competition workflow commands.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_download(sub)
    _add_folds(sub)
    _add_status_ledger(sub)
    _add_validate_submit(sub)
    _add_compare(sub)
    sub.add_parser("bundle", help="offline bundle (kagglekit.workflow.bundle; `bundle --help` for its flags)",
                   add_help=False)
    return parser


def _run_bundle(rest: list[str]) -> int:
    try:
        from kagglekit.workflow import bundle  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name != "kagglekit.workflow.bundle":
            raise
        print("kagglekit bundle: module kagglekit.workflow.bundle is not installed in this checkout "
              "(src/kagglekit/workflow/bundle.py missing)", file=sys.stderr)
        return 2
    add_arguments = getattr(bundle, "add_arguments", None)
    if add_arguments is None:  # a bundle.main that parses its own argv
        return int(bundle.main(rest) or 0)
    parser = argparse.ArgumentParser(prog="kagglekit bundle", description="Pack experiments into an offline bundle.")
    add_arguments(parser)
    return int(bundle.main(parser.parse_args(rest)) or 0)


def main(argv: Sequence[str] | None = None, *, api: Any = None) -> int:
    """Entry point; ``api`` injects a Kaggle API object (tests) instead of ``kaggle.api``."""
    from kagglekit.workflow import commands  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bundle":  # its own flags are parsed by bundle.main
        return _run_bundle(argv[1:])
    args = build_parser().parse_args(argv)
    handler = _handler(args.command)
    try:
        return handler(args, api=api)
    except (commands.KaggleCredentialsError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"kagglekit {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
