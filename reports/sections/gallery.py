"""The corruption gallery: the clean image with every model's prediction and the ground truth, then one row per
corruption and one column per severity (`gallery/index.json`, written by the run), label maps in the Cityscapes
palette."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segbench.bench.results.classes import ClassTable
from segbench.bench.results.files import GALLERY
from segbench.bench.results.io import atomic_write
from segbench.bench.results.store import RunFolder
from segbench.reports import tables as T
from segbench.reports.page import Outputs, Page, Section, builds


def palette_legend(classes: ClassTable) -> list[tuple[str, str]]:
    return [(name, "#{:02x}{:02x}{:02x}".format(*rgb)) for name, rgb in zip(classes.names, classes.palette)]


def gallery_image(
    run_dir: Path, rel: object, out: Outputs, problems: list[str], palette: Sequence[tuple[int, int, int]] = ()
) -> str | None:
    """A gallery image's path relative to index.html; given a palette, single-channel label maps are drawn in it."""
    if not isinstance(rel, str) or not rel:
        return None
    path = (run_dir / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()) or not path.is_file():
        problems.append(f"gallery image {rel!r} is missing or outside the run folder")
        return None
    rel = path.relative_to(run_dir.resolve()).as_posix()
    if not palette:
        return rel
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "I", "I;16"):
            return rel
        ids = np.asarray(image, dtype=np.int64)
    lut = np.zeros((max(256, int(ids.max()) + 1), 3), dtype=np.uint8)
    lut[: len(palette)] = palette
    target = out.path(f"gallery/{hashlib.sha1(rel.encode()).hexdigest()[:16]}.png")
    atomic_write(target, lambda f: Image.fromarray(lut[ids]).save(f, format="PNG"))
    return out.rel(target)


def _entries(data: dict, models: list[str], run_dir: Path, out: Outputs, problems: list[str], palette) -> dict:
    """(corruption, severity) -> its input and each model's prediction, from index.json's conditions (clean: 0)."""
    entries: dict[tuple[str, int], dict] = {}
    for item in data["conditions"]:  # checked: objects with a `condition` name (`files.GALLERY`)
        name = item["condition"]
        corruption, severity = ("clean", 0) if name == "clean" else T.split_condition(name)
        if corruption is None:
            problems.append(f"gallery condition {name!r} is neither 'clean' nor '<corruption>-<severity>'")
            continue
        preds = item.get("predictions", {})
        entries[corruption, severity] = {
            "input": gallery_image(run_dir, item.get("input"), out, problems),
            "predictions": [
                (m, gallery_image(run_dir, preds.get(m), out, problems, palette))
                for m in [*[m for m in models if m in preds], *[m for m in preds if m not in models]]
            ],
        }
    return entries


@builds("gallery", "Corruption gallery")
def gallery(page: Page, sec: Section) -> Section:
    run_dir, out = page.run_dir, page.out
    index = run_dir / "gallery" / "index.json"
    if not index.is_file():
        sec.missing = "Not made in this run: no gallery/index.json."
        return sec
    folder = RunFolder(run_dir)
    data = folder.read_json("gallery/index.json", GALLERY)
    problems = folder.problems
    if data is None:
        sec.missing = f"{'; '.join(problems)}."
        return sec
    entries = _entries(data, page.models, run_dir, out, problems, page.classes.palette)
    corruptions = [c for _, names in T.column_groups([c for c, _ in entries]) for c in names]
    severities = sorted({s for c, s in entries if c != "clean"})
    grid = [
        (corruption, [entries.get((corruption, s)) for s in severities])
        for corruption in corruptions
        if any((corruption, s) in entries for s in severities)
    ]
    clean = entries.get(("clean", 0))
    if not grid and clean is None:
        sec.missing = "gallery/index.json lists no usable condition."
        return sec
    gt = gallery_image(run_dir, data.get("ground_truth"), out, problems, page.classes.palette)
    sec.extra.update(
        image_id=str(data.get("image_id", "")),
        clean=clean,
        grid=grid,
        severities=severities,
        ground_truth=gt,
        palette=palette_legend(page.classes),
    )
    sec.notes.append(
        "First the clean image, every model's prediction and the ground truth; then one row per corruption and one "
        "column per severity, each cell the corrupted input with every model's prediction under it. Predictions "
        "and ground truth are drawn in the Cityscapes palette (legend below)."
    )
    sec.notes += problems
    return sec
