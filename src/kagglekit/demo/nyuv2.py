"""Procedural RGB-D rooms in the NYUv2 13-class competition layout.

Each image is an indoor room rendered by per-pixel ray casting (numpy, vectorised rays x boxes):
the room is an axis-aligned box (floor, ceiling, four walls) and everything inside it (bed, sofa,
tables, chairs, cabinets, shelves with books, TV, pictures, windows, clutter) is an oriented box.
The nearest hit along each pixel ray gives, from the same computation, the label, the z-depth and
the shading, so depth and labels are exactly consistent.

Conventions follow NYU Depth V2 (Silberman et al., ECCV 2012):
- labels: 0 = void, 1..13 = the 13-class grouping of ``nyuv2_labels13/classes.txt``; the part ->
  class choices follow ``classMapping40.mat`` + ``class13Mapping.mat`` (pillow, lamp -> objects;
  curtain, blinds -> window; door -> wall; floor mat -> floor; night stand, shelves -> furniture);
- depth: z-depth (distance along the optical axis) in millimetres, uint16 PNG, 0 = missing;
- camera: pinhole with fx = fy = 0.81 * W (NYUv2 Kinect: fx ~ 518.9 px at W = 640).

Layout written by :func:`generate_nyuv2` (the one every experiment reads)::

    <root>/{train,test}/{image,depth,label}/<id>.png
    <root>/train.csv, <root>/test.csv            (column ``id``, zero-padded strings)
    <root>/sample_submission.csv                 (ImageId, ClassId, EncodedPixels)

CLI: ``python -m kagglekit.demo.nyuv2 --out input/nyuv2 [--n-train 48 --n-test 12 ...]``.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from kagglekit.io import atomic_open, save_csv
from kagglekit.paths import input_root

# Class ids of nyuv2_labels13/classes.txt (kept local so the generator does not import torch).
VOID, BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS = 0, 1, 2, 3, 4, 5, 6, 7
PICTURE, SOFA, TABLE, TV, WALL, WINDOW = 8, 9, 10, 11, 12, 13
NUM_CLASSES = 13
FOCAL_FRACTION = 0.81  # fx / W of the NYUv2 Kinect colour camera (518.86 / 640)
MAX_DEPTH_M = 9.5  # beyond this the simulated sensor returns 0 (missing)
SUBMISSION_CLASS_ID = 12  # sample submission: every test pixel predicted "wall"

# Base colours (RGB in [0, 1]); each instance draws one and tints it.
PALETTE: dict[int, list[tuple[float, float, float]]] = {
    VOID: [(0.5, 0.5, 0.5), (0.3, 0.3, 0.35), (0.6, 0.5, 0.4)],
    BED: [(0.88, 0.88, 0.9), (0.55, 0.62, 0.8), (0.8, 0.7, 0.58), (0.7, 0.32, 0.32), (0.5, 0.6, 0.5)],
    BOOKS: [(0.7, 0.15, 0.15), (0.15, 0.3, 0.65), (0.2, 0.55, 0.25), (0.85, 0.75, 0.2), (0.9, 0.9, 0.85)],
    CEILING: [(0.93, 0.93, 0.91), (0.88, 0.88, 0.86), (0.86, 0.84, 0.8)],
    CHAIR: [(0.5, 0.32, 0.18), (0.15, 0.15, 0.17), (0.85, 0.85, 0.85), (0.6, 0.2, 0.15)],
    FLOOR: [(0.55, 0.38, 0.22), (0.64, 0.5, 0.32), (0.5, 0.5, 0.52), (0.4, 0.42, 0.5), (0.72, 0.66, 0.58)],
    FURNITURE: [(0.55, 0.36, 0.2), (0.7, 0.55, 0.38), (0.9, 0.9, 0.88), (0.2, 0.18, 0.17)],
    OBJECTS: [(0.8, 0.2, 0.2), (0.2, 0.5, 0.8), (0.9, 0.8, 0.3), (0.3, 0.7, 0.4), (0.6, 0.6, 0.6), (0.1, 0.1, 0.1)],
    PICTURE: [(0.8, 0.3, 0.2), (0.2, 0.4, 0.7), (0.3, 0.6, 0.3), (0.9, 0.85, 0.6), (0.4, 0.25, 0.5)],
    SOFA: [(0.45, 0.45, 0.48), (0.4, 0.25, 0.15), (0.2, 0.3, 0.55), (0.35, 0.45, 0.3), (0.78, 0.72, 0.62)],
    TABLE: [(0.6, 0.4, 0.22), (0.45, 0.3, 0.18), (0.9, 0.9, 0.9), (0.15, 0.15, 0.15)],
    TV: [(0.06, 0.06, 0.07), (0.1, 0.1, 0.12)],
    WALL: [(0.86, 0.83, 0.76), (0.78, 0.8, 0.82), (0.9, 0.88, 0.82), (0.72, 0.77, 0.7), (0.82, 0.72, 0.64)],
    WINDOW: [(0.78, 0.87, 0.97), (0.95, 0.96, 0.97), (0.7, 0.8, 0.9)],
}
CURTAIN_COLOURS = [(0.75, 0.7, 0.6), (0.5, 0.2, 0.2), (0.3, 0.35, 0.5), (0.9, 0.9, 0.88)]


@dataclass
class Part:
    """One oriented box: ``center``/``half`` (3,) metres, rotated by ``yaw`` about +z."""

    center: np.ndarray
    half: np.ndarray
    yaw: float
    label: int
    color: np.ndarray
    tex: tuple[float, float, float, np.ndarray] = (0.0, 1.0, 0.0, np.array([1.0, 0.0, 0.0]))
    emissive: bool = False
    no_depth: bool = False  # sensor returns 0 here (glass, black screens)


@dataclass
class Scene:
    """Room ``size`` (Lx, Ly, Hz) metres (x right, y forward, z up), six plane parts, boxes, light."""

    size: np.ndarray
    planes: list[Part]
    boxes: list[Part] = field(default_factory=list)
    light: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class Camera:
    """Pinhole camera: ``rot`` (3, 3) columns = right, down, forward (world); ``pos`` (3,)."""

    pos: np.ndarray
    rot: np.ndarray
    focal: float
    cx: float
    cy: float


@dataclass
class RoomSample:
    """One rendered frame: image (H, W, 3) uint8, depth_mm (H, W) uint16, label (H, W) uint8,
    instance (H, W) int32 (0..5 room planes, 6+ boxes), plus the scene and camera."""

    image: np.ndarray
    depth_mm: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    scene: Scene
    camera: Camera


# --------------------------------------------------------------------------------------------
# Scene construction
# --------------------------------------------------------------------------------------------


def _color(rng: np.random.Generator, label: int, palette: Sequence | None = None) -> np.ndarray:
    """A palette colour with a per-instance tint (channel jitter + brightness)."""
    options = palette if palette is not None else PALETTE[label]
    base = np.asarray(options[rng.integers(len(options))], dtype=np.float64)
    tint = 1.0 + rng.normal(0.0, 0.07, 3)
    return np.clip(base * tint * rng.uniform(0.85, 1.15), 0.0, 1.0)


def _tex(rng: np.random.Generator, amp: tuple[float, float], period: tuple[float, float]) -> tuple:
    """Stripe texture ``1 + amp * sin(2 pi (P . dir) / period + phase)`` (wood grain, planks)."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    return (rng.uniform(*amp), rng.uniform(*period), rng.uniform(0, 2 * np.pi), direction)


def _box(rng: np.random.Generator, label: int, x: float, y: float, z0: float, w: float, d: float, h: float,
         color: np.ndarray | None = None, tex: tuple | None = None, **kw: bool) -> Part:
    """Local-frame part: footprint centred at (x, y), bottom at z0, size w x d x h (metres)."""
    return Part(
        center=np.array([x, y, z0 + h / 2]), half=np.array([w / 2, d / 2, h / 2]), yaw=0.0,
        label=label, color=_color(rng, label) if color is None else color,
        tex=_tex(rng, (0.0, 0.08), (0.05, 0.4)) if tex is None else tex, **kw)


def _room(rng: np.random.Generator) -> Scene:
    """Room box and its six planes (x=0, x=Lx, y=0, y=Ly walls; floor; ceiling)."""
    size = np.array([rng.uniform(3.5, 7.0), rng.uniform(3.5, 7.0), rng.uniform(2.5, 3.0)])
    wall_c = _color(rng, WALL)
    walls = [Part(np.zeros(3), np.zeros(3), 0.0, WALL, np.clip(wall_c * rng.uniform(0.93, 1.07, 3), 0, 1),
                  _tex(rng, (0.0, 0.03), (0.1, 0.5))) for _ in range(4)]
    floor = Part(np.zeros(3), np.zeros(3), 0.0, FLOOR, _color(rng, FLOOR), _tex(rng, (0.0, 0.15), (0.08, 0.3)))
    ceiling = Part(np.zeros(3), np.zeros(3), 0.0, CEILING, _color(rng, CEILING), _tex(rng, (0.0, 0.02), (0.2, 1.0)))
    light = np.array([size[0] * rng.uniform(0.3, 0.7), size[1] * rng.uniform(0.3, 0.7), size[2] - 0.1])
    return Scene(size=size, planes=walls + [floor, ceiling], light=light)


def _camera(rng: np.random.Generator, size: np.ndarray, height: int, width: int) -> Camera:
    """Camera near the y=0 wall at eye height, looking roughly along +y and slightly down."""
    pos = np.array([size[0] * rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.8), rng.uniform(1.1, 1.7)])
    yaw, pitch = np.deg2rad(rng.uniform(-35, 35)), np.deg2rad(rng.uniform(-25, -2))
    forward = np.array([np.cos(pitch) * np.sin(yaw), np.cos(pitch) * np.cos(yaw), np.sin(pitch)])
    right = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward], axis=1)
    return Camera(pos, rot, FOCAL_FRACTION * width, width / 2.0, height / 2.0)


# Wall frames: origin of the wall line and yaw so that local +y points into the room.
def _wall_frame(wall: str, size: np.ndarray, s: float) -> tuple[float, float, float]:
    return {"x0": (0.0, s, -np.pi / 2), "x1": (size[0], s, np.pi / 2),
            "y0": (s, 0.0, 0.0), "y1": (s, size[1], np.pi)}[wall]


def _wall_length(wall: str, size: np.ndarray) -> float:
    return float(size[1] if wall.startswith("x") else size[0])


def _to_world(parts: list[Part], x: float, y: float, yaw: float) -> list[Part]:
    """Rotate local parts by ``yaw`` about +z and translate the local origin to (x, y)."""
    c, s = np.cos(yaw), np.sin(yaw)
    for p in parts:
        lx, ly = p.center[0], p.center[1]
        p.center = np.array([x + c * lx - s * ly, y + s * lx + c * ly, p.center[2]])
        p.yaw = p.yaw + yaw
    return parts


def _footprint(parts: list[Part]) -> np.ndarray:
    """World axis-aligned bounding rectangle (xmin, xmax, ymin, ymax) of the parts."""
    corners = []
    for p in parts:
        c, s = np.cos(p.yaw), np.sin(p.yaw)
        for sx in (-1, 1):
            for sy in (-1, 1):
                lx, ly = sx * p.half[0], sy * p.half[1]
                corners.append((p.center[0] + c * lx - s * ly, p.center[1] + s * lx + c * ly))
    arr = np.array(corners)
    return np.array([arr[:, 0].min(), arr[:, 0].max(), arr[:, 1].min(), arr[:, 1].max()])


def _fits(rect: np.ndarray, occupied: list[np.ndarray], size: np.ndarray) -> bool:
    eps = 1e-6
    if rect[0] < -eps or rect[2] < -eps or rect[1] > size[0] + eps or rect[3] > size[1] + eps:
        return False
    return all(rect[1] <= o[0] or rect[0] >= o[1] or rect[3] <= o[2] or rect[2] >= o[3] for o in occupied)


def _copy(parts: list[Part]) -> list[Part]:
    return [Part(p.center.copy(), p.half.copy(), p.yaw, p.label, p.color, p.tex, p.emissive, p.no_depth)
            for p in parts]


def _place_on_wall(rng: np.random.Generator, scene: Scene, occupied: list[np.ndarray],
                   parts: list[Part], walls: Sequence[str] = ("x0", "x1", "y1", "y1"),
                   tries: int = 12) -> bool:
    """Stand ``parts`` (local frame: back at y=0, x along the wall) against a random wall."""
    half_w = max(abs(p.center[0]) + p.half[0] for p in parts)
    for _ in range(tries):
        wall = walls[rng.integers(len(walls))]
        length = _wall_length(wall, scene.size)
        if length < 2 * half_w + 0.1:
            continue
        s = rng.uniform(half_w + 0.05, length - half_w - 0.05)
        if _try_place(_to_world(_copy(parts), *_wall_frame(wall, scene.size, s)), scene, occupied):
            return True
    return False


def _place_free(rng: np.random.Generator, scene: Scene, occupied: list[np.ndarray],
                parts: list[Part], y_min: float, tries: int = 12) -> bool:
    """Put ``parts`` anywhere on the floor beyond ``y_min`` with a random yaw, without overlap."""
    for _ in range(tries):
        x, y = rng.uniform(0.3, scene.size[0] - 0.3), rng.uniform(y_min, scene.size[1] - 0.3)
        if _try_place(_to_world(_copy(parts), x, y, rng.uniform(0, 2 * np.pi)), scene, occupied):
            return True
    return False


def _try_place(world: list[Part], scene: Scene, occupied: list[np.ndarray]) -> bool:
    """Add ``world`` parts to the scene when their footprint overlaps nothing placed so far."""
    rect = _footprint(world)
    if not _fits(rect, occupied, scene.size):
        return False
    occupied.append(rect)
    scene.boxes.extend(world)
    return True


# --------------------------------------------------------------------------------------------
# Furniture builders: local frame, x along the object's width, back at y = 0, front towards +y.
# --------------------------------------------------------------------------------------------


def _items_on_top(rng: np.random.Generator, w: float, d: float, y0: float, top: float,
                  n: int, books_p: float = 0.4) -> list[Part]:
    """``n`` small objects / book stacks standing on a w x d surface at height ``top``."""
    out = []
    for _ in range(n):
        if rng.random() < books_p:  # a row of standing books (one box, striped spines)
            bw, bd, bh = rng.uniform(0.1, 0.35), rng.uniform(0.15, 0.22), rng.uniform(0.17, 0.28)
            label, tex = BOOKS, _tex(rng, (0.2, 0.4), (0.03, 0.08))
        else:
            bw, bd, bh = rng.uniform(0.06, 0.25), rng.uniform(0.06, 0.25), rng.uniform(0.05, 0.3)
            label, tex = OBJECTS, None
        bw, bd = min(bw, w * 0.8), min(bd, d * 0.8)
        x = rng.uniform(-(w - bw) / 2, (w - bw) / 2)
        y = y0 + rng.uniform(-(d - bd) / 2, (d - bd) / 2)
        out.append(_box(rng, label, x, y, top, bw, bd, bh, tex=tex))
    return out


def _table_parts(rng: np.random.Generator, w: float, d: float, h: float, y0: float = 0.0,
                 label: int = TABLE) -> list[Part]:
    """Table top + four legs, footprint centred at (0, y0)."""
    color, tex = _color(rng, label), _tex(rng, (0.02, 0.12), (0.02, 0.1))
    parts = [_box(rng, label, 0.0, y0, h - 0.04, w, d, 0.04, color=color, tex=tex)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box(rng, label, sx * (w / 2 - 0.05), y0 + sy * (d / 2 - 0.05), 0.0,
                              0.05, 0.05, h - 0.04, color=color, tex=tex))
    return parts


def _chair(rng: np.random.Generator) -> list[Part]:
    """Seat, four legs and a back rest (back at y in [0, 0.05], facing +y)."""
    color, tex = _color(rng, CHAIR), _tex(rng, (0.0, 0.08), (0.02, 0.1))
    s, seat_h = rng.uniform(0.4, 0.5), rng.uniform(0.42, 0.48)
    parts = [_box(rng, CHAIR, 0.0, s / 2, seat_h, s, s, 0.05, color=color, tex=tex),
             _box(rng, CHAIR, 0.0, 0.025, seat_h + 0.05, s, 0.05, rng.uniform(0.35, 0.5), color=color, tex=tex)]
    for sx in (-1, 1):
        for y in (0.025, s - 0.025):
            parts.append(_box(rng, CHAIR, sx * (s / 2 - 0.025), y, 0.0, 0.04, 0.04, seat_h, color=color, tex=tex))
    return parts


def _bed(rng: np.random.Generator) -> list[Part]:
    """Mattress, headboard, blanket (bed) and pillows (objects: pillow -> otherprop -> objects)."""
    w, length, h = rng.uniform(1.0, 1.9), rng.uniform(1.9, 2.1), rng.uniform(0.4, 0.6)
    parts = [_box(rng, BED, 0.0, length / 2, 0.0, w, length, h),
             _box(rng, BED, 0.0, 0.04, 0.0, w + 0.06, 0.08, h + rng.uniform(0.35, 0.7),
                  color=_color(rng, FURNITURE)),
             _box(rng, BED, 0.0, (0.55 + length) / 2 + 0.01, h - 0.03, w + 0.04, length - 0.53, 0.08)]
    n = 1 if w < 1.3 else 2
    for i in range(n):
        parts.append(_box(rng, OBJECTS, (i - (n - 1) / 2) * w / 2, 0.3, h, min(0.6, w / n - 0.1), 0.35, 0.12,
                          color=_color(rng, BED)))
    return parts


def _nightstand(rng: np.random.Generator) -> list[Part]:
    h = rng.uniform(0.45, 0.6)
    parts = [_box(rng, FURNITURE, 0.0, 0.2, 0.0, 0.45, 0.4, h)]
    if rng.random() < 0.6:  # lamp -> objects
        parts += [_box(rng, OBJECTS, 0.0, 0.2, h, 0.1, 0.1, 0.25),
                  _box(rng, OBJECTS, 0.0, 0.2, h + 0.25, 0.28, 0.28, 0.2, color=_color(rng, WINDOW))]
    return parts


def _cabinet(rng: np.random.Generator) -> list[Part]:
    """Wardrobe (tall) or dresser (low, with items on top)."""
    tall = rng.random() < 0.5
    w, d = rng.uniform(0.7, 1.6), rng.uniform(0.4, 0.6)
    h = rng.uniform(1.6, 2.1) if tall else rng.uniform(0.7, 1.0)
    parts = [_box(rng, FURNITURE, 0.0, d / 2, 0.0, w, d, h, tex=_tex(rng, (0.02, 0.12), (0.03, 0.15)))]
    if not tall:
        parts += _items_on_top(rng, w, d, d / 2, h, int(rng.integers(0, 4)))
    return parts


def _bookshelf(rng: np.random.Generator) -> list[Part]:
    """Open shelf (sides, back, boards: furniture) with rows of books on each board."""
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.3, 0.4), rng.uniform(1.2, 2.0)
    color, tex = _color(rng, FURNITURE), _tex(rng, (0.02, 0.1), (0.03, 0.15))
    parts = [_box(rng, FURNITURE, 0.0, 0.01, 0.0, w, 0.02, h, color=color, tex=tex)]
    parts += [_box(rng, FURNITURE, sx * (w / 2 - 0.015), d / 2, 0.0, 0.03, d, h, color=color, tex=tex)
              for sx in (-1, 1)]
    n_boards = int(rng.integers(3, 6))
    levels = np.linspace(0.0, h - 0.03, n_boards)
    gap = levels[1] - levels[0]
    for z in levels:
        parts.append(_box(rng, FURNITURE, 0.0, d / 2, z, w - 0.06, d, 0.03, color=color, tex=tex))
        x = -w / 2 + 0.03
        while z < h - 0.1 and rng.random() < 0.85:  # book groups along the board
            bw = rng.uniform(0.08, 0.3)
            if x + bw > w / 2 - 0.03:
                break
            bh = min(rng.uniform(0.15, 0.3), gap - 0.05)
            parts.append(_box(rng, BOOKS, x + bw / 2, d / 2 + 0.02, z + 0.03, bw, d - 0.06, bh,
                              tex=_tex(rng, (0.2, 0.4), (0.03, 0.08))))
            x += bw + rng.uniform(0.0, 0.1)
    return parts


def _sofa(rng: np.random.Generator, w: float | None = None) -> list[Part]:
    """Seat base, back rest, two arms (sofa) and optional cushions (objects)."""
    w = rng.uniform(1.5, 2.4) if w is None else w
    color, tex = _color(rng, SOFA), _tex(rng, (0.0, 0.05), (0.02, 0.06))
    parts = [_box(rng, SOFA, 0.0, 0.45, 0.0, w, 0.9, 0.42, color=color, tex=tex),
             _box(rng, SOFA, 0.0, 0.1, 0.0, w, 0.2, rng.uniform(0.75, 0.9), color=color, tex=tex)]
    parts += [_box(rng, SOFA, sx * (w / 2 - 0.1), 0.45, 0.0, 0.2, 0.9, 0.62, color=color, tex=tex)
              for sx in (-1, 1)]
    if rng.random() < 0.5 and w > 1.2:
        parts.append(_box(rng, OBJECTS, rng.uniform(-w / 4, w / 4), 0.3, 0.42, 0.4, 0.15, 0.4))
    return parts


def _tv_unit(rng: np.random.Generator) -> list[Part]:
    """Low TV stand (furniture) with a TV on a small foot (tv); screens often read no depth."""
    w, h = rng.uniform(1.0, 1.8), rng.uniform(0.4, 0.6)
    tw, th = rng.uniform(0.7, min(1.3, w)), rng.uniform(0.45, 0.75)
    no_depth = bool(rng.random() < 0.3)
    return [_box(rng, FURNITURE, 0.0, 0.225, 0.0, w, 0.45, h),
            _box(rng, TV, 0.0, 0.2, h, 0.25, 0.2, 0.05),
            _box(rng, TV, 0.0, 0.2, h + 0.05, tw, 0.06, th, tex=(0.0, 1.0, 0.0, np.ones(3)), no_depth=no_depth)]


def _desk(rng: np.random.Generator) -> list[Part]:
    """Desk against the wall (desk -> table) with items and a chair pulled up in front."""
    w, d = rng.uniform(0.9, 1.5), rng.uniform(0.55, 0.75)
    parts = _table_parts(rng, w, d, rng.uniform(0.72, 0.76), y0=d / 2)
    parts += _items_on_top(rng, w, d, d / 2, 0.76, int(rng.integers(1, 4)))
    parts += _to_world(_chair(rng), rng.uniform(-0.2, 0.2), d + 0.45, np.pi + rng.uniform(-0.4, 0.4))
    return parts


def _dining(rng: np.random.Generator) -> list[Part]:
    """Table centred at the origin with 2-6 chairs facing it and items on top."""
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.7, 1.0), rng.uniform(0.72, 0.78)
    parts = _table_parts(rng, w, d, h)
    parts += _items_on_top(rng, w, d, 0.0, h, int(rng.integers(0, 4)))
    seats = [(x, -d / 2 - 0.3, 0.0) for x in (-w / 4, w / 4)] + [(x, d / 2 + 0.3, np.pi) for x in (-w / 4, w / 4)]
    seats += [(-w / 2 - 0.3, 0.0, -np.pi / 2), (w / 2 + 0.3, 0.0, np.pi / 2)]
    for i in rng.permutation(len(seats))[: int(rng.integers(2, 7))]:
        x, y, yaw = seats[i]
        parts += _to_world(_chair(rng), x, y, yaw + rng.uniform(-0.3, 0.3))
    return parts


def _coffee_table(rng: np.random.Generator) -> list[Part]:
    w, d, h = rng.uniform(0.8, 1.3), rng.uniform(0.5, 0.7), rng.uniform(0.38, 0.5)
    return _table_parts(rng, w, d, h) + _items_on_top(rng, w, d, 0.0, h, int(rng.integers(0, 4)), 0.5)


def _floor_object(rng: np.random.Generator, label: int = OBJECTS) -> list[Part]:
    """Bin, box, bag, floor lamp (objects) or unlabelled clutter (void)."""
    if label == OBJECTS and rng.random() < 0.3:  # floor lamp
        return [_box(rng, OBJECTS, 0.0, 0.2, 0.0, 0.04, 0.04, 1.4),
                _box(rng, OBJECTS, 0.0, 0.2, 1.4, 0.35, 0.35, 0.3, color=_color(rng, WINDOW))]
    w, d, h = rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.7)
    return [_box(rng, label, 0.0, d / 2, 0.0, w, d, h)]


def _window(rng: np.random.Generator, room_h: float) -> list[Part]:
    """Glass pane (bright, emissive, sensor often returns no depth) with optional curtains
    (curtain -> window in class13Mapping)."""
    w, z0 = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
    h = min(rng.uniform(1.0, 1.6), room_h - z0 - 0.15)
    parts = [_box(rng, WINDOW, 0.0, 0.015, z0, w, 0.03, h, tex=_tex(rng, (0.0, 0.1), (0.3, 1.0)),
                  emissive=True, no_depth=bool(rng.random() < 0.5))]
    if rng.random() < 0.4:
        color = _color(rng, WINDOW, CURTAIN_COLOURS)
        parts += [_box(rng, WINDOW, sx * (w / 2 + 0.15), 0.05, 0.05, 0.3, 0.08, room_h - 0.2, color=color,
                       tex=_tex(rng, (0.1, 0.25), (0.05, 0.12))) for sx in (-1, 1)]
    return parts


def _wall_item(rng: np.random.Generator, kind: str, room_h: float) -> list[Part]:
    """Picture, door (door -> wall) or wall-mounted TV, all thin boxes on a wall."""
    if kind == "picture":
        w, h = rng.uniform(0.3, 1.0), rng.uniform(0.25, 0.8)
        return [_box(rng, PICTURE, 0.0, 0.0125, rng.uniform(1.1, 1.6), w, 0.025, h,
                     tex=_tex(rng, (0.2, 0.45), (0.05, 0.3)))]
    if kind == "door":
        return [_box(rng, WALL, 0.0, 0.02, 0.0, 0.9, 0.04, 2.05, color=_color(rng, FURNITURE),
                     tex=_tex(rng, (0.02, 0.1), (0.03, 0.2)))]
    w = rng.uniform(0.8, 1.3)
    return [_box(rng, TV, 0.0, 0.035, rng.uniform(1.0, 1.3), w, 0.07, w * 0.58,
                 tex=(0.0, 1.0, 0.0, np.ones(3)), no_depth=bool(rng.random() < 0.3))]


# (probability, builder, placement) per room type; "wall" stands it against a wall.
_ROOM_TYPES = {
    "bedroom": [(0.95, _bed, "wall"), (0.7, _nightstand, "wall"), (0.4, _nightstand, "wall"),
                (0.7, _cabinet, "wall"), (0.3, _bookshelf, "wall"), (0.25, _tv_unit, "wall"),
                (0.4, _desk, "wall"), (0.3, _chair, "free")],
    "living": [(0.95, _sofa, "wall"), (0.4, lambda r: _sofa(r, r.uniform(0.8, 1.0)), "free"),
               (0.8, _coffee_table, "free"), (0.75, _tv_unit, "wall"), (0.5, _bookshelf, "wall"),
               (0.4, _cabinet, "wall"), (0.3, _chair, "free")],
    "office": [(0.9, _dining, "free"), (0.6, _bookshelf, "wall"), (0.6, _cabinet, "wall"),
               (0.5, _desk, "wall"), (0.3, _tv_unit, "wall"), (0.3, _chair, "free")],
}
_COMMON = [(0.6, _floor_object, "free"), (0.4, _floor_object, "wall"),
           (0.4, lambda r: _floor_object(r, VOID), "free")]


def _decorate_walls(rng: np.random.Generator, scene: Scene) -> None:
    """Windows, a door and pictures on the walls (their own occupancy: no overlap along a wall)."""
    wall_occ: list[np.ndarray] = []
    items = [_window(rng, scene.size[2]) for _ in range(int(rng.integers(0, 3)))]
    if rng.random() < 0.35:
        items.append(_wall_item(rng, "door", scene.size[2]))
    if rng.random() < 0.15:
        items.append(_wall_item(rng, "tv", scene.size[2]))
    items += [_wall_item(rng, "picture", scene.size[2]) for _ in range(int(rng.integers(0, 4)))]
    for parts in items:
        _place_on_wall(rng, scene, wall_occ, parts)


def _furnish(rng: np.random.Generator, scene: Scene, cam: Camera) -> None:
    """Fill the room: wall decorations, room-type furniture, clutter, maybe a rug (floor mat -> floor)."""
    cx, cy = cam.pos[0], cam.pos[1]
    occupied = [np.array([cx - 0.7, cx + 0.7, -1.0, cy + 0.9])]  # keep the camera's spot free
    _decorate_walls(rng, scene)
    kinds = list(_ROOM_TYPES)
    for p, build, where in _ROOM_TYPES[kinds[rng.integers(len(kinds))]] + _COMMON:
        if rng.random() >= p:
            continue
        parts = build(rng)
        if where == "wall":
            _place_on_wall(rng, scene, occupied, parts)
        else:
            _place_free(rng, scene, occupied, parts, y_min=cy + 1.0)
    if rng.random() < 0.4:
        rug = [_box(rng, FLOOR, 0.0, 0.0, 0.0, rng.uniform(1.2, 2.5), rng.uniform(1.0, 2.0), 0.01,
                    tex=_tex(rng, (0.05, 0.3), (0.05, 0.3)))]
        _place_free(rng, scene, [], rug, y_min=cy + 1.0)


# --------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------

_PLANE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)


def _camera_rays(cam: Camera, height: int, width: int) -> np.ndarray:
    """World ray directions (H*W, 3) float32 scaled so their camera-z component is 1: the hit
    distance ``t`` along them is then the z-depth (what a Kinect depth map stores)."""
    u = (np.arange(width, dtype=np.float32) + 0.5 - cam.cx) / cam.focal
    v = (np.arange(height, dtype=np.float32) + 0.5 - cam.cy) / cam.focal
    uu, vv = np.meshgrid(u, v)
    d_cam = np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size, np.float32)], axis=1)
    return (d_cam @ cam.rot.T.astype(np.float32)).astype(np.float32)


def _hit_room(origin: np.ndarray, dirs: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit of the (convex) room box from inside: the nearest forward crossing of its 6 planes.
    Returns t (N,) and plane index (N,) in 0..5 = x=0, x=Lx, y=0, y=Ly, floor, ceiling."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo = (0.0 - origin) / dirs  # (N, 3)
        t_hi = (size - origin) / dirs
    t_lo = np.where(t_lo > 0, t_lo, np.inf)
    t_hi = np.where(t_hi > 0, t_hi, np.inf)
    exit_t = np.minimum(t_lo, t_hi)
    side = (t_hi < t_lo).astype(np.int64)  # 1 = far plane of that axis
    axis = np.argmin(exit_t, axis=1)
    rows = np.arange(len(dirs))
    return exit_t[rows, axis], 2 * axis + side[rows, axis]


def _hit_boxes(origin: np.ndarray, dirs: np.ndarray, boxes: dict[str, np.ndarray]) -> tuple:
    """Slab test of N rays against B oriented boxes (Kay & Kajiya 1986) in each box's frame.
    Returns nearest t (N,), box index (N,), world normal (N, 3) of the entered face.
    Works axis by axis on (N, B) arrays: element-wise max/min are much faster than reductions
    over a trailing axis of length 3."""
    c, s, half = boxes["cos"], boxes["sin"], boxes["half"]  # (B,), (B,), (B, 3)
    rel = (origin[None, :] - boxes["center"]).astype(np.float32)  # (B, 3)
    o_loc = (rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c, rel[:, 2])
    dx, dy, dz = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]  # (N, 1)
    d_loc = (dx * c + dy * s, -dx * s + dy * c, np.broadcast_to(dz, (len(dirs), len(c))))
    t_near = np.full((len(dirs), len(c)), -np.inf, np.float32)
    t_far = np.full((len(dirs), len(c)), np.inf, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            inv = np.float32(1.0) / d_loc[k]  # +-inf for rays parallel to the slab
            t1, t2 = (-half[:, k] - o_loc[k]) * inv, (half[:, k] - o_loc[k]) * inv
            np.maximum(t_near, np.minimum(t1, t2), out=t_near)
            np.minimum(t_far, np.maximum(t1, t2), out=t_far)
    t = np.where((t_near <= t_far) & (t_near > 1e-3), t_near, np.inf)  # NaN compares False: miss
    rows = np.arange(len(dirs))
    best = np.argmin(t, axis=1)
    t_best = t[rows, best]
    # entered face of the chosen box: the slab whose entry distance equals t_near
    dl = np.stack([d[rows, best] for d in d_loc], 1)  # (N, 3)
    ol = np.stack([o[best] for o in o_loc], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entry = np.minimum((-half[best] - ol) / dl, (half[best] - ol) / dl)
    axis = np.argmax(np.nan_to_num(entry, nan=-np.inf), axis=1)
    n_loc = np.zeros((len(dirs), 3), np.float32)
    n_loc[rows, axis] = -np.sign(dl[rows, axis])
    cb, sb = c[best], s[best]
    normal = np.stack([n_loc[:, 0] * cb - n_loc[:, 1] * sb, n_loc[:, 0] * sb + n_loc[:, 1] * cb, n_loc[:, 2]], -1)
    return t_best, best, normal


def _box_table(boxes: list[Part]) -> dict[str, np.ndarray]:
    return {
        "center": np.array([b.center for b in boxes], np.float32).reshape(-1, 3),
        "half": np.array([b.half for b in boxes], np.float32).reshape(-1, 3),
        "cos": np.array([np.cos(b.yaw) for b in boxes], np.float32),
        "sin": np.array([np.sin(b.yaw) for b in boxes], np.float32),
    }


def _cast(scene: Scene, cam: Camera, dirs: np.ndarray, chunk_elems: int = 400_000) -> tuple:
    """Nearest hit of every ray: t (N,) z-depth metres, primitive id (N,) (0..5 planes, 6+ boxes),
    normal (N, 3). Rays are processed in chunks so memory stays ~ chunk_elems * B * 4 bytes."""
    origin = cam.pos.astype(np.float32)
    t, prim = _hit_room(origin, dirs, scene.size.astype(np.float32))
    normal = _PLANE_NORMALS[prim]
    if not scene.boxes:
        return t, prim, normal
    table = _box_table(scene.boxes)
    step = max(1, chunk_elems // len(scene.boxes))
    for start in range(0, len(dirs), step):
        sl = slice(start, start + step)
        tb, ib, nb = _hit_boxes(origin, dirs[sl], table)
        closer = tb < t[sl]
        t[sl] = np.where(closer, tb, t[sl])
        prim[sl] = np.where(closer, ib + 6, prim[sl])
        normal[sl] = np.where(closer[:, None], nb, normal[sl])
    return t, prim, normal


def _attr_table(scene: Scene) -> dict[str, np.ndarray]:
    """Per-primitive attributes (planes then boxes), indexed by the primitive id of each hit."""
    prims = scene.planes + scene.boxes
    return {
        "label": np.array([p.label for p in prims], np.uint8),
        "color": np.array([p.color for p in prims], np.float32),
        "amp": np.array([p.tex[0] for p in prims], np.float32),
        "period": np.array([p.tex[1] for p in prims], np.float32),
        "phase": np.array([p.tex[2] for p in prims], np.float32),
        "tex_dir": np.array([p.tex[3] for p in prims], np.float32),
        "emissive": np.array([p.emissive for p in prims], bool),
        "no_depth": np.array([p.no_depth for p in prims], bool),
    }


def _shade(rng: np.random.Generator, scene: Scene, cam: Camera, dirs: np.ndarray, t: np.ndarray,
           prim: np.ndarray, normal: np.ndarray, attrs: dict[str, np.ndarray]) -> np.ndarray:
    """RGB (N, 3) in [0, 1]: colour x stripe texture x (ambient + Lambert point light with
    1/(1 + k d^2) fall-off), emissive windows, then white balance, exposure and sensor noise."""
    points = cam.pos[None, :].astype(np.float32) + t[:, None] * dirs
    to_light = scene.light[None, :].astype(np.float32) - points
    dist = np.linalg.norm(to_light, axis=1) + 1e-6
    lambert = np.clip((normal * to_light).sum(1) / dist, 0.0, 1.0)
    shade = 0.35 + 0.8 * lambert / (1.0 + 0.04 * dist**2)
    shade = np.where(attrs["emissive"][prim], 1.05, shade)
    coord = (points * attrs["tex_dir"][prim]).sum(1)
    tex = 1.0 + attrs["amp"][prim] * np.sin(2 * np.pi * coord / attrs["period"][prim] + attrs["phase"][prim])
    rgb = attrs["color"][prim] * (tex * shade)[:, None]
    rgb = rgb * rng.uniform(0.9, 1.1, 3).astype(np.float32) * np.float32(rng.uniform(0.8, 1.15))
    rgb = rgb + rng.normal(0.0, rng.uniform(0.01, 0.035), rgb.shape).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0)


def _sensor_depth(rng: np.random.Generator, t: np.ndarray, prim: np.ndarray, attrs: dict,
                  height: int, width: int) -> np.ndarray:
    """Kinect-like depth (H, W) uint16 mm: noise std 1.5 mm * z[m]^2 (error grows with z^2,
    Khoshelham & Elberink, Sensors 2012), 0 beyond MAX_DEPTH_M, on glass / black screens and in
    a few random drop-out blobs."""
    z = t + rng.normal(0.0, 1.0, t.shape).astype(np.float32) * 0.0015 * t**2
    z = np.where((t > MAX_DEPTH_M) | attrs["no_depth"][prim] | ~np.isfinite(t), 0.0, z).reshape(height, width)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(0, 3))):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.02, 0.06) * width
        z[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 0.0
    return np.clip(np.round(z * 1000.0), 0, 65535).astype(np.uint16)


def sample_room(rng: np.random.Generator, height: int = 120, width: int = 160) -> RoomSample:
    """Build a random furnished room, place a camera and render one RGB-D-label frame.

    Returns image (H, W, 3) uint8, depth_mm (H, W) uint16 (0 = missing), label (H, W) uint8 in
    0..13, instance (H, W) int32 (primitive id), the scene and the camera.
    """
    scene = _room(rng)
    cam = _camera(rng, scene.size, height, width)
    _furnish(rng, scene, cam)
    dirs = _camera_rays(cam, height, width)
    t, prim, normal = _cast(scene, cam, dirs)
    attrs = _attr_table(scene)
    rgb = _shade(rng, scene, cam, dirs, t, prim, normal, attrs)
    return RoomSample(
        image=np.round(rgb * 255).astype(np.uint8).reshape(height, width, 3),
        depth_mm=_sensor_depth(rng, t, prim, attrs, height, width),
        label=attrs["label"][prim].reshape(height, width),
        instance=prim.astype(np.int32).reshape(height, width),
        scene=scene, camera=cam,
    )


# --------------------------------------------------------------------------------------------
# Writing the competition layout
# --------------------------------------------------------------------------------------------


def write_png(path: Path, array: np.ndarray) -> None:
    """Atomic PNG write (uint8 (H, W[, 3]) or uint16 (H, W) -> 16-bit greyscale)."""
    with atomic_open(path, "wb") as fh:
        Image.fromarray(array).save(fh, format="PNG", compress_level=1)


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """Independent, reproducible stream per frame (so frame i does not depend on n_train)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def make_ids(n: int, start: int = 1) -> list[str]:
    """Zero-padded ids ``0001, 0002, ...`` (at least 4 digits)."""
    digits = max(4, len(str(start + n - 1)))
    return [f"{i:0{digits}d}" for i in range(start, start + n)]


def write_split_csvs(root: Path, train_ids: Sequence[str], test_ids: Sequence[str], height: int,
                     width: int) -> None:
    """train.csv / test.csv (column ``id``) and sample_submission.csv (one all-wall row per test
    image: ClassId 12, EncodedPixels ``1 H*W`` = one run covering every pixel)."""
    save_csv(root / "train.csv", pd.DataFrame({"id": list(train_ids)}, dtype=str))
    save_csv(root / "test.csv", pd.DataFrame({"id": list(test_ids)}, dtype=str))
    sub = pd.DataFrame({"ImageId": list(test_ids), "ClassId": SUBMISSION_CLASS_ID,
                        "EncodedPixels": f"1 {height * width}"})
    save_csv(root / "sample_submission.csv", sub)


def generate_nyuv2(root: Path, n_train: int = 48, n_test: int = 12, height: int = 120,
                   width: int = 160, seed: int = 0) -> Path:
    """Write a synthetic NYUv2-style data set to ``root`` (layout in the module docstring).

    Train ids are 0001..n_train, test ids continue after them (ids are unique across splits, as
    frame indices are in the real data). Deterministic for a given seed: frame k is drawn from
    ``SeedSequence([seed, k])``. Existing files are overwritten; stale extra files from a larger
    earlier run are left but are not listed in the csvs. Returns ``root``.
    """
    if n_train < 1 or n_test < 0 or height < 8 or width < 8:
        raise ValueError(f"need n_train >= 1, n_test >= 0, height/width >= 8; got "
                         f"{n_train=}, {n_test=}, {height=}, {width=}")
    root = Path(root)
    ids = make_ids(n_train + n_test)
    splits = {"train": ids[:n_train], "test": ids[n_train:]}
    for split, split_ids in splits.items():
        for frame_id in split_ids:
            sample = sample_room(frame_rng(seed, int(frame_id)), height, width)
            base = root / split
            write_png(base / "image" / f"{frame_id}.png", sample.image)
            write_png(base / "depth" / f"{frame_id}.png", sample.depth_mm)
            write_png(base / "label" / f"{frame_id}.png", sample.label)
    write_split_csvs(root, splits["train"], splits["test"], height, width)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic NYUv2-style RGB-D segmentation set.")
    parser.add_argument("--out", type=Path, default=None, help="output root (default: <input>/nyuv2)")
    parser.add_argument("--n-train", type=int, default=48)
    parser.add_argument("--n-test", type=int, default=12)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else input_root() / "nyuv2"
    start = time.perf_counter()
    generate_nyuv2(out, args.n_train, args.n_test, args.height, args.width, args.seed)
    print(f"wrote {args.n_train} train + {args.n_test} test frames ({args.height}x{args.width}) "
          f"to {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
