"""Every JSON file segbench reads back, with its schema, and the one way to read one: a damaged file is one line that
names it, says what is wrong and what to do (`DamagedFileError`).

A careless edit, a killed job or a full disk leave files that are not what segbench wrote: empty, truncated, `null`,
a list, an object without the keys the code uses. Each file kind (`FileKind`) pairs a schema with a remedy; its
`read` parses the file and checks it against the schema, so that no reader meets a shape it does not expect.

The schemas are msgspec Structs: strict typed checks with one-line messages ("Expected `array`, got `null` - at
`$.rows`"), lenient about keys they do not name (older and newer runs add keys), strict about the keys the code uses.
A file is checked, not converted: `read` returns the parsed JSON itself (dicts and lists), extra keys included.

The tidy CSV files (results.csv, summary.csv) are checked by `bench.results.io.read_rows`; history.jsonl is read line
by line by `bench.results.io.read_history`, which skips the lines that do not parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec


class DamagedFileError(ValueError):
    """A file segbench reads back is not what it writes; `str()` is one line: the file, what is wrong, what to do.

    Attributes:
        path: the file as the message names it.
        problem: what is wrong, without the file or the remedy.
    """

    def __init__(self, path: str | Path, problem: str, remedy: str = ""):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}" + (f"; {remedy}" if remedy else ""))


# --------------------------------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------------------------------


class ResultRow(msgspec.Struct):
    """A tidy row as cells and baselines store it: what gathering and comparing need (`bench.results.schema.Row` has
    the nine columns; rows keep their other keys)."""

    model: str
    metric: str
    value: float | None  # non-finite values are stored as null


class CellRecord(msgspec.Struct):
    """`cells/<cell>.json`: one finished cell (`RunStore.write_cell`)."""

    cell: str
    rows: list[ResultRow]
    kind: str | None = None
    model: str | None = None


class CalibrationSums(msgspec.Struct):
    """A cell record's `calibration` key (`bench.measure.calibration.CalibrationCounter.to_dict`): per bin of the
    top-label confidence the pixel count, correct count and confidence sum, and the NLL and Brier sums."""

    bins: int
    count: list[int]
    correct: list[int]
    confidence: list[float]
    nll_sum: float
    brier_sum: float


class RunInfo(msgspec.Struct, kw_only=True):
    """run.json as its readers use it (the report, the regression check): each key optional, as hand-made and old
    run folders lack some, but of the type the run writes."""

    suite: str | None = None
    suite_version: str | None = None
    dataset: str | None = None  # runs made before datasets were named read Cityscapes
    num_classes: int | None = None
    classes: dict[str, Any] | None = None
    weights: dict[str, str] = {}
    protocols: dict[str, dict[str, Any]] = {}
    settings: dict[str, Any] | None = None  # runs made before settings were recorded have none
    config: dict[str, Any] | None = None
    created_at: str | None = None


class RunManifest(RunInfo, kw_only=True):
    """run.json as a resume compares it (`bench.results.store.check_resume`): every key it compares is required."""

    suite: str
    suite_version: str
    seed: int
    split: str
    max_images: int | None
    num_classes: int
    weights: dict[str, str]
    protocols: dict[str, dict[str, Any]]


class EnvFile(msgspec.Struct, kw_only=True):
    """env.json: provenance (`bench.run.provenance.environment`); earlier sessions of a resumed run under
    `sessions`."""

    sessions: list[dict[str, Any]] = []
    weights: dict[str, Any] | None = None
    config: dict[str, Any] | None = None


class GalleryItem(msgspec.Struct):
    condition: str
    input: str | None = None
    predictions: dict[str, str] = {}


class AttackGalleryItem(msgspec.Struct):
    """One attack condition in the gallery: each model's own attacked input and its prediction."""

    condition: str
    inputs: dict[str, str] = {}
    predictions: dict[str, str] = {}


class GalleryIndex(msgspec.Struct):
    """`gallery/index.json` (`bench.run.gallery.write_gallery`): what image is where."""

    conditions: list[GalleryItem]
    image_id: str | None = None
    ground_truth: str | None = None
    attacks: list[AttackGalleryItem] = []


class Baseline(msgspec.Struct):
    """A baseline file (`bench.track.regression.write_baseline`); `format` names its version."""

    format: str
    suite: str | None
    suite_version: str | None
    rows: list[ResultRow]
    provenance: dict[str, Any] = {}


class ArtifactManifest(msgspec.Struct):
    """`<artifact>.json` of the deployment cache (`bench.deploy.cache.ArtifactCache`)."""

    digest: str
    bytes: int
    build_s: float | None = None


class CorruptedManifest(msgspec.Struct):
    """`manifest.json` of a generate-c output folder (`bench.data.generate_c`)."""

    seed_protocol: str
    base_seed: int
    split: str
    dataset: str | None = None  # folders generated before datasets were named hold Cityscapes
    format: str | None = None
    versions: dict[str, Any] = {}
    corruptions: list[str] = []
    severities: list[int] = []
    images_per_condition: dict[str, int] = {}


# --------------------------------------------------------------------------------------------------------------------
# File kinds
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileKind:
    """A kind of file segbench reads back.

    Attributes:
        what: its name in messages ("run.json", "cell record").
        schema: the msgspec type it must match.
        remedy: what to do when it is damaged.
    """

    what: str
    schema: type
    remedy: str

    def read(self, path: str | Path, name: str | Path | None = None) -> Any:
        """The parsed JSON of `path` (extra keys kept), checked against the schema.

        Args:
            path: the file.
            name: how messages name it (default: `path`), e.g. relative to its run folder.

        Raises:
            DamagedFileError: the file is empty, does not parse or does not match the schema.
            OSError: it cannot be read at all (missing, no permission).
        """
        name = path if name is None else name
        raw = Path(path).read_bytes()
        if not raw.strip():
            raise DamagedFileError(name, f"empty {self.what}", self.remedy)
        try:
            data = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise DamagedFileError(name, f"unreadable {self.what} ({_first_line(exc)})", self.remedy) from None
        self.check(data, name)
        return data

    def check(self, data: Any, name: str | Path) -> None:
        """Raise `DamagedFileError` (naming `name`) unless `data` matches the schema."""
        try:
            msgspec.convert(data, self.schema)
        except msgspec.ValidationError as exc:
            raise DamagedFileError(name, f"not a segbench {self.what} ({_first_line(exc)})", self.remedy) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


CELL = FileKind("cell record", CellRecord, "`--resume` sets it aside and computes the cell again")
CALIBRATION = FileKind("calibration key", CalibrationSums, "the report leaves the cell out of its reliability diagrams")
RUN_MANIFEST = FileKind("run.json", RunManifest, "remove the folder or give another --out")
RUN_INFO = FileKind("run.json", RunInfo, "the report reads the run without it")
ENV = FileKind("env.json", EnvFile, "the report shows no provenance; `--resume` sets it aside and writes a new one")
GALLERY = FileKind("gallery index", GalleryIndex, "the report shows no gallery")
BASELINE = FileKind("baseline", Baseline, "give a file written by --update-baseline, a run folder or a results.csv")
ARTIFACT = FileKind("artifact manifest", ArtifactManifest, "the artifact is built again")
CORRUPTED = FileKind("generate-c manifest", CorruptedManifest, "regenerate the folder with generate-c")


def set_aside(path: str | Path) -> Path:
    """Rename a damaged file to `<name>.damaged-<UTC time>` beside it (never deleted; a name no reader globs for);
    returns the new path."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, k = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{k}")
    path.rename(target)
    return target
