"""YOLO <-> COCO converters (kagglekit.tasks.detection.convert) and the shapes demo set."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import require_shared
from kagglekit.demo.shapes import CLASSES, make_shapes_dataset
from kagglekit.io import save_json
from kagglekit.tasks.detection.convert import (
    LabelError, coco_to_yolo, export_coco_splits, load_coco, parse_yolo_label, read_class_names,
    read_split_file, validate_coco, write_split_file, yolo_dataset_to_coco, yolo_to_coco)


def _boxes_by_file(coco: dict, include_crowd: bool = False) -> dict[str, list[tuple[int, list[float]]]]:
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    out: dict[str, list] = {name: [] for name in names.values()}
    for ann in coco["annotations"]:
        if include_crowd or not ann.get("iscrowd", 0):
            out[names[ann["image_id"]]].append((ann["category_id"], [float(v) for v in ann["bbox"]]))
    return out


def _tiny_dataset(tmp: Path, labels: dict[str, str], size: tuple[int, int] = (40, 30)) -> tuple[Path, Path]:
    """images/ with one PNG (w, h) = size per key, labels/ with the given texts (None -> no file)."""
    images, lab = tmp / "images", tmp / "labels"
    images.mkdir(parents=True, exist_ok=True)
    lab.mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        Image.new("RGB", size).save(images / f"{stem}.png")
        if text is not None:
            (lab / f"{stem}.txt").write_text(text)
    return images, lab


# ----------------------------------------------------------------------------------- real data
def test_coco128_round_trip(tmp_path):
    root = require_shared("coco128")
    original = load_coco(root / "annotations" / "instances_train2017.json")
    assert len(original["images"]) == 128 and len(original["categories"]) == 80

    stats = coco_to_yolo(original, tmp_path / "labels", names_path=tmp_path / "classes.txt")
    cat_ids = sorted(c["id"] for c in original["categories"])
    n_crowd = sum(a["iscrowd"] for a in original["annotations"])
    assert n_crowd == 10
    assert stats == {"images": 128, "boxes": len(original["annotations"]) - n_crowd,
                     "crowd_skipped": n_crowd, "category_ids": cat_ids}
    assert cat_ids[-1] == 90 and cat_ids != list(range(1, 81))  # COCO ids have gaps
    assert len(list((tmp_path / "labels").glob("*.txt"))) == 128
    names = read_class_names(tmp_path / "classes.txt")
    assert names == [next(c["name"] for c in original["categories"] if c["id"] == i) for i in cat_ids]

    back = yolo_to_coco(root / "train2017", tmp_path / "labels", tmp_path / "classes.txt",
                        category_ids=stats["category_ids"])
    validate_coco(back)
    size = {im["file_name"]: (im["width"], im["height"]) for im in original["images"]}
    assert {im["file_name"]: (im["width"], im["height"]) for im in back["images"]} == size
    assert [im["id"] for im in back["images"]] == list(range(1, 129))
    assert {c["id"]: c["name"] for c in back["categories"]} == {c["id"]: c["name"] for c in original["categories"]}
    a, b = _boxes_by_file(original), _boxes_by_file(back)
    assert a.keys() == b.keys()
    assert sum(not v for v in a.values()) == 2  # two images without any annotation -> empty label files
    for name in a:
        assert [c for c, _ in a[name]] == [c for c, _ in b[name]], name
        np.testing.assert_allclose(np.reshape([box for _, box in b[name]], (-1, 4)),
                                   np.reshape([box for _, box in a[name]], (-1, 4)), rtol=0, atol=1e-6, err_msg=name)
    for ann in back["annotations"]:
        assert ann["area"] == pytest.approx(ann["bbox"][2] * ann["bbox"][3]) and ann["iscrowd"] == 0


def test_coco128_include_crowd_and_json_round_trip(tmp_path):
    root = require_shared("coco128")
    original = load_coco(root / "annotations" / "instances_train2017.json")
    stats = coco_to_yolo(original, tmp_path / "labels", include_crowd=True)
    assert stats["crowd_skipped"] == 0 and stats["boxes"] == len(original["annotations"])
    back = yolo_to_coco(root / "train2017", tmp_path / "labels", [c["name"] for c in sorted(
        original["categories"], key=lambda c: c["id"])], category_ids=stats["category_ids"])
    save_json(tmp_path / "back.json", back)
    assert load_coco(tmp_path / "back.json") == back


# ----------------------------------------------------------------------------------- shapes demo
def test_shapes_dataset_to_coco(tmp_path):
    root = make_shapes_dataset(tmp_path / "a", n_train=12, n_val=4, n_test=4, seed=3)
    assert read_class_names(root / "classes.txt") == list(CLASSES)
    assert read_class_names(root / "data.yaml") == list(CLASSES)
    written = export_coco_splits(root, root / "classes.txt")
    assert set(written) == {"train", "val", "test"}
    total_empty = 0
    for split, path in written.items():
        coco = load_coco(path)
        assert coco == yolo_dataset_to_coco(root, split, list(CLASSES))
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert len(coco["images"]) == len(labels) == {"train": 12, "val": 4, "test": 4}[split]
        n_lines = sum(len(p.read_text().splitlines()) for p in labels)
        assert len(coco["annotations"]) == n_lines
        images = {im["id"]: im for im in coco["images"]}
        for im in coco["images"]:
            assert (im["height"], im["width"]) == (160, 224)
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            im = images[ann["image_id"]]
            assert 12 - 1e-9 <= w <= 70 + 1e-9 and abs(w - h) < 1e-9  # objects are 12-70 px, square boxes
            assert x >= -1e-9 and y >= -1e-9 and x + w <= im["width"] + 1e-9 and y + h <= im["height"] + 1e-9
            assert ann["category_id"] in (1, 2, 3)
        total_empty += sum(1 for p in labels if not p.read_text().strip())
        assert not (root / "labels" / split / labels[-1].name).read_text()  # last image of a split: no objects
    assert total_empty >= 3


def test_shapes_deterministic_and_reused(tmp_path):
    kw = dict(n_train=6, n_val=2, n_test=0, size=(64, 96), seed=7, max_objects=3)
    a = make_shapes_dataset(tmp_path / "a", **kw)
    b = make_shapes_dataset(tmp_path / "b", **kw)
    c = make_shapes_dataset(tmp_path / "c", **{**kw, "seed": 8})
    assert not (a / "images" / "test").exists()
    assert set(export_coco_splits(a, a / "classes.txt")) == {"train", "val"}
    files = sorted(p.relative_to(a) for p in (a / "images").rglob("*.png"))
    assert len(files) == 8
    for rel in files + sorted(p.relative_to(a) for p in (a / "labels").rglob("*.txt")):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert yolo_dataset_to_coco(a, "train", CLASSES) == yolo_dataset_to_coco(b, "train", CLASSES)
    assert yolo_dataset_to_coco(a, "train", CLASSES) != yolo_dataset_to_coco(c, "train", CLASSES)
    stamp = {p: p.stat().st_mtime_ns for p in a.rglob("*")}
    assert make_shapes_dataset(a, **kw) == a  # complete -> returned untouched
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*")} == stamp
    with pytest.raises(ValueError, match="other parameters"):
        make_shapes_dataset(a, **{**kw, "seed": 9})
    (a / "images" / "train" / "shape_00002.png").unlink()  # incomplete -> regenerated
    make_shapes_dataset(a, **kw)
    assert (a / "images" / "train" / "shape_00002.png").read_bytes() == \
        (b / "images" / "train" / "shape_00002.png").read_bytes()


# ----------------------------------------------------------------------------------- label errors
@pytest.mark.parametrize("line, needle", [
    ("0 0.5 0.5 0.2", "4 fields"),
    ("0 0.5 0.5 0.2 0.2 0.3 0.3", "YOLO-seg"),
    ("0 abc 0.5 0.2 0.2", "'abc' is not a number"),
    ("cat 0.5 0.5 0.2 0.2", "'cat' is not a number"),
    ("0 nan 0.5 0.2 0.2", "not a finite number"),
    ("0 0.5 inf 0.2 0.2", "not a finite number"),
    ("3 0.5 0.5 0.2 0.2", "class id '3'"),
    ("-1 0.5 0.5 0.2 0.2", "class id '-1'"),
    ("1.5 0.5 0.5 0.2 0.2", "class id '1.5'"),
    ("0 1.2 0.5 0.2 0.2", "cx=1.2"),
    ("0 0.5 -0.1 0.2 0.2", "cy=-0.1"),
    ("0 0.5 0.5 0 0.2", "w=0.0"),
    ("0 0.5 0.5 0.2 1.5", "h=1.5"),
    ("0 0.95 0.5 0.2 0.2", "outside the image"),
    ("0 0.5 0.5 1.00001 0.2", "w=1.00001"),
])
def test_bad_label_line_names_file_and_line(tmp_path, line, needle):
    path = tmp_path / "img_042.txt"
    path.write_text(f"1 0.5 0.5 0.2 0.2\n\n{line}\n")
    with pytest.raises(LabelError) as err:
        parse_yolo_label(path, n_classes=3)
    assert "img_042.txt:3:" in str(err.value) and needle in str(err.value)


def test_parse_valid_labels(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf2 0.5 0.5 1 1\r\n0 .25 0.25e0 0.5 0.5\r\n\r\n1.0 0.5 0.5 1.0000005 1e-3\n")
    boxes = parse_yolo_label(path, 3)
    assert boxes.dtype == np.float64 and boxes.shape == (3, 5)
    np.testing.assert_array_equal(boxes[:, 0], [2, 0, 1])
    assert boxes[2, 3] == 1.0000005  # within the 1e-6 tolerance, kept as written (not clipped)
    path.write_text("")
    assert parse_yolo_label(path, 3).shape == (0, 5)
    path.write_text("\n  \n")
    assert parse_yolo_label(path, 3).shape == (0, 5)
    path.write_bytes(b"0 0.5 0.5 \xff 0.2\n")
    with pytest.raises(LabelError, match="a.txt: not UTF-8"):
        parse_yolo_label(path, 3)
    with pytest.raises(LabelError, match="not found"):
        parse_yolo_label(tmp_path / "missing.txt", 3)


def test_label_without_image_and_image_without_label(tmp_path):
    images, labels = _tiny_dataset(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": None, "c": ""})
    (labels / "classes.txt").write_text("x\n")  # LabelImg keeps classes.txt beside the labels: tolerated
    coco = yolo_to_coco(images, labels, ["x"])
    assert [im["file_name"] for im in coco["images"]] == ["a.png", "b.png", "c.png"]
    assert len(coco["annotations"]) == 1
    assert coco["annotations"][0]["bbox"] == [10.0, 7.5, 20.0, 15.0]
    assert coco["annotations"][0]["area"] == 300.0
    (labels / "ghost.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(LabelError, match=r"ghost\.txt: label file without an image"):
        yolo_to_coco(images, labels, ["x"])


def test_yolo_to_coco_errors_name_the_label_file(tmp_path):
    images, labels = _tiny_dataset(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": "0 0.5 0.5 0.5 0.5\n1 .5 .5 .1 .1\n"})
    with pytest.raises(LabelError, match=r"b\.txt:2: class id '1'"):
        yolo_to_coco(images, labels, ["only"])
    Image.new("RGB", (4, 4)).save(images / "a.jpg")  # a.png and a.jpg would share a.txt
    with pytest.raises(LabelError, match="share the label file"):
        yolo_to_coco(images, labels, ["x", "y"])
    with pytest.raises(LabelError, match="image folder not found"):
        yolo_to_coco(tmp_path / "nope", labels, ["x", "y"])
    (images / "a.jpg").unlink()
    (images / "c.jpg").write_bytes(b"not an image")
    with pytest.raises(LabelError, match=r"c\.jpg: cannot read as an image"):
        yolo_to_coco(images, labels, ["x", "y"])


# ----------------------------------------------------------------------------------- COCO errors
def _coco() -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                       {"id": 2, "file_name": "sub/b.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 10], "iscrowd": 0},
                            {"id": 6, "image_id": 1, "category_id": 7, "bbox": [0, 0, 100, 50], "iscrowd": 0},
                            {"id": 7, "image_id": 2, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 1}],
            "categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}]}


@pytest.mark.parametrize("mutate, needle", [
    (lambda c: c["images"].append({"id": 2, "file_name": "c.jpg", "width": 5, "height": 5}), "duplicate image id 2"),
    (lambda c: c["annotations"].append({**c["annotations"][0]}), "duplicate annotation id 5"),
    (lambda c: c["categories"].append({"id": 3, "name": "z"}), "duplicate category id 3"),
    (lambda c: c["annotations"][1].update(category_id=4), "annotation id 6 refers to unknown category_id 4"),
    (lambda c: c["annotations"][1].update(image_id=99), "annotation id 6 refers to unknown image_id 99"),
    (lambda c: c["annotations"][1].update(image_id=True), "annotation id 6 refers to unknown image_id True"),
    (lambda c: c.pop("categories"), "missing key(s) ['categories']"),
    (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "annotation id 5: bbox [1, 2, 3]"),
    (lambda c: c["images"][0].update(width=0), "image id 1 (a.jpg): 'width' 0"),
    (lambda c: c["images"][1].pop("id"), "images[1] has no 'id'"),
])
def test_bad_coco_json_names_file_and_id(tmp_path, mutate, needle):
    coco = _coco()
    mutate(coco)
    path = tmp_path / "instances_bad.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(LabelError) as err:
        load_coco(path)
    assert "instances_bad.json" in str(err.value) and needle in str(err.value)


def test_load_coco_not_json(tmp_path):
    path = tmp_path / "instances_x.json"
    path.write_text('{"images": [')
    with pytest.raises(LabelError, match=r"instances_x\.json: not valid JSON"):
        load_coco(path)
    path.write_text("[1, 2]")
    with pytest.raises(LabelError, match="top level must be a JSON object"):
        load_coco(path)


def test_coco_to_yolo_small(tmp_path):
    stats = coco_to_yolo(_coco(), tmp_path / "labels", names_path=tmp_path / "classes.txt")
    assert stats == {"images": 2, "boxes": 2, "crowd_skipped": 1, "category_ids": [3, 7]}
    assert read_class_names(tmp_path / "classes.txt") == ["a", "b"]
    assert (tmp_path / "labels" / "a.txt").read_text() == "0 0.2 0.2 0.2 0.2\n1 0.5 0.5 1.0 1.0\n"
    assert (tmp_path / "labels" / "sub" / "b.txt").read_text() == ""  # only a crowd box -> empty file
    coco_to_yolo(_coco(), tmp_path / "crowd", include_crowd=True)
    assert (tmp_path / "crowd" / "sub" / "b.txt").read_text() == "0 0.2 0.2 0.2 0.2\n"


def test_coco_to_yolo_box_outside_image_is_an_error_not_clipped(tmp_path):
    coco = _coco()
    coco["annotations"][1]["bbox"] = [0, 0, 100.5, 50]
    with pytest.raises(LabelError, match=r"annotation id 6 \(image a\.jpg, 100x50\).*not clipped"):
        coco_to_yolo(coco, tmp_path / "labels")
    assert not (tmp_path / "labels").exists()  # validated before anything is written
    coco["annotations"][1]["bbox"] = [-3, 0, 10, 10]
    with pytest.raises(LabelError, match="annotation id 6"):
        coco_to_yolo(coco, tmp_path / "labels")
    coco["annotations"][1]["bbox"] = [3, 0, 0, 10]
    with pytest.raises(LabelError, match=r"annotation id 6 .*w=0\.0 is outside \(0, 1\]"):
        coco_to_yolo(coco, tmp_path / "labels")


# ----------------------------------------------------------------------------------- class names, splits
def test_read_class_names_formats_and_errors(tmp_path, monkeypatch):
    p = tmp_path / "classes.txt"
    p.write_text("ant\nbee \n\n\n")
    assert read_class_names(p) == ["ant", "bee"]
    p.write_text("ant\n\nbee\n")
    with pytest.raises(LabelError, match=r"classes\.txt:2: empty class name"):
        read_class_names(p)
    p.write_text("ant\nbee\nant\n")
    with pytest.raises(LabelError, match=r"classes\.txt:3: duplicate class name 'ant'"):
        read_class_names(p)
    y = tmp_path / "data.yaml"
    forms = ["names: [ant, 'bee', \"wasp\"]\nnc: 3\n", "path: .\nnames:\n  - ant\n  - bee\n  - wasp\ntrain: x\n",
             "names:\n  0: ant\n  2: wasp\n  1: bee\n"]
    for use_yaml in (True, False):
        if not use_yaml:
            monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError -> built-in reader
        for text in forms:
            y.write_text(text)
            assert read_class_names(y) == ["ant", "bee", "wasp"], (use_yaml, text)
    monkeypatch.undo()
    y.write_text("names: [ant, bee]\nnc: 3\n")
    with pytest.raises(LabelError, match="nc: 3 but 2 names"):
        read_class_names(y)
    y.write_text("names:\n  0: ant\n  2: bee\n")
    with pytest.raises(LabelError, match="must be the class ids 0..1"):
        read_class_names(y)


def test_split_files(tmp_path):
    root = make_shapes_dataset(tmp_path / "s", n_train=4, n_val=2, n_test=0, size=(48, 64), seed=1)
    train = sorted(p.relative_to(root) for p in (root / "images" / "train").glob("*.png"))
    write_split_file(root / "fold0.txt", [root / p for p in train[:3]], root=root)
    assert read_split_file(root / "fold0.txt") == [p.as_posix() for p in train[:3]]
    coco = yolo_dataset_to_coco(root, "fold0", root / "classes.txt")
    assert [im["file_name"] for im in coco["images"]] == [p.as_posix() for p in train[:3]]
    direct = yolo_dataset_to_coco(root, "train", root / "classes.txt")
    assert coco["annotations"] == [a for a in direct["annotations"] if a["image_id"] <= 3]
    (root / "fold1.txt").write_text("./images/train/shape_00000.png\nimages/train/missing.png\n")
    with pytest.raises(LabelError, match=r"fold1\.txt:2: image .*missing\.png not found"):
        yolo_dataset_to_coco(root, "fold1", CLASSES)
    with pytest.raises(ValueError, match="relative"):
        write_split_file(root / "bad.txt", ["/abs/x.png"])
    with pytest.raises(LabelError, match="none of the splits"):
        export_coco_splits(root, CLASSES, splits=("test", "holdout"))


# ----------------------------------------------------------------------------------- fuzz
_token = st.one_of(st.sampled_from(["0", "1", "2", "3", "-1", "0.5", "1", "1.0", ".5", "1e-3", "nan", "inf",
                                    "1e999", "0x1", "1_0", "", "\t", "# c"]),
                   st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False).map(repr),
                   st.floats(-0.1, 1.1, allow_subnormal=False).map(str), st.text(max_size=4))
_near_valid_line = st.tuples(st.integers(0, 3), *[st.floats(-0.02, 1.02, allow_subnormal=False)] * 2,
                             *[st.floats(0, 0.25, allow_subnormal=False)] * 2).map(lambda t: " ".join(map(str, t)))
_line = st.one_of(_near_valid_line, st.lists(_token, max_size=7).map(" ".join))
_label_text = st.one_of(st.text(max_size=200), st.lists(_line, max_size=6).map("\n".join),
                        st.lists(_near_valid_line, max_size=3).map("\r\n".join))


def _check_parse(path: Path) -> None:
    try:
        boxes = parse_yolo_label(path, 3)
    except LabelError as exc:
        assert path.name in str(exc)
        return
    assert boxes.dtype == np.float64 and boxes.ndim == 2 and boxes.shape[1] == 5
    assert np.isfinite(boxes).all() and set(boxes[:, 0].tolist()) <= {0.0, 1.0, 2.0}
    lo, hi = boxes[:, 1:3] - boxes[:, 3:] / 2, boxes[:, 1:3] + boxes[:, 3:] / 2
    assert (boxes[:, 3:] > 0).all() and (lo >= -1e-6).all() and (hi <= 1 + 1e-6).all()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_label_text)
def test_fuzz_parse_text_only_label_errors(tmp_path, text):
    path = tmp_path / "fuzz.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _check_parse(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_fuzz_parse_bytes_only_label_errors(tmp_path, data):
    path = tmp_path / "fuzz.txt"
    path.write_bytes(data)
    _check_parse(path)


def _unit(lo: float) -> st.SearchStrategy[float]:
    return st.floats(lo, 1.0, allow_subnormal=False)  # conftest flushes denormals (torch)


@st.composite
def _yolo_boxes(draw):
    n = draw(st.integers(0, 6))
    rows = []
    for _ in range(n):
        w, h = draw(_unit(1e-4)), draw(_unit(1e-4))
        u, v = draw(_unit(0.0)), draw(_unit(0.0))
        rows.append([draw(st.integers(0, 3)), w / 2 + u * (1 - w), h / 2 + v * (1 - h), w, h])
    return np.array(rows, np.float64).reshape(-1, 5)


@settings(max_examples=60, deadline=None)
@given(boxes=_yolo_boxes(), width=st.integers(1, 2500), height=st.integers(1, 2500),
       cat_ids=st.permutations([1, 5, 9, 90]))
def test_fuzz_round_trip_yolo_coco_yolo(boxes, width, height, cat_ids):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = "".join(" ".join([str(int(r[0]))] + [repr(v) for v in r[1:]]) + "\n" for r in boxes.tolist())
        images, labels = _tiny_dataset(tmp, {"img": text}, size=(width, height))
        names = ["a", "b", "c", "d"]
        coco = yolo_to_coco(images, labels, names, category_ids=cat_ids)
        assert coco["images"] == [{"id": 1, "file_name": "img.png", "width": width, "height": height}]
        assert [a["category_id"] for a in coco["annotations"]] == [cat_ids[int(c)] for c in boxes[:, 0]]
        stats = coco_to_yolo(coco, tmp / "back", names_path=tmp / "names.txt")
        assert stats["boxes"] == len(boxes) and stats["category_ids"] == sorted(cat_ids)
        back = parse_yolo_label(tmp / "back" / "img.txt", 4)
        by_sorted = [sorted(cat_ids).index(cat_ids[int(c)]) for c in boxes[:, 0]]
        np.testing.assert_array_equal(back[:, 0], by_sorted)
        np.testing.assert_allclose(back[:, 1:], boxes[:, 1:], rtol=1e-9, atol=1e-12)
        assert read_class_names(tmp / "names.txt") == [names[cat_ids.index(c)] for c in sorted(cat_ids)]
