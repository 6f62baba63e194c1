"""Names that end up in file and folder names (run ids, figure and result stems).

Free of heavy imports (only `re`), so any module can use it.
"""

from __future__ import annotations

import re

_NOT_SLUG = re.compile(r"[^A-Za-z0-9_.]+")

# What a run folder's name may be, wherever one is read back (a runs.csv's run_id, a folder
# under OUT/runs/): a run id (`<slug(model)>-<method>-lam<λ>[-ls<ε>]-s<seed>-<8 hex>`: the
# characters of `slug` and `+-`) or the NAME `fgvc validate --out OUT/runs/NAME` was given.
# One path component, never `.`, `..` or a hidden name: it cannot lead out of OUT/runs/.
RUN_ID = re.compile(r"(?!\.)[A-Za-z0-9_.+-]{1,200}")


def is_run_id(text) -> bool:
    """Does `text` fit RUN_ID (so OUT/runs/<text> stays inside OUT/runs/)?"""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def slug(name: str) -> str:
    """`name` with every run of characters other than ASCII letters, digits, `_` and `.`
    replaced by one `_` (nothing is stripped): `"timm/vit_base.augreg"` ->
    `"timm_vit_base.augreg"`.

    It is the model part of every run id (`RunConfig.run_name`), so its output must never
    change: a different slug would give finished runs new ids and have them trained again.
    """
    return _NOT_SLUG.sub("_", name)


__all__ = ["slug", "RUN_ID", "is_run_id"]
