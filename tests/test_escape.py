"""What runs carry is printed, never run (issue 30, item 2): hostile strings in every field a
report or `fgvc compare` prints come out escaped, as text, in report.md and in the Markdown
`fgvc compare` writes; ordinary names and numbers print as before (the committed reports
regenerate byte for byte, checked outside the suite)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from fgvc.report.compare import compare
from fgvc.report.report import write_report
from report_fixtures import make_out

try:  # a Markdown renderer (tensorboard's dependency, so `make setup` has it); the raw checks run without it
    import markdown
except ImportError:
    markdown = None

ATTACKS = ["<script>alert({k})</script>", "<img src=x onerror=alert({k})>", "<iframe src=javascript:alert({k})>",
           "[click{k}](javascript:alert({k}))", "![pic{k}](javascript:alert({k}))", "<javascript:alert({k})>",
           "x`<svg onload=alert({k})>`", "[def{k}]: javascript:alert({k})", "line\n<script>alert({k})</script>",
           "$\\frac{{{k}$ | pipe", "<!-- {k}"]


def hostile(k: int) -> str:
    """The attack `k` (cycled) with its own number, so each field's can be found."""
    return ATTACKS[k % len(ATTACKS)].format(k=k)


def _check_markdown(md: str) -> str:
    """Assert `md` holds no HTML, no link and no link definition a value could have made; the
    HTML a Markdown renderer makes of it holds no script, frame, handler or javascript: URL.
    Returns that HTML's text, unescaped."""
    assert not re.search(r"<[A-Za-z/!?]", md), re.findall(r".{0,30}<[A-Za-z/!?].{0,30}", md)[:5]
    for line in md.splitlines():
        if "](" in line:
            assert re.fullmatch(r"!\[[^\n]*\]\([A-Za-z0-9_./-]+\.png\)", line), line
        assert not re.match(r"^(?:\s*(?:[-*+]|\d+[.)])\s+)*\s{0,3}\[[^\]]*\]:", line), line
    if markdown is None:
        return html.unescape(md)
    rendered = markdown.markdown(md, extensions=["tables"])
    tags = re.findall(r"<([a-zA-Z]+)([^>]*)>", rendered)
    assert not [t for t, _ in tags if t.lower() in ("script", "iframe", "svg", "object", "embed", "a")], tags
    assert not [a for _, a in tags if re.search(r"\bon[a-z]+\s*=|javascript:", a, re.I)]
    assert all(re.search(r'src="[A-Za-z0-9_./-]+\.png"', a) for t, a in tags if t == "img")
    return html.unescape(re.sub(r"<[^>]+>", "", rendered))


def test_cells_and_values_are_inert_and_ordinary_text_unchanged():
    from fgvc.report.markdown import cell, code, escape, image, inert, table

    ordinary = ["tf_efficientnet_lite0-ce-lam0-s5-f91242a5", "resnet50.tv_in1k", "timm/vit_base.augreg",
                "cpu (Intel Xeon, 2 threads)", "[55.1, 57.2]", "— (n < 2)", "**check**: 2 epochs", "p<0.05"]
    for text in ordinary:
        assert cell(text) == text and escape(text) == text and inert(text) == text
    assert code("resnet50.tv_in1k") == "`resnet50.tv_in1k`"
    assert cell("a|b") == "a\\|b" and table(["x|y"], [["1"]]).startswith("| x\\|y |")
    assert cell("<script>x</script> [a](javascript:b)") == "&lt;script>x&lt;/script> [a]\\(javascript:b)"
    assert escape("[x]: y") == "[x]\\: y" and escape("a\nb") == "a b"
    assert code("a`b") == "`` a`b ``"
    assert image("x](javascript:y) ![z", Path("/r/f/a.png"), Path("/r")) == "![x\\]\\(javascript:y) !\\[z](f/a.png)"
    text = "\n".join(["validation top-1 [1] and [2]: each file", "- [1] `results/x/runs.csv` (runs.csv)",
                      "![Training curves](figures/curves_center-lam0.01_vs_ce.png)"])
    assert inert(text) == text  # the reports' own wording
    for k in range(len(ATTACKS)):
        _check_markdown(inert(f"- {hostile(k)}\n\n{table(['h', hostile(k + 1)], [[hostile(k + 2), 'x']])}"))


def _poison(out: Path) -> dict[str, str]:
    """Hostile strings in every field of every run folder that the report prints."""
    put: dict[str, str] = {}

    def value(field: str) -> str:
        put.setdefault(field, hostile(len(put)))
        return put[field]

    for run_dir in sorted((out / "runs").iterdir()):
        row = json.loads((run_dir / "row.json").read_text())
        row.update(weights=value("weights"), device=value("device"), git_commit=value("git_commit"),
                   weights_sha256=value("weights_sha256"))
        if row["status"] == "failed":
            row.update(error=value("error"))
        if row["method"] == "center":
            row.update(center_update=value("center_update"))
        (run_dir / "row.json").write_text(json.dumps(row))
        prov_path = run_dir / "provenance.json"
        if prov_path.is_file():
            prov = json.loads(prov_path.read_text())
            prov.update(dataset=value("dataset"), dataset_source=value("dataset_source"), torch=value("torch"),
                        started=value("started"), finished=value("finished"), device=value("device"),
                        dataset_content_sha256=value("dataset_content_sha256"))
            prov_path.write_text(json.dumps(prov))
        if (run_dir / "classes.json").is_file():
            names = json.loads((run_dir / "classes.json").read_text())
            (run_dir / "classes.json").write_text(json.dumps(["$\\frac{$ class"] + [value(f"class {i}")
                                                                          for i in range(1, len(names))]))
    return put


def test_report_prints_hostile_fields_as_text(tmp_path):
    out = make_out(tmp_path / "o<iframe src=javascript:alert(0)>ut", num_classes=5,
                   benchmark=hostile(20) + " smoke", model="resnet50<script>alert(21)</script>")
    put = _poison(out)
    (out / "runs" / sorted(p.name for p in (out / "runs").iterdir())[0] / "features.npz").unlink()  # a note
    write_report(out)
    md = (out / "report.md").read_text()
    text = _check_markdown(md)
    # each field is printed, as text (inside inline code a `<` shows as `&lt;`: safe, if not pretty)
    for field in ("weights", "device", "error", "git_commit", "class 1", "dataset", "torch", "started",
                  "weights_sha256", "center_update"):
        marker = re.search(r"alert\(\d+\)", put[field])
        assert marker is None or marker.group() in text, (field, put[field])
    assert {"alert(21)", "$\\frac{20$"} <= {m for m in ("alert(21)", "$\\frac{20$") if m in text}
    assert pd.read_csv(out / "runs.csv").weights.iloc[0] == put["weights"]  # data files keep the values as they are


@pytest.mark.parametrize("metric", ["top1"])
def test_compare_prints_hostile_fields_as_text(tmp_path, metric):
    rows = []
    for side, weights in (("a", "w<script>alert(30)</script>"), ("b", "[x](javascript:alert(31))")):
        folder = tmp_path / f"{side}<img src=x onerror=alert(32)>"
        folder.mkdir()
        frame = pd.DataFrame([dict(run_id=f"r{side}{s}{m}", model="m<iframe src=javascript:alert(33)>", method=m,
                                   seed=s if s < 3 else f"{s}<script>alert(34)</script>", weights=weights,
                                   lr="0.01<!--", benchmark=hostile(35), top1=60 + s + (m == "center"), status="ok")
                              for m in ("ce", "center<svg onload=alert(36)>") for s in range(3 + (side == "b"))]
                             + [dict(run_id=f"only{side}", model=f"only-{side}<script>alert(37)</script>", method="ce",
                                     seed=0, weights=weights, lr="0.01<!--", top1=50, status="ok")])
        frame.to_csv(folder / "runs.csv", index=False)
        rows.append(folder / "runs.csv")
    md = compare(rows, out=tmp_path / "compare.md", metric=metric)
    assert (tmp_path / "compare.md").read_text() == md
    text = _check_markdown(md)
    for k in (30, 31, 32, 33, 34, 36, 37):
        assert f"alert({k})" in text, k
