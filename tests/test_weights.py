"""Hub ids in the local Hugging Face cache: found where and as `huggingface_hub` finds them, offline, with revisions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from segbench.bench.run.weights import HF_ADE20K_IDS, HF_CITYSCAPES_IDS, resolve_model_weights
from segbench.models.checkpoint import CheckpointError, hf_cache_dir, resolve_weights

MAIN, V2, DETACHED = "a" * 40, "b" * 40, "c" * 40  # commit hashes
HUB_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A clean environment: HOME in tmp, none of the hub's cache variables set, offline."""
    for name in HUB_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def make_cached_repo(cache: Path, repo_id: str, commits: dict[str, str], refs: dict[str, str]) -> Path:
    """A model repo in the hub cache layout: `blobs/<sha256>`, `snapshots/<commit>/{config.json,model.safetensors}`
    linking into the blobs, and `refs/<name>` holding a commit hash (no newline, as the hub writes it).

    Args:
        commits: commit hash -> a tag written into that commit's config.json (so tests can tell snapshots apart).
        refs: branch or tag name -> commit hash.
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for commit, tag in commits.items():
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for name, content in (
            ("config.json", json.dumps({"tag": tag}).encode()),
            ("model.safetensors", b"w" + tag.encode()),
        ):
            blob = hashlib.sha256(content).hexdigest()
            (repo / "blobs" / blob).write_bytes(content)
            (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    for name, commit in refs.items():
        (repo / "refs" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / name).write_text(commit)
    return repo


def hub_says_cache() -> Path:
    """Where a freshly started `huggingface_hub` puts its cache, with this process's environment."""
    code = "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"HF_HUB_CACHE": "~/hub-cache"}, "hub-cache"),
        ({"HUGGINGFACE_HUB_CACHE": "~/legacy"}, "legacy"),
        ({"HUGGINGFACE_HUB_CACHE": "~/legacy", "HF_HOME": "~/hf-home"}, "legacy"),  # the legacy name beats HF_HOME
        ({"HF_HUB_CACHE": "~/new", "HUGGINGFACE_HUB_CACHE": "~/legacy"}, "new"),  # and HF_HUB_CACHE beats it
        ({"HF_HOME": "~/hf-home"}, "hf-home/hub"),
        ({"XDG_CACHE_HOME": "~/xdg"}, "xdg/huggingface/hub"),
        ({}, ".cache/huggingface/hub"),
    ],
)
def test_cache_folder_follows_the_hub(home, monkeypatch, env, expected):
    imported = hub_constants.HF_HUB_CACHE
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # after huggingface_hub was imported: still honoured
    cache = home / expected
    assert hub_says_cache() == cache  # what huggingface_hub itself makes of this environment
    assert hf_cache_dir() == cache
    make_cached_repo(cache, "org/name", {MAIN: "main"}, {"main": MAIN})
    resolved = resolve_weights("org/name")
    assert resolved.file == cache.resolve() / "models--org--name" / "snapshots" / MAIN / "model.safetensors"
    assert resolved.config == {"tag": "main"} and resolved.file.read_bytes() == b"wmain"
    assert hub_constants.HF_HUB_CACHE == imported  # the imported module is left alone


def test_revisions_are_picked_from_the_cache(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "cache"))
    make_cached_repo(
        home / "cache",
        "org/name",
        {MAIN: "main", V2: "v2", DETACHED: "detached"},
        {"main": MAIN, "v2": V2, "feature/x": V2},
    )
    assert resolve_weights("org/name").config == {"tag": "main"}
    assert resolve_weights("org/name@main").config == {"tag": "main"}
    assert resolve_weights("org/name@v2").config == {"tag": "v2"}  # a second branch or tag
    assert resolve_weights("org/name@feature/x").config == {"tag": "v2"}  # a branch name with a slash
    resolved = resolve_weights(f"org/name@{DETACHED}")  # a commit that no ref names
    assert resolved.config == {"tag": "detached"} and resolved.source == f"org/name@{DETACHED}"
    with pytest.raises(CheckpointError) as err:
        resolve_weights("org/name@v3")
    message = str(err.value)
    assert "\n" not in message and "org/name at revision 'v3'" in message
    assert f"main -> {MAIN}" in message and f"feature/x, v2 -> {V2}" in message and DETACHED in message
    assert "hf download org/name --revision v3" in message


def test_a_revision_through_the_weights_argument(home, monkeypatch):
    monkeypatch.setenv("HF_HOME", "~/hf")
    make_cached_repo(home / "hf" / "hub", "org/name", {MAIN: "main", V2: "v2"}, {"main": MAIN, "v2": V2})
    got = resolve_model_weights(["segformer-b0"], "segformer-b0=org/name@v2")
    assert got == {"segformer-b0": "org/name@v2"}
    assert resolve_weights(got["segformer-b0"]).config == {"tag": "v2"}


def test_the_authors_checkpoint_is_found_under_hf_home_with_a_tilde(home, monkeypatch):
    monkeypatch.setenv("HF_HOME", "~/hf")
    assert resolve_model_weights(["segformer-b1"]) == {"segformer-b1": None}
    make_cached_repo(home / "hf" / "hub", HF_CITYSCAPES_IDS["segformer-b1"], {MAIN: "b1"}, {"main": MAIN})
    assert resolve_model_weights(["segformer-b1"]) == {"segformer-b1": HF_CITYSCAPES_IDS["segformer-b1"]}


def test_the_authors_checkpoint_is_the_one_of_the_runs_dataset(home, monkeypatch):
    monkeypatch.setenv("HF_HOME", "~/hf")
    make_cached_repo(home / "hf" / "hub", HF_CITYSCAPES_IDS["segformer-b5"], {MAIN: "cs"}, {"main": MAIN})
    assert resolve_model_weights(["segformer-b5"], dataset="ade20k") == {"segformer-b5": None}
    make_cached_repo(home / "hf" / "hub", HF_ADE20K_IDS["segformer-b5"], {V2: "ade"}, {"main": V2})
    assert HF_ADE20K_IDS["segformer-b5"] == "nvidia/segformer-b5-finetuned-ade-640-640"
    assert resolve_model_weights(["segformer-b5"], dataset="ade20k") == {"segformer-b5": HF_ADE20K_IDS["segformer-b5"]}
    assert resolve_model_weights(["segformer-b5"], dataset="voc") == {"segformer-b5": None}


def test_a_missing_model_is_one_clear_line(home, monkeypatch):
    monkeypatch.setenv("HF_HOME", "~/hf")
    with pytest.raises(CheckpointError) as err:
        resolve_weights("org/missing")
    message = str(err.value)
    assert "\n" not in message
    assert str(home / "hf" / "hub") in message  # where it looked
    assert "never downloads" in message and "`hf download org/missing`" in message and "huggingface-cli" in message
    assert "local folder" in message  # the other way to supply it
    assert "holds" not in message  # nothing of it cached: no list of revisions


def test_a_ref_to_a_commit_not_in_the_cache_counts_as_missing(home, monkeypatch):
    """`refs/main` names a commit that was never downloaded: no other snapshot stands in for it (nor does the hub's)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "cache"))
    make_cached_repo(home / "cache", "org/name", {MAIN: "main"}, {"main": V2})
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        resolve_weights("org/name")
    assert resolve_weights(f"org/name@{MAIN}").config == {"tag": "main"}
