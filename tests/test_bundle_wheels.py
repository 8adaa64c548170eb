"""The bundle's dependency wheels (kagglekit.workflow.wheels) and infer.py's missing-package message:
an installed pure-Python distribution repacked into a wheel installs back to the same files; the
dependency closure comes from kagglekit's metadata minus --assume-installed; pip download is tried
first and its failure falls back to repacking only for this interpreter's platform; a missing module
is reported as its package with the bundle's install command."""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kagglekit.workflow import bundle as B
from kagglekit.workflow import wheels as W

PURE = "tqdm"  # a kagglekit dependency installed from a py3-none-any wheel (it also has a console script)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _offline_env() -> dict[str, str]:
    return {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HTTPS_PROXY": "http://0.0.0.0:9"}


def test_repacked_pure_wheel_installs_the_installed_files(tmp_path):
    dist = md.distribution(PURE)
    assert "py3-none-any" in (dist.read_text("WHEEL") or ""), "pick another pure dependency"
    assert PURE in W.dependency_closure()[0]
    wheel = W.repack_installed(PURE, tmp_path / "wheels")
    assert wheel.name == f"{PURE}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:  # the fresh RECORD lists every member with its sha256 and size
        names = set(zf.namelist())
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = [line.split(",") for line in zf.read(record).decode().splitlines()]
        assert {r[0] for r in rows} == names
        for path, digest, size in rows:
            if path != record:
                data = zf.read(path)
                assert digest == W._record_hash(data) and int(size) == len(data), path
    assert not any("__pycache__" in n or n.endswith(".pyc") or n.startswith("..") for n in names)
    target = tmp_path / "target"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    compared = 0
    for f in dist.files:
        rel = Path(*f.parts)
        if f.parts[0] == ".." or "__pycache__" in f.parts or rel.suffix == ".pyc" or f.name in W.SKIP_INFO:
            continue
        assert _sha(target / rel) == _sha(Path(dist.locate_file(f))), rel
        compared += 1
    assert compared > 10
    assert (target / PURE / "__init__.py").exists()


def test_editable_and_uninstalled_dependency_are_refused(monkeypatch):
    with pytest.raises(W.WheelError, match="kagglekit is an editable install"):
        W.repack_installed("kagglekit", Path("/nonexistent"))

    class Fake(md.Distribution):
        def read_text(self, filename):
            return "Metadata-Version: 2.1\nName: fake\nVersion: 1\nRequires-Dist: not-a-package\n" if filename == "METADATA" else None

        def locate_file(self, path):
            return Path(path)
    real = md.distribution
    monkeypatch.setattr(md, "distribution", lambda name: Fake() if name == "fake" else real(name))
    with pytest.raises(W.WheelError, match=r"not-a-package \(required by fake\) is not installed here nor listed in --assume"):
        W.dependency_closure("fake")


def test_closure_follows_metadata_and_skips_assumed(tmp_path):
    full, reached = W.dependency_closure()
    for name in ("numpy", "torch", "timm", "safetensors", "segmentation-models-pytorch", "albumentations", "pandas"):
        assert full[name] == md.version(name), name
    assert "kagglekit" not in full and set(full) == set(reached)
    assert "triton" in full  # transitive: torch's own dependency
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# the target image\ntorch==2.14.1\nNumPy==2.4.6\n-e git+https://x/y#egg=z\n"
                      "pandas @ file:///tmp/pandas.whl\nscipy\n")
    assert W.read_freeze(freeze) == {"torch": "2.14.1", "numpy": "2.4.6", "pandas": "", "scipy": ""}
    part, reached = W.dependency_closure(assumed=W.read_freeze(freeze))
    assert not {"torch", "numpy", "pandas", "scipy", "triton"} & set(part)  # assumed ones and torch's own deps
    assert {"torch", "numpy", "pandas", "scipy"} <= set(reached) and "timm" in part


def test_download_first_then_repack_only_for_this_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip download cannot reach anything
    records = W.collect_wheels(tmp_path / "w", {"six": md.version("six")}, W.WheelOptions())
    assert records == [{"name": "six", "version": md.version("six"), "file": f"six-{md.version('six')}-py2.py3-none-any.whl",
                        "source": W.REPACKED}]
    with pytest.raises(W.WheelError) as err:
        W.collect_wheels(tmp_path / "x", {"six": md.version("six")}, W.WheelOptions(platform="win_amd64"))
    line = next(ln for ln in str(err.value).splitlines() if "six==" in ln)
    assert "pip download failed" in line and "repacking the installed one is not possible" in line and "win_amd64" in line
    assert W.local_target(W.WheelOptions(python_version=f"{sys.version_info[0]}{sys.version_info[1]}"))
    assert not W.local_target(W.WheelOptions(python_version="3.99"))
    found = tmp_path / "links"  # a --find-links folder serves pip download: way (a)
    W.repack_installed("six", found)
    got = W.collect_wheels(tmp_path / "y", {"six": md.version("six")}, W.WheelOptions(find_links=[str(found)]))
    assert got[0]["source"] == W.DOWNLOADED and (tmp_path / "y" / got[0]["file"]).exists()


def _infer_with_missing(bundle: Path, module: str) -> subprocess.CompletedProcess:
    code = f"import sys, runpy; sys.modules[{module!r}] = None; sys.argv = ['infer.py']; " \
           f"runpy.run_path({str(bundle / 'infer.py')!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_missing_module_names_the_package_and_the_install_command(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "infer.py").write_text(B.INFER_PY)
    info = {"wheels": [{"name": "kagglekit", "file": "kagglekit-0-py3-none-any.whl", "source": W.BUILT},
                       {"name": "pyyaml", "file": "pyyaml-6-cp311-cp311-linux_x86_64.whl", "source": W.REPACKED}],
            "requires": ["pyyaml", "numpy", "not-installed-dep"], "modules": {"yaml": "PyYAML", "numpy": "numpy"}}
    (bundle / "wheels.json").write_text(json.dumps(info))
    proc = _infer_with_missing(bundle, "numpy")  # kagglekit.io imports numpy first
    assert proc.returncode == 1 and "package 'numpy' is not installed (No module named 'numpy')" in proc.stderr, proc.stderr
    assert "Not in this bundle" in proc.stderr and "not-installed-dep" in proc.stderr and "numpy" in proc.stderr
    assert "Install from this bundle" not in proc.stderr  # nothing in wheels/ would help: no command to redo
    info["wheels"].append({"name": "numpy", "file": "numpy-2-cp311-cp311-linux_x86_64.whl", "source": W.REPACKED})
    info["wheels"].append({"name": "not-installed-dep", "file": "x.whl", "source": W.REPACKED})
    (bundle / "wheels.json").write_text(json.dumps(info))
    proc = _infer_with_missing(bundle, "numpy")
    assert f"pip install --no-index --find-links {bundle}/wheels not-installed-dep numpy" in proc.stderr, proc.stderr
    assert f"pip install --no-index --no-deps {bundle}/wheels/*.whl" in proc.stderr
    assert "Not in this bundle" not in proc.stderr and "install it offline first" not in proc.stderr
