"""`segbench run ... --launcher slurm --shards N --out RUN_DIR`: the run as a SLURM job array of N shards and a merge
job that waits for them, through submitit (`pip install 'segbench[slurm]'`); `--launcher local` runs the same jobs
as local processes (submitit's local executor: no cluster needed, what the tests use).

Each array task runs the same command with `--shard I/N --out RUN_DIR.shards/shard-I`; the merge job runs
`segbench merge` over the N folders into RUN_DIR (`bench.run.merge`). On SLURM the merge job depends on the array
(`afterok`), so it starts only when every shard finished; a failed shard leaves it pending, and the shard is resumed
by running its command again with `--resume`. Logs go to RUN_DIR.shards/logs/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

LAUNCHERS = ("slurm", "local")
OPTIONS = ("--launcher", "--shards", "--partition", "--time", "--gpus-per-task", "--array-parallelism")
"""The launcher's own flags: taken off the command each job runs."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`run`'s launcher flags."""
    p.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        help="submit the run as a job array of --shards shards plus a merge job: slurm (submitit), or local "
        "processes (submitit's local executor)",
    )
    p.add_argument("--shards", type=int, help="with --launcher: the number of shards (array tasks)")
    p.add_argument("--partition", help="with --launcher slurm: the SLURM partition")
    p.add_argument("--time", type=int, default=240, help="with --launcher: minutes per job (default 240)")
    p.add_argument("--gpus-per-task", type=int, default=0, help="with --launcher slurm: GPUs per array task")
    p.add_argument("--array-parallelism", type=int, help="with --launcher slurm: array tasks running at once")


def job_command(argv: list[str]) -> list[str]:
    """The command line without the launcher's flags (and their values) and without --out/--shard."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in (*OPTIONS, "--out", "--shard"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def run_command(argv: list[str]) -> str:
    """What a job runs: `python -m segbench <argv>` (its output goes to the job's log); raises when it fails, so that
    the job is marked failed."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "segbench", *argv], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"segbench {' '.join(argv)} exited with {done.returncode}")
    return " ".join(argv)


def _executor(kind: str, folder: Path, args: argparse.Namespace) -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher needs submitit: pip install 'segbench[slurm]'") from None
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=kind)
    except RuntimeError as e:  # no SLURM here
        raise ValueError(f"--launcher {kind}: {e} (use --launcher local on a machine without SLURM)") from None
    params: dict[str, Any] = {"timeout_min": args.time, "name": "segbench"}
    if kind == "slurm":
        params.update(slurm_partition=args.partition, slurm_gpus_per_task=args.gpus_per_task or None)
        if args.array_parallelism:
            params["slurm_array_parallelism"] = args.array_parallelism
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def launch(argv: list[str], args: argparse.Namespace) -> int:
    """Submit the shards and the merge (see the module docstring); prints the job ids and how to follow them."""
    if not args.shards or args.shards < 1:
        raise ValueError("--launcher needs --shards N (the number of array tasks), N >= 1")
    if not args.out:
        raise ValueError("--launcher needs --out RUN_DIR: the merged run's folder (its shards go beside it)")
    if args.shard or args.resume:
        raise ValueError("--launcher submits every shard itself: drop --shard and --resume")
    out = Path(args.out)
    shards_dir = out.parent / f"{out.name}.shards"
    base = job_command(argv)
    commands = [
        [*base, "--shard", f"{i}/{args.shards}", "--out", str(shards_dir / f"shard-{i}")] for i in range(args.shards)
    ]
    executor = _executor(args.launcher, shards_dir / "logs", args)
    with executor.batch():
        jobs = [executor.submit(run_command, c) for c in commands]
    merge = ["merge", *(str(shards_dir / f"shard-{i}") for i in range(args.shards)), "--out", str(out)]
    print(f"submitted {args.shards} shards: job {', '.join(j.job_id for j in jobs)} (logs: {shards_dir / 'logs'})")
    if args.launcher == "slurm":
        array = jobs[0].job_id.split("_")[0]
        executor.update_parameters(slurm_dependency=f"afterok:{array}", slurm_array_parallelism=1)
        job = executor.submit(run_command, merge)
        print(f"merge job {job.job_id} waits for them (afterok:{array}); follow: squeue -u $USER; sacct -j {array}")
        return 0
    for i, job in enumerate(jobs):
        _wait(job, f"shard {i}/{args.shards}", shards_dir / "logs")
    _wait(executor.submit(run_command, merge), "the merge", shards_dir / "logs")
    print(f"merged: {out}")
    return 0


def _wait(job: Any, what: str, logs: Path) -> None:
    """Wait for a local job; its failure as one line naming it and its log."""
    try:
        job.result()
    except Exception as exc:  # noqa: BLE001 - submitit wraps the job's error with its traceback: keep one line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last = lines[-1] if lines else type(exc).__name__
        raise ValueError(f"{what} failed (job {job.job_id}, log in {logs}): {last}") from None


def maybe_launch(argv: list[str], args: argparse.Namespace) -> int | None:
    """`launch` when `--launcher` was given, else None (the run goes on in this process)."""
    if args.launcher is None:
        for flag, value in (("--shards", args.shards), ("--partition", args.partition)):
            if value:
                raise ValueError(f"{flag} is an option of --launcher slurm|local; add --launcher")
        return None
    sys.stdout.flush()
    return launch(argv, args)
