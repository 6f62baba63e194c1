"""Markdown formatting shared by the report, the validation sweep and `fgvc compare`:
numbers, p-values, table cells and tables, image links, captions as plain text, and
the slugs, tags and readable stems of figure file names.

What runs carry (a benchmark, model, device or class name, an error) is printed escaped, so
a report rendered by a browser or a Markdown viewer never runs what someone put in a row:
every table cell and header goes through `cell`, every such value in the text through
`escape`. They neutralise exactly what could become HTML or a link: `<` before a tag, a
comment or an autolink (`&lt;`), and `](`, `]:` (an inline link or image, a link
definition: the bracket's follower is backslash-escaped), so ordinary names, numbers and
the report's own wording print byte for byte as before.

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


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # an HTML tag, comment, declaration or autolink: <script, </a, <!--
_LINK_TAIL = re.compile(r"\](?=[(:])")  # [text](url), ![alt](url), [label]: url


def _inert(text: str) -> str:
    """`text` on one line, with no HTML and no link: see the module's docstring."""
    text = _TAG_START.sub("&lt;", _LINE_BREAK.sub(" ", text))
    return _LINK_TAIL.sub(lambda m: "]\\", text)


def escape(x) -> str:
    """A value from a run (a name, a path, an error) for the report's text: printed as it
    is, on one line, but never as HTML or a link (`inert` then sees to link definitions)."""
    return _inert(str(x))


def code(x) -> str:
    """A value from a run as inline code: `` `x` ``, with a longer fence where `x` holds
    backticks (so it cannot close the span early), HTML and links made inert all the same."""
    text = _inert(str(x))
    runs = [len(r) for r in re.findall(r"`+", text)]
    if not runs:
        return f"`{text}`"
    fence = "`" * (max(runs) + 1)
    return f"{fence} {text} {fence}"


# A line `image` writes: a figure of the report's own folder (a `file_part`ed name), nothing else.
_IMAGE_LINE = re.compile(r"^!\[(?:[^\[\]\\]|\\.)*\]\((?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+\.png\)$")
# A link reference definition starts its line (after list or quote markers): `- [x]: url`.
_DEFINITION = re.compile(r"^((?: {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+| {0,3}>[ \t]?)*[ ]{0,3}\[(?:[^\]\\]|\\.)*\]):")


def inert(text: str) -> str:
    """The last pass over a whole Markdown document (report.md, `fgvc compare`'s): whatever a
    value brought in that `cell` / `escape` did not see (a line break included) becomes
    text, never HTML, a link or a link definition. Lines of `image` are kept; the report's
    own wording is left as it is (it holds none of these)."""
    out = []
    for line in text.split("\n"):
        if not _IMAGE_LINE.match(line):
            line = _TAG_START.sub("&lt;", line).replace("](", "]\\(")
            line = _DEFINITION.sub(lambda m: m.group(1) + "\\:", line)
        out.append(line)
    return "\n".join(out)


def cell(x) -> str:
    """`x` as one table cell: `|` escaped, line breaks folded, HTML and links made inert
    (as `escape`), ends stripped."""
    return _inert(str(x).replace("|", "\\|")).strip()


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (no trailing newline); the header and the rows through `cell`."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def image(alt: str, path: Path, root: Path) -> str:
    """A Markdown image of `path`, linked relative to `root` (the report's folder); the alt
    text (which may name groups) escaped, so it cannot end the image early."""
    alt = _inert(str(alt)).replace("[", "\\[").replace("]", "\\]")
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


__all__ = ["MISSING", "number", "compact", "mean_sd", "pvalue", "escape", "code", "inert", "cell", "table", "image",
           "plain", "short_sha", "file_part", "key_tag", "unique_stems", "MAX_STEM"]
