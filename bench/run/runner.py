"""The runner: expand models x conditions into cells, evaluate the missing ones, store each as soon as it finishes.

    >>> from segbench.bench.run.config import RunConfig, InferenceSpec
    >>> from segbench.bench.data.corruptions import conditions
    >>> from segbench.bench.run.runner import run
    >>> cfg = RunConfig(suite="demo", models=("segformer-b0",), weights={"segformer-b0": "ckpt.pth"},
    ...                 data_root="/data/cityscapes", max_images=10)
    >>> result = run(cfg, conditions(("fog",), (1, 3)), InferenceSpec(mode="slide"))   # doctest: +SKIP
    >>> result.results_csv                                                           # doctest: +SKIP
    PosixPath('runs/demo-20260101-120000/results.csv')

A run carries out a `bench.run.plan.RunPlan` (every decision taken once, before any device work), in the order of
its parts (`bench/run/`), on each rank inside the distributed context and on the rank's own device:

1. the deployment grid, when the plan has one (`deployment`): every variant built and checked, and then measured as
   a model of its own; the device's GEMM peak is measured once (rank 0), after the efficiency cells and before the
   accuracy cells;
2. the cells (`cells`): for each model, an efficiency cell (when the plan has a probe) and one accuracy cell per
   condition (when the plan measures accuracy);
3. residency and preflight (`residency`, `manifest`): every model is built and loaded before any work (weights
   found, weight hashes and protocols for `run.json`); models that do not fit on the device together go one at a time;
4. the run folder (`manifest`): created, or on resume checked against `run.json` (a different setting is refused);
   rank 0 holds its lock for the whole run, so a second process on the same folder is refused in one line;
5. the cells (`efficiency_cells`, `accuracy`): efficiency cells first, then the accuracy cells condition by
   condition, every model of a condition together. Rank 0 writes each finished cell to `cells/<cell>.json`
   atomically; a cell already there is never recomputed (`resume`);
6. the gallery (rank 0, the plan's loaded models) and `results.csv` and `summary.csv`, gathered from the cell files.

Faults: NaN/inf logits, out of memory (`bench.run.oom.is_out_of_memory`: cuBLAS and cuDNN allocation failures too)
or an exception raised by a user's model (`hf:`, `py:`, `torchscript:`, `onnx:`) fail that cell with one line saying
what happened and what to change; the run goes on with the other models and the next cells and raises `RunFailed` at
the end, listing them. Any other error stops the run. Ctrl-C and SIGTERM (`bench.run.stop`) keep every finished cell,
gather the tables from them and print how to resume; so does a full disk, in one line.

`python -m segbench.bench.run.runner --config cfg.json` runs a JSON-described run (RunConfig fields plus an optional
`conditions` list such as `["clean", "fog-2"]`); it is what the distributed tests launch with torchrun.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from segbench.bench.results.axes import Condition
from segbench.bench.results.schema import MACHINE_CELL
from segbench.bench.results.store import RunStore
from segbench.bench.run import distributed
from segbench.bench.run.accuracy import accuracy_cells, oom_message
from segbench.bench.run.adversarial import adversarial_cells
from segbench.bench.run.cells import Cell, Schedule, group_label, plan_cells
from segbench.bench.run.config import ConfigError, InferenceSpec, RunConfig, check_precision_supported
from segbench.bench.run.deployment import deploy_models, gemm_peak_cell
from segbench.bench.run.efficiency_cells import EfficiencyFn, efficiency_cell, efficiency_probe, sample_image
from segbench.bench.run.gallery import write_gallery
from segbench.bench.run.locks import folder_lock
from segbench.bench.run.manifest import describe_models, manifest, now, prepare, resolve_run_dir, run_environment
from segbench.bench.run.oom import is_out_of_memory
from segbench.bench.run.outcome import (
    CellError,
    RunFailed,
    RunResult,
    cell_warnings,
    user_code_failed,
    user_source,
)
from segbench.bench.run.plan import RunPlan, plan_run
from segbench.bench.run.progress import Progress
from segbench.bench.run.residency import ModelFactory, ModelSlot, Residency
from segbench.bench.run.residency import model_factory as model_factory_of
from segbench.bench.run.stop import Stopped, check_stop, stop_on_signals
from segbench.bench.spec import EfficiencySpec

Outcome = dict[str, Any] | CellError
"""What evaluating a cell gave: its record, or the error that failed it."""


def run(
    config: RunConfig,
    conditions: Sequence[Condition | str] | None = None,
    inference: InferenceSpec | None = None,
    efficiency: EfficiencyFn | EfficiencySpec | None = None,
    model_factory: ModelFactory | None = None,
    on_cell_finished: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Plan a run without a suite (`bench.run.plan.plan_run(None, ...)`) and carry it out (`execute`).

    Args:
        config: what to run and where to write.
        conditions: conditions of the accuracy cells (`Condition` or names such as "fog-2"); None: clean, widened by
            `config.corruptions` x `config.severities` (all five when none are given).
        inference: the protocol (overridden by `config.inference`; hardware knobs from `config`).
        efficiency: the cost probe run once per model on rank 0: an `EfficiencyFn`, or a `bench.spec.EfficiencySpec`
            (run through `efficiency_probe` on this rank's device); None for none.
        model_factory, on_cell_finished: as `execute`.
    """
    plan = plan_run(None, config, conditions, inference=inference, efficiency=efficiency)
    return execute(plan, model_factory=model_factory, on_cell_finished=on_cell_finished)


def execute(
    plan: RunPlan,
    model_factory: ModelFactory | None = None,
    on_cell_finished: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Carry out `plan` on this rank: every missing cell evaluated and stored, the tables gathered (see the module
    docstring).

    Args:
        plan: the run, decided (`bench.run.plan.plan_run`).
        model_factory: `factory(name, num_classes=..., weights=...) -> nn.Module`; default: the plan's models from
            their sources (`bench.run.residency.model_factory`).
        on_cell_finished: called on rank 0 with each stored cell record (progress hooks, tests).

    Returns:
        The run's `RunResult` (on every rank; only rank 0 writes files, and only its result has `is_main`).

    Raises:
        RunFailed: some cells failed; the finished ones are stored.
        RunMismatchError: resume against a run made with other settings (suite version, seed, weights, protocol,
            fast path, precision, batch size, conditions, ...).
        FolderBusyError: another process is running in the run folder.
    """
    ctx = distributed.setup(plan.config.device)
    try:
        with contextlib.ExitStack() as held:
            held.enter_context(stop_on_signals())  # SIGTERM stops the run as Ctrl-C does
            session = _Run(plan, model_factory or model_factory_of(plan.config, plan.modules), on_cell_finished, ctx)
            return session.execute(held)
    finally:
        distributed.teardown(ctx)


class _Run:
    """One run on this rank: its plan, the models it keeps loaded, its folder and what became of each cell."""

    def __init__(
        self,
        plan: RunPlan,
        factory: ModelFactory,
        on_cell_finished: Callable[[dict[str, Any]], None] | None,
        ctx: distributed.DistContext,
    ):
        for precision in plan.precisions:
            check_precision_supported(precision, ctx.device)  # before any model is built: one line, not a traceback
        if plan.config.shard is not None and ctx.world_size > 1:
            raise ConfigError(
                "shard",
                "a shard runs in one process (its share is torchrun rank I of N's); drop --shard under torchrun",
            )
        self.plan, self.config, self.ctx = plan, plan.config, ctx
        self.on_cell_finished = on_cell_finished
        self.records: list[dict[str, Any]] = []
        if plan.deploy is not None:
            build = ModelSlot(plan.config, ctx.device, factory).build  # seeded, weights loaded, random weights refused
            self.config, factory, self.records = deploy_models(plan.deploy, plan.config, build, ctx)
        config, efficiency = self.config, plan.efficiency
        if isinstance(efficiency, EfficiencySpec):
            efficiency = efficiency_probe(
                efficiency,
                ctx.device,
                config.suite,
                config.channels_last,
                config.compile,
                precision=config.precision,
                sample=sample_image(efficiency, config),
            )
        self.efficiency = efficiency
        self.spec = dataclasses.replace(plan.spec, device=str(ctx.device))
        self.cells = plan_cells(config.models, plan.conditions if plan.accuracy else (), efficiency is not None)
        self.residency = Residency(ModelSlot(config, ctx.device, factory), config.models, ctx)

    def execute(self, held: contextlib.ExitStack) -> RunResult:
        """Preflight, take the run folder (its lock stays in `held`), run the missing cells, gather the tables."""
        config, ctx = self.config, self.ctx
        self.residency.load_all()
        described = describe_models(self.residency, config, self.spec)
        if ctx.is_main and not config.quiet:
            for line in self.plan.notes:
                print(line, file=sys.stderr)
        self.weights = described["weights"]
        self.run_dir = run_dir = distributed.on_main(lambda: resolve_run_dir(config), ctx)
        distributed.on_main(lambda: held.enter_context(folder_lock(run_dir, what="run folder")), ctx)
        try:
            done = self._prepare(described)
            self.peak_due = self.plan.deploy is not None and MACHINE_CELL not in done
            try:
                self._work(Schedule([c for c in self.cells if c.id not in done], self.residency.together))
                self._gemm_peak()  # a run without accuracy cells
                if self.plan.gallery and not self.result.failed:
                    self._gallery(run_dir)
            except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (`stop_on_signals`)
                self._interrupted(stop)
                raise
            finally:
                self.residency.slot.release()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise self._disk_full(exc) from exc
        return self._close()

    def _prepare(self, described: dict[str, dict[str, Any]]) -> set[str]:
        """run.json and env.json written (or checked on resume), the grid's cells stored; the ids of finished cells."""
        config, ctx, run_dir = self.config, self.ctx, self.run_dir
        record = {**manifest(config, self.plan.conditions, described), "run_id": run_dir.name}
        self.store = RunStore(run_dir, config.dataset)
        env = functools.partial(run_environment, config, run_dir, self.spec, described, ctx)
        done = distributed.on_main(lambda: prepare(self.store, record, env()), ctx)
        if ctx.is_main:
            for made in self.records:  # cells measured before the run (the deployment grid's checks)
                if made["cell"] not in done:
                    self.store.write_cell({**made, "finished_at": now()})
        machine = [MACHINE_CELL] if self.plan.deploy is not None else []
        ids = [r["cell"] for r in self.records] + machine + [c.id for c in self.cells]
        self.result = RunResult(run_dir, None, ids, skipped=[i for i in ids if i in done], is_main=ctx.is_main)
        for made in self.records:  # the grid's checks settled before the plan: this session's cells
            if made["cell"] not in done:
                self.result.add_computed(made["cell"], made["timing"])
        self.progress = Progress(self.result, ctx.is_main, config.quiet)
        self.progress.plan(run_dir)
        return done

    def _gemm_peak(self) -> None:
        """A deployment run's `machine` cell (`gemm_peak_cell`), when it is due: the device's GEMM peak, measured on
        rank 0 while the other ranks wait, between the efficiency cells and the accuracy cells (the machine is quiet,
        and the matrices cannot raise the efficiency cells' peak memory); never again on resume."""
        if not self.peak_due:
            return
        self.peak_due = False
        label = f"[{self.result.settled + 1}/{len(self.result.cells)}] {MACHINE_CELL}"
        measure = functools.partial(gemm_peak_cell, self.plan.deploy, self.ctx.device, self.config.suite)
        record = distributed.on_main(measure, self.ctx)
        if self.ctx.is_main:
            self.store.write_cell({**record, "finished_at": now()})
            self.progress.finished(label, record["timing"])
        self.result.add_computed(MACHINE_CELL, record["timing"])

    def _work(self, schedule: Schedule) -> None:
        """Every group of the schedule; a cell that ran out of memory beside the run's other models is tried again
        alone, and the rest of the run goes on one model at a time."""
        while (group := schedule.next()) is not None:
            check_stop()  # a stop whose exception a library swallowed ends the run here, between cells
            if group[0].kind == "accuracy":
                self._gemm_peak()  # after the latency cells (one model at a time: after the first model's)
            beside_others = self.residency.beside_others
            label = self.progress.label(group)
            outcomes = self._evaluate(group, label)
            retry = [c for c, o in zip(group, outcomes) if beside_others and _out_of_memory(o)]
            for cell, outcome in zip(group, outcomes):
                if cell not in retry:
                    self._settle(cell, outcome, label if len(group) == 1 else f"{label} {cell.model}")
            if retry:
                schedule.alone(retry)
                self.residency.alone(_why_alone(group, outcomes, retry))
            elif any(map(_out_of_memory, outcomes)):
                self.residency.slot.release()  # give the device back before the next cells
            if len(retry) < len(group):
                self.progress.whole_run()

    def _evaluate(self, group: list[Cell], label: str) -> list[Outcome]:
        """One outcome per cell of the group (a group whose models do not fit fails on loading)."""
        models = self.residency.load([c.model for c in group])
        if isinstance(models, CellError):
            return [models] * len(group)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outcomes = self._cells(group, models, label)
        except CellError as exc:  # an efficiency probe that failed
            return [exc]
        except Exception as exc:  # an efficiency probe out of memory in any form (raised on every rank by on_main)
            if is_out_of_memory(exc):
                specs = [self.spec.resolve(model.meta) for model in models]
                return [CellError(oom_message(c, s), out_of_memory=True) for c, s in zip(group, specs)]
            source = user_source(models[0]) if group[0].kind == "efficiency" else None
            if source is None:
                raise
            return [CellError(user_code_failed(group[0].id, source, exc))]  # a user's model raised: its cell alone
        for outcome in outcomes:
            if isinstance(outcome, dict):
                outcome["warnings"] = cell_warnings(caught, outcome)
        return outcomes

    def _cells(self, group: list[Cell], models: list[nn.Module], label: str) -> list[Outcome]:
        if group[0].kind == "accuracy":
            runners = [self.residency.slot.for_inference(cell.model) for cell in group]
            specs = [self.spec.resolve(model.meta) for model in models]
            sources = [user_source(model) for model in models]
            if group[0].condition.is_attack:
                conds = self.plan.conditions
                return adversarial_cells(group, runners, specs, self.config, self.ctx, label, conds, sources)
            return accuracy_cells(group, runners, specs, self.config, self.ctx, label, sources)
        probe = functools.partial(efficiency_cell, group[0], models[0], self.config, self.efficiency)
        return [distributed.on_main(probe, self.ctx)]

    def _gallery(self, run_dir: Path) -> None:
        """Rank 0 saves the first image of the run's dataset under each of the plan's synthetic conditions with every
        model's prediction, from the models the run has loaded (one at a time when they do not fit together)."""
        conditions = [c for c in self.plan.conditions if not c.is_real]
        if self.ctx.is_main and conditions:
            config = self.config
            write_gallery(
                run_dir,
                config.root_of(config.dataset),
                conditions,
                config.models,
                self.residency.on_this_rank,
                self.spec,
                config.split,
                config.seed,
                dataset=config.dataset,
            )
        distributed.barrier(self.ctx)

    def _settle(self, cell: Cell, outcome: Outcome, label: str) -> None:
        """Store a finished cell (rank 0) or note a failed one."""
        if isinstance(outcome, CellError):
            message = str(outcome)
            if outcome.loading:
                message += f" for {cell.id}, with no other model loaded: use a GPU with more memory"
            self.result.failed[cell.id] = message
            self.progress.failed(message)
            return
        if self.ctx.is_main:
            self.store.write_cell({**outcome, "weights_sha256": self.weights[cell.model], "finished_at": now()})
            self.progress.finished(label, outcome["timing"])
            if self.on_cell_finished is not None:
                self.on_cell_finished(outcome)
        self.result.add_computed(cell.id, outcome["timing"])

    def _resume_hint(self) -> str:
        run_dir = self.run_dir
        if not (run_dir / "run.json").is_file():  # stopped before the run was recorded: nothing to resume yet
            return "the same command again"
        return (
            f"the same command with --out {run_dir} --resume (Python: RunConfig(..., out_dir={str(run_dir.parent)!r}, "
            f"run_id={run_dir.name!r}, resume=True))"
        )

    def _interrupted(self, stop: KeyboardInterrupt) -> None:
        """Rank 0 gathers results.csv and summary.csv from the finished cells and says how to resume."""
        if not self.ctx.is_main:
            return
        self.store.gather(self.result.cells, self.config.reference_model, self.config.suite)
        why = str(stop) if isinstance(stop, Stopped) else "interrupted"
        print(
            f"\n{why}: {len(self.store.finished())} finished cells are kept in {self.store.cells_dir}, with "
            f"results.csv and summary.csv gathered from them. Resume: {self._resume_hint()}.",
            file=sys.stderr,
        )

    def _disk_full(self, exc: OSError) -> OSError:
        """A full disk (or quota) as one line that names the file and says how to go on."""
        where = f" writing {exc.filename}" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}; free some space, then resume: {self._resume_hint()}"
        return OSError(exc.errno, message)

    def _close(self) -> RunResult:
        """Gather the tables (rank 0); raise `RunFailed` when some cells failed."""
        result = self.result
        distributed.barrier(self.ctx)
        if self.ctx.is_main:
            result.results_csv = self.store.gather(result.cells, self.config.reference_model, self.config.suite)
        if result.failed:
            lines = "".join(f"\n  {msg if cid in msg else f'{cid}: {msg}'}" for cid, msg in result.failed.items())
            head = f"{len(result.failed)} of {len(result.cells)} cells failed (the rest are in {result.run_dir}):"
            raise RunFailed(head + lines, result)
        return result


def _out_of_memory(outcome: Outcome) -> bool:
    return isinstance(outcome, CellError) and outcome.out_of_memory


def _why_alone(group: Sequence[Cell], outcomes: Sequence[Outcome], retry: Sequence[Cell]) -> str:
    """What the note about going on one model at a time says happened."""
    if any(isinstance(o, CellError) and o.loading for o in outcomes):
        return f"while loading the models of {group_label(group)} beside the run's others"
    return f"in {', '.join(c.id for c in retry)} with the run's other models loaded"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m segbench.bench.run.runner --config run.json`: a run described by JSON (RunConfig fields +
    `conditions`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON file with RunConfig fields and optional 'conditions'")
    args = parser.parse_args(argv)
    try:
        data = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"{args.config}: cannot read it as JSON ({str(exc).splitlines()[0]})")
    if not isinstance(data, dict):
        parser.error(f"{args.config}: holds a JSON {type(data).__name__}; give an object of RunConfig fields")
    conds = data.pop("conditions", None)
    data.setdefault("command", [sys.executable, "-m", "segbench.bench.run.runner", *(argv or sys.argv[1:])])
    result = run(RunConfig.from_dict(data), conds)
    if result.results_csv is not None:
        print(result.results_csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
