"""Decoding: every image is decoded once per process and kept as uint8 in memory; a grid
of runs on the same dataset reuses the decoded split (`decode_all`). The batched pipeline's
memory-mapped flat buffer (fgvc.data.cache) decodes with the same `decode_image`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fgvc.data.dataset import DatasetInfo
from fgvc.errors import FGVCError


def decode_image(path: Path) -> torch.Tensor:
    """One image file as a (3, h, w) uint8 RGB tensor; a clear error for missing or broken files."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise FGVCError(f"image listed in the manifest is missing: {path} (run `python -m data_prep.verify` on the dataset)") from None
    except OSError as e:
        raise FGVCError(f"cannot decode image {path}: {e} (run `python -m data_prep.verify` on the dataset)") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@lru_cache(maxsize=4)
def _decoded(root: str, paths: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """Decode once per process; a grid of runs on the same dataset reuses it."""
    return tuple(decode_image(Path(root) / p) for p in paths)


def decode_all(info: DatasetInfo, frame: pd.DataFrame) -> list[torch.Tensor]:
    """The images of `frame` decoded (once per process), in frame order."""
    return list(_decoded(str(info.root.resolve()), tuple(frame.path)))


__all__ = ["decode_image", "decode_all"]
