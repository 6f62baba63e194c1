"""The package's shape: no import cycle among fgvc's modules (lazy imports included), no
function longer than 80 lines except argument-parser builders, no private name imported
across modules, fgvc never importing data_prep, at most 12 modules at the fgvc/ root, no
module over 450 lines, and each public name defined once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted((ROOT / "fgvc").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """fgvc modules imported anywhere in the file (lazily too); TYPE_CHECKING blocks skipped."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from fgvc.data import loaders`
    return {m for m in found if m in known and m != name and m != "fgvc"}


def test_no_import_cycle():
    mods = _modules()
    graph = {m: _imports(p, m, set(mods)) for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_functions_are_short():
    long = []
    for path in sorted((ROOT / "fgvc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                is_parser = "parser" in node.name
                if n > MAX_LINES and not is_parser:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + "; ".join(long)


def test_no_private_name_imported_across_modules():
    bad = []
    for path in sorted((ROOT / "fgvc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fgvc"):
                bad += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, bad


# --------------------------------------------------------------------------- house rules (issue 24)
MAX_ROOT_MODULES = 12
MAX_MODULE_LINES = 450


def test_fgvc_never_imports_data_prep():
    """data_prep (download, carve, verify) builds on fgvc; fgvc never reaches back into it."""
    bad = []
    for path in sorted((ROOT / "fgvc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "data_prep"]
    assert not bad, bad


def test_the_package_root_stays_small():
    root = sorted(p.name for p in (ROOT / "fgvc").glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the fgvc/ root (at most {MAX_ROOT_MODULES}): {root}"


def test_no_module_is_too_long():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in sorted((ROOT / "fgvc").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: " + "; ".join(long)


def _public_definitions(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


def test_each_public_name_is_defined_once():
    """One definition of each function, class and constant (e.g. one `provenance`)."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "fgvc").rglob("*.py")):
        for name in _public_definitions(path):
            where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    twice = {n: ps for n, ps in where.items() if len(ps) > 1}
    assert not twice, twice
