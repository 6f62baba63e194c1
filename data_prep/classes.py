"""Class selection (`--classes SPEC`) and class naming, shared by every dataset's reader.

Why one module: `--classes` must mean the same thing for CUB-200-2011 and for every other
dataset (ids and id ranges of the source's own class ids, name patterns, `all`), and every
reader names its class folders the same way (`<id>.<token>`, as CUB's own folders are).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Callable

from fgvc.errors import FGVCError

RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
PATTERN_RE = re.compile(r"[\w*?\[\]!.\-]+")
GLOB_RE = re.compile(r"[*?\[]")  # a digit-dash item with a wildcard is a name pattern (737-*), not a range
TOKEN_BAD_RE = re.compile(r"[^\w.\-]+")
SPEC_HELP = "use e.g. 'sparrows', '113-133', '*_Warbler' or 'all'"


def parse_classes(spec: str) -> Callable[[int, str], bool]:
    """`--classes` SPEC -> predicate on (class id, class name token).

    SPEC is a comma-separated union of: `sparrows` (names ending in `_Sparrow`), `all`,
    ids and id ranges (`113-133`, `1`), and name glob patterns (`*_Warbler`), matched
    case-sensitively against the name (`Baird_Sparrow`) or the folder (`113.Baird_Sparrow`).
    Ids are the source dataset's own class ids (CUB's 1..200, Aircraft's line numbers, ...).
    """
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise FGVCError(f"--classes {spec!r} is empty; {SPEC_HELP}")
    tests: list[Callable[[int, str], bool]] = []
    for item in items:
        m = RANGE_RE.match(item)
        if item == "all":
            tests.append(lambda cid, name: True)
        elif item == "sparrows":
            tests.append(lambda cid, name: name.endswith("_Sparrow"))
        elif m:
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if lo < 1 or hi < lo:
                raise FGVCError(f"--classes: bad id range {item!r}; ids start at 1 and ranges read low-high, e.g. 113-133 "
                                f"(a class name that reads like a range, e.g. FGVC-Aircraft's 737-200: write {item}*)")
            tests.append(lambda cid, name, lo=lo, hi=hi: lo <= cid <= hi)
        elif re.match(r"^\d+\s*-", item) and not (GLOB_RE.search(item) and PATTERN_RE.fullmatch(item)):
            raise FGVCError(f"--classes: bad id range {item!r}; write ranges as low-high, e.g. 113-133")
        elif PATTERN_RE.fullmatch(item):
            tests.append(lambda cid, name, p=item: fnmatch.fnmatchcase(name, p)
                         or fnmatch.fnmatchcase(class_folder(cid, name), p))
        else:
            raise FGVCError(
                f"--classes: cannot read {item!r}; use 'sparrows', 'all', ids or ranges like 113-133, or name patterns like '*_Warbler'"
            )
    return lambda cid, name: any(t(cid, name) for t in tests)


def class_token(name: str) -> str:
    """An official class name as one path- and pattern-safe word: runs of anything but letters,
    digits, `.`, `-` and `_` become one `_` ('Ram C/V Cargo Van Minivan 2012' ->
    'Ram_C_V_Cargo_Van_Minivan_2012'), as CUB's own names are written ('Baird_Sparrow').
    The manifest's class_name and the class folders use it; dataset.json keeps the official
    names too (`source_classes`)."""
    return TOKEN_BAD_RE.sub("_", name.strip()).strip("_") or "class"


def class_folder(class_id: int, token: str) -> str:
    """`<id, 3 digits at least>.<token>`, CUB's folder naming (`113.Baird_Sparrow`), for every dataset."""
    return f"{class_id:03d}.{token}"


__all__ = ["parse_classes", "class_token", "class_folder", "SPEC_HELP"]
