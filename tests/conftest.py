"""Shared fixtures: a tiny synthetic CUB tree (official layout), its .tgz, a carved
dataset, and the real ../shared data when present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Two cores are shared with whatever else runs (CI, a background benchmark): more than
# one intra-op thread for these tiny models only adds OpenMP contention.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL_CUB = SHARED / "data" / "cub-sparrows" / "CUB_200_2011"
REAL_WEIGHTS = SHARED / "weights" / "tf_efficientnet_lite0.in1k.safetensors"


@pytest.fixture(scope="session", autouse=True)
def _decoded_cache_in_tmp(tmp_path_factory):
    """The decoded-image cache (fgvc.data.cache) goes to a temporary folder, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FGVC_CACHE_DIR", str(tmp_path_factory.mktemp("decoded-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def cub_tree(tmp_path_factory) -> Path:
    """A synthetic `CUB_200_2011/` folder (read-only by convention: copy before mutating)."""
    from data_prep.synthetic import make_cub_tree

    return make_cub_tree(tmp_path_factory.mktemp("cub"))


@pytest.fixture(scope="session")
def cub_tgz(cub_tree, tmp_path_factory) -> Path:
    from data_prep.synthetic import make_cub_tgz

    return make_cub_tgz(cub_tree, tmp_path_factory.mktemp("tgz") / "CUB_200_2011.tgz")


@pytest.fixture(scope="session")
def sparrow_dataset(cub_tree, tmp_path_factory) -> Path:
    """The synthetic tree carved with the default (sparrow) selection."""
    from data_prep.carve import carve

    out = tmp_path_factory.mktemp("ds") / "sparrows"
    carve(cub_tree, out)
    return out


@pytest.fixture(scope="session")
def real_cub() -> Path:
    if not (REAL_CUB / "images.txt").is_file():
        pytest.skip(f"real sparrow data not found at {REAL_CUB}")
    return REAL_CUB


@pytest.fixture(scope="session")
def real_weights() -> Path:
    if not REAL_WEIGHTS.is_file():
        pytest.skip(f"real Lite0 weights not found at {REAL_WEIGHTS}")
    return REAL_WEIGHTS
