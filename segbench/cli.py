"""segbench: how robust is a segmentation model, and what does it cost?

The `segbench` command (from a checkout, `python run_bench.py` is the same command). Examples:
  python run_bench.py                                    # the demo suite: synthetic scenes, runs anywhere
  python run_bench.py --suite cityscapes-c --models segformer-b0,b5 --data /data/cityscapes --device cuda
  python run_bench.py --suite cityscapes-c --models segformer-b2 --weights segformer-b2=ckpt/segformer.b2.pth
  python run_bench.py --suite efficiency --models segformer-b0,b1,b2 --device cuda --precision fp16
  python run_bench.py --suite cityscapes-c --out runs/my-run --resume   # continue an interrupted run
  torchrun --nproc_per_node 4 run_bench.py --suite cityscapes-c --models segformer-b5 --device cuda
  python run_bench.py list models
  python run_bench.py generate-c --data /data/cityscapes --out /data/cityscapes-c --workers 8
  python run_bench.py report runs/demo-20261125-120000
  python run_bench.py compare runs/baseline runs/candidate
  python run_bench.py --suite adversarial-demo                          # PGD, SegPGD, CosPGD on the demo scenes
  python run_bench.py --suite cityscapes-c --shard 0/4 --out runs/c-0    # share 0 of 4 (a SLURM array task)
  python run_bench.py merge runs/c-0 runs/c-1 runs/c-2 runs/c-3 --out runs/c   # join the shards exactly
  python run_bench.py leaderboard 'runs/*' --out leaderboard.html                # one table across runs
  python run_bench.py export runs/demo-20261125-120000 --format hf-model-index  # a model card's model-index

`--models` takes a comma list; a bare variant inherits the family of the name before it (`segformer-b0,b5`).
Add `--debug` to any command for full tracebacks (or set SEGBENCH_DEBUG=1). Ctrl-C and SIGTERM stop a run cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segbench.bench.run.config import RunConfig

COMMANDS = ("run", "list", "generate-c", "report", "compare", "merge", "leaderboard", "export")
PROG = "run_bench.py" if Path(sys.argv[0]).name == "run_bench.py" else "segbench"


FLAGS = {
    "data_root": "--data",
    "data_roots": "--data",
    "dataset": "--dataset",
    "corrupted_root": "--corrupted-data",
    "weights_text": "--weights",
    "out_dir": "--out",
    "run_id": "--out",
    "reference_model": "--reference",
    "deploy_precisions": "--precisions",
    "random_start": "--no-random-start",
}
"""`RunConfig` fields whose flag is not `--<field with dashes>`."""


class UsageError(ValueError):
    """A command line that does not parse (unknown flag, missing value, ...)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one-line errors (exit 2), as every other user mistake is."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def flag(field: str) -> str:
    """The command-line flag of a `RunConfig` field (`data_root` -> `--data`, `batch_size` -> `--batch-size`)."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _csv(text: str | None) -> tuple[str, ...]:
    from segbench.bench.run.config import split_list

    return split_list(text)


def _severities(text: str | None) -> tuple[int, ...]:
    from segbench.bench.run.config import parse_severities

    return parse_severities(text)


def _workers(text: str, auto: Callable[[], int]) -> int:
    """`--workers`: an integer >= 0, or `auto` (then `auto()`)."""
    from segbench.bench.run.config import parse_workers

    return parse_workers(text, auto)


def _attack_arguments(p: argparse.ArgumentParser) -> None:
    """`run`'s attack flags (`RunConfig.attacks`, `norm`, `eps`, `attack_steps`, `attack_step_size`,
    `random_start`)."""
    p.add_argument(
        "--attacks",
        help="comma list of adversarial attacks added to the suite's conditions: pgd, segpgd, cospgd (with two or "
        "more, also the per-image worst case at each budget)",
    )
    p.add_argument("--norm", help="the attacks' norm: linf or l2 (default: the suite's, else linf)")
    p.add_argument(
        "--eps",
        help="comma list of budgets in [0, 1] pixel units: L-inf as 0.25/255,1/255,8/255, L2 as 0.5,1 (default: the "
        "suite's, else 0.25/255 to 8/255 for L-inf)",
    )
    p.add_argument("--attack-steps", type=int, help="gradient steps of every attack (default 10)")
    p.add_argument("--attack-step-size", help="step size in eps units, e.g. 0.01 or 1/255 (default 2.5*eps/steps)")
    p.add_argument(
        "--no-random-start",
        action="store_true",
        help="start each attack from the clean image (default: a random point of the budget, seeded per image)",
    )


def _output_arguments(p: argparse.ArgumentParser) -> None:
    """`run`'s flags for what happens to the finished run: a tracker, a baseline to compare with or to write."""
    p.add_argument(
        "--log-to",
        help="log the finished run to experiment trackers, a comma list: mlflow or mlflow=URI (default: a local sqlite "
        "store beside the run folder; pip install 'segbench[mlflow]'), wandb (offline, under the run folder's wandb/ "
        "for `wandb sync`, unless WANDB_MODE is set or wandb is logged in; pip install 'segbench[wandb]')",
    )
    p.add_argument("--baseline", help="compare the run against this baseline (.json, run folder or results.csv)")
    p.add_argument("--update-baseline", action="store_true", help="write this run as the new --baseline file")


def _run_parser() -> argparse.ArgumentParser:
    from segbench.bench.results.schema import DEPLOY_BACKENDS, DEPLOY_PRECISIONS
    from segbench.bench.run.config import PRECISIONS

    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="demo", help="suite name (see `list suites`); default: demo")
    p.add_argument(
        "--models",
        help="comma list of [NAME=]SOURCE (default: the suite's): a registered name, hf:FOLDER_OR_ID, "
        "py:MODULE_OR_FILE:FACTORY, torchscript:FILE or onnx:FILE",
    )
    p.add_argument("--model-args", help="keyword arguments of py: factories, k=v,... (e.g. depth=18,pretrained=False)")
    p.add_argument(
        "--model-meta", help="JSON declaring normalisation, input range and trained for py:/torchscript:/onnx: models"
    )
    p.add_argument("--label-map", help="JSON mapping the dataset's class names to a model's label names")
    p.add_argument(
        "--data",
        help="dataset root: a bare PATH (the root of the suite's dataset), or name=PATH,... over cityscapes, ade20k, "
        "voc, coco-stuff, folder, acdc, dark-zurich, foggy-cityscapes (default: $CITYSCAPES_DATASET, $ADE20K_DATASET, "
        "$VOC_DATASET, $COCO_STUFF_DATASET, $ACDC_DATASET, $DARK_ZURICH_DATASET; Foggy Cityscapes lies in the "
        "Cityscapes root; a folder dataset has no variable)",
    )
    p.add_argument("--corrupted-data", help="a generate-c output folder to read corrupted images from")
    p.add_argument("--weights", help="a folder of checkpoints and/or model=path pairs (default: the local HF cache)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--precision",
        help=f"{', '.join(PRECISIONS)} (default: fp32, and the efficiency probe times the suite's own precisions; "
        "fp16 needs CUDA)",
    )
    p.add_argument("--batch-size", type=int, help="images per batch (crops per forward pass when sliding; default 1)")
    p.add_argument(
        "--workers",
        help="DataLoader worker processes per rank (default auto: 0 on CPU, where the model already uses every "
        "core; on CUDA the cores but one, up to 8)",
    )
    p.add_argument("--corruptions", help="comma list narrowing the suite's corruptions")
    p.add_argument("--severities", help="comma list of severities, applied to every corruption (e.g. 1,2,3,4,5)")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument("--only", help="accuracy or efficiency: run only one kind of measurement")
    p.add_argument("--out", help="run folder (default: runs/<suite>-<timestamp>)")
    p.add_argument(
        "--shard",
        help="I/N: evaluate share I (0-based) of N of the images into a shard folder; join the N folders with "
        "`segbench merge` (e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out (default: the suite's latest)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (CI logs)")
    p.add_argument("--seed", type=int, help="base seed of the corruptions (default: 0)")
    p.add_argument(
        "--fast", action="store_true", help="SegFormer's fast path: folded decoder, banded CPU blocks (same outputs)"
    )
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (each input size compiles once: about 40 s for SegFormer-B0 on 2 CPU cores)",
    )
    p.add_argument("--reference", help="reference model for mCE (one of --models)")
    p.add_argument("--backends", help=f"deploy suite: comma list narrowing the backends ({', '.join(DEPLOY_BACKENDS)})")
    p.add_argument(
        "--precisions", help=f"deploy suite: comma list narrowing the precisions ({', '.join(DEPLOY_PRECISIONS)})"
    )
    _attack_arguments(p)
    p.add_argument(
        "--allow-random-weights", action="store_true", help="run models without trained weights (marked in red)"
    )
    _output_arguments(p)
    from segbench.bench.track.regression import add_arguments
    from segbench.launch import add_arguments as add_launcher_arguments

    add_arguments(p)
    add_launcher_arguments(p)
    return p


def run_config(args: argparse.Namespace) -> RunConfig:
    """The `RunConfig` of `run`'s arguments. Values go over as typed (`--models segformer-b0,b5`, `--workers auto`):
    `RunConfig` is the one place that checks them, and its `ConfigError` names the field (`flag` gives the flag). A
    flag not given leaves the field to `RunConfig`'s default, so the command line and the Python API share every
    default."""
    from segbench.bench.run.config import RunConfig

    out_dir, run_id = None, None
    if args.out:
        out_dir, run_id = str(Path(args.out).parent), Path(args.out).name
    given = dict(
        models=args.models,
        weights_text=args.weights,
        data_root=args.data,
        corrupted_root=args.corrupted_data,
        out_dir=out_dir,
        run_id=run_id,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        workers=args.workers,
        corruptions=args.corruptions,
        severities=args.severities,
        max_images=args.max_images,
        only=args.only,
        resume=args.resume or None,
        quiet=args.quiet or None,
        seed=args.seed,
        allow_random_weights=args.allow_random_weights or None,
        fast=args.fast or None,
        channels_last=args.channels_last or None,
        compile=args.compile or None,
        reference_model=args.reference,
        model_args=args.model_args,
        model_meta=args.model_meta,
        label_map=args.label_map,
        backends=args.backends,
        deploy_precisions=args.precisions,
        attacks=args.attacks,
        norm=args.norm,
        eps=args.eps,
        attack_steps=args.attack_steps,
        attack_step_size=args.attack_step_size,
        random_start=False if args.no_random_start else None,
        shard=args.shard,
    )
    return RunConfig(**{k: v for k, v in given.items() if v is not None}, command=[sys.executable, *sys.argv])


def cmd_run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    from segbench.launch import maybe_launch

    launched = maybe_launch(["run", *argv], args)
    if launched is not None:
        return launched
    if args.update_baseline and not args.baseline:
        raise UsageError("--update-baseline needs --baseline FILE (where to write it)")
    from segbench import suites
    from segbench.bench.api import run_suite
    from segbench.bench.track import regression

    regression.check_outputs(args.baseline, args.update_baseline, args.history, args.summary)  # before the run
    from segbench.bench.track.trackers import log_run, parse_log_to

    trackers = parse_log_to(args.log_to)  # before the run: a typo is one line, not a lost run

    suite = suites.get_suite(args.suite)
    result = run_suite(suite, run_config(args))
    if not result.is_main:  # under torchrun, the rank that wrote the run reports it
        return 0
    if args.shard:
        print(f"shard {args.shard}: {result.run_dir} (a share of the images: merge all shards with `{PROG} merge`)")
        return 0
    code = 0
    if args.baseline:
        if args.update_baseline:
            path = regression.write_baseline(regression.load_results(result.run_dir), args.baseline)
            print(f"baseline written: {path}")
        else:
            tol = regression.tolerances_from(args)
            history = args.history or Path(result.run_dir).parent / "history.jsonl"
            code = regression.run_compare(args.baseline, result.run_dir, tol, history, args.summary)
    from segbench.reports import evaluation_summary, render_report
    from segbench.reports.console import console_table

    report = render_report(result.run_dir, reference_model=args.reference)
    table = console_table(result.run_dir)
    if table:
        print(table)
    print(f"report: {report}")
    summary = evaluation_summary(result.run_dir)
    if summary:
        print(summary)
    for line in log_run(result.run_dir, trackers):
        print(line)
    return code


def cmd_list(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} list", description="list models, suites, datasets or corruptions")
    p.add_argument("what", nargs="?", choices=("models", "suites", "datasets", "corruptions"), default=None)
    args = p.parse_args(argv)
    if args.what in (None, "models"):
        from segbench import models

        print("models (by family; also <head>:<timm model>, e.g. deeplabv3plus:convnext_tiny):")
        for family, names in models.list_models_grouped().items():
            print(f"  {family}: {', '.join(names)}")
        plugins = models.list_plugin_models()
        if plugins:
            print(f"  plugins (segbench.models entry points): {', '.join(plugins)}")
        print(
            "  other sources: hf:FOLDER_OR_ID, py:MODULE_OR_FILE:FACTORY, torchscript:FILE, onnx:FILE ([NAME=]SOURCE)"
        )
    if args.what in (None, "suites"):
        from segbench import suites

        print("suites:")
        for name in suites.list_suites():
            s = suites.get_suite(name)
            print(f"  {name} (v{s.version}): {s.description}")
    if args.what in (None, "datasets"):
        _list_datasets()
    if args.what in (None, "corruptions"):
        from segbench.bench.results.axes import CATEGORIES, EXTRA_CORRUPTIONS

        print("corruptions (severities 1-5):")
        for cat, names in CATEGORIES.items():
            print(f"  {cat}: {', '.join(names)}")
        print(f"  extra (not in Cityscapes-C): {', '.join(EXTRA_CORRUPTIONS)}")
    return 0


def _list_datasets() -> None:
    from segbench.bench.data.datasets import get_dataset, list_datasets

    print("datasets (--data NAME=PATH; or the environment variable):")
    for name in list_datasets():
        if name == "folder":
            print("  folder: your own images/, labels/ and dataset.json (classes from the file; no variable)")
            continue
        d = get_dataset(name)
        var = f", ${d.env_var}" if d.env_var else ""
        print(f"  {name.replace('_', '-')}: {d.title}, {d.classes.num_classes} classes{var}; root holds {d.layout}")


def cmd_generate_c(argv: list[str]) -> int:
    p = _Parser(
        prog=f"{PROG} generate-c",
        description="write a dataset's corrupted copy (Cityscapes-C, ADE20K-C, ...) to disk (atomic files, resumable)",
    )
    p.add_argument(
        "--data",
        help="the dataset's root: name=PATH for one of cityscapes, ade20k, voc, coco-stuff, folder (e.g. "
        "ade20k=/data/ADEChallengeData2016), or a bare PATH of --dataset (default: its environment variable, e.g. "
        "$CITYSCAPES_DATASET)",
    )
    p.add_argument("--dataset", help="the dataset of a bare --data PATH (default: cityscapes)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--corruptions", help="comma list (default: the 16 Cityscapes-C corruptions)")
    p.add_argument("--severities", help="comma list (default: 1-5)")
    p.add_argument("--workers", default="auto", help="processes (default auto: the cores this process may use)")
    p.add_argument("--split", default="val")
    p.add_argument("--max-images", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="write only share I of N (0-based: images I, I+N, ...), so that N processes or machines fill one folder "
        "together (default under torchrun: RANK/WORLD_SIZE)",
    )
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from segbench.bench.data.generate_c import generate_c, parse_shard
    from segbench.bench.results.axes import CORRUPTIONS, SEVERITIES
    from segbench.bench.run.config import usable_cores

    shard = None if args.shard is None else parse_shard(args.shard)
    dataset, root = _generate_c_data(args.data, args.dataset)
    report = generate_c(
        root,
        args.out,
        corruptions=_csv(args.corruptions) or CORRUPTIONS,
        severities=_severities(args.severities) or SEVERITIES,
        workers=_workers(args.workers, usable_cores),
        base_seed=args.seed,
        split=args.split,
        max_images=args.max_images,
        quiet=args.quiet,
        shard=shard,
        dataset=dataset,
    )
    print(report)
    return 0


def _generate_c_data(data: str | None, dataset: str | None) -> tuple[str, str | None]:
    """generate-c's dataset and root from `--data` (a bare PATH or one name=PATH) and `--dataset`."""
    from segbench.bench.results.axes import DATASETS, dataset_key
    from segbench.bench.run.config import ConfigError, parse_data

    if dataset is not None and dataset_key(dataset) not in DATASETS:
        known = ", ".join(n.replace("_", "-") for n in DATASETS)
        raise ConfigError("dataset", f"{dataset!r} is not a dataset generate-c corrupts; choose one of {known}")
    bare, named = parse_data(data, field="data_root")
    if len(named) > 1 or any(n not in DATASETS for n in named):
        raise ConfigError("data_root", f"{data!r}: give one root, name=PATH, of {', '.join(DATASETS)}")
    if named:
        name, root = next(iter(named.items()))
        if dataset is not None and dataset_key(dataset) != name:
            raise ConfigError("dataset", f"{dataset!r}, but --data names {name}; give one of them")
        return name, root
    return dataset_key(dataset or "cityscapes"), bare


def cmd_report(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} report", description="re-render a run folder's HTML report")
    p.add_argument("run_dir")
    p.add_argument("--reference", help="reference model for mCE")
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "results.csv").is_file() and not any((run_dir / "cells").glob("*.json")):
        raise FileNotFoundError(
            f"{args.run_dir}: no results.csv here, nor any finished cell (cells/*.json); give a run folder made by "
            "run_bench.py"
        )
    from segbench.bench.results.store import RunFolder
    from segbench.reports import render_report

    print(f"report: {render_report(run_dir, reference_model=args.reference)}")
    partial = RunFolder(run_dir).partial()  # a killed or interrupted run: its finished cells are shown
    if partial:
        print(f"note: {partial}", file=sys.stderr)
    return 0


def cmd_merge(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} merge", description="join the shard folders of one run (--shard I/N) into a run folder")
    p.add_argument("shards", nargs="+", help="every shard folder of the run")
    p.add_argument("--out", required=True, help="the merged run folder (new)")
    p.add_argument("--reference", help="reference model for mCE in the report")
    args = p.parse_args(argv)
    from segbench.bench.run.merge import merge_shards
    from segbench.reports import render_report

    run_dir = merge_shards(args.shards, args.out)
    print(f"merged {len(args.shards)} shards: {run_dir}")
    print(f"report: {render_report(run_dir, reference_model=args.reference)}")
    return 0


def cmd_leaderboard(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} leaderboard", description="one HTML table across run folders (and CSV, Markdown, LaTeX)")
    p.add_argument("runs", nargs="+", help="run folders or globs (quote them: 'runs/*')")
    p.add_argument("--out", default="leaderboard.html", help="the page (default: leaderboard.html)")
    p.add_argument(
        "--published", action="store_true", help="add the published tables of the runs' datasets as marked rows"
    )
    args = p.parse_args(argv)
    from segbench.reports.leaderboard import write_leaderboard

    page = write_leaderboard(args.runs, args.out, args.published)
    print(f"leaderboard: {page} (and {page.with_suffix('.csv').name}, .md, .tex beside it)")
    return 0


def cmd_export(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} export", description="a run's results in another format")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, choices=("hf-model-index",), help="hf-model-index: a model card block")
    p.add_argument("--out", help="write to this new .yaml file (default: print)")
    args = p.parse_args(argv)
    if not (Path(args.run_dir) / "run.json").is_file():
        raise FileNotFoundError(f"{args.run_dir}: no run.json here; give a run folder that segbench wrote")
    from segbench.bench.results.io import atomic_write_text
    from segbench.bench.results.targets import check_target
    from segbench.reports.model_index import model_index_yaml

    text = model_index_yaml(args.run_dir)
    if args.out is None:
        print(text, end="")
        return 0
    check_target(args.out, "--out", "a segbench model-index YAML", "give a new file", _is_model_index)
    print(f"model-index: {atomic_write_text(args.out, text)}")
    return 0


def _is_model_index(path: Path) -> bool:
    return path.is_file() and path.read_text(errors="replace").startswith("model-index:")


def cmd_compare(argv: list[str]) -> int:
    from segbench.bench.track.regression import main as compare_main

    return compare_main(argv, prog=f"{PROG} compare", parser=_Parser)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # any command: full tracebacks, user mistakes and failed cells included
        from segbench.bench.run.outcome import DEBUG_ENV

        argv.remove("--debug")
        os.environ[DEBUG_ENV] = "1"  # the runner, and every process it starts, read it
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    handler = {
        "run": cmd_run,
        "list": cmd_list,
        "generate-c": cmd_generate_c,
        "report": cmd_report,
        "compare": cmd_compare,
        "merge": cmd_merge,
        "leaderboard": cmd_leaderboard,
        "export": cmd_export,
    }[command]
    from segbench.bench.run.allocator import retain_freed_memory
    from segbench.bench.run.stop import exit_code, quiet_exit, stop_on_signals

    retain_freed_memory()  # before any worker forks: they inherit it (SEGBENCH_MALLOC=system opts out)
    try:
        with stop_on_signals():  # SIGTERM (preemption, time limits, kill) stops as Ctrl-C does
            return handler(argv)
    except KeyboardInterrupt as stop:
        print(f"{command}: {STOPPED[command]}", file=sys.stderr)
        quiet_exit()
        return exit_code(stop)
    except Exception as exc:  # noqa: BLE001 - user mistakes become one line; anything else is re-raised there
        return _one_line(exc)


STOPPED = {
    "run": "stopped (finished cells are kept; see above for how to resume)",
    "generate-c": "stopped; the images written are kept: run the same command again to finish (it skips them)",
    "list": "stopped",
    "report": "stopped; run it again (the report is written atomically, file by file)",
    "compare": "stopped; nothing was written",
    "merge": "stopped; remove the half-written --out folder and run it again",
    "leaderboard": "stopped; run it again (each file is written atomically)",
    "export": "stopped; run it again",
}
"""What each command says when a signal stops it."""


def _one_line(exc: Exception) -> int:
    """A user mistake, a failed run or a full disk as one `error:` line (exit 2, a failed run 1); anything else goes
    up with its traceback, as does everything under `--debug`."""
    from segbench.bench.run.config import ConfigError
    from segbench.bench.run.locks import FolderBusyError
    from segbench.bench.run.outcome import RunFailed, debug_enabled

    if debug_enabled():
        raise exc
    if isinstance(exc, RunFailed):
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, ConfigError):
        exc = ValueError(f"{flag(exc.field)}: {exc.problem}")
    if isinstance(exc, ValueError | OSError | FolderBusyError):  # OSError: missing files, permissions, a full disk
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    raise exc


if __name__ == "__main__":
    sys.exit(main())
