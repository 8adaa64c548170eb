"""Pre-flight checks: one fast pass over the files a fold will read, before anything is written.

Each task's ``preflight(fold)`` returns a list of problems (one line each: the file, what is
wrong, how to fix it; empty = all readable); :func:`kagglekit.experiment.runner.run_fold` turns a non-empty
list into one error naming all of them. The helpers here are shared by the tasks' checks; they
read headers (image size and mode, PNG chunk CRCs via ``verify()``), never whole datasets.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from PIL import Image, UnidentifiedImageError

T = TypeVar("T")
IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
ALL_MISSING_COLLAPSE = 20  # more missing files than this, and all of a source's: one line for the folder


def image_header(path: Path) -> tuple[tuple[int, int], str]:
    """((width, height), PIL mode) of an image file after ``verify()`` (structure and, for PNG, the
    chunk checksums); raises FileNotFoundError or one of :data:`IMAGE_ERRORS`."""
    with Image.open(path) as im:
        size, mode = im.size, im.mode
        im.verify()
    return size, mode


def image_problem(path: Path, what: str, fix: str) -> str | None:
    """None when ``path`` is a readable image, else one problem line naming it."""
    path = Path(path)
    if not path.is_file():
        return f"{path}: {what} file not found; {fix}"
    try:
        image_header(path)
    except IMAGE_ERRORS as exc:
        return f"{path}: cannot decode {what} ({type(exc).__name__}: {exc}); the file is corrupt or truncated, {fix}"
    return None


def parallel_map(fn: Callable[[T], object], items: Iterable[T], workers: int = 8) -> list:
    """``[fn(x) for x in items]`` in order, on a few threads (file headers: I/O bound)."""
    items = list(items)
    if len(items) < 16:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def image_problems(paths: Sequence[Path], what: str, fix: str, source: str) -> list[str]:
    """Problems of every image in ``paths``. When all of them are missing (and there are many),
    one line for the folder instead of one per file: the folder or ``image_dir`` is wrong."""
    paths = [Path(p) for p in paths]
    problems = [p for p in parallel_map(lambda p: image_problem(p, what, fix), paths) if p is not None]
    missing = sum(not p.is_file() for p in paths)
    if len(paths) > ALL_MISSING_COLLAPSE and missing == len(paths):
        folders = sorted({str(p.parent) for p in paths})
        return [f"all {len(paths)} {what} files listed by {source} are missing (looked in {', '.join(folders[:3])}"
                f"{' ...' if len(folders) > 3 else ''}, e.g. {paths[0].name}); {fix}"]
    return problems


def preflight_message(problems: Sequence[str], what: str, fold_dir: Path) -> str:
    """The one error of a failed pre-flight: the count, then every problem on its own line."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return (f"pre-flight check of {what} found {len(problems)} problem(s) in its input files; nothing was "
            f"written to {fold_dir}. Fix them and run again:\n{lines}")
