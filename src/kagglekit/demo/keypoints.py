"""A procedural keypoint set in the COCO person-keypoints layout::

    root/images/synth_NNNNN.png
    root/annotations.json      COCO keypoints JSON (written last = the set is complete); its
                               info["params"] holds the generation parameters

Two figure templates, both seen from the front so that the figure's *left* is on the image's right:

* ``person`` -- a stick figure with the 17 COCO keypoint names (:data:`COCO_KEYPOINT_NAMES`),
  category ``person`` and the COCO skeleton, so it mixes with the real COCO keypoint sample
  (:func:`synthetic_person_like`, what the keypoint demo uses). Random arm/leg angles per side
  (asymmetric poses), head turn, size, position.
* ``car`` -- a car seen from the front and above with the 24-point synthetic convention
  (:data:`SYNTH_NAMES` = :data:`~kagglekit.tasks.keypoints.convert.SYNTH_CAR24_NAMES`): wheel
  *centres* and tyre *bottoms* are different points (map to CarFusion's 14 with
  :data:`~kagglekit.tasks.keypoints.convert.SYNTH24_TO_REAL14`). ``rear_logo``/``rear_plate``
  are always hidden behind the body (v=1).

Every keypoint is a small disc whose colour depends only on the keypoint name with the side word
removed (left and right eye share a colour), drawn on a body of one muted colour. A left point is
told from its right twin only by which side of the figure it is on -- like real left/right body
parts -- so the generator is **mirror-consistent**: all geometry is drawn from the keypoint
positions alone, and mirroring the points (``x' = W - x``) and swapping the left/right names draws
exactly the mirrored image (:func:`render_figure`, tested). That is what makes flip TTA and flip
augmentation meaningful on this set.

Labels: v=2 drawn; v=1 occluded (about 5 % of points, plus the car's two hidden points: no
coloured marker, a body-coloured disc under the body keeps the point inside the figure); v=0 and
``(0, 0)`` when the point falls outside the image (figures may stick out of the frame).
Coordinates are continuous pixels (pixel column i covers [i, i + 1)). ``bbox`` is the tight box of
the object's drawn pixels inside the image, ``area`` its w*h. Every image is drawn from its own RNG
seeded by (seed, index): deterministic for a seed.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from kagglekit.demo.shapes import _background
from kagglekit.io import load_json, save_json, write_bytes
from kagglekit.paths import shared_data
from kagglekit.tasks.keypoints.convert import (
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    SYNTH_CAR24_NAMES,
    _swap_side,
    flip_pairs_from_names,
)

__all__ = ["SYNTH_NAMES", "TEMPLATES", "CAR_SKELETON", "make_synthetic_keypoints", "synthetic_person_like",
           "synthetic_cars", "render_figure", "keypoint_colours", "mirror_names", "draw_keypoint_image",
           "prepare_keypoint_demo", "split_coco_images"]

SYNTH_NAMES = SYNTH_CAR24_NAMES
_N = {n: i for i, n in enumerate(SYNTH_CAR24_NAMES, 1)}
#: 1-based skeleton of the 24-point car (wheel centre - tyre bottom, lights, roof, mirrors).
CAR_SKELETON = tuple((_N[a], _N[b]) for a, b in (
    ("front_left_wheel_centre", "front_left_tyre_bottom"), ("front_right_wheel_centre", "front_right_tyre_bottom"),
    ("rear_left_wheel_centre", "rear_left_tyre_bottom"), ("rear_right_wheel_centre", "rear_right_tyre_bottom"),
    ("left_headlight", "left_fog_light"), ("right_headlight", "right_fog_light"),
    ("left_headlight", "front_logo"), ("right_headlight", "front_logo"), ("front_logo", "front_plate"),
    ("roof_front_left", "roof_front_right"), ("roof_rear_left", "roof_rear_right"),
    ("roof_front_left", "roof_rear_left"), ("roof_front_right", "roof_rear_right"),
    ("left_taillight", "right_taillight"), ("rear_logo", "rear_plate"),
    ("roof_front_left", "left_mirror"), ("roof_front_right", "right_mirror"),
))

# distinct colours (Trubetskoy's list), one per keypoint group (name without its side word)
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195))
_WHEEL = (25, 25, 28)
_GLASS = (45, 60, 85)
OCCLUDED_P = 0.05  # chance a point is labelled occluded (v=1, no marker)
OUT_OF_FRAME_P = 0.15  # chance a figure is placed partly outside the image


def _group(name: str) -> str:
    """Name with side words removed (``left_eye`` -> ``_eye``): the colour key."""
    return name.replace("left", "").replace("right", "")


def keypoint_colours(names: Sequence[str]) -> list[tuple[int, int, int]]:
    """Marker colour of each name: one colour per group (left/right twins share it)."""
    groups: dict[str, int] = {}
    for n in names:
        groups.setdefault(_group(n), len(groups))
    if len(groups) > len(_PALETTE):
        raise ValueError(f"{len(groups)} keypoint groups, at most {len(_PALETTE)} colours")
    return [_PALETTE[groups[_group(n)]] for n in names]


# ------------------------------------------------------------------------------------ rasteriser
class _Canvas:
    """Float RGB image + the current object's mask; every primitive is a predicate on the pixel
    centre (i + 0.5, j + 0.5), so drawing mirrored geometry gives the mirrored image."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.h, self.w = image.shape[:2]
        self.mask = np.zeros((self.h, self.w), dtype=bool)

    def _window(self, x0: float, y0: float, x1: float, y1: float):
        ix0, iy0 = max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1)
        ix1, iy1 = min(self.w, math.ceil(x1) + 1), min(self.h, math.ceil(y1) + 1)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        xs = np.arange(ix0, ix1, dtype=np.float64) + 0.5
        ys = np.arange(iy0, iy1, dtype=np.float64) + 0.5
        return (slice(iy0, iy1), slice(ix0, ix1)), xs[None, :], ys[:, None]

    def _paint(self, win, inside: np.ndarray, colour) -> None:
        sl = win[0]
        self.image[sl][inside] = colour
        self.mask[sl] |= inside

    def capsule(self, a, b, r: float, colour) -> None:
        (ax, ay), (bx, by) = a, b
        win = self._window(min(ax, bx) - r, min(ay, by) - r, max(ax, bx) + r, max(ay, by) + r)
        if win is None:
            return
        _, X, Y = win
        dx, dy = bx - ax, by - ay
        ll = dx * dx + dy * dy
        t = np.clip(((X - ax) * dx + (Y - ay) * dy) / ll, 0.0, 1.0) if ll > 0 else 0.0
        inside = (X - ax - t * dx) ** 2 + (Y - ay - t * dy) ** 2 <= r * r
        self._paint(win, inside, colour)

    def disc(self, c, r: float, colour) -> None:
        self.capsule(c, c, r, colour)

    def ellipse(self, c, rx: float, ry: float, colour) -> None:
        cx, cy = c
        win = self._window(cx - rx, cy - ry, cx + rx, cy + ry)
        if win is None:
            return
        _, X, Y = win
        self._paint(win, ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 <= 1.0, colour)

    def hull(self, points: np.ndarray, colour, dilate: float = 0.0) -> None:
        """Convex hull of ``points`` grown by ``dilate`` (rounded corners)."""
        hull = _convex_hull(np.asarray(points, dtype=np.float64))
        x0, y0 = hull.min(axis=0) - dilate
        x1, y1 = hull.max(axis=0) + dilate
        win = self._window(x0, y0, x1, y1)
        if win is None:
            return
        _, X, Y = win
        n = len(hull)
        inside = np.ones(np.broadcast_shapes(X.shape, Y.shape), dtype=bool) if n >= 3 else \
            np.zeros(np.broadcast_shapes(X.shape, Y.shape), dtype=bool)
        if n >= 3:
            for i in range(n):  # hull is counter-clockwise in (x, y)
                (ax, ay), (bx, by) = hull[i], hull[(i + 1) % n]
                inside &= (bx - ax) * (Y - ay) - (by - ay) * (X - ax) >= 0
        if dilate > 0:
            for i in range(n):
                (ax, ay), (bx, by) = hull[i], hull[(i + 1) % n]
                dx, dy = bx - ax, by - ay
                ll = dx * dx + dy * dy
                t = np.clip(((X - ax) * dx + (Y - ay) * dy) / ll, 0.0, 1.0) if ll > 0 else 0.0
                inside |= (X - ax - t * dx) ** 2 + (Y - ay - t * dy) ** 2 <= dilate * dilate
        self._paint(win, inside, colour)


def _convex_hull(p: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; counter-clockwise in a y-up frame (= the sign used by ``hull``)."""
    pts = sorted(set(map(tuple, p.tolist())))
    if len(pts) <= 2:
        return np.asarray(pts, dtype=np.float64).reshape(-1, 2)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    upper: list = []
    for q in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


# ------------------------------------------------------------------------------------ templates
def _sides():
    return (("left", 1.0), ("right", -1.0))


def _sample_person(rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Canonical person, units of the figure height, origin top-centre, left side at +x."""
    turn = rng.uniform(-0.015, 0.015)
    pts = {"nose": (turn, 0.09)}
    for side, sgn in _sides():
        j = lambda: rng.uniform(-0.005, 0.005)  # noqa: E731
        pts[f"{side}_eye"] = (sgn * 0.032 + 0.6 * turn + j(), 0.06 + j())
        pts[f"{side}_ear"] = (sgn * 0.064 + 0.2 * turn + j(), 0.075 + j())
        sh = np.array([sgn * rng.uniform(0.10, 0.14), rng.uniform(0.19, 0.21)])
        hip = np.array([sgn * rng.uniform(0.065, 0.09), rng.uniform(0.50, 0.53)])
        theta = rng.uniform(0.15, 2.7)  # upper arm, from straight down, outwards
        phi = float(np.clip(theta + rng.uniform(-1.0, 1.0), 0.05, 3.0))
        elbow = sh + 0.16 * np.array([sgn * math.sin(theta), math.cos(theta)])
        wrist = elbow + 0.15 * np.array([sgn * math.sin(phi), math.cos(phi)])
        alpha, beta = rng.uniform(0.0, 0.5), rng.uniform(-0.1, 0.4)
        knee = hip + 0.24 * np.array([sgn * math.sin(alpha), math.cos(alpha)])
        ankle = knee + 0.22 * np.array([sgn * math.sin(beta), math.cos(beta)])
        for name, p in (("shoulder", sh), ("hip", hip), ("elbow", elbow), ("wrist", wrist), ("knee", knee),
                        ("ankle", ankle)):
            pts[f"{side}_{name}"] = (float(p[0]), float(p[1]))
    return pts


def _draw_person(cv: _Canvas, p: dict[str, np.ndarray], s: float, body) -> None:
    sh_l, sh_r, hip_l, hip_r = p["left_shoulder"], p["right_shoulder"], p["left_hip"], p["right_hip"]
    head = (p["left_ear"] + p["right_ear"]) / 2 - np.array([0.0, 0.005 * s])
    cv.capsule((sh_l + sh_r) / 2, head, 0.03 * s, body)
    cv.hull(np.stack([sh_l, sh_r, hip_r, hip_l]), body, dilate=0.015 * s)
    for side in ("left", "right"):
        g = lambda n: p[f"{side}_{n}"]  # noqa: E731
        cv.capsule(g("shoulder"), g("elbow"), 0.03 * s, body)
        cv.capsule(g("elbow"), g("wrist"), 0.025 * s, body)
        cv.capsule(g("hip"), g("knee"), 0.04 * s, body)
        cv.capsule(g("knee"), g("ankle"), 0.035 * s, body)
    cv.ellipse(head, 0.075 * s, 0.08 * s, body)


def _sample_car(rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Canonical car, x in car widths, y in car depths, origin top-centre, the car's left at +x."""
    shear = rng.uniform(-0.12, 0.12)
    j = lambda: rng.uniform(-0.015, 0.015)  # noqa: E731
    pts: dict[str, tuple[float, float]] = {"rear_logo": (0.0, 0.10), "rear_plate": (0.0, 0.16),
                                           "front_logo": (0.0, 0.70 + j()), "front_plate": (0.0, 0.85 + j())}
    for side, sgn in _sides():
        pts[f"roof_rear_{side}"] = (sgn * 0.27 + j(), 0.06 + j())
        pts[f"roof_front_{side}"] = (sgn * 0.31 + j(), 0.33 + j())
        pts[f"{side}_taillight"] = (sgn * 0.37 + j(), 0.12 + j())
        pts[f"{side}_mirror"] = (sgn * 0.53 + j(), 0.41 + j())
        pts[f"{side}_headlight"] = (sgn * 0.35 + j(), 0.68 + j())
        pts[f"{side}_fog_light"] = (sgn * 0.32 + j(), 0.82 + j())
        for end, (x, y, ry) in (("front", (0.46, 0.74, 0.11)), ("rear", (0.43, 0.24, 0.10))):
            cx, cy = sgn * x + j(), y + j()
            pts[f"{end}_{side}_wheel_centre"] = (cx, cy)
            pts[f"{end}_{side}_tyre_bottom"] = (cx, cy + ry)
    return {n: (x + shear * (y - 0.5), y) for n, (x, y) in pts.items()}


def _draw_car(cv: _Canvas, p: dict[str, np.ndarray], s: float, body) -> None:
    for end in ("front", "rear"):
        for side in ("left", "right"):
            c, b = p[f"{end}_{side}_wheel_centre"], p[f"{end}_{side}_tyre_bottom"]
            cv.ellipse(c, 0.075 * s, float(np.hypot(*(b - c))), _WHEEL)
    shell = [p[n] for n in ("left_taillight", "right_taillight", "left_headlight", "right_headlight",
                            "left_fog_light", "right_fog_light", "front_plate", "rear_logo")]
    cv.hull(np.stack(shell), body, dilate=0.07 * s)
    for side in ("left", "right"):
        cv.capsule(p[f"{side}_mirror"], p[f"roof_front_{side}"], 0.025 * s, body)
    cv.hull(np.stack([p[n] for n in ("roof_rear_left", "roof_rear_right", "roof_front_left", "roof_front_right")]),
            _GLASS, dilate=0.01 * s)


@dataclass(frozen=True)
class FigureTemplate:
    kind: str
    category: str
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    sample: Callable[[np.random.Generator], dict[str, tuple[float, float]]]
    draw: Callable[[_Canvas, dict[str, np.ndarray], float, Any], None]
    aspect: tuple[float, float]  # (y units per x unit) range: height/width of the canonical frame
    scale_range: tuple[float, float]  # size of the x unit as a fraction of the image (h for person, w for car)
    always_hidden: frozenset = frozenset()
    marker: float = 0.022  # marker radius in x units


TEMPLATES = {
    "person": FigureTemplate("person", "person", COCO_KEYPOINT_NAMES, COCO_SKELETON, _sample_person,
                             _draw_person, (1.0, 1.0), (0.4, 0.8)),
    "car": FigureTemplate("car", "car", SYNTH_CAR24_NAMES, CAR_SKELETON, _sample_car, _draw_car,
                          (0.75, 1.0), (0.25, 0.5), frozenset({"rear_logo", "rear_plate"}), 0.03),
}


def render_figure(image: np.ndarray, kind: str, points: np.ndarray, hidden: np.ndarray,
                  body_colour: Sequence[float], scale: float) -> np.ndarray:
    """Draw one figure into ``image`` ((H, W, 3) float, in place) from its keypoints alone:
    ``points`` (K, 2) in the template's name order (continuous pixels, may lie outside the image),
    ``hidden`` (K,) bool (no coloured marker: occluded), ``scale`` the figure size in pixels (the x
    unit of the template). Returns the (H, W) bool mask of the figure's pixels.

    Mirror-consistent: drawing ``W - x`` with the left/right names swapped draws the mirrored image."""
    t = TEMPLATES[kind]
    points = np.asarray(points, dtype=np.float64)
    p = {n: points[i] for i, n in enumerate(t.names)}
    cv = _Canvas(image)
    r = max(2.0, t.marker * scale)
    body = tuple(body_colour)
    for name, hid in zip(t.names, hidden):  # occluded points: under the body, in its colour
        if hid:
            cv.disc(p[name], r, body)
    t.draw(cv, p, float(scale), body)
    for name, colour, hid in zip(t.names, keypoint_colours(t.names), hidden):
        if not hid:
            cv.disc(p[name], r, colour)
    return cv.mask


def _template_for(names: Sequence[str]) -> FigureTemplate:
    names = list(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names must be distinct keypoint names, got {names}")
    for t in TEMPLATES.values():
        if set(names) <= set(t.names):
            return t
    raise ValueError(f"names {names} are not a subset of one template's names "
                     f"({ {k: len(t.names) for k, t in TEMPLATES.items()} }: person = COCO 17, car = SYNTH_NAMES)")


# ------------------------------------------------------------------------------------ instances
def _sample_instance(rng: np.random.Generator, t: FigureTemplate, h: int, w: int):
    """(points (K, 2) px, scale px, extent (x0, y0, x1, y1) px) of one figure at a random place."""
    canon = t.sample(rng)
    aspect = rng.uniform(*t.aspect)
    scale = rng.uniform(*t.scale_range) * (h if t.kind == "person" else w)
    rel = np.array([canon[n] for n in t.names], dtype=np.float64) * np.array([scale, scale * aspect])
    pad = 0.08 * scale
    lo, hi = rel.min(axis=0) - pad, rel.max(axis=0) + pad
    size = hi - lo
    if rng.random() < OUT_OF_FRAME_P:  # up to a quarter of the figure outside the frame
        ox = rng.uniform(-0.25 * size[0], max(-0.25 * size[0], w - 0.75 * size[0]))
        oy = rng.uniform(-0.25 * size[1], max(-0.25 * size[1], h - 0.75 * size[1]))
    else:
        ox = rng.uniform(0, max(0.0, w - size[0]))
        oy = rng.uniform(0, max(0.0, h - size[1]))
    pts = rel - lo + np.array([ox, oy])
    return pts, scale, (ox, oy, ox + size[0], oy + size[1])


def _overlap(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small if small > 0 else 0.0


def _body_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    base = rng.uniform(50, 120)
    return tuple(float(np.clip(base + d, 0, 255)) for d in rng.uniform(-15, 15, 3))


def draw_keypoint_image(rng: np.random.Generator, size: tuple[int, int], t: FigureTemplate, n_objects: int
                        ) -> tuple[Image.Image, list[dict[str, Any]]]:
    """One RGB image and its objects ``{"points" (K, 2), "v" (K,), "bbox" [x, y, w, h]}`` in the
    template's name order; v=0 points keep their true (outside) position here."""
    h, w = size
    bg = _background(rng, h, w)
    grey = bg.mean(axis=2, keepdims=True)
    image = grey + 0.35 * (bg - grey)  # muted, so the markers stand out
    placed: list[tuple] = []
    for _ in range(n_objects):
        for _attempt in range(30):
            pts, scale, extent = _sample_instance(rng, t, h, w)
            if all(_overlap(extent, e) <= 0.1 for _, _, e in placed):
                placed.append((pts, scale, extent))
                break
    objects = []
    k = len(t.names)
    for pts, scale, _ in placed:
        hidden = (rng.random(k) < OCCLUDED_P) | np.array([n in t.always_hidden for n in t.names])
        mask = render_figure(image, t.kind, pts, hidden, _body_colour(rng), scale)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        v = np.where(inside, np.where(hidden, 1, 2), 0)
        ys, xs = np.nonzero(mask)
        if not len(xs) or not (v > 0).any():
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        objects.append({"points": pts, "v": v,
                        "bbox": [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]})
    noisy = image + rng.normal(0, 4, image.shape)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)), objects


# ------------------------------------------------------------------------------------ dataset
def _params(t: FigureTemplate, names: list[str], n_images: int, size, seed: int, max_objects: int) -> dict:
    return {"template": t.kind, "names": names, "n_images": n_images, "size": list(size), "seed": seed,
            "max_objects": max_objects, "version": 1}


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    ann = root / "annotations.json"
    if not ann.is_file():
        return False
    try:
        existing = load_json(ann).get("info", {}).get("params")
    except (OSError, ValueError, AttributeError):
        existing = None
    if existing != params:
        raise ValueError(f"{root} already holds a keypoint set made with other parameters ({existing}); "
                         f"use another folder or delete it")
    return all((root / "images" / f"synth_{i:05d}.png").is_file() for i in range(params["n_images"]))


def make_synthetic_keypoints(root: str | Path, n_images: int = 40, size: tuple[int, int] = (240, 320),
                             seed: int = 0, names: Sequence[str] = SYNTH_NAMES, max_objects: int = 2) -> Path:
    """Write (or reuse, if complete with the same parameters) the set under ``root``; returns ``root``.

    ``names``: the annotated keypoints, in this order -- any subset of one template's names (the
    24 car names :data:`SYNTH_NAMES`, or the 17 COCO person names); the whole figure is drawn
    either way. ``size`` is (h, w); each image holds 1..``max_objects`` figures.
    """
    root = Path(root)
    names = [str(n) for n in names]
    t = _template_for(names)
    if n_images < 1 or max_objects < 1 or min(size) < 32:
        raise ValueError(f"need n_images >= 1, max_objects >= 1 and size >= 32 px, got {n_images}, "
                         f"{max_objects}, {size}")
    size = (int(size[0]), int(size[1]))
    params = _params(t, names, int(n_images), size, int(seed), int(max_objects))
    if _is_complete(root, params):
        return root
    pos = [t.names.index(n) for n in names]
    new_index = {old: new for new, old in enumerate(pos, 1)}
    skeleton = [[new_index[a - 1], new_index[b - 1]] for a, b in t.skeleton
                if a - 1 in new_index and b - 1 in new_index]
    images, annotations = [], []
    for i in range(int(n_images)):
        rng = np.random.default_rng([int(seed), i])
        image, objects = draw_keypoint_image(rng, size, t, int(rng.integers(1, max_objects + 1)))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        file_name = f"synth_{i:05d}.png"
        write_bytes(root / "images" / file_name, buf.getvalue())
        images.append({"id": i + 1, "file_name": file_name, "width": size[1], "height": size[0]})
        for obj in objects:
            kps: list[float | int] = []
            for j in pos:
                v = int(obj["v"][j])
                x, y = (float(obj["points"][j, 0]), float(obj["points"][j, 1])) if v else (0.0, 0.0)
                kps += [x, y, v]
            bw, bh = obj["bbox"][2], obj["bbox"][3]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "bbox": obj["bbox"], "area": bw * bh, "iscrowd": 0, "keypoints": kps,
                                "num_keypoints": sum(1 for j in pos if obj["v"][j] > 0)})
    categories = [{"supercategory": t.category, "id": 1, "name": t.category, "keypoints": names,
                   "skeleton": skeleton}]
    save_json(root / "annotations.json", {
        "info": {"description": f"synthetic {t.kind} keypoints (kagglekit.demo.keypoints)", "params": params,
                 "flip_pairs": flip_pairs_from_names(names)},
        "images": images, "annotations": annotations, "categories": categories})
    return root


def synthetic_person_like(root: str | Path, n_images: int = 40, size: tuple[int, int] = (240, 320),
                          seed: int = 0, max_objects: int = 2) -> Path:
    """The person template with the 17 COCO names, category ``person`` (id 1) and the COCO skeleton:
    mixes with real COCO person-keypoint data."""
    return make_synthetic_keypoints(root, n_images, size, seed, COCO_KEYPOINT_NAMES, max_objects)


def synthetic_cars(root: str | Path, n_images: int = 40, size: tuple[int, int] = (240, 320),
                   seed: int = 0, max_objects: int = 2) -> Path:
    """The car template with the 24-point synthetic convention (:data:`SYNTH_NAMES`), category ``car``."""
    return make_synthetic_keypoints(root, n_images, size, seed, SYNTH_NAMES, max_objects)


def mirror_names(names: Sequence[str]) -> list[str]:
    """Each name with left/right swapped (what a horizontal flip turns it into)."""
    return [_swap_side(n) for n in names]


def split_coco_images(coco: dict[str, Any], image_ids: Sequence[int]) -> dict[str, Any]:
    """``coco`` restricted to ``image_ids`` (and their annotations); other top-level keys kept."""
    keep = set(image_ids)
    out = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    out["images"] = [im for im in coco["images"] if im["id"] in keep]
    out["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    return out


def prepare_keypoint_demo(root: str | Path, n_synthetic: int = 40, seed: int = 0) -> dict[str, Path]:
    """Inputs of the keypoint task's demo under ``root`` (written once):

    * ``synthetic/annotations.json`` + ``synthetic/images/``: :func:`synthetic_person_like`
      (``n_synthetic`` images, 17 COCO names, category ``person``);
    * ``real_train.json`` / ``real_test.json``: the real COCO keypoint sample
      (``<shared>/data/coco_keypoints_sample``, images read in place) split 2 / 2 by alternating
      image id (785, 196141 train: 6 people; 40083, 197388 test: 8 people; one person without
      labelled keypoints in each). Without the sample, a person-like set with another seed is
      written to ``real/`` (8 images, ``real/images``) and split the same way -- a stand-in only.

    Returns the paths by name.
    """
    root = Path(root)
    synthetic_person_like(root / "synthetic", n_images=n_synthetic, seed=seed)
    out = {"synthetic": root / "synthetic" / "annotations.json", "real_train": root / "real_train.json",
           "real_test": root / "real_test.json"}
    if out["real_train"].is_file() and out["real_test"].is_file():
        return out
    sample = shared_data("coco_keypoints_sample") / "test_coco.json"
    if sample.is_file():
        coco = load_json(sample)
    else:
        coco = load_json(synthetic_person_like(root / "real", n_images=8, seed=seed + 1000) / "annotations.json")
    ids = sorted(im["id"] for im in coco["images"])
    save_json(out["real_test"], split_coco_images(coco, ids[1::2]))
    save_json(out["real_train"], split_coco_images(coco, ids[0::2]))
    return out
