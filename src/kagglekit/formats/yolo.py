"""YOLO-family dataset descriptors as competitors bring them, independent of any task: which
images make each split, where each image's label file is, and the class names.

Two descriptor styles are read:

- **darknet** (AlexeyAB / pjreddie): ``obj.data`` with ``key = value`` lines (``classes=``,
  ``train=``, ``valid=``, optional ``test=``, ``names=``, ``backup=``; ``#`` comments; other keys
  ignored, as darknet does) and ``obj.names`` (one class name per line). ``train`` / ``valid`` /
  ``test`` are list files (one image path per line) or image folders. Without ``obj.data`` (or
  without ``train=``) every image below ``images/`` (else ``obj/``) is the train split: the flat
  layout ``images/`` + ``labels/`` + ``obj.names``.
- **Ultralytics** ``data.yaml``: ``path`` (dataset root; relative to the YAML's folder), ``train``,
  ``val``, ``test`` (each a folder, a list file, or a list of either; relative to ``path``),
  ``names`` (a list, or an ``{id: name}`` mapping with ids 0..N-1) and optional ``nc``.

Paths are resolved as users of those tools write them: absolute, relative to the descriptor's
folder (a list file's entries: to the list file's folder), to the data root, or to a folder above
(darknet paths are relative to the darknet executable's folder, ``data/obj/x.jpg``); an absolute
path from another machine (``/content/darknet/data/obj/x.jpg``) is found by its tail under those
folders. A label file is ``<stem>.txt`` in the parallel ``labels/`` folder (the last ``images``
folder of the path replaced by ``labels``, the Ultralytics / darknet rule) or beside the image;
an image with neither has no objects.

Every problem raises :class:`~kagglekit.formats.images.FormatError` with one line naming the file
(``file:line`` for list / descriptor lines) and the expected format. Label *lines* are parsed by
the task that reads them (detection: ``tasks/detection/convert.parse_yolo_label``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from kagglekit.formats.images import IMAGE_EXTENSIONS, FormatError

SPLIT_KEYS = {"train": "train", "valid": "val", "val": "val", "test": "test"}  # obj.data / data.yaml key → split
DARKNET_FORMAT = "darknet obj.data: 'key = value' lines (classes=N, train=<list file or folder>, valid=..., names=obj.names)"
YAML_FORMAT = ("Ultralytics data.yaml: path: <root>, train/val/test: <folder | list file | [..]>, "
               "names: [name0, ...] or {0: name0, ...}, nc: N")


class YoloImage(NamedTuple):
    """One image of a split: ``file_name`` (posix, relative to the dataset's ``root`` when inside
    it, else absolute), its path, and its label file (None: no label file, no objects)."""

    file_name: str
    path: Path
    label: Path | None


@dataclass
class YoloDataset:
    """A resolved descriptor: class names in class-id order and, per split present, where its
    images come from (folders and list files, already found on disk)."""

    descriptor: Path  # obj.data, data.yaml or obj.names
    root: Path  # file_names are relative to it
    names: list[str]
    sources: dict[str, list[Path]] = field(default_factory=dict)  # split → folders / list files
    bases: list[Path] = field(default_factory=list)  # where relative list entries are looked for

    @property
    def splits(self) -> list[str]:
        return list(self.sources)

    def images(self, split: str) -> list[YoloImage]:
        """Every image of ``split`` (sorted by file name, duplicates listed once)."""
        if split not in self.sources:
            raise FormatError(f"{self.descriptor}: no {split} split (has {self.splits})")
        found: dict[Path, None] = {}
        for source in self.sources[split]:
            paths = list_image_files(source) if source.is_dir() else read_list_file(source, [source.parent, *self.bases])
            found.update(dict.fromkeys(paths))
        if not found:
            raise FormatError(f"{self.descriptor}: the {split} split ({', '.join(map(str, self.sources[split]))}) "
                              f"has no images ({'/'.join(IMAGE_EXTENSIONS)})")
        items = [YoloImage(_relative(p, self.root), p, label_file(p)) for p in found]
        return sorted(items, key=lambda item: item.file_name)


# ----------------------------------------------------------------------------------- files
def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _text_lines(path: Path, what: str) -> list[str]:
    """The file's lines (UTF-8, BOM and CR/LF tolerated); one-line errors."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FormatError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder; expected the {what}") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text; expected the {what} as text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def list_image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive; hidden files and folders skipped), sorted."""
    if not folder.is_dir():
        raise FormatError(f"{folder}: image folder not found")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def label_file(image: Path) -> Path | None:
    """``labels/<…>/<stem>.txt`` parallel to the last ``images`` folder of the path, else
    ``<stem>.txt`` beside the image; None when neither exists (an image without objects)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parallel = Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
            if parallel.is_file():
                return parallel
            break
    beside = image.with_suffix(".txt")
    return beside if beside.is_file() else None


class _Locator:
    """Finds a path as written in a descriptor / list file: absolute, under one of ``bases``, or by
    its tail under them (the shortest leading part stripped first). Remembers the last rule that
    worked, so a list of thousands of entries written alike costs one lookup each."""

    def __init__(self, bases: Sequence[Path]) -> None:
        self.bases = list(dict.fromkeys(Path(b) for b in bases))
        self.last: tuple[int, Path] | None = None

    def find(self, value: str) -> Path | None:
        path = Path(value)
        if path.is_absolute() and path.exists():
            return path
        parts = path.parts[1:] if path.is_absolute() else path.parts
        if self.last is not None:
            skip, base = self.last
            if skip < len(parts) and (hit := base.joinpath(*parts[skip:])).exists():
                return hit
        for skip in range(len(parts)):
            for base in self.bases:
                if (hit := base.joinpath(*parts[skip:])).exists():
                    self.last = (skip, base)
                    return hit
        return None


def read_list_file(path: Path, bases: Sequence[Path]) -> list[Path]:
    """Image paths of a darknet / Ultralytics list file (one per line, blank lines and ``#``
    comments skipped), each found with :class:`_Locator` (``./x`` is relative to the list file)."""
    locate, out = _Locator(bases), []
    for lineno, line in enumerate(_text_lines(path, "image list file"), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if Path(entry).suffix.lower() not in IMAGE_EXTENSIONS:
            raise FormatError(f"{path}:{lineno}: {entry[:80]!r} is not an image path; a list file holds one "
                              f"{'/'.join(IMAGE_EXTENSIONS)} path per line")
        found = locate.find(entry)
        if found is None:
            raise FormatError(f"{path}:{lineno}: image {entry[:120]!r} not found (looked under "
                              f"{', '.join(map(str, locate.bases))}); fix or remove the line")
        out.append(found)
    return out


def read_names(path: Path) -> list[str]:
    """Class names of ``obj.names`` / ``classes.txt``: one per line, trailing blank lines ignored."""
    lines = [line.strip() for line in _text_lines(path, "class names file (one name per line)")]
    while lines and not lines[-1]:
        lines.pop()
    return check_names(lines, path)


def check_names(names: Sequence[Any], source: Path | str) -> list[str]:
    """Non-empty, unique, single-line string names (numbers written as names are kept as text)."""
    if not names:
        raise FormatError(f"{source}: no class names; expected one name per class id 0..N-1")
    out, seen = [], {}
    for i, name in enumerate(names):
        name = str(name) if isinstance(name, (int, float)) and not isinstance(name, bool) else name
        if not isinstance(name, str) or not name.strip() or "\n" in name:
            raise FormatError(f"{source}: class {i} has no usable name ({str(name)[:40]!r}); every class id needs a name")
        if name in seen:
            raise FormatError(f"{source}: class {i} repeats the name {name!r} of class {seen[name]}; names must be unique")
        seen[name] = i
        out.append(name)
    return out


# ----------------------------------------------------------------------------------- darknet
def parse_obj_data(path: Path) -> dict[str, tuple[str, int]]:
    """``obj.data`` → ``{key: (value, line number)}`` (keys lower-cased)."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(_text_lines(path, DARKNET_FORMAT), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        if "=" not in body:
            raise FormatError(f"{path}:{lineno}: {body[:80]!r} is not a 'key = value' line; expected {DARKNET_FORMAT}")
        key, value = (s.strip() for s in body.split("=", 1))
        out[key.lower()] = (value, lineno)
    return out


def _darknet_names(root: Path, data_file: Path | None, entries: dict[str, tuple[str, int]], locate: _Locator) -> tuple[Path, list[str]]:
    if "names" in entries:
        value, lineno = entries["names"]
        found = locate.find(value)
        if found is None:
            raise FormatError(f"{data_file}:{lineno}: names file {value!r} not found (looked under "
                              f"{', '.join(map(str, locate.bases))})")
        return found, read_names(found)
    for candidate in (root / "obj.names", root / "classes.txt"):
        if candidate.is_file():
            return candidate, read_names(candidate)
    raise FormatError(f"{data_file or root}: no class names: add names=obj.names to obj.data, or put obj.names "
                      "(one class name per line) in the data folder")


def _darknet_flat_folder(root: Path, names_file: Path) -> Path:
    for folder in (root / "images", root / "obj"):
        if folder.is_dir():
            return folder
    raise FormatError(f"{root}: no train split: neither obj.data with train=<list file> nor an images/ (or obj/) "
                      f"folder beside {names_file.name}; expected the darknet layout images/ + labels/ + obj.names")


def read_darknet(root: Path, data_file: Path | str = "") -> YoloDataset:
    """The darknet dataset in ``root``: ``data_file`` (default ``root/obj.data`` when present) or,
    without one, the flat layout ``images/`` (or ``obj/``) + ``labels/`` + ``obj.names``."""
    root = Path(root)
    path = Path(data_file) if data_file else root / "obj.data"
    if data_file and not path.is_absolute():
        path = root / path
    if data_file and not path.is_file():
        raise FormatError(f"{path}: obj.data not found; expected {DARKNET_FORMAT}")
    entries = parse_obj_data(path) if path.is_file() else {}
    data_path = path if path.is_file() else None
    bases = [path.parent, root, *path.parent.parents][:5] if data_path else [root]
    locate = _Locator(bases)
    names_file, names = _darknet_names(root, data_path, entries, locate)
    if "classes" in entries:
        value, lineno = entries["classes"]
        if not value.isdigit() or int(value) != len(names):
            raise FormatError(f"{path}:{lineno}: classes={value} but {names_file} has {len(names)} names; make them agree")
    sources: dict[str, list[Path]] = {}
    for key in ("train", "valid", "test"):
        if key in entries:
            value, lineno = entries[key]
            found = locate.find(value)
            if found is None:
                raise FormatError(f"{path}:{lineno}: {key}={value!r} not found (looked under "
                                  f"{', '.join(map(str, locate.bases))}); expected a list file or an image folder")
            sources[SPLIT_KEYS[key]] = [found]
    if "train" not in sources:
        sources = {"train": [_darknet_flat_folder(root, names_file)], **sources}
    return YoloDataset(data_path or names_file, root, names, sources, bases)


# ----------------------------------------------------------------------------------- Ultralytics
def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML: a dependency of albumentations / huggingface_hub
    text = "\n".join(_text_lines(path, YAML_FORMAT))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise FormatError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__}); "
                          f"expected {YAML_FORMAT}") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: top level is not a mapping; expected {YAML_FORMAT}")
    return data


def yaml_names(data: dict[str, Any], path: Path) -> list[str]:
    """``names`` as a list or an ``{id: name}`` mapping (ids 0..N-1), checked against ``nc``."""
    value = data.get("names")
    if isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or sorted(keys) != list(range(len(keys))):
            raise FormatError(f"{path}: names mapping keys {keys[:10]} must be the class ids 0..{len(keys) - 1}")
        value = [value[k] for k in range(len(keys))]
    if not isinstance(value, list):
        raise FormatError(f"{path}: 'names' missing or a {type(value).__name__}; expected {YAML_FORMAT}")
    names = check_names(value, path)
    nc = data.get("nc")
    if nc is not None and (not isinstance(nc, int) or nc != len(names)):
        raise FormatError(f"{path}: nc: {nc} but {len(names)} names; make them agree")
    return names


def read_ultralytics(path: Path | str) -> YoloDataset:
    """An Ultralytics ``data.yaml``: splits from ``train`` / ``val`` / ``test`` under ``path``."""
    path = Path(path)
    data = _load_yaml(path)
    names = yaml_names(data, path)
    root_value = data.get("path")
    if root_value is not None and not isinstance(root_value, str):
        raise FormatError(f"{path}: 'path' must be a folder, got {type(root_value).__name__}; expected {YAML_FORMAT}")
    root = Path(root_value) if root_value else path.parent
    if not root.is_absolute():
        found = _Locator([path.parent, Path.cwd()]).find(root_value)
        root = found if found is not None and found.is_dir() else path.parent / root_value
    if not root.is_dir():
        raise FormatError(f"{path}: path: {root_value!r} is not a folder (resolved to {root})")
    bases = [root, path.parent]
    locate, sources = _Locator(bases), {}
    for key in ("train", "val", "test"):
        value = data.get(key)
        if value in (None, "", []):
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in entries):
            raise FormatError(f"{path}: '{key}' must be a folder, a list file or a list of them; expected {YAML_FORMAT}")
        resolved = []
        for entry in entries:
            found = locate.find(entry)
            if found is None:
                raise FormatError(f"{path}: {key}: {entry!r} not found under {root}; expected a folder or a list file")
            resolved.append(found)
        sources[key] = resolved
    if "train" not in sources:
        raise FormatError(f"{path}: no 'train' key; expected {YAML_FORMAT}")
    return YoloDataset(path, root, names, sources, bases)
