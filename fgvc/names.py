"""Names that end up in file and folder names (run ids, figure and result stems).

Free of heavy imports (only `re`), so any module can use it.
"""

from __future__ import annotations

import re

_NOT_SLUG = re.compile(r"[^A-Za-z0-9_.]+")


def slug(name: str) -> str:
    """`name` with every run of characters other than ASCII letters, digits, `_` and `.`
    replaced by one `_` (nothing is stripped): `"timm/vit_base.augreg"` ->
    `"timm_vit_base.augreg"`.

    It is the model part of every run id (`RunConfig.run_name`), so its output must never
    change: a different slug would give finished runs new ids and have them trained again.
    """
    return _NOT_SLUG.sub("_", name)


__all__ = ["slug"]
