"""The GPU check as pytest tests: the measured device, one row of figures per judgement, time budgets, one table.

    python -m pytest -m gpu tests/gpu --gpu-device cuda --gpu-json gpu_check.json   # at most 5 minutes on one GPU
    python -m pytest -m gpu tests/gpu --gpu-device cpu     # the CPU-meaningful tests; the CUDA ones skip, saying why

(`python -m benchmarks.gpu_check` runs the first line, after printing what to carry to a bare GPU machine.) The
options are this folder's, so pytest accepts them when `tests/gpu` is among its paths. Without them, as in the whole
suite, the device is "cuda": without a GPU the CPU-meaningful tests run on the CPU and the others skip.

Each test is marked ``gpu(budget_s=...)`` and records rows through the `rows` fixture: what it measured, PASS, FAIL or
SKIP, the figure(s) the status rests on, and how it was measured. A test with a FAIL row fails, naming them; one that
raises is a "crashed" FAIL row with its one-line error; one past its budget (times --gpu-budget-scale, and within
`TOTAL_BUDGET_S` for the whole set) is stopped and is a "timeout" FAIL row; a skipped one is a "skipped" row with the
reason. At the end `pytest_terminal_summary` prints every row in one table, and --gpu-json writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from benchmarks.gpu_check import check_json_target
from segbench import models
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.targets import TargetError
from segbench.bench.run.config import usable_cores
from segbench.models.user import first_line

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
TOTAL_BUDGET_S = 285.0
"""The set's time in all (5 minutes less the start): each test gets its budget or what is left, whichever is less."""
CPU_BUDGET_SCALE = 4.0
"""The budgets' default scale on the CPU: they are a GPU's seconds, and the CPU tests run on loaded CI boxes too."""


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table.

    Attributes:
        name: what the row measures, within its test.
        status: PASS, FAIL or SKIP.
        figure: the number(s) the status rests on.
        detail: how it was measured, or why it failed or was skipped.
        test: the test that made it, without its ``test_`` prefix; seconds: the test's wall time; nodeid: its pytest
            id (all three filled in when the test ends).
    """

    name: str
    status: str
    figure: str = ""
    detail: str = ""
    test: str = ""
    seconds: float = 0.0
    nodeid: str = ""


class Rows:
    """The rows one test records (the `rows` fixture), in order."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def judged(self, ok: bool, name: str, figure: str, detail: str = "") -> None:
        """A PASS row when `ok`, else a FAIL row (which fails the test once it has recorded all its rows)."""
        self.rows.append(Row(name, PASS if ok else FAIL, figure, detail))

    def info(self, name: str, figure: str, detail: str = "") -> None:
        """A PASS row that reports and judges nothing (a version, a flag)."""
        self.rows.append(Row(name, PASS, figure, detail))

    def skipped(self, name: str, detail: str) -> None:
        """A SKIP row: a part of the test that this machine cannot answer, and why."""
        self.rows.append(Row(name, SKIP, "", detail))

    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == FAIL]


ROWS = pytest.StashKey[Rows]()
SECONDS = pytest.StashKey[float]()
VERDICT = pytest.StashKey[Row | None]()
"""Why the check failed a test: the row it ends with (a timeout, or the set's time spent), or None for its own FAIL
rows; a test that failed without one crashed."""


# --------------------------------------------------------------------------------------------------------------------
# The run: options, the measured device, budgets, the rows of every test
# --------------------------------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpu", "the GPU check (tests/gpu)")
    group.addoption(
        "--gpu-device",
        default="cuda",
        help="the measured device: cpu, cuda or cuda:N (default: cuda; without a GPU the CPU-meaningful tests run on "
        "the CPU and the others skip)",
    )
    group.addoption("--gpu-json", type=Path, help="also write the rows to this JSON file")
    group.addoption(
        "--gpu-budget-scale",
        type=float,
        help=f"multiply every time budget (default: 1 on a GPU, {CPU_BUDGET_SCALE:g} on the CPU)",
    )


class GpuRun:
    """The options, the measured device (resolved at its first use), the set's start and the rows of every test."""

    def __init__(self, config: pytest.Config) -> None:
        self.option = config.getoption("gpu_device", "cuda")
        self.json_path: Path | None = config.getoption("gpu_json", None)
        if self.json_path is not None:
            try:
                check_json_target(self.json_path, "--gpu-json")
            except TargetError as e:
                raise pytest.UsageError(str(e)) from None
        self.scale_option: float | None = config.getoption("gpu_budget_scale", None)
        try:
            kind = torch.device(self.option).type
        except RuntimeError:
            kind = ""
        if kind not in ("cpu", "cuda"):
            raise pytest.UsageError(f"--gpu-device must be cpu, cuda or cuda:N, got {self.option!r}")
        self.rows: list[Row] = []
        self.start: float | None = None  # when the first gpu test started, and the last one ended
        self.end: float | None = None
        self._device: tuple[torch.device, str] | None = None

    def device(self) -> tuple[torch.device, str]:
        """(the measured device, why a CUDA test skips: "" on a GPU); "cuda" is made to mean the measured GPU."""
        if self._device is None:
            device = torch.device(self.option)
            if device.type == "cpu":
                self._device = device, f"needs CUDA (--gpu-device {self.option})"
            elif not torch.cuda.is_available():
                self._device = torch.device("cpu"), f"needs CUDA (torch {torch.__version__} sees no GPU)"
            else:
                index = device.index if device.index is not None else torch.cuda.current_device()
                if index >= torch.cuda.device_count():
                    pytest.exit(f"--gpu-device {self.option}: this machine has {torch.cuda.device_count()} GPU(s)", 4)
                torch.cuda.set_device(index)
                self._device = torch.device("cuda", index), ""
        return self._device

    @property
    def scale(self) -> float:
        if self.scale_option is not None:
            return self.scale_option
        return 1.0 if self.device()[0].type == "cuda" else CPU_BUDGET_SCALE

    def budget_s(self, marker: pytest.Mark) -> tuple[float, str]:
        """(seconds the test may take now, what the limit is): its budget, or what is left of the set's."""
        now = time.perf_counter()
        self.start = now if self.start is None else self.start
        own, total = marker.kwargs["budget_s"] * self.scale, TOTAL_BUDGET_S * self.scale
        left = total - (now - self.start)
        if own <= left:
            return own, f"its budget of {own:.3g} s"
        if left > 0:
            return left, f"the {left:.3g} s left of the set's {total:.3g} s"
        return 0.0, f"the set's {total:.3g} s were spent before this test"


RUN = pytest.StashKey[GpuRun]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUN] = GpuRun(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("gpu")
        if marker is not None and "budget_s" not in marker.kwargs:
            raise pytest.UsageError(f"{item.nodeid}: a gpu test needs a time budget: @pytest.mark.gpu(budget_s=...)")


class CheckTimeout(BaseException):
    """A test ran past its budget (a BaseException, so that no `except Exception` inside segbench swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise `CheckTimeout` in the block after `seconds` (SIGALRM; no limit off the main thread or without it).

    A long C++ call (a compile, a kernel) is interrupted when it returns to Python.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"ran past {what}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A gpu test runs under its budget, and fails once it has recorded a FAIL row."""
    marker = item.get_closest_marker("gpu")
    if marker is None:
        return (yield)
    seconds, what = item.config.stash[RUN].budget_s(marker)
    rows = item.stash.setdefault(ROWS, Rows())
    if seconds <= 0:
        item.stash[VERDICT] = Row("not run", FAIL, "", what)
        pytest.fail(item.stash[VERDICT].detail, pytrace=False)
    try:
        with time_limit(seconds, what):
            result = yield
    except CheckTimeout as exc:
        item.stash[VERDICT] = Row("timeout", FAIL, "", f"{exc} (after {len(rows.rows)} rows)")
    if VERDICT in item.stash:  # (outside the except: the failure is the timeout, not a second error during it)
        pytest.fail(item.stash[VERDICT].detail, pytrace=False)
    failed = rows.failed()
    if failed:
        item.stash[VERDICT] = None
        pytest.fail(f"{len(failed)} FAIL row(s): " + "; ".join(f"{r.name}: {r.figure}" for r in failed), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Each phase of a gpu test adds to its time; a skip or an error adds its row; the last phase files the rows."""
    report = yield
    if item.get_closest_marker("gpu") is None:
        return report
    rows = item.stash.setdefault(ROWS, Rows())
    item.stash[SECONDS] = item.stash.get(SECONDS, 0.0) + report.duration
    error = call.excinfo.value if call.excinfo is not None else None
    if report.skipped:
        rows.rows.append(Row("skipped", SKIP, "", getattr(error, "msg", None) or str(error)))
    elif report.failed and call.when != "call":
        rows.rows.append(Row(f"{call.when} error", FAIL, "", first_line(error)))
    elif report.failed:
        verdict = item.stash[VERDICT] if VERDICT in item.stash else Row("crashed", FAIL, "", first_line(error))
        if verdict is not None:
            rows.rows.append(verdict)
    if call.when == "teardown":
        if not rows.rows:
            rows.info("passed", "")
        test = item.name.removeprefix("test_")
        seconds = item.stash[SECONDS]
        run = item.config.stash[RUN]
        run.rows += [dataclasses.replace(r, test=test, seconds=seconds, nodeid=item.nodeid) for r in rows.rows]
        run.end = time.perf_counter()
    return report


def format_table(rows: Sequence[Row]) -> str:
    """One aligned table: test, row, status, figure, seconds (on a test's first row) and detail."""
    head = ("test", "row", "status", "figure", "s", "detail")
    lines, seen = [], set()
    for r in rows:
        seconds = "" if r.nodeid in seen else f"{r.seconds:.1f}"
        seen.add(r.nodeid)
        lines.append((r.test, r.name, r.status, r.figure, seconds, r.detail))
    widths = [max(len(str(line[k])) for line in (head, *lines)) for k in range(len(head) - 1)]

    def fmt(line: Sequence[str]) -> str:
        cells = [str(c).ljust(w) if k != 4 else str(c).rjust(w) for k, (c, w) in enumerate(zip(line, widths))]
        return ("  ".join(cells) + "  " + line[-1]).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  ------"
    return "\n".join([fmt(head), rule, *map(fmt, lines)])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Every gpu test's rows in one table and a count; with --gpu-json, the rows as JSON too."""
    run = config.stash[RUN]
    if not run.rows and run.json_path is None:
        return
    counts = {s: sum(r.status == s for r in run.rows) for s in (PASS, FAIL, SKIP)}
    seconds = run.end - run.start if run.start is not None and run.end is not None else 0.0
    device = str(run.device()[0]) if run.rows else None
    if run.rows:
        terminalreporter.section("GPU check")
        for line in format_table(run.rows).splitlines():
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            f"\n{counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[SKIP]} SKIP in {seconds:.0f} s on {device}"
        )
    if run.json_path is not None:
        payload = {
            "device": device,
            "torch": torch.__version__,
            "seconds": seconds,
            "counts": counts,
            "rows": [dataclasses.asdict(r) for r in run.rows],
        }
        run.json_path.write_text(json.dumps(payload, indent=1) + "\n")


# --------------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def rows(request: pytest.FixtureRequest) -> Rows:
    """The rows this test records; they are its result in the table (a FAIL row fails it)."""
    return request.node.stash.setdefault(ROWS, Rows())


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The measured device: ``cuda:N`` (then also the current device), or the CPU."""
    return pytestconfig.stash[RUN].device()[0]


@pytest.fixture(scope="session")
def why_no_cuda(pytestconfig: pytest.Config) -> str:
    """Why a CUDA test skips here ("needs CUDA (...)"); "" on a GPU."""
    return pytestconfig.stash[RUN].device()[1]


@pytest.fixture
def cuda(device: torch.device, why_no_cuda: str) -> torch.device:
    """The measured GPU; the test skips, saying why, where there is none."""
    if why_no_cuda:
        pytest.skip(why_no_cuda)
    return device


@pytest.fixture
def cpu_mode(device: torch.device) -> torch.device:
    """The CPU, for a test of the CPU mode only (on a GPU the CUDA test of the same check covers it)."""
    if device.type != "cpu":
        pytest.skip(f"the CPU mode's test (--gpu-device cpu); on {device} its CUDA test runs instead")
    return device


@pytest.fixture(scope="session")
def seeded() -> Callable[..., nn.Module]:
    """`seeded(name, **kwargs)`: a registered model in eval mode, its random weights seeded with 0."""

    def make(name: str, **kwargs: Any) -> nn.Module:
        torch.manual_seed(0)
        return models.create_model(name, **kwargs).eval()

    return make


@dataclass
class Scenes:
    """Synthetic Cityscapes folders, made once per number and size in a scratch folder removed at the end.

    Attributes:
        tmp: the scratch folder.
    """

    tmp: Path
    _made: dict[tuple[int, tuple[int, int]], Path] = field(default_factory=dict)

    def __call__(self, num_images: int, size: tuple[int, int]) -> Path:
        """A synthetic Cityscapes of `num_images` scenes of `size`; large sets are written by several processes."""
        key = (num_images, size)
        if key not in self._made:
            root = self.tmp / f"scenes-{num_images}-{size[0]}x{size[1]}"
            processes = min(8, usable_cores(), num_images) if size[0] * size[1] >= 2**19 else 1
            per = math.ceil(num_images / processes)
            shares = [(k, min(per, num_images - k * per)) for k in range(processes) if num_images > k * per]
            if len(shares) == 1:
                write_synthetic_cityscapes(root, num_images, size)
            else:  # each share its own city and seed, so that shares never collide; spawn: this process may hold CUDA
                with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as pool:
                    jobs = [
                        pool.submit(write_synthetic_cityscapes, root, n, size, seed=k, city=f"synth{k}")
                        for k, n in shares
                    ]
                    for job in jobs:
                        job.result()
            self._made[key] = root
        return self._made[key]


@pytest.fixture(scope="session")
def scenes() -> Iterator[Scenes]:
    """`scenes(num_images, size)`: the folder of a synthetic Cityscapes, written at its first use in the session."""
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        yield Scenes(Path(tmp))
