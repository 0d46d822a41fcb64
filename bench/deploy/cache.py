"""The deployment cache: exported ONNX files and TensorRT engines, built once per key and then reused.

A key (`CacheKey`) is everything that changes the artifact: the model's name and weights (sha256 of its state dict,
`segbench.models.checkpoint.state_dict_sha256`, so random-init and in-memory weights are keyed too), the input shape and
whether H and W are dynamic, the precision, the backend, the versions of the libraries that wrote it (torch, onnx,
onnxruntime, tensorrt and the GPU for an engine), and the backend's settings (opset, quantisation, calibration images).

Layout, under `$SEGBENCH_CACHE/deploy` (`segbench.paths.cache_dir`) unless given another root::

    <root>/<model>/<backend>-<precision>-<N>x<C>x<H>x<W>[-dyn]-<digest16><suffix>        the artifact
    <root>/<model>/<backend>-<precision>-<N>x<C>x<H>x<W>[-dyn]-<digest16><suffix>.json   its manifest

Nothing half-built is ever reused: the artifact and then its manifest are written by `bench.results.atomic_write`
(a hidden temporary file in the same folder, renamed over the name), and an artifact counts only when its manifest
exists, names the same key digest, and gives the artifact's exact size. A crash leaves at worst a temporary file
(never looked at: no key maps to its name; removed by the next build of its key) or an artifact without a manifest
(built again). Two processes building the same key take turns on a file lock (`filelock`, released by the OS if its
holder dies): the second waits, then finds the first one's artifact.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from segbench.bench.results.files import ARTIFACT, DamagedFileError
from segbench.bench.results.io import TEMP_SUFFIX, atomic_write_bytes, atomic_write_json
from segbench.paths import cache_dir, make_folder

CACHE_FORMAT = 1
"""Bumped when what segbench writes for a key changes (export settings, quantisation recipe): old entries then miss."""


class CacheBusyError(RuntimeError):
    """Another process held a cache entry's lock for longer than the timeout."""


def module_version(name: str) -> str | None:
    """`name.__version__` of an importable module, else None. By module, not distribution: `onnxruntime-gpu` and
    `onnxruntime` both import as `onnxruntime`."""
    try:
        return str(importlib.import_module(name).__version__)
    except Exception:  # noqa: BLE001 - missing or broken: not a version
        return None


@dataclass(frozen=True)
class CacheKey:
    """What an artifact depends on; `digest` is the sha256 of all of it (`fields`), as canonical JSON."""

    model: str
    weights_sha256: str
    input_shape: tuple[int, ...]
    precision: str
    backend: str
    suffix: str
    dynamic: bool = False
    versions: Mapping[str, str | None] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "input_shape": list(self.input_shape),
            "dynamic": self.dynamic,
            "precision": self.precision,
            "backend": self.backend,
            "suffix": self.suffix,
            "versions": dict(self.versions),
            "settings": dict(self.settings),
        }

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True, default=str).encode()).hexdigest()

    @property
    def filename(self) -> str:
        shape = "x".join(str(s) for s in self.input_shape) + ("-dyn" if self.dynamic else "")
        return f"{self.backend}-{self.precision}-{shape}-{self.digest[:16]}{self.suffix}"


@dataclass(frozen=True)
class CachedArtifact:
    """An artifact in the cache.

    Attributes:
        path: the file; bytes: its size.
        hit: whether it was there already (True) or built by this call (False).
        seconds: what this call took (the lookup on a hit; waiting, building and writing on a miss).
        build_s: what building it took when it was built (from the manifest on a hit); `export.onnx_graph` adds the
            fp32 graph's to an fp16 or int8 graph's, which are made from it.
    """

    path: Path
    bytes: int
    hit: bool
    seconds: float
    build_s: float


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


class ArtifactCache:
    """Artifacts by `CacheKey` under `root` (default `$SEGBENCH_CACHE/deploy`)."""

    def __init__(self, root: str | Path | None = None, lock_timeout: float = 3600.0):
        if root is None:
            root = cache_dir() / "deploy"
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    def path(self, key: CacheKey) -> Path:
        return self.root / _safe(key.model) / key.filename

    @staticmethod
    def manifest_path(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def lookup(self, key: CacheKey) -> CachedArtifact | None:
        """The complete artifact of `key`, or None (missing, no manifest or a damaged one, another key's, or not the
        recorded size)."""
        start = time.perf_counter()
        path = self.path(key)
        try:
            manifest = ARTIFACT.read(self.manifest_path(path))
            size = path.stat().st_size
        except (OSError, DamagedFileError):  # a damaged manifest is a miss: the artifact is built again
            return None
        if manifest["digest"] != key.digest or manifest["bytes"] != size:
            return None
        return CachedArtifact(path, size, True, time.perf_counter() - start, float(manifest.get("build_s") or 0.0))

    def get_or_build(self, key: CacheKey, produce: Callable[[], bytes]) -> CachedArtifact:
        """The artifact of `key`: the cached one, else `produce()`'s bytes, written atomically with their manifest.

        Raises:
            CacheBusyError: another process kept building the same key for longer than `lock_timeout` seconds.
        """
        start = time.perf_counter()
        found = self.lookup(key)
        if found is not None:
            return found
        path = self.path(key)
        make_folder(path.parent)
        lock = FileLock(path.with_name(f".{path.name}.lock"), thread_local=False)
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout:
            raise CacheBusyError(
                f"{path}: another process has been building this artifact for over {self.lock_timeout:g} s; "
                f"wait for it, or remove {lock.lock_file} if no process is building it"
            ) from None
        try:
            found = self.lookup(key)  # built by the process we waited for
            if found is not None:
                return CachedArtifact(found.path, found.bytes, True, time.perf_counter() - start, found.build_s)
            for name in (path.name, self.manifest_path(path).name):  # a crashed writer's: only we write them now
                for stale in path.parent.glob(f".{glob.escape(name)}.*{TEMP_SUFFIX}"):
                    stale.unlink(missing_ok=True)
            built = time.perf_counter()
            data = produce()
            build_s = time.perf_counter() - built
            atomic_write_bytes(path, data)
            manifest = {
                "digest": key.digest,
                "key": key.fields(),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "build_s": build_s,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write_json(self.manifest_path(path), manifest)  # last: the artifact counts from here on
        finally:
            lock.release()
        return CachedArtifact(path, len(data), False, time.perf_counter() - start, build_s)


__all__ = ["CACHE_FORMAT", "ArtifactCache", "CacheBusyError", "CacheKey", "CachedArtifact", "module_version"]
