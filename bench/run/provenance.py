"""Provenance of a run: what produced its numbers (env.json), and content hashes of weights.

Command line, the segbench version and git commit of the checkout, library versions, hardware, device, seed and
weight hashes. The runner writes it through the results contract (`bench.results.RunStore.write_env`).
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from segbench.models.checkpoint import sha256_file

VERSIONED_PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "fvcore",
    "numpy",
    "imagecorruptions-imaug",
    "imagecorruptions",
    "scikit-image",
    "opencv-python",
    "opencv-python-headless",
    "cityscapesscripts",
    "pandas",
    "safetensors",
    "transformers",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "tensorrt",
    "nvidia-ml-py",
)


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted), e.g. a Hugging Face snapshot."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: str | Path | None = None) -> dict[str, Any]:
    """HEAD commit of the checkout holding this code, and whether the working tree has changes.

    Installed from a wheel, the code sits in no checkout of its own (a git folder above site-packages is the user's
    project, not segbench's): the commit is then None and `segbench_version` in env.json says what ran.
    """
    import segbench

    repo = Path(repo) if repo else Path(segbench.__file__).resolve().parents[1]
    if not (repo / ".git").exists() or not (repo / "bench" / "__init__.py").is_file():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment(
    command: Sequence[str] | None,
    seed: int,
    weights: Mapping[str, str],
    suite: str,
    suite_version: str,
    device: str,
    world_size: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Provenance of a run (env.json): command line, git commit, versions, hardware, seed, weight hashes, suite.

    Also the numerics the run's processes start with (the accuracy cells run under them; latency measurements turn
    TF32 off and record that in their rows): ``tf32`` (``tf32_matmul``, ``tf32_cudnn``), ``fp32_precision`` (each
    ``torch.backends`` setting) and ``sdpa_enabled`` (the SDPA kernels allowed). ``device`` carries its index.
    """
    from segbench.bench.measure.efficiency import hardware_info
    from segbench.bench.measure.latency import fp32_precision, resolve_device, sdpa_enabled, tf32_flags

    dev = resolve_device(device)
    hardware = hardware_info(dev)
    try:
        from segbench.bench.data.corruptions import SEED_PROTOCOL
    except ImportError:  # pragma: no cover - corruptions is part of bench
        SEED_PROTOCOL = None
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else list(sys.argv),
        "segbench_version": package_versions(("segbench",))["segbench"],
        "git": git_commit(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "hardware": hardware,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else hardware["cpu_model"],
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "threads": torch.get_num_threads(),
        "tf32": tf32_flags(),
        "fp32_precision": fp32_precision(),
        "sdpa_enabled": sdpa_enabled(),
        "world_size": world_size,
        "seed": seed,
        "seed_protocol": SEED_PROTOCOL,
        "weights_sha256": dict(weights),
        "suite": {"name": suite, "version": suite_version},
        **(extra or {}),
    }
