"""LaTeX tables a paper can paste (booktabs): `fgvc report --latex` and `fgvc compare --latex`
(every Markdown table of their output, each with its caption) and the leaderboard's
leaderboard.tex. Every cell is escaped, so a class or run name never breaks the document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "$-$", "±": r"$\pm$",
            "λ": r"$\lambda$", "×": r"$\times$", "…": r"\ldots{}", "†": r"$^\dagger$"}


# A hyphen before a number is a minus sign ("-5.71", "+2.09 to -0.5"), and "settings x 2" a product:
# typeset as such, not as a hyphen and a letter.
_MINUS = re.compile(r"(?<![\w.])-(?=\.?\d)")
_TIMES = re.compile(r"(?<=[\w)]) x (?=\d)")
WIDE_COLUMNS = 8  # a table of more columns spans both columns of a two-column paper (table*)


def tex(value) -> str:
    """A cell as LaTeX text: special characters escaped, a minus sign and a product typeset, `—`
    for a missing value."""
    text = "—" if value is None or (isinstance(value, float) and value != value) else str(value)
    text = _TIMES.sub(" × ", _MINUS.sub("−", text))
    return "".join(_SPECIAL.get(ch, ch) for ch in text)


def latex_table(header: Sequence[str], rows: Sequence[Sequence], caption: str, label: str,
                align: str | None = None, wide: bool | None = None, colsep: str = "4pt") -> str:
    """A complete `table` environment with a booktabs `tabular` (needs \\usepackage{booktabs});
    `wide` (default: more than WIDE_COLUMNS columns): `table*`, across both columns of a
    two-column paper, in small type with narrower column gaps (`colsep` each side)."""
    align = align or "l" + "r" * (len(header) - 1)
    wide = len(header) > WIDE_COLUMNS if wide is None else wide
    env, small = ("table*", [r"\small", rf"\setlength{{\tabcolsep}}{{{colsep}}}"]) if wide else ("table", [])
    body = [" & ".join(tex(c) for c in row) + r" \\" for row in rows]
    return "\n".join([rf"\begin{{{env}}}[t]", r"\centering", *small, rf"\caption{{{tex(caption)}}}",
                      rf"\label{{{label}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                      " & ".join(tex(h) for h in header) + r" \\", r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", rf"\end{{{env}}}", ""])


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells, formatting marks dropped (`**`, backticks, escapes)."""
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [re.sub(r"\\(.)", r"\1", c.strip().replace("**", "").replace("`", "")) for c in cells]


def markdown_tables(md: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, header, rows) of every pipe table in Markdown text; the caption is the
    `*Table: ...*` line before it, else the nearest heading above it."""
    out, caption, lines = [], "", md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            caption = line.lstrip("#").strip()
        elif line.startswith("*Table:"):
            caption = line.strip("*").removeprefix("Table:").strip()
        elif line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|?\s*:?-{3,}.*", lines[i + 1]):
            header, rows, i = _cells(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append((caption, header, rows))
            continue
        i += 1
    return out


def markdown_to_latex(md: str, label: str) -> str:
    """Every table of a Markdown report as a booktabs LaTeX table (labels `label`-1, -2, ...)."""
    tables = [latex_table(h, r, c or "Table", f"{label}-{i}") for i, (c, h, r) in enumerate(markdown_tables(md), 1)]
    return "% fgvc tables; needs \\usepackage{booktabs}\n" + "\n".join(tables)


def write_latex(md: str, path: Path, label: str) -> Path:
    """`markdown_to_latex(md)` written atomically to `path` (`--latex` on report and compare)."""
    from fgvc.io import atomic_write_text

    atomic_write_text(Path(path), markdown_to_latex(md, label))
    return Path(path)


__all__ = ["WIDE_COLUMNS", "tex", "latex_table", "markdown_tables", "markdown_to_latex", "write_latex"]
