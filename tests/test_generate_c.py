"""Tests for bench/data/generate_c.py: byte-identical output across worker counts and shards, resume after a kill,
manifest checks, the folder lock and the clean-up of temporary files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from segbench.bench.data.cityscapes import CityscapesDataset, DataError, corrupted_image_path, find_samples, read_image
from segbench.bench.data.corruptions import SEED_PROTOCOL
from segbench.bench.data.generate_c import generate_c, parse_shard, shard_lock_name
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.axes import Condition
from segbench.bench.results.io import TEMP_SUFFIX, is_temp_file
from segbench.bench.run.locks import FolderBusyError, folder_lock

REPO = Path(__file__).resolve().parents[1]
# global-RNG corruptions, a seed-argument one and a random-free one (glass_blur's numba compile alone takes seconds)
SUBSET = ("gaussian_noise", "impulse_noise", "frost", "fog", "contrast")


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_workers_do_not_change_bytes_and_match_on_the_fly(synthetic_root, tmp_path):
    one = generate_c(synthetic_root, tmp_path / "w1", SUBSET, (1, 4), workers=1, base_seed=5, quiet=True)
    two = generate_c(synthetic_root, tmp_path / "w2", SUBSET, (1, 4), workers=2, base_seed=5, quiet=True)
    assert one.written == two.written == 4 * len(SUBSET) * 2 and one.skipped == 0
    files = tree(tmp_path / "w1")
    assert len(files) == one.written and files == tree(tmp_path / "w2")
    assert "fog/4/leftImg8bit/val/synthtown/synthtown_000002_000019_leftImg8bit.png" in files
    for name in ("fog-4", "impulse_noise-1"):
        on_the_fly = CityscapesDataset(synthetic_root, condition=name, base_seed=5)
        from_disk = CityscapesDataset(synthetic_root, condition=name, base_seed=5, corrupted_root=tmp_path / "w1")
        for a, b in zip(on_the_fly, from_disk):
            assert a["id"] == b["id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    manifest = json.loads((tmp_path / "w1" / "manifest.json").read_text())
    assert manifest["seed_protocol"] == SEED_PROTOCOL and manifest["base_seed"] == 5 and manifest["split"] == "val"
    assert {"numpy", "imagecorruptions"} <= set(manifest["versions"])
    assert manifest["corruptions"] == ["gaussian_noise", "impulse_noise", "contrast", "fog", "frost"]  # canonical order
    assert manifest["severities"] == [1, 4] and manifest["images_per_condition"]["frost-4"] == 4


def test_base_seed_changes_bytes(synthetic_root, tmp_path):
    generate_c(synthetic_root, tmp_path / "a", ("gaussian_noise",), (2,), base_seed=0, quiet=True)
    generate_c(synthetic_root, tmp_path / "b", ("gaussian_noise",), (2,), base_seed=1, quiet=True)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_files(tmp_path):
    data = write_synthetic_cityscapes(tmp_path / "data", num_images=4, size=(64, 128), seed=1)
    corruptions = ("gaussian_noise", "snow", "spatter", "fog", "frost", "motion_blur")
    reference = generate_c(data, tmp_path / "ref", corruptions, workers=1, base_seed=2, quiet=True)
    assert reference.written == 4 * 6 * 5

    out = tmp_path / "out"
    code = (
        "import sys; from segbench.bench.data.generate_c import generate_c; "
        f"generate_c(sys.argv[1], sys.argv[2], {corruptions!r}, workers=1, base_seed=2, quiet=True)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(data), str(out)], cwd=REPO, env=env)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*_leftImg8bit.png"))) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "generate-c finished or failed before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list(out.rglob("*_leftImg8bit.png")))
    assert 8 <= partial < reference.written
    # what a kill in the middle of a write leaves: a half-written temporary beside the final name
    victim = next(out.rglob("*_leftImg8bit.png"))
    half = victim.with_name(f".{victim.name}.12345{TEMP_SUFFIX}")
    half.write_bytes(victim.read_bytes()[:100])
    victim.unlink()

    resumed = generate_c(data, out, corruptions, workers=2, base_seed=2, quiet=True)
    assert resumed.skipped == partial - 1 and resumed.written == reference.written - partial + 1
    assert resumed.removed_temp >= 1
    assert tree(out) == tree(tmp_path / "ref")
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_rerun_skips_complete_files(synthetic_root, tmp_path):
    first = generate_c(synthetic_root, tmp_path / "o", ("contrast",), (1, 2), quiet=True)
    again = generate_c(synthetic_root, tmp_path / "o", ("contrast", "fog"), (1, 2), quiet=True)
    assert first.written == 8 and again.skipped == 8 and again.written == 8
    assert "4 images x 4 conditions" in str(again) and "wrote 8 files, skipped 8 already complete" in str(again)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["corruptions"] == ["contrast", "fog"]


def test_folder_of_another_seed_is_refused(synthetic_root, tmp_path):
    generate_c(synthetic_root, tmp_path / "o", ("fog",), (1,), base_seed=0, quiet=True)
    with pytest.raises(DataError, match="base_seed=0, this run has 1; files would not match: choose a new --out"):
        generate_c(synthetic_root, tmp_path / "o", ("fog",), (1,), base_seed=1, quiet=True)
    with pytest.raises(DataError, match="base_seed is 0 but this run needs 1"):
        CityscapesDataset(synthetic_root, condition="fog-1", base_seed=1, corrupted_root=tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="run generate-c for fog-2"):
        CityscapesDataset(synthetic_root, condition="fog-2", base_seed=0, corrupted_root=tmp_path / "o")


def test_unwritable_output_folder(synthetic_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match=f"output folder {blocker / 'out'} is not writable.*choose another --out"):
        generate_c(synthetic_root, blocker / "out", ("fog",), (1,), quiet=True)


def test_bad_arguments_write_nothing(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="unknown corruption 'smog'.*valid corruptions"):
        generate_c(synthetic_root, tmp_path / "o", ("fog", "smog"), quiet=True)
    with pytest.raises(ValueError, match="severity 0 is outside 1-5"):
        generate_c(synthetic_root, tmp_path / "o", ("fog",), (0, 1), quiet=True)
    with pytest.raises(ValueError, match="workers"):
        generate_c(synthetic_root, tmp_path / "o", ("fog",), workers=0, quiet=True)
    assert not (tmp_path / "o").exists()


def test_bad_image_error_reaches_the_caller(synthetic_root, tmp_path):
    data = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    bad = next(data.rglob("synthtown_000002_000019_leftImg8bit.png"))
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated: the header still reads, the pixels do not
    with pytest.raises(DataError, match="synthtown_000002_000019_leftImg8bit.png.*truncated or corrupt"):
        generate_c(data, tmp_path / "o", ("contrast",), (1, 2), workers=2, quiet=True)
    assert not list((tmp_path / "o").rglob("synthtown_000002_000019_leftImg8bit.png"))
    assert not [p for p in (tmp_path / "o").rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    assert np.array_equal(read_image(next(data.rglob("synthtown_000001_000019_leftImg8bit.png"))).shape, (64, 128, 3))


def test_parent_warms_every_condition_up_before_forking_workers(synthetic_root, tmp_path, monkeypatch):
    import segbench.bench.data.generate_c as generate_module

    calls = []
    monkeypatch.setattr(generate_module, "warm_up", lambda name, severity: calls.append((name, severity)))
    generate_c(synthetic_root, tmp_path / "one", ("fog",), (2,), workers=1, quiet=True)
    assert calls == []  # one process: nothing to inherit
    generate_c(synthetic_root, tmp_path / "two", ("fog", "contrast"), (1, 3), workers=2, quiet=True)
    assert calls == [("contrast", 1), ("contrast", 3), ("fog", 1), ("fog", 3)]


# --------------------------------------------------------------------------------------------------------------------
# Shards, the folder lock, temporary files
# --------------------------------------------------------------------------------------------------------------------

PAIR = ("gaussian_noise", "contrast")


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file of an output folder but the lock files (which stay behind, empty, as filelock leaves them)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def image_file(root: Path, out: Path, index: int, condition: str = "contrast-1") -> Path:
    """Final path of the `index`-th image (sorted order) of the split under `condition` in `out`."""
    return corrupted_image_path(out, Condition.parse(condition), "val", find_samples(root, validate=False)[index])


def temp_of(path: Path, tag: str) -> Path:
    """Plant a temporary file of `path` as atomic_write names them (as a killed writer leaves it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{tag}{TEMP_SUFFIX}")
    temp.write_bytes(b"half a png")
    assert is_temp_file(temp)
    return temp


def test_two_shards_write_disjoint_shares_whose_union_is_one_run(synthetic_root, tmp_path):
    single = generate_c(synthetic_root, tmp_path / "one", PAIR, (1, 3), base_seed=3, quiet=True)
    out = tmp_path / "sharded"
    first = generate_c(synthetic_root, out, PAIR, (1, 3), base_seed=3, quiet=True, shard=(0, 2))
    share0 = {k for k in outputs(out) if k.endswith(".png")}
    second = generate_c(synthetic_root, out, PAIR, (1, 3), base_seed=3, quiet=True, shard=(1, 2))
    share1 = {k for k in outputs(out) if k.endswith(".png")} - share0
    assert first.written == second.written == 2 * 4 and single.written == 4 * 4
    assert share0 and share1 and not share0 & share1 and len(share0) + len(share1) == single.written
    assert all("_000000_" in k or "_000002_" in k for k in share0)  # images 0, 2, ... of the sorted split
    assert outputs(out) == outputs(tmp_path / "one")  # images and manifest.json, byte for byte; no temporaries
    assert first.shard == (0, 2) and single.shard is None
    assert str(second).startswith("generate-c shard 1/2: 2 of 4 images (#1, #3, ...) x 4 conditions")
    assert str(single).startswith("generate-c: 4 images x 4 conditions")


@pytest.mark.slow
def test_concurrent_shards_through_the_cli(synthetic_root, tmp_path):
    generate_c(synthetic_root, tmp_path / "one", PAIR, (2,), quiet=True)
    args = ["generate-c", "--data", str(synthetic_root), "--out", str(tmp_path / "two"), "--quiet"]
    args += ["--corruptions", ",".join(PAIR), "--severities", "2", "--workers", "1"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "run_bench.py"), *args, "--shard", f"{i}/2"],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        for i in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    assert all(stdout.startswith(f"generate-c shard {i}/2: 2 of 4 images") for i, (stdout, _) in enumerate(results))
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")


def test_second_holder_of_a_share_is_refused_naming_the_holder(synthetic_root, tmp_path):
    out = tmp_path / "o"
    with folder_lock(out, name=shard_lock_name(None), what="generate-c output folder"):
        with pytest.raises(FolderBusyError, match=f"in use by process {os.getpid()} on "):
            generate_c(synthetic_root, out, ("contrast",), (1,), quiet=True)
    with folder_lock(out, name=shard_lock_name((1, 2)), what="generate-c output folder"):
        with pytest.raises(FolderBusyError, match=r"generate-c output folder \(shard 1/2\) is in use by process"):
            generate_c(synthetic_root, out, ("contrast",), (1,), quiet=True, shard=(1, 2))
        assert generate_c(synthetic_root, out, ("contrast",), (1,), quiet=True, shard=(0, 2)).written == 2
    assert len(list(out.rglob("*.png"))) == 2 and isinstance(FolderBusyError("x"), RuntimeError)


def test_start_up_removes_only_stale_temporaries_of_its_own_share(synthetic_root, tmp_path):
    out = tmp_path / "o"
    live = temp_of(image_file(synthetic_root, out, 1), "live1")  # image 1: shard 1/2's, which is running
    stale0 = temp_of(image_file(synthetic_root, out, 0), "dead0")  # image 0: shard 0/2's, from a killed run
    stale_manifest = temp_of(out / "manifest.json", "dead")
    with folder_lock(out, name=shard_lock_name((1, 2)), what="generate-c output folder"):
        report = generate_c(synthetic_root, out, ("contrast",), (1,), quiet=True, shard=(0, 2))
        assert report.removed_temp == 2 and not stale0.exists() and not stale_manifest.exists() and live.exists()
        # an unsharded run covers every image, but not the ones a live run of another sharding is writing
        stale2 = temp_of(image_file(synthetic_root, out, 2, "contrast-2"), "dead2")
        report = generate_c(synthetic_root, out, ("contrast",), (1, 2), quiet=True)
        assert report.removed_temp == 1 and not stale2.exists() and live.exists()
    report = generate_c(synthetic_root, out, ("contrast",), (1, 2), quiet=True)  # shard 1/2 is gone: live1 is stale
    assert report.removed_temp == 1 and not live.exists()
    assert report.skipped == 8 and not [p for p in out.rglob("*") if is_temp_file(p)]


def test_torchrun_environment_selects_the_shard(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    report = generate_c(synthetic_root, tmp_path / "o", ("contrast",), (1,), quiet=True)
    assert report.shard == (1, 2) and report.written == 2
    assert sorted(p.name[:16] for p in (tmp_path / "o").rglob("*.png")) == ["synthtown_000001", "synthtown_000003"]
    assert generate_c(synthetic_root, tmp_path / "p", ("contrast",), (1,), quiet=True, shard=(0, 4)).written == 1
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK='2' with WORLD_SIZE=2: RANK must be 0-1"):
        generate_c(synthetic_root, tmp_path / "q", ("contrast",), (1,), quiet=True)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert generate_c(synthetic_root, tmp_path / "r", ("contrast",), (1,), quiet=True).shard is None
    assert not (tmp_path / "q").exists()


def test_parse_shard():
    assert parse_shard("0/2") == (0, 2) and parse_shard(" 3 / 4 ") == (3, 4)
    for bad in ("2/2", "3/2", "-1/2", "1/0", "1", "a/b", "1/2/3", ""):
        with pytest.raises(ValueError, match=r"--shard: .* use I/N with 0 <= I < N"):
            parse_shard(bad)
    for bad in ((2, 2), (0, 0), (1,), "0/2", (0.0, 2), (True, 2)):
        with pytest.raises(ValueError, match=r"shard must be \(I, N\) with 0 <= I < N"):
            generate_c(None, "unused", ("fog",), quiet=True, shard=bad)


@pytest.mark.parametrize("value", ["2/2", "x/3"])
def test_bad_shard_is_a_one_line_cli_error(synthetic_root, tmp_path, value):
    args = ["generate-c", "--data", str(synthetic_root), "--out", str(tmp_path / "o"), "--shard", value]
    proc = subprocess.run([sys.executable, str(REPO / "run_bench.py"), *args], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: --shard: {value!r} is not a shard; use I/N with 0 <= I < N")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
