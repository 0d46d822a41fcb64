"""Shared fixtures."""

from pathlib import Path

import pytest

from segbench.bench.synthetic import write_synthetic_cityscapes


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic Cityscapes (4 val images of 64x128, official layout) shared by the whole session.

    Read-only: tests that modify data must copy it first.
    """
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cityscapes"), num_images=4, size=(64, 128), seed=0)
