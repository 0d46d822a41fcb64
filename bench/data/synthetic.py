"""Synthetic street scenes written in the exact Cityscapes layout.

:func:`write_synthetic_cityscapes` draws procedural street scenes with numpy (no extra dependency) and writes them as
the official dataset does::

    ROOT/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png
    ROOT/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelTrainIds.png
    ROOT/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_color.png

Label ids, train ids and colours come from the official table (``cityscapesscripts.helpers.labels``); the colour image
is RGBA like the official one. Each scene has sky, buildings with windows, a wall, a fence, vegetation, terrain,
sidewalks, a road with lane marks, a tram, a bus, a truck, a car, a motorcycle with its rider, a bicycle, persons,
poles, a traffic light and a traffic sign, so that all 19 evaluated classes occur, plus some ignored ones (parking,
the ego vehicle). Surfaces carry grain and blotch textures and objects have sharp edges, so blur, noise and weather
corruptions have something to hurt.

The geometry is drawn in resolution-independent units from ``numpy.random.default_rng([seed, index])``; the textures
from a second generator ``default_rng([seed, index, 1])``. The same seed gives the same scene at any resolution and
the same bytes on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PNG_COMPRESS_LEVEL = 1
"""zlib level for the written PNGs: several times faster than the default 6, for files somewhat larger."""

_ROAD_WIDTH_M = 7.0  # the road is two lanes wide; object sizes are in metres relative to it


def _label_tables() -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    from cityscapesscripts.helpers.labels import labels

    ids = {label.name: label.id for label in labels if label.id >= 0}
    train = np.full(256, 255, dtype=np.uint8)
    color = np.zeros((256, 3), dtype=np.uint8)
    for label in labels:
        if label.id >= 0:
            train[label.id] = label.trainId if 0 <= label.trainId < 19 else 255
            color[label.id] = label.color
    return ids, train, color


_IDS, TRAIN_OF_ID, _COLOR_OF_ID = _label_tables()


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-scale noise that varies over about ``cells`` cells across the image height (bilinear)."""
    gh, gw = cells + 1, max(2, round(cells * w / max(h, 1))) + 1
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    ys = np.linspace(0, gh - 1, h, dtype=np.float32)
    xs = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), gh - 2)
    x0 = np.minimum(xs.astype(int), gw - 2)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


class _Canvas:
    """An image and its label-id map, with shape painters working in pixel coordinates (floats)."""

    def __init__(self, h: int, w: int, texture_rng: np.random.Generator) -> None:
        self.h, self.w = h, w
        self.image = np.zeros((h, w, 3), dtype=np.float32)
        self.label = np.zeros((h, w), dtype=np.uint8)  # 0 = unlabeled
        self.grain = texture_rng.standard_normal((h, w), dtype=np.float32)
        self.blotch = _smooth_noise(texture_rng, h, w, 6) + 0.5 * _smooth_noise(texture_rng, h, w, 24)

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        j0, j1 = int(np.floor(x0)), int(np.ceil(x1))
        i0, i1 = int(np.floor(y0)), int(np.ceil(y1))
        j1, i1 = max(j1, j0 + 1), max(i1, i0 + 1)  # never thinner than one pixel
        j0, i0, j1, i1 = max(j0, 0), max(i0, 0), min(j1, self.w), min(i1, self.h)
        if j1 <= j0 or i1 <= i0:
            return None
        return slice(i0, i1), slice(j0, j1)

    @staticmethod
    def _centres(box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        ys = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(box[1].start, box[1].stop, dtype=np.float32)[None, :] + 0.5
        return xs, ys

    def paint(
        self,
        box: tuple[slice, slice] | None,
        mask: np.ndarray | None,
        label: str | None,
        color: tuple[float, float, float] | np.ndarray,
        grain: float = 5.0,
        blotch: float = 0.08,
        at_least_one: bool = True,
    ) -> None:
        """Fills the masked pixels of a box with a textured colour and (unless None) a label.

        A shape too small to cover any pixel centre still gets its centre pixel when ``at_least_one`` is set, so small
        far objects never vanish at low resolution.
        """
        if box is None:
            return
        shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
        if mask is None:
            mask = np.ones(shape, dtype=bool)
        elif not mask.any():
            if not at_least_one:
                return
            # too small to cover a pixel centre: keep the shape visible as one pixel
            mask = np.zeros(shape, dtype=bool)
            mask[shape[0] // 2, shape[1] // 2] = True
        color = np.asarray(color, dtype=np.float32)
        tex = color * (1 + blotch * self.blotch[box][mask])[:, None] + grain * self.grain[box][mask][:, None]
        self.image[box][mask] = tex
        if label is not None:
            self.label[box][mask] = _IDS[label]

    def rect(self, x0: float, y0: float, x1: float, y1: float, label: str | None, color, **tex) -> None:
        self.paint(self._box(x0, y0, x1, y1), None, label, color, **tex)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, label: str | None, color, **tex) -> None:
        box = self._box(cx - rx, cy - ry, cx + rx, cy + ry)
        if box is None:
            return
        xs, ys = self._centres(box)
        mask = ((xs - cx) / max(rx, 0.5)) ** 2 + ((ys - cy) / max(ry, 0.5)) ** 2 <= 1
        self.paint(box, mask, label, color, **tex)

    def ring(self, cx: float, cy: float, r: float, width: float, label: str | None, color, **tex) -> None:
        box = self._box(cx - r - width, cy - r - width, cx + r + width, cy + r + width)
        if box is None:
            return
        xs, ys = self._centres(box)
        mask = np.abs(np.hypot(xs - cx, ys - cy) - r) <= max(width, 1.0) / 2
        self.paint(box, mask, label, color, **tex)

    def polygon(self, points: list[tuple[float, float]], label: str | None, color, **tex) -> None:
        px = np.array([p[0] for p in points], dtype=np.float32)
        py = np.array([p[1] for p in points], dtype=np.float32)
        box = self._box(px.min(), py.min(), px.max(), py.max())
        if box is None:
            return
        xs, ys = self._centres(box)
        inside = np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), dtype=bool)
        for k in range(len(points)):  # even-odd rule over the edges
            xa, ya, xb, yb = px[k - 1], py[k - 1], px[k], py[k]
            if ya == yb:
                continue
            crosses = (ys >= min(ya, yb)) & (ys < max(ya, yb))
            x_at = xa + (ys - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (xs < x_at)
        self.paint(box, inside, label, color, **tex)

    def segment(
        self, x0: float, y0: float, x1: float, y1: float, width: float, label: str | None, color, **tex
    ) -> None:
        half = max(width, 1.0) / 2
        box = self._box(min(x0, x1) - half, min(y0, y1) - half, max(x0, x1) + half, max(y0, y1) + half)
        if box is None:
            return
        xs, ys = self._centres(box)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        mask = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy)) <= half
        self.paint(box, mask, label, color, **tex)


def _jitter(rng: np.random.Generator, color: tuple[float, float, float], amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(color, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


class _Scene:
    """Street geometry: horizon, vanishing point, road and sidewalk edges, and a metres-to-pixels scale by depth."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.hy = rng.uniform(0.42, 0.5) * h
        self.vx = rng.uniform(0.42, 0.58) * w
        self.road_top = 0.012 * w  # half-width at the horizon
        self.road_l, self.road_r = rng.uniform(0.06, 0.16) * w, rng.uniform(0.84, 0.94) * w
        self.walk_top = 0.03 * w
        self.walk_l, self.walk_r = -rng.uniform(0.2, 0.4) * w, (1 + rng.uniform(0.2, 0.4)) * w

    def y(self, t: float) -> float:
        """Image row of depth t (0 at the horizon, 1 at the bottom edge)."""
        return self.hy + t * (self.h - self.hy)

    def x(self, t: float, u: float) -> float:
        """Image column at depth t and lateral position u (0 left road edge, 1 right road edge, beyond: sidewalks)."""
        left = self.vx - self.road_top + t * (self.road_l - self.vx + self.road_top)
        right = self.vx + self.road_top + t * (self.road_r - self.vx - self.road_top)
        return left + u * (right - left)

    def m(self, t: float) -> float:
        """Pixels per metre at depth t."""
        return (self.x(t, 1) - self.x(t, 0)) / _ROAD_WIDTH_M


def _draw_background(c: _Canvas, s: _Scene, rng: np.random.Generator) -> None:
    h, w, hy = c.h, c.w, s.hy
    # sky: vertical gradient with clouds
    top, low = _jitter(rng, (70, 120, 190)), _jitter(rng, (175, 200, 225))
    rows = max(int(np.ceil(hy)), 1)
    frac = (np.arange(rows, dtype=np.float32) / rows)[:, None, None]
    clouds = np.clip(c.blotch[:rows], 0, None)[:, :, None] * 45
    c.image[:rows] = top * (1 - frac) + low * frac + clouds + 2 * c.grain[:rows, :, None]
    c.label[:rows] = _IDS["sky"]
    # buildings along the horizon, with gaps
    x = rng.uniform(-0.05, 0.02) * w
    while x < w:
        bw = rng.uniform(0.08, 0.2) * w
        if rng.random() < 0.2:
            x += rng.uniform(0.02, 0.06) * w
            continue
        top_y = rng.uniform(0.06, max(0.07, hy / h - 0.14)) * h
        facade = _jitter(rng, [(150, 140, 130), (120, 110, 100), (175, 165, 150), (95, 95, 105)][rng.integers(4)], 25)
        c.rect(x, top_y, x + bw, hy + 1, "building", facade, grain=6, blotch=0.12)
        c.rect(x, top_y, x + max(0.004 * w, 1), hy + 1, "building", facade * 0.6, grain=3)  # shadowed edge
        lit = _jitter(rng, (235, 215, 140), 10)
        dark = _jitter(rng, (45, 55, 70), 10)
        ww, wh, sx, sy = 0.018 * w, 0.03 * h, 0.036 * w, 0.06 * h
        wy = top_y + 0.02 * h
        while wy + wh < hy - 0.04 * h:
            wx = x + 0.012 * w
            while wx + ww < x + bw - 0.008 * w:
                c.rect(wx, wy, wx + ww, wy + wh, "building", lit if rng.random() < 0.25 else dark, grain=3)
                wx += sx
            wy += sy
        x += bw
    # a hedge and bushes on the horizon
    for _ in range(2):
        cx = rng.uniform(0.05, 0.95) * w
        c.ellipse(
            cx,
            hy - 0.03 * h,
            rng.uniform(0.04, 0.08) * w,
            0.05 * h,
            "vegetation",
            _jitter(rng, (70, 105, 40)),
            grain=14,
            blotch=0.3,
        )
    # a wall on the left, a fence on the right
    wx0 = rng.uniform(0.0, 0.2) * w
    wx1 = wx0 + rng.uniform(0.12, 0.2) * w
    wall = _jitter(rng, (165, 160, 150))
    c.rect(wx0, hy - 0.07 * h, wx1, hy + 1, "wall", wall, grain=5, blotch=0.1)
    for k in range(1, 6):  # block joints
        c.rect(wx0, hy - 0.07 * h + k * 0.012 * h, wx1, hy - 0.07 * h + k * 0.012 * h + 1, "wall", wall * 0.7, grain=2)
    fx0 = rng.uniform(0.66, 0.78) * w
    fx1 = fx0 + rng.uniform(0.12, 0.18) * w
    fence = _jitter(rng, (120, 100, 80))
    bar = max(0.002 * w, 1.0)
    fx = fx0
    while fx < fx1:
        c.rect(fx, hy - 0.08 * h, fx + bar, hy + 1, "fence", fence, grain=4)
        fx += 0.01 * w
    for ry in (hy - 0.075 * h, hy - 0.03 * h):
        c.rect(fx0, ry, fx1, ry + max(0.006 * h, 1), "fence", fence, grain=4)


def _draw_ground(c: _Canvas, s: _Scene, rng: np.random.Generator) -> None:
    h, w, hy = c.h, c.w, s.hy
    c.rect(0, hy, w, h, "terrain", _jitter(rng, (105, 140, 60)), grain=16, blotch=0.25)
    walk = _jitter(rng, (170, 165, 160))
    c.polygon(
        [(s.vx - s.walk_top, hy), (s.vx + s.walk_top, hy), (s.walk_r, h), (s.walk_l, h)],
        "sidewalk",
        walk,
        grain=8,
        blotch=0.1,
    )
    for t in (0.15, 0.3, 0.5, 0.75):  # paving joints, on the sidewalk only
        y = s.y(t)
        box = c._box(0, y, w, y + max(0.003 * h, 1))
        if box is not None:
            c.paint(box, c.label[box] == _IDS["sidewalk"], None, walk * 0.75, grain=3, at_least_one=False)
    # a parking bay beside the right kerb (ignored class)
    t0, t1 = rng.uniform(0.45, 0.5), rng.uniform(0.58, 0.64)
    c.polygon(
        [(s.x(t0, 1), s.y(t0)), (s.x(t0, 1.25), s.y(t0)), (s.x(t1, 1.25), s.y(t1)), (s.x(t1, 1), s.y(t1))],
        "parking",
        _jitter(rng, (150, 145, 140)),
        grain=8,
    )
    asphalt = _jitter(rng, (85, 85, 90), 10)
    c.polygon(
        [(s.vx - s.road_top, hy), (s.vx + s.road_top, hy), (s.road_r, h), (s.road_l, h)],
        "road",
        asphalt,
        grain=12,
        blotch=0.15,
    )
    kerb = _jitter(rng, (200, 200, 195), 10)
    for u in (0.0, 1.0):  # kerbs belong to the sidewalk
        c.segment(s.x(0, u), hy, s.x(1, u), h, max(0.15 * s.m(1), 1), "sidewalk", kerb, grain=4)
    # dashed centre line: lane marks are road
    t = 0.02
    while t < 1:
        t_end = min(t + 0.08 * (0.3 + t), 1)
        c.polygon(
            [
                (s.x(t, 0.49), s.y(t)),
                (s.x(t, 0.51), s.y(t)),
                (s.x(t_end, 0.51), s.y(t_end)),
                (s.x(t_end, 0.49), s.y(t_end)),
            ],
            "road",
            (235, 235, 225),
            grain=4,
        )
        t = t_end + 0.08 * (0.3 + t)


def _wheel(c: _Canvas, cx: float, cy: float, r: float, label: str) -> None:
    c.ellipse(cx, cy, r, r, label, (25, 25, 25), grain=3)
    c.ellipse(cx, cy, r * 0.45, r * 0.45, label, (140, 140, 145), grain=3)


def _draw_vehicle_rear(c: _Canvas, s: _Scene, rng: np.random.Generator, t: float, u: float, kind: str) -> None:
    """A car, truck or bus seen from behind, standing at depth t, lateral position u."""
    m = s.m(t)
    width, height = {"car": (1.8, 1.45), "truck": (2.5, 3.6), "bus": (2.55, 3.2)}[kind]
    cx, base = s.x(t, u), s.y(t)
    x0, x1, top = cx - width * m / 2, cx + width * m / 2, base - height * m
    body = _jitter(rng, [(180, 30, 30), (30, 60, 150), (220, 220, 215), (40, 40, 45), (200, 170, 40)][rng.integers(5)])
    wheel_r = 0.33 * m
    for wx in (x0 + 0.25 * m, x1 - 0.25 * m):
        c.rect(wx - 0.15 * m, base - 2 * wheel_r, wx + 0.15 * m, base, kind, (20, 20, 20), grain=2)
    if kind == "car":
        c.rect(x0, base - 0.95 * m, x1, base - 0.25 * m, kind, body, grain=4)
        c.polygon(
            [
                (x0 + 0.15 * m, base - 0.95 * m),
                (x1 - 0.15 * m, base - 0.95 * m),
                (x1 - 0.35 * m, top),
                (x0 + 0.35 * m, top),
            ],
            kind,
            body * 0.9,
            grain=4,
        )
        c.polygon(
            [
                (x0 + 0.25 * m, base - 1.0 * m),
                (x1 - 0.25 * m, base - 1.0 * m),
                (x1 - 0.4 * m, top + 0.08 * m),
                (x0 + 0.4 * m, top + 0.08 * m),
            ],
            kind,
            (50, 60, 75),
            grain=3,
        )  # rear window
    elif kind == "truck":
        c.rect(x0, top, x1, base - 0.5 * m, kind, _jitter(rng, (210, 210, 205)), grain=5, blotch=0.1)  # cargo box
        c.rect(x0 + 0.1 * m, top + 0.15 * m, x1 - 0.1 * m, top + 0.25 * m, kind, (120, 120, 120), grain=2)
        c.rect(cx - 0.02 * m, top + 0.3 * m, cx + 0.02 * m, base - 0.6 * m, kind, (90, 90, 90), grain=2)  # doors
        c.rect(x0, base - 0.6 * m, x1, base - 0.35 * m, kind, (50, 50, 50), grain=2)  # bumper
    else:
        c.rect(x0, top, x1, base - 0.3 * m, kind, body, grain=5)
        c.rect(x0 + 0.15 * m, top + 0.3 * m, x1 - 0.15 * m, top + 1.4 * m, kind, (40, 50, 60), grain=3)
        c.rect(x0 + 0.4 * m, top + 0.08 * m, x1 - 0.4 * m, top + 0.25 * m, kind, (240, 160, 30), grain=2)  # route sign
    for lx in (x0 + 0.05 * m, x1 - 0.3 * m):  # tail lights
        c.rect(lx, base - 0.85 * m, lx + 0.25 * m, base - 0.65 * m, kind, (230, 30, 30), grain=3)
    c.rect(cx - 0.26 * m, base - 0.6 * m, cx + 0.26 * m, base - 0.48 * m, kind, (235, 235, 235), grain=2)  # plate


def _draw_tram(c: _Canvas, s: _Scene, rng: np.random.Generator) -> None:
    t = rng.uniform(0.06, 0.1)
    m, base = s.m(t), s.y(t)
    x0 = rng.uniform(0.22, 0.34) * c.w
    length = rng.uniform(22, 28) * m
    body = _jitter(rng, [(200, 40, 40), (240, 240, 235), (250, 200, 40)][rng.integers(3)])
    c.rect(x0, base - 3.6 * m, x0 + length, base - 0.3 * m, "train", body, grain=5)
    c.rect(x0, base - 3.6 * m, x0 + length, base - 3.3 * m, "train", body * 0.6, grain=3)
    wx = x0 + 0.5 * m
    while wx + 1.5 * m < x0 + length:
        c.rect(wx, base - 3.0 * m, wx + 1.5 * m, base - 1.9 * m, "train", (50, 60, 70), grain=3)
        wx += 2.2 * m
    c.rect(x0, base - 0.3 * m, x0 + length, base, "rail track", (70, 65, 60), grain=6)
    c.segment(x0 + length * 0.4, base - 3.6 * m, x0 + length * 0.5, base - 4.6 * m, 0.08 * m, "train", (40, 40, 40))


def _draw_person(
    c: _Canvas, rng: np.random.Generator, x: float, base: float, m: float, label: str = "person", seated: bool = False
) -> None:
    shirt = _jitter(rng, [(200, 40, 40), (40, 90, 180), (230, 230, 230), (60, 140, 70), (30, 30, 30)][rng.integers(5)])
    trousers = _jitter(rng, [(40, 50, 80), (30, 30, 30), (120, 100, 80)][rng.integers(3)])
    skin = _jitter(rng, [(230, 190, 160), (180, 130, 100), (110, 75, 55)][rng.integers(3)], 10)
    hip = base - (0.55 if seated else 0.9) * m
    if seated:
        c.segment(x, hip, x + 0.35 * m, base - 0.25 * m, 0.16 * m, label, trousers, grain=4)
    else:
        for dx in (-0.1, 0.1):
            c.segment(x + dx * m, hip, x + dx * 1.6 * m, base, 0.16 * m, label, trousers, grain=4)
    c.rect(x - 0.22 * m, hip - 0.6 * m, x + 0.22 * m, hip, label, shirt, grain=5)
    for side in (-1, 1):
        c.segment(x + side * 0.22 * m, hip - 0.55 * m, x + side * 0.3 * m, hip - 0.05 * m, 0.1 * m, label, shirt)
    c.ellipse(x, hip - 0.74 * m, 0.11 * m, 0.13 * m, label, skin, grain=3)


def _draw_two_wheeler(c: _Canvas, rng: np.random.Generator, x: float, base: float, m: float, kind: str) -> None:
    """A bicycle (rings and a frame) or a motorcycle (solid wheels and a body), side view, centred on x."""
    r = (0.34 if kind == "bicycle" else 0.32) * m
    xb, xf = x - 0.55 * m, x + 0.55 * m
    cy = base - r
    if kind == "bicycle":
        frame = _jitter(rng, [(30, 120, 200), (200, 30, 30), (30, 30, 30)][rng.integers(3)])
        for wx in (xb, xf):
            c.ring(wx, cy, r, 0.06 * m, kind, (20, 20, 20), grain=2)
        seat, bar = (x - 0.15 * m, cy - 0.55 * m), (x + 0.45 * m, cy - 0.6 * m)
        for (ax, ay), (bx, by) in [
            ((xb, cy), (x, cy)),
            ((x, cy), seat),
            ((seat[0], seat[1]), bar),
            ((x, cy), bar),
            ((xb, cy), seat),
            ((bar[0], bar[1]), (xf, cy)),
        ]:
            c.segment(ax, ay, bx, by, 0.05 * m, kind, frame, grain=2)
        c.rect(seat[0] - 0.1 * m, seat[1] - 0.04 * m, seat[0] + 0.1 * m, seat[1] + 0.02 * m, kind, (20, 20, 20))
    else:
        body = _jitter(rng, [(20, 20, 20), (180, 20, 20), (220, 220, 220)][rng.integers(3)])
        for wx in (xb, xf):
            _wheel(c, wx, cy, r, kind)
        c.polygon(
            [
                (xb + 0.1 * m, cy - 0.1 * m),
                (xf - 0.1 * m, cy - 0.1 * m),
                (xf - 0.25 * m, cy - 0.55 * m),
                (xb + 0.2 * m, cy - 0.5 * m),
            ],
            kind,
            body,
            grain=4,
        )
        c.segment(xf - 0.1 * m, cy, xf - 0.3 * m, cy - 0.75 * m, 0.06 * m, kind, (60, 60, 60))


def _draw_pole(c: _Canvas, x: float, base: float, m: float, height: float) -> float:
    c.rect(x - 0.07 * m, base - height * m, x + 0.07 * m, base, "pole", (110, 110, 115), grain=3)
    return base - height * m


def _draw_objects(c: _Canvas, s: _Scene, rng: np.random.Generator) -> None:
    _draw_tram(c, s, rng)
    for kind, t, u in (
        ("bus", rng.uniform(0.22, 0.32), 0.72),
        ("truck", rng.uniform(0.36, 0.46), 0.27),
        ("car", rng.uniform(0.15, 0.2), 0.3),
    ):
        _draw_vehicle_rear(c, s, rng, t, u, kind)
    # a tree far on the right sidewalk
    t = rng.uniform(0.2, 0.3)
    tx, base, m = s.x(t, 1.35), s.y(t), s.m(t)
    c.rect(tx - 0.15 * m, base - 3.0 * m, tx + 0.15 * m, base, "vegetation", (90, 65, 45), grain=6)
    for dx, dy in ((0, 4.2), (-1.1, 3.6), (1.1, 3.6)):
        c.ellipse(
            tx + dx * m,
            base - dy * m,
            1.4 * m,
            1.2 * m,
            "vegetation",
            _jitter(rng, (60, 100, 35)),
            grain=18,
            blotch=0.35,
        )
    # a street lamp and a traffic light on the left, a traffic sign on the right
    t = rng.uniform(0.32, 0.4)
    _draw_pole(c, s.x(t, -0.2), s.y(t), s.m(t), 6.0)
    t = rng.uniform(0.45, 0.55)
    m, x, base = s.m(t), s.x(t, -0.25), s.y(t)
    top = _draw_pole(c, x, base, m, 4.2)
    c.rect(x - 0.2 * m, top - 0.1 * m, x + 0.2 * m, top + 1.0 * m, "traffic light", (35, 35, 30), grain=3)
    for k, lamp in enumerate([(230, 40, 30), (90, 80, 30), (40, 90, 50)]):
        c.ellipse(x, top + (0.15 + 0.3 * k) * m, 0.11 * m, 0.11 * m, "traffic light", lamp, grain=2)
    t = rng.uniform(0.5, 0.6)
    m, x, base = s.m(t), s.x(t, 1.2), s.y(t)
    top = _draw_pole(c, x, base, m, 2.8)
    if rng.random() < 0.5:
        c.ellipse(x, top - 0.3 * m, 0.35 * m, 0.35 * m, "traffic sign", (200, 30, 30), grain=3)
        c.ellipse(x, top - 0.3 * m, 0.25 * m, 0.25 * m, "traffic sign", (240, 240, 240), grain=3)
    else:
        c.polygon([(x - 0.4 * m, top), (x + 0.4 * m, top), (x, top - 0.7 * m)], "traffic sign", (240, 200, 30), grain=3)
    # persons on both sidewalks
    for t, u in ((rng.uniform(0.58, 0.7), -0.3), (rng.uniform(0.3, 0.4), 1.25)):
        _draw_person(c, rng, s.x(t, u), s.y(t), s.m(t))
    # a parked bicycle on the left sidewalk, a motorcyclist on the road
    t = rng.uniform(0.7, 0.8)
    _draw_two_wheeler(c, rng, s.x(t, -0.22), s.y(t), s.m(t), "bicycle")
    t = rng.uniform(0.55, 0.62)
    m, x, base = s.m(t), s.x(t, 0.58), s.y(t)
    _draw_two_wheeler(c, rng, x, base, m, "motorcycle")
    _draw_person(c, rng, x - 0.1 * m, base - 0.35 * m, m, label="rider", seated=True)
    # the nearest car, in the right lane
    _draw_vehicle_rear(c, s, rng, rng.uniform(0.8, 0.9), 0.74, "car")
    # the ego vehicle's bonnet (ignored)
    c.ellipse(c.w / 2, c.h * 1.28, 0.8 * c.w, 0.32 * c.h, "ego vehicle", (35, 35, 40), grain=3)


def draw_scene(size: tuple[int, int], seed: int = 0, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws one synthetic street scene.

    Args:
        size: (H, W) in pixels.
        seed: dataset seed.
        index: image index within the dataset.

    Returns:
        (image uint8 (H, W, 3) RGB, label ids uint8 (H, W)).
    """
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    rng = np.random.default_rng([seed, index])
    canvas = _Canvas(h, w, np.random.default_rng([seed, index, 1]))
    scene = _Scene(rng, h, w)
    _draw_background(canvas, scene, rng)
    _draw_ground(canvas, scene, rng)
    _draw_objects(canvas, scene, rng)
    exposure = rng.uniform(0.85, 1.15)
    image = np.clip(canvas.image * exposure, 0, 255).astype(np.uint8)
    return image, canvas.label


def model_scenes(model: Any, size: tuple[int, int], count: int, seed: int) -> list[Any]:
    """`count` scenes (`draw_scene`, indices 0..count-1 of `seed`) as float32 (1, 3, H, W) torch tensors normalised
    with `model.meta`'s mean and std: the inputs the deployment checks and benchmarks compare backends on and
    calibrate int8 with."""
    import torch

    mean = torch.tensor(model.meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.meta.std).view(1, 3, 1, 1)
    out = []
    for i in range(count):
        image = torch.from_numpy(draw_scene(size, seed=seed, index=i)[0].astype(np.float32) / 255.0)
        out.append((image.permute(2, 0, 1)[None] - mean) / std)
    return out


def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, compress_level=PNG_COMPRESS_LEVEL)  # mode from the array: RGB, L or RGBA


def write_synthetic_cityscapes(
    root: str | Path,
    num_images: int = 4,
    size: tuple[int, int] = (64, 128),
    split: str = "val",
    seed: int = 0,
    city: str = "synthtown",
) -> Path:
    """Writes a synthetic dataset in the official Cityscapes layout and naming.

    Image i is ``{city}_{i:06d}_000019`` (the frame number of the official val images).

    Args:
        root: dataset root to create or add to.
        num_images: number of scenes.
        size: (H, W) in pixels; Cityscapes is (1024, 2048). At least 32 px per side for the corruptions.
        split: split folder name.
        seed: dataset seed; the same seed gives the same scenes at any size.
        city: city folder and file-name prefix.

    Returns:
        The root path.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if not city or "_" in city or "/" in city:
        raise ValueError(f"city {city!r} must be a non-empty name without '_' or '/' (it prefixes the file stems)")
    root = Path(root)
    image_dir = root / "leftImg8bit" / split / city
    label_dir = root / "gtFine" / split / city
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    alpha = None
    for index in range(num_images):
        image, label_ids = draw_scene(size, seed, index)
        stem = f"{city}_{index:06d}_{19:06d}"
        if alpha is None:
            alpha = np.full(label_ids.shape + (1,), 255, dtype=np.uint8)
        save_png(image, image_dir / f"{stem}_leftImg8bit.png")
        save_png(label_ids, label_dir / f"{stem}_gtFine_labelIds.png")
        save_png(TRAIN_OF_ID[label_ids], label_dir / f"{stem}_gtFine_labelTrainIds.png")
        save_png(np.concatenate([_COLOR_OF_ID[label_ids], alpha], axis=2), label_dir / f"{stem}_gtFine_color.png")
    return root
