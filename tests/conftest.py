"""Shared fixtures: a tiny synthetic CUB tree (official layout), its .tgz, a carved
dataset, and the real ../shared data when present. The tiny training configuration the
tests share is tests/tiny.py."""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
from pathlib import Path

import pytest
import torch

# UMAP's numba kernels take 10-20 s to compile on two busy cores. Keep them compiled on
# disk across test sessions: numba reads NUMBA_CACHE_DIR when it is first imported, which
# is after this file (only umap imports it, inside fgvc.report.visualize). An existing
# NUMBA_CACHE_DIR is kept. Safe to delete: numba recompiles what it does not find.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "fgvc" / "numba"))
if "numba" in sys.modules:  # imported before us (a plugin): make it read the variable
    sys.modules["numba"].core.config.reload_config()


class _CacheUmapKernels(importlib.abc.MetaPathFinder):
    """Most of umap's @numba.njit kernels do not ask for cache=True, so a cache folder
    alone would keep only pynndescent's and umap would still compile for seconds in every
    session. On the first `import umap` (or pynndescent), before their modules run, make
    cache=True the default of numba.njit / numba.jit in this test process. Compiled code is
    the same as freshly compiled code; numba's cache index checks the source file and CPU."""

    def find_spec(self, name, path=None, target=None):
        if name in ("umap", "pynndescent"):
            sys.meta_path.remove(self)
            import numba

            for deco in ("njit", "jit"):
                setattr(numba, deco, _cache_by_default(getattr(numba, deco)))
        return None  # the ordinary finders import the module


def _cache_by_default(decorator):
    @functools.wraps(decorator)
    def wrapper(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return decorator(*args, **kwargs)

    return wrapper


sys.meta_path.insert(0, _CacheUmapKernels())

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
