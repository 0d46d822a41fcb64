"""Pre-generate a corrupted dataset on disk (``python run_bench.py generate-c``): Cityscapes-C, ADE20K-C, VOC-C, ...

Writes ``OUT/<corruption>/<severity>/<rel>`` for every image of the split and every requested (corruption, severity),
where ``<rel>`` is the image's path under its dataset's root with the suffix ``.png`` (`Sample.corrupted_rel`; for
Cityscapes ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``), seeded by the protocol of
:mod:`bench.data.corruptions`, so the files are byte-identical to what :class:`bench.data.loading.SegmentationDataset`
computes on the fly, whatever the worker count. Corruptions apply to the image at its own size, of any size and
aspect ratio.

* **Parallel:** one task per (image, corruption) covering all requested severities (the image is decoded once), run
  in ``workers`` processes.
* **Sharded:** with ``shard=(I, N)`` (``--shard I/N``), or under torchrun (``RANK`` of ``WORLD_SIZE``), a process
  writes only the images ``I, I + N, I + 2N, ...`` of the sorted split, so N processes, on one machine or several
  sharing the folder, together write exactly the files of one unsharded run, byte for byte.
* **Atomic and resumable:** each file is written by :func:`bench.results.atomic_write` (a temporary name in its final
  folder, flushed to disk, renamed over the final name). A file with the final name is therefore complete, and a
  rerun skips it; temporaries left by a killed run are deleted at the start of the next run of the same share.
* **Locked:** a run holds the lock of its share of the folder (:func:`bench.run.locks.folder_lock`; one lock per shard),
  so a second run of the same share fails at once with a message naming the first, while the shards of one folder
  run side by side. A run deletes only temporaries of files in its own share, and none that a live run of another
  sharding (another N) covers, so it never deletes the temporary file of a live process.
* **Manifest:** ``OUT/manifest.json`` records the seed protocol, base seed, split, the versions of the libraries the
  bytes depend on, the corruptions and severities, and per condition how many images are present
  (``images_per_condition``), and the dataset. It is written before any image, so a rerun with another dataset, seed,
  protocol, split or library version into the same folder is refused instead of mixing files; the evaluator refuses a
  folder whose dataset, seed or protocol differ from its own. Shards read and write it under a short lock of its own,
  at the start and at the end; the last shard to finish leaves the same manifest as one unsharded run.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from segbench.bench.data.corruptions import SEED_PROTOCOL, condition_seed, corrupt, warm_up
from segbench.bench.data.datasets import Sample, get_dataset
from segbench.bench.data.errors import DataError
from segbench.bench.data.images import read_image
from segbench.bench.data.loading import MANIFEST, corrupted_path, read_manifest
from segbench.bench.results.axes import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES, Condition
from segbench.bench.results.io import TEMP_SUFFIX, atomic_write, atomic_write_json, is_temp_file
from segbench.bench.results.targets import check_target
from segbench.bench.run.locks import FolderBusyError, folder_lock
from segbench.bench.run.stop import check_stop

MANIFEST_FORMAT = "segbench-cityscapes-c/1"
PNG_COMPRESS_LEVEL = 1
"""zlib level of the written PNGs. Measured at 1024x2048: level 1 encodes smooth results (blur, fog, contrast) 3-5x
faster than the default level 6 (0.1-0.14 s vs 0.35-0.73 s) for files 10-35% larger, and noise results equally fast;
PNG is lossless either way."""

LOCK_WHAT = "generate-c output folder"
MANIFEST_LOCK = "generate-c.manifest"
MANIFEST_LOCK_WAIT_S = 120.0
"""How long a run waits for another shard to finish reading or writing the manifest (it takes well under a second)."""

_SHARD_LOCK = re.compile(r"\.generate-c(?:\.shard-(\d+)-of-(\d+))?\.lock")

Shard = tuple[int, int]
"""(I, N): the I-th (0-based) of N shares of the images."""


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
        shard: (I, N) when this run wrote share I of N; None when it wrote every image.
        shard_images: images in this run's share (``images`` when unsharded).
    """

    out: Path
    manifest: Path
    images: int
    conditions: int
    written: int
    skipped: int
    removed_temp: int
    seconds: float
    shard: Shard | None = None
    shard_images: int | None = None

    def __str__(self) -> str:
        temps = f", removed {self.removed_temp} temporary files of an interrupted run" if self.removed_temp else ""
        if self.shard is None:
            what = f"generate-c: {self.images} images"
        else:
            i, n = self.shard
            mine = self.images if self.shard_images is None else self.shard_images
            what = f"generate-c shard {i}/{n}: {mine} of {self.images} images (#{i}, #{i + n}, ...)"
        return (
            f"{what} x {self.conditions} conditions -> {self.out}: wrote {self.written} files, skipped "
            f"{self.skipped} already complete{temps}, {self.seconds:.1f} s (manifest: {self.manifest})"
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


def write_png_atomic(image: np.ndarray, path: str | Path) -> None:
    """Writes an image as PNG atomically (:func:`bench.results.atomic_write`), at :data:`PNG_COMPRESS_LEVEL`.

    Raises:
        DataError: the file cannot be written (names it).
    """

    def encode(f: BinaryIO) -> None:
        Image.fromarray(image).save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)

    try:
        atomic_write(path, encode)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc}") from None


# --------------------------------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------------------------------


def parse_shard(text: str) -> Shard:
    """``--shard I/N`` -> (I, N).

    Raises:
        ValueError: not two integers with 0 <= I < N (one line, naming the option).
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise ValueError(
            f"--shard: {text!r} is not a shard; use I/N with 0 <= I < N (e.g. 0/2 and 1/2 for two processes)"
        )
    return int(match[1]), int(match[2])


def _check_shard(shard: object) -> Shard:
    ok = (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        and 0 <= shard[0] < shard[1]
    )
    if not ok:
        raise ValueError(f"shard must be (I, N) with 0 <= I < N, got {shard!r}")
    return int(shard[0]), int(shard[1])


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def shard_from_env() -> Shard | None:
    """(RANK, WORLD_SIZE) under torchrun (WORLD_SIZE > 1), else None.

    Raises:
        ValueError: a non-integer variable, or RANK outside 0..WORLD_SIZE-1.
    """
    world = _env_int("WORLD_SIZE")
    if world is None or world <= 1:
        return None
    rank = _env_int("RANK")
    if rank is None or not 0 <= rank < world:
        raise ValueError(f"RANK={os.environ.get('RANK')!r} with WORLD_SIZE={world}: RANK must be 0-{world - 1}")
    return rank, world


def shard_lock_name(shard: Shard | None) -> str:
    """Name of the lock (see :func:`bench.run.locks.folder_lock`) of a share of the output folder."""
    return "generate-c" if shard is None else f"generate-c.shard-{shard[0]}-of-{shard[1]}"


def _in_share(index: int, shard: Shard | None) -> bool:
    return shard is None or index % shard[1] == shard[0]


def _lock_is_held(path: Path) -> bool:
    """Whether a live process holds the lock file ``path`` (probed without waiting; released at once if free)."""
    from filelock import FileLock, Timeout

    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _live_other_shardings(out: Path, shard: Shard | None) -> list[Shard]:
    """The shares, held by live runs, of every other sharding (another N) of the folder: their files may overlap ours.

    Shares of the same N never overlap ours, and our own is ours: neither is probed (so concurrent shards of one
    sharding never touch each other's locks).
    """
    mine = shard or (0, 1)
    live = []
    for path in out.glob(".generate-c*.lock"):
        match = _SHARD_LOCK.fullmatch(path.name)
        if not match:
            continue
        other = (int(match[1]), int(match[2])) if match[1] else (0, 1)
        if other[1] != mine[1] and other[1] > 0 and _lock_is_held(path):
            live.append(other)
    return live


# --------------------------------------------------------------------------------------------------------------------
# Folder, manifest, stale temporaries
# --------------------------------------------------------------------------------------------------------------------


def _is_generate_c_folder(path: Path) -> bool:
    """A folder generate-c may write into: its manifest is there, or nothing but corruption folders (hidden files,
    such as locks, aside)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir() if not p.name.startswith(".")}
    return MANIFEST in names or names <= set(CORRUPTIONS + EXTRA_CORRUPTIONS)


def _check_writable(out: Path) -> None:
    """`out` is new, empty or a generate-c folder (anything else is refused untouched), and writable."""
    instead = "give a new or empty folder, or one generate-c wrote (it holds manifest.json)"
    check_target(out, "--out", "a generate-c folder", instead, _is_generate_c_folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe.", suffix=TEMP_SUFFIX):
            pass
    except OSError as exc:
        raise DataError(f"output folder {out} is not writable ({exc.strerror or exc}); choose another --out") from None


def _final_name(temp: Path) -> str:
    """``.<name>.<random>.tmp`` (a temporary file of atomic_write) -> ``<name>``."""
    return temp.name[1 : -len(TEMP_SUFFIX)].rsplit(".", 1)[0]


@contextmanager
def _manifest_lock(out: Path) -> Iterator[None]:
    """Holds the manifest's lock, waiting up to :data:`MANIFEST_LOCK_WAIT_S` for another shard to release it."""
    deadline = time.monotonic() + MANIFEST_LOCK_WAIT_S
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(folder_lock(out, name=MANIFEST_LOCK, what=f"{LOCK_WHAT}'s manifest"))
                break
            except FolderBusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield


def _remove_stale_manifest_temps(out: Path) -> int:
    """Deletes temporaries of manifest.json (call with the manifest's lock held: only its holder writes them)."""
    removed = 0
    for path in out.glob(f".{MANIFEST}.*{TEMP_SUFFIX}"):
        if is_temp_file(path) and _final_name(path) == MANIFEST:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove_stale_temps(out: Path, shard: Shard | None, list_split: Callable[[], list[Sample]]) -> int:
    """Deletes the temporary image files of killed runs in this run's share (call with the share's lock held).

    A temporary file belongs to the image its final name names (`<corruption>/<severity>/<corrupted_rel>`); it is
    deleted only when that image is in our share and in no share held by a live run of another sharding. Temporaries
    that name no image of the split (lock notes, the manifest's) are left alone.

    Args:
        out: the output folder.
        shard: our share (None: every image).
        list_split: the split's samples in sorted order (called only when there are temporaries).
    """
    temps = [p for p in out.rglob(f"*{TEMP_SUFFIX}") if len(p.relative_to(out).parts) > 3 and is_temp_file(p)]
    if not temps:
        return 0
    index = {s.corrupted_rel.as_posix(): i for i, s in enumerate(list_split())}
    others = _live_other_shardings(out, shard)  # after listing: a run that starts later made none of the listed temps
    removed = 0
    for path in temps:
        rel = path.relative_to(out).parent.relative_to(*path.relative_to(out).parts[:2]) / _final_name(path)
        i = index.get(rel.as_posix())
        if i is None or not _in_share(i, shard) or any(_in_share(i, other) for other in others):
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # its run finished it after all
            continue
        removed += 1
    return removed


def _prepare_manifest(out: Path, base_seed: int, split: str, versions: dict[str, str], dataset: str) -> dict:
    """Returns the folder's manifest (new, or the existing one after checking it matches this run)."""
    fresh = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
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
    manifest["dataset"] = manifest.get("dataset") or "cityscapes"  # generated before datasets were named
    for key in ("dataset", "format", "seed_protocol", "base_seed", "split", "versions"):
        if manifest.get(key) != fresh[key]:
            raise DataError(
                f"{out / MANIFEST}: the folder was generated with {key}={manifest.get(key)!r}, this run has "
                f"{fresh[key]!r}; files would not match: choose a new --out"
            )
    return manifest


def _update_manifest(
    out: Path,
    base_seed: int,
    split: str,
    versions: dict[str, str],
    corruptions: list[str],
    severities: list[int],
    dataset: str,
    count: Iterable[Condition] = (),
    samples: list[Sample] | None = None,
) -> int:
    """Checks the manifest and adds this run's conditions, under the manifest's lock; returns the temps removed.

    The manifest is read again under the lock, so what concurrent shards added is kept. ``count``: conditions whose
    ``images_per_condition`` is recounted from the files present (of ``samples``).
    """
    with _manifest_lock(out):
        manifest = _prepare_manifest(out, base_seed, split, versions, dataset)
        removed = _remove_stale_manifest_temps(out)
        requested = set(manifest["corruptions"]) | set(corruptions)
        manifest["corruptions"] = [c for c in CORRUPTIONS + EXTRA_CORRUPTIONS if c in requested]
        manifest["severities"] = sorted(set(manifest["severities"]) | {int(s) for s in severities})
        for condition in count:
            present = sum(corrupted_path(out, condition, s).is_file() for s in samples or ())
            manifest["images_per_condition"][condition.name] = present
        atomic_write_json(out / MANIFEST, manifest)
    return removed


# --------------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------------


def _run_task(
    image_path: str,
    rel: str,
    image_id: str,
    corruption: str,
    severities: tuple[int, ...],
    out: str,
    base_seed: int,
    grayscale: bool,
) -> int:
    """Corrupts one image with one corruption at the given severities and writes the files; returns their number."""
    image = read_image(image_path, grayscale)
    sample = Sample(image_id, Path(image_path), Path(), Path(rel))
    for severity in severities:
        condition = Condition(corruption, severity)
        seed = condition_seed(image_id, corruption, severity, base_seed)
        write_png_atomic(corrupt(image, corruption, severity, seed), corrupted_path(out, condition, sample))
    return len(severities)


def _run_tasks(tasks: list[tuple], workers: int, total: int, skipped: int, quiet: bool) -> int:
    """Runs the tasks in this process or in ``workers`` processes, with a progress bar; returns the files written."""
    from tqdm import tqdm

    written = 0
    if tasks and workers == 1:
        with tqdm(total=total, initial=skipped, unit="img", desc="generate-c", disable=quiet) as bar:
            for task in tasks:
                check_stop()  # between images: a stop whose exception a library swallowed ends the run here
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
                    check_stop()
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        n = future.result()  # re-raises a worker's error here
                        written += n
                        bar.update(n)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    return written


def _unique(values: Iterable, kind: str) -> list:
    if isinstance(values, str | int):
        values = [values]
    out = list(dict.fromkeys(values))
    if not out:
        raise ValueError(f"no {kind} requested")
    return out


def _plan_tasks(
    samples: Sequence[Sample],
    corruptions: Sequence[str],
    severities: Sequence[int],
    out: Path,
    seed: int,
    grayscale: bool,
) -> tuple[list[tuple], int]:
    """The `_run_task` arguments of every (image, corruption) with a severity whose file is missing, and the number of
    files already there (skipped)."""
    tasks, skipped = [], 0
    for sample in samples:
        for corruption in corruptions:
            todo = []
            for severity in severities:
                if corrupted_path(out, Condition(corruption, severity), sample).is_file():
                    skipped += 1
                else:
                    todo.append(int(severity))
            if todo:
                task = (str(sample.image), sample.rel.as_posix(), sample.id, corruption, tuple(todo), str(out), seed)
                tasks.append((*task, grayscale))
    return tasks, skipped


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
    shard: Shard | None = None,
    dataset: str = "cityscapes",
) -> GenerateReport:
    """Writes the corrupted images of a split (or of one share of it) to disk, in parallel, resumably.

    Args:
        data_root: the dataset's root (None: its environment variable, e.g. ``CITYSCAPES_DATASET``).
        out: output folder (created if needed).
        corruptions: corruption names; default the 16 of Cityscapes-C.
        severities: severities 1-5; default all.
        workers: number of processes (1: run in this process).
        base_seed: base seed of the seed protocol.
        split: dataset split.
        max_images: only the first N images in the reader's order (`bench.data.datasets.Dataset.samples`).
        quiet: no progress bar.
        shard: (I, N): write only images I, I + N, I + 2N, ... of the sorted split (0-based I). None: under torchrun
            (``WORLD_SIZE`` > 1) the share ``(RANK, WORLD_SIZE)``, else every image. The N shares together write
            exactly the files of one unsharded run; they may run at the same time, into the same folder.
        dataset: the dataset to corrupt (`bench.data.datasets.get_dataset`: "cityscapes", "ade20k", "voc",
            "coco_stuff", "folder").

    Returns:
        A :class:`GenerateReport`.

    Raises:
        ValueError: unknown corruption, severity outside 1-5, workers < 1, a bad shard (or RANK / WORLD_SIZE).
        DataError: bad dataset, unwritable output folder, or an output folder generated from another dataset, or with
            another seed, protocol, split or library versions.
        TargetError: ``out`` is a file, or a folder holding files generate-c did not write (a run folder, a dataset).
        FolderBusyError: another live run holds this share of the folder (the message names it).
    """
    start = time.perf_counter()
    corruptions = _unique(corruptions, "corruptions")
    severities = _unique(severities, "severities")
    conditions = [Condition(c, s) for c in corruptions for s in severities]  # validates names and severities
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    shard = shard_from_env() if shard is None else _check_shard(shard)
    if shard == (0, 1):
        shard = None
    reader = get_dataset(dataset, data_root)
    root = reader.resolve_root(data_root)
    samples = reader.samples(root, split, max_images)
    mine = [s for i, s in enumerate(samples) if _in_share(i, shard)]
    out = Path(out)
    _check_writable(out)
    what = LOCK_WHAT if shard is None else f"{LOCK_WHAT} (shard {shard[0]}/{shard[1]})"
    versions, seed = library_versions(), int(base_seed)
    with folder_lock(out, name=shard_lock_name(shard), what=what):
        name = reader.name
        removed = _update_manifest(out, base_seed, split, versions, corruptions, severities, name)
        removed += _remove_stale_temps(out, shard, lambda: reader.find(root, split, None))

        tasks, skipped = _plan_tasks(mine, corruptions, severities, out, seed, reader.grayscale)
        written = _run_tasks(tasks, workers, len(mine) * len(conditions), skipped, quiet)
        removed += _update_manifest(out, base_seed, split, versions, corruptions, severities, name, conditions, samples)
    return GenerateReport(
        out,
        out / MANIFEST,
        len(samples),
        len(conditions),
        written,
        skipped,
        removed,
        time.perf_counter() - start,
        shard=shard,
        shard_images=len(mine),
    )
