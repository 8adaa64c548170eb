"""Dependency wheels for ``kagglekit bundle``: the bundle's ``wheels/`` holds kagglekit's wheel plus a
wheel of every distribution inference needs (kagglekit's runtime ``Requires-Dist``, transitively, read
from :mod:`importlib.metadata`), minus what the target image already has (``--assume-installed FILE``,
a ``pip freeze`` / ``pip list --format=freeze`` of the target).

Each wheel is obtained, in this order:

a. ``pip download --no-deps --only-binary=:all: [--platform P --python-version X.Y] name==version``
   (the target platform / Python; ``--find-links`` / index settings passed through);
b. offline, only when the target is this interpreter: the INSTALLED distribution repacked into a wheel
   (its ``RECORD`` files under their site-packages-relative paths + its ``.dist-info``, a fresh
   ``RECORD`` with sha256 + sizes, PEP 376/427; ``__pycache__``/``.pyc`` and files outside
   site-packages such as console scripts — pip regenerates those from ``entry_points.txt`` — are left
   out). Editable installs are refused.

A package neither way produces is an error naming it and both attempts.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

ROOT = "kagglekit"
DOWNLOADED, REPACKED, BUILT = "pip download", "repacked from the installed distribution", "built from the source checkout"
SKIP_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "RECORD.jws", "RECORD.p7s"}


class WheelError(RuntimeError):
    """A dependency wheel cannot be produced (the message names the package and what was tried)."""


@dataclass
class WheelOptions:
    """Where the target runs and how to fetch its wheels (``kagglekit bundle`` flags)."""
    assume_installed: Path | None = None  # pip freeze of the target: these are not bundled
    platform: str | None = None  # pip --platform tag (default: this interpreter's)
    python_version: str | None = None  # X.Y (default: this interpreter's)
    find_links: list[str] = field(default_factory=list)
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    download: bool = True  # False: skip pip download (repack only)


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(path: Path) -> dict[str, str]:
    """``pip freeze`` / ``pip list --format=freeze`` lines → {canonical name: version ('' if unpinned)}."""
    out: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:===?\s*([^\s;]+))?", line)
        if match:
            out[canonical(match.group(1))] = match.group(2) or ""
    return out


def _requirements(dist: md.Distribution, extras: Iterable[str]) -> list[Any]:
    """The distribution's Requires-Dist whose markers hold here (base + the given extras)."""
    from packaging.requirements import Requirement
    reqs = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            reqs.append(req)
    return reqs


def dependency_closure(root: str = ROOT, assumed: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """kagglekit's runtime dependencies, transitively, as installed here → ({canonical name: version}
    to bundle, every dependency name reached, the assumed ones included). Packages in ``assumed`` are
    neither bundled nor followed (the target image has them and their own dependencies)."""
    assumed = assumed or {}
    bundle: dict[str, str] = {}
    reached: list[str] = []
    todo: list[tuple[str, str, tuple[str, ...]]] = [(root, "", ())]
    seen: set[tuple[str, str]] = set()
    while todo:
        name, parent, extras = todo.pop(0)
        key = canonical(name)
        if key != canonical(root) and key not in reached:
            reached.append(key)
        if key in assumed and key != canonical(root):
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise WheelError(f"{name} (required by {parent}) is not installed here nor listed in --assume-installed: "
                             f"install it (pip install {name}) before bundling") from None
        if key != canonical(root):
            bundle.setdefault(key, dist.version)
        for extra in ("", *extras):
            if (key, extra) in seen:
                continue
            seen.add((key, extra))
            for req in _requirements(dist, (extra,) if extra else ()):
                todo.append((req.name, dist.metadata["Name"], tuple(sorted(req.extras))))
    return bundle, reached


def module_owners(names: Iterable[str]) -> dict[str, str]:
    """{top-level module: distribution} for the given distributions (what infer.py names when an import fails)."""
    wanted = {canonical(n) for n in names}
    return {module: dists[0] for module, dists in sorted(md.packages_distributions().items())
            if dists and canonical(dists[0]) in wanted and module.isidentifier()}


def local_target(opts: WheelOptions) -> bool:
    """True when the target platform / Python is this interpreter (installed distributions can be repacked)."""
    if opts.python_version and _xy(opts.python_version) != f"{sys.version_info[0]}.{sys.version_info[1]}":
        return False
    if not opts.platform:
        return True
    try:
        from packaging.tags import sys_tags
        platforms = {t.platform for t in sys_tags()}
    except ImportError:
        platforms = set()
    return opts.platform.replace("-", "_").replace(".", "_") in platforms | {here_platform()}


def _xy(version: str) -> str:
    return version if "." in version else f"{version[0]}.{version[1:]}"


def here_platform() -> str:
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def pip_download(name: str, version: str, dst: Path, opts: WheelOptions) -> tuple[Path | None, str]:
    """Way (a): ``pip download`` of one pinned wheel into ``dst`` → (wheel, '') or (None, why not)."""
    if not opts.download:
        return None, "pip download skipped (--no-download)"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "15"]
    if opts.platform:
        cmd += ["--platform", opts.platform]
    if opts.python_version:
        cmd += ["--python-version", _xy(opts.python_version)]
    cmd += [a for link in opts.find_links for a in ("--find-links", link)]
    cmd += ["--index-url", opts.index_url] if opts.index_url else []
    cmd += [a for url in opts.extra_index_urls for a in ("--extra-index-url", url)]
    with tempfile.TemporaryDirectory(prefix="kagglekit-dl-") as tmp:
        proc = subprocess.run([*cmd, "-d", tmp, f"{name}=={version}"], capture_output=True, text=True)
        got = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(got) != 1:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            return None, f"pip download failed ({lines[-1].strip() if lines else f'exit {proc.returncode}'})"
        dst.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(got[0]), dst / got[0].name)), ""


def _dist_info(dist: md.Distribution) -> str:
    """The ``<name>-<version>.dist-info`` folder of an installed distribution (relative to site-packages)."""
    for f in dist.files or []:
        if f.name == "METADATA" and len(f.parts) == 2 and f.parts[0].endswith(".dist-info"):
            return f.parts[0]
    raise WheelError(f"{dist.metadata['Name']}: no .dist-info among its installed files (an egg/legacy install)")


def wheel_name(dist: md.Distribution) -> str:
    """PEP 427 file name from the installed ``WHEEL`` tags (compressed tag sets, e.g. ``py2.py3-none-any``)."""
    text = dist.read_text("WHEEL") or ""
    tags = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Tag:")]
    if not tags:
        raise WheelError(f"{dist.metadata['Name']}: its .dist-info has no WHEEL tags (not installed from a wheel)")
    parts = [list(dict.fromkeys(t.split("-")[i] for t in tags)) for i in range(3)]
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    return f"{name}-{dist.version.replace('-', '_')}-{'-'.join('.'.join(p) for p in parts)}.whl"


def _editable(dist: md.Distribution) -> bool:
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return False
    return bool(info.get("dir_info", {}).get("editable"))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack_installed(name: str, dst: Path) -> Path:
    """Way (b): the installed distribution ``name`` → ``dst/<wheel name>``, a wheel pip installs back to the
    same files (site-packages-relative paths, a fresh RECORD; no bytecode, nothing outside site-packages)."""
    dist = md.distribution(name)
    if _editable(dist):
        raise WheelError(f"{name} is an editable install: build its wheel from the source (pip wheel --no-deps)")
    if dist.files is None:
        raise WheelError(f"{name}: no RECORD of its installed files")
    info, out = _dist_info(dist), Path(dst) / wheel_name(dist)
    rows: list[tuple[str, str, str]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(dist.files, key=lambda p: (p.parts[0] == info, str(p))):  # dist-info last (PEP 427)
            rel = PurePosixPath(*f.parts)
            if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
                continue
            if rel.parts[0] == info and rel.name in SKIP_INFO:
                continue
            src = Path(dist.locate_file(f))
            if not src.is_file():
                continue
            data = src.read_bytes()
            entry = zipfile.ZipInfo(str(rel), date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr, entry.compress_type = (src.stat().st_mode & 0xFFFF) << 16, zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
            rows.append((str(rel), _record_hash(data), str(len(data))))
        rows.append((f"{info}/RECORD", "", ""))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    return Path(shutil.move(str(tmp), out))


def collect_wheels(dst: Path, packages: Mapping[str, str], opts: WheelOptions) -> list[dict[str, str]]:
    """A wheel per ``{name: version}`` into ``dst``, pip download first, repacking second →
    ``[{name, version, file, source}]``; every package neither way produced → one WheelError line each."""
    records, failures = [], []
    repack_ok = local_target(opts)
    for name, version in sorted(packages.items()):
        wheel, why = pip_download(name, version, dst, opts)
        source = DOWNLOADED
        if wheel is None and repack_ok:
            source = REPACKED
            try:
                wheel = repack_installed(name, dst)
            except WheelError as exc:
                why += f"; repacking the installed one failed ({exc})"
        elif wheel is None:
            why += (f"; repacking the installed one is not possible (target {opts.platform or here_platform()} / "
                    f"Python {opts.python_version or sys.version.split()[0]} is not this interpreter)")
        if wheel is None:
            failures.append(f"{name}=={version}: no wheel: {why}")
        else:
            records.append({"name": name, "version": version, "file": wheel.name, "source": source})
    if failures:
        raise WheelError("cannot produce every dependency wheel:\n  " + "\n  ".join(failures)
                         + "\n(pass --find-links DIR / --index-url URL with the wheels, or target this interpreter)")
    return records
