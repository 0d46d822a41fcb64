"""Pre-generate Cityscapes-C on disk (``python run_bench.py generate-c``).

Writes ``OUT/<corruption>/<severity>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` for every image of the split
and every requested (corruption, severity), seeded by the protocol of :mod:`bench.corruptions`, so the files are
byte-identical to what :class:`bench.data.CityscapesDataset` computes on the fly, whatever the worker count.

* **Parallel:** one task per (image, corruption) covering all requested severities (the image is decoded once), run
  in ``workers`` processes.
* **Atomic and resumable:** each file is written under a temporary name (``.<name>.<pid>.segbench-tmp``) in its final
  folder, flushed to disk, then renamed over the final name. A file with the final name is therefore complete, and a
  rerun skips it; temporaries left by a killed run are deleted at the start of the next. Run one generate-c per
  output folder at a time.
* **Manifest:** ``OUT/manifest.json`` records the seed protocol, base seed, split, the versions of the libraries the
  bytes depend on, the corruptions and severities, and per condition how many images are present
  (``images_per_condition``). It is written before any image, so a rerun with another seed, protocol, split or
  library version into the same folder is refused instead of mixing files; the evaluator refuses a folder whose seed
  or protocol differ from its own.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.bench.corruptions import SEED_PROTOCOL, condition_seed, corrupt, warm_up
from segbench.bench.data import (
    MANIFEST,
    DataError,
    SampleRef,
    corrupted_image_path,
    find_samples,
    read_image,
    read_manifest,
)
from segbench.bench.results import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES, Condition

TEMP_SUFFIX = ".segbench-tmp"
MANIFEST_FORMAT = "segbench-cityscapes-c/1"
PNG_COMPRESS_LEVEL = 1
"""zlib level of the written PNGs. Measured at 1024x2048: level 1 encodes smooth results (blur, fog, contrast) 3-5x
faster than the default level 6 (0.1-0.14 s vs 0.35-0.73 s) for files 10-35% larger, and noise results equally fast;
PNG is lossless either way."""


@dataclass(frozen=True)
class GenerateReport:
    """What a generate-c run did.

    Attributes:
        out: the output folder.
        manifest: path of its manifest.json.
        images: images in the split (after ``max_images``).
        conditions: (corruption, severity) pairs requested.
        written: files written by this run.
        skipped: files already complete from an earlier run.
        removed_temp: temporary files of an interrupted run that were deleted.
        seconds: wall time.
    """

    out: Path
    manifest: Path
    images: int
    conditions: int
    written: int
    skipped: int
    removed_temp: int
    seconds: float

    def __str__(self) -> str:
        temps = f", removed {self.removed_temp} temporary files of an interrupted run" if self.removed_temp else ""
        return (
            f"generate-c: {self.images} images x {self.conditions} conditions -> {self.out}: wrote {self.written} "
            f"files, skipped {self.skipped} already complete{temps}, {self.seconds:.1f} s (manifest: {self.manifest})"
        )


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour the corrupted bytes depend on."""
    from importlib.metadata import PackageNotFoundError, version

    import cv2
    import PIL
    import skimage

    try:
        ic_version = version("imagecorruptions-imaug")
    except PackageNotFoundError:
        ic_version = version("imagecorruptions")
    return {
        "numpy": np.__version__,
        "imagecorruptions": ic_version,
        "scikit-image": skimage.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
    }


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_png_atomic(image: np.ndarray, path: Path) -> None:
    """Writes a PNG under a temporary name in the same folder, flushes it to disk, then renames it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            Image.fromarray(image).save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {exc}") from None


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe.{os.getpid()}{TEMP_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataError(f"output folder {out} is not writable ({exc.strerror or exc}); choose another --out") from None


def _remove_stale_temps(out: Path) -> int:
    removed = 0
    for path in out.rglob(f"*{TEMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _prepare_manifest(out: Path, base_seed: int, split: str, versions: dict[str, str]) -> dict:
    """Returns the folder's manifest (new, or the existing one after checking it matches this run)."""
    fresh = {
        "format": MANIFEST_FORMAT,
        "seed_protocol": SEED_PROTOCOL,
        "base_seed": int(base_seed),
        "split": split,
        "versions": versions,
        "corruptions": [],
        "severities": [],
        "images_per_condition": {},
    }
    if not (out / MANIFEST).exists():
        return fresh
    manifest = read_manifest(out)
    for key in ("format", "seed_protocol", "base_seed", "split", "versions"):
        if manifest.get(key) != fresh[key]:
            raise DataError(
                f"{out / MANIFEST}: the folder was generated with {key}={manifest.get(key)!r}, this run has "
                f"{fresh[key]!r}; files would not match: choose a new --out"
            )
    return manifest


def _run_task(
    image_path: str,
    city: str,
    stem: str,
    corruption: str,
    severities: tuple[int, ...],
    out: str,
    split: str,
    base_seed: int,
) -> int:
    """Corrupts one image with one corruption at the given severities and writes the files; returns their number."""
    image = read_image(image_path)
    sample = SampleRef(stem, city, Path(image_path), Path(), "")
    for severity in severities:
        condition = Condition(corruption, severity)
        path = corrupted_image_path(out, condition, split, sample)
        seed = condition_seed(stem, corruption, severity, base_seed)
        write_png_atomic(corrupt(image, corruption, severity, seed), path)
    return len(severities)


def _unique(values: Iterable, kind: str) -> list:
    if isinstance(values, str | int):
        values = [values]
    out = list(dict.fromkeys(values))
    if not out:
        raise ValueError(f"no {kind} requested")
    return out


def generate_c(
    data_root: str | Path | None,
    out: str | Path,
    corruptions: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    workers: int = 1,
    base_seed: int = 0,
    split: str = "val",
    max_images: int | None = None,
    quiet: bool = False,
) -> GenerateReport:
    """Writes the corrupted images of a split to disk, in parallel, resumably.

    Args:
        data_root: Cityscapes root (None: ``CITYSCAPES_DATASET``).
        out: output folder (created if needed).
        corruptions: corruption names; default the 16 of Cityscapes-C.
        severities: severities 1-5; default all.
        workers: number of processes (1: run in this process).
        base_seed: base seed of the seed protocol.
        split: dataset split.
        max_images: only the first N images in sorted order (see :func:`bench.data.find_samples`).
        quiet: no progress bar.

    Returns:
        A :class:`GenerateReport`.

    Raises:
        ValueError: unknown corruption, severity outside 1-5, workers < 1.
        DataError: bad dataset, unwritable output folder, or an output folder generated with another seed, protocol,
            split or library versions.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    corruptions = _unique(corruptions, "corruptions")
    severities = _unique(severities, "severities")
    conditions = [Condition(c, s) for c in corruptions for s in severities]  # validates names and severities
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    samples = find_samples(data_root, split, max_images)
    out = Path(out)
    _check_writable(out)
    manifest = _prepare_manifest(out, base_seed, split, library_versions())
    removed = _remove_stale_temps(out)
    requested = set(manifest["corruptions"]) | set(corruptions)
    manifest["corruptions"] = [c for c in CORRUPTIONS + EXTRA_CORRUPTIONS if c in requested]
    manifest["severities"] = sorted(set(manifest["severities"]) | {int(s) for s in severities})
    _write_json_atomic(out / MANIFEST, manifest)

    tasks, skipped = [], 0
    for sample in samples:
        for corruption in corruptions:
            todo = []
            for severity in severities:
                path = corrupted_image_path(out, Condition(corruption, severity), split, sample)
                if path.is_file():
                    skipped += 1
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    todo.append(int(severity))
            if todo:
                tasks.append(
                    (
                        str(sample.image),
                        sample.city,
                        sample.id,
                        corruption,
                        tuple(todo),
                        str(out),
                        split,
                        int(base_seed),
                    )
                )

    written = 0
    total = len(samples) * len(conditions)
    if tasks and workers == 1:
        with tqdm(total=total, initial=skipped, unit="img", desc="generate-c", disable=quiet) as bar:
            for task in tasks:
                n = _run_task(*task)
                written += n
                bar.update(n)
    elif tasks:
        # fork: workers start at once with the modules already imported. They leave OpenCV's thread count alone:
        # cv2.setNumThreads() in a forked child deadlocks once the parent has used OpenCV's thread pool.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        if method == "fork":  # workers inherit the imports and numba's compiled glass_blur instead of each paying it
            for corruption, severity in sorted({(t[3], s) for t in tasks for s in t[4]}):
                warm_up(corruption, severity)
        executor = ProcessPoolExecutor(workers, multiprocessing.get_context(method))
        try:
            futures = [executor.submit(_run_task, *task) for task in tasks]  # forks the workers before tqdm's thread
            with tqdm(total=total, initial=skipped, unit="img", desc="generate-c", disable=quiet) as bar:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        n = future.result()  # re-raises a worker's error here
                        written += n
                        bar.update(n)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    for condition in conditions:
        present = sum(corrupted_image_path(out, condition, split, s).is_file() for s in samples)
        manifest["images_per_condition"][condition.name] = present
    _write_json_atomic(out / MANIFEST, manifest)
    return GenerateReport(
        out, out / MANIFEST, len(samples), len(conditions), written, skipped, removed, time.perf_counter() - start
    )
