"""Markdown formatting shared by the report, the validation sweep and `fgvc compare`:
numbers, p-values, table cells and tables, image links, captions as plain text, and
the slugs, tags and readable stems of figure file names.

Standard library only (no torch, numpy or pandas), so any report module can use it
without import cycles.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Sequence

MISSING = "—"  # what a cell shows for a missing or non-finite value


def number(x, nd: int = 1, sign: bool = False) -> str:
    """`x` rounded to `nd` decimals (with a sign when `sign`); never "-0.0"; "—" for
    None, NaN, infinities and anything that is not a number."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return MISSING
    if not math.isfinite(x):
        return MISSING
    x = round(x, nd) + 0.0  # no "-0.0"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def compact(x, nd: int = 2) -> str:
    """`x` to at most `nd` decimals without trailing zeros ("1", "0.5", "2.25"); "—" as `number`."""
    text = number(x, nd)
    return text.rstrip("0").rstrip(".") if "." in text else text


def mean_sd(mean, sd, nd: int = 1) -> str:
    """"mean ± sd" to `nd` decimals; the mean alone when the SD is not finite (n < 2)."""
    return number(mean, nd) + (f" ± {number(sd, nd)}" if math.isfinite(sd) else "")


def pvalue(p) -> str:
    """A p-value to three significant digits; "—" for None, NaN and infinities."""
    return MISSING if p is None or not math.isfinite(p) else f"{p:.3g}"


def cell(x) -> str:
    """`x` as one table cell: `|` escaped, line breaks folded, ends stripped."""
    return str(x).replace("|", "\\|").replace("\n", " ").strip()


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (no trailing newline); the header is written as given, the
    rows through `cell`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def image(alt: str, path: Path, root: Path) -> str:
    """A Markdown image of `path`, linked relative to `root` (the report's folder)."""
    return f"![{alt}]({Path(path).relative_to(root).as_posix()})"


def plain(text: str) -> str:
    """A Markdown caption as plain text for a figure title (no backticks, no asterisks)."""
    return text.replace("`", "").replace("*", "")


def short_sha(sha: str, n: int = 12) -> str:
    """The first `n` characters of a hash with "…", the whole of a shorter one, "—" for none."""
    return f"{sha[:n]}…" if sha and len(sha) > n else (sha or MISSING)


def file_part(text: str) -> str:
    """`text` as a file-name part: each run of characters other than letters, digits,
    `_`, `.` and `-` becomes one `_`, with none at either end."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def key_tag(values: Sequence) -> str:
    """Six hex digits that tell apart file names of groups with different key `values`
    (sha256 of their JSON list)."""
    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()[:6]


MAX_STEM = 80  # characters of a readable figure-file stem before `unique_stems` shortens it


def unique_stems(stems: Sequence[str], keys: Sequence[Sequence]) -> list[str]:
    """Readable file stems (`file_part`ged): each as given while it is unique and short, with
    `-<key_tag(key)>` appended only where two stems collide or one is cut at MAX_STEM
    characters, so a hash appears only to break ties."""
    stems = [file_part(s) or "figure" for s in stems]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s[:MAX_STEM]] = seen.get(s[:MAX_STEM], 0) + 1
    out = []
    for s, k in zip(stems, keys):
        short = s[:MAX_STEM]
        out.append(short if seen[short] == 1 and short == s else f"{short.rstrip('_.-')}-{key_tag(k)}")
    return out


__all__ = ["MISSING", "number", "compact", "mean_sd", "pvalue", "cell", "table", "image", "plain", "short_sha",
           "file_part", "key_tag", "unique_stems", "MAX_STEM"]
