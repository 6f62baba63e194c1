"""Every command in the shell blocks of README.md and docs/*.md runs as written, checked
without training:

- `fgvc ...` (also after `torchrun ... -m fgvc`): parsed by fgvc's own argument parser
  (unknown flags, missing positionals fail); `benchmark` then runs with `--dry-run` on the
  synthetic dataset (the grid expands and every run validates); `train` expands to exactly
  one run, as `fgvc train` requires;
- `make ...`: the target exists, every VAR= is one the Makefile reads, and the `fgvc`
  commands `make -n` prints for it (a fake venv: nothing runs) pass the checks above.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from fgvc.cli import build_parser, main
from fgvc.cli.run import overrides_of
from fgvc.config import expand_grid, load_grid
from tiny import make_env

ROOT = Path(__file__).resolve().parents[1]


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```bash / ```sh blocks: continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", markdown, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\s(?:&&|\|\||;)\s", line):  # `a && b`: two commands
                tokens = shlex.split(part, comments=True)
                if tokens:
                    commands.append(shlex.join(tokens))
    return commands


def fgvc_argv(tokens: list[str]) -> list[str] | None:
    """The arguments after `fgvc` (a console script, `python -m fgvc` or `torchrun ... -m fgvc`)."""
    if tokens and Path(tokens[0]).name == "fgvc":
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] == "fgvc":
            return tokens[i + 2:]
    return None


def check_fgvc(argv: list[str], data: Path, out: Path, capsys) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"fgvc {shlex.join(argv)}: rejected by fgvc's parser: {capsys.readouterr().err.strip()}")
    if args.command == "benchmark":
        rc = main([*argv, "--dry-run", "--data", str(data), "--out", str(out)])
        assert rc == 0, f"fgvc {shlex.join(argv)} --dry-run: {capsys.readouterr().err.strip()}"
    elif args.command == "train":
        configs = expand_grid(load_grid(args.config or args.config_file, overrides_of(args)))
        assert len(configs) == 1, f"fgvc {shlex.join(argv)}: expands to {len(configs)} runs, `fgvc train` runs one"
        configs[0].validate()


def make_variables() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Z_]+)\s*[?:]?=", text, flags=re.M))


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = sorted({c for doc in DOCS for c in shell_commands(doc.read_text(encoding="utf-8"))})
README_LINES = 220  # README is a few screens; everything else lives in docs/


def test_readme_has_the_commands_it_should():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    joined = "\n".join(shell_commands(readme))
    assert "make benchmark" in joined and "fgvc train" in joined and "TORCH_INDEX=" in joined
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu" in quick  # the CPU wheels beside it
    assert "-m fgvc train" in "\n".join(COMMANDS)  # the DDP command, in docs/speed.md


def test_readme_is_short_and_its_links_resolve():
    """README stays a few screens, and every relative link of README and docs/ points at a file."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= README_LINES
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_no_machine_paths_in_commands():
    """Users have no ../shared: commands in README and docs/ use placeholders instead."""
    assert not [c for c in COMMANDS if "../shared" in c]


@pytest.mark.parametrize("command", [c for c in COMMANDS if fgvc_argv(shlex.split(c)) is not None])
def test_fgvc_command_runs_as_written(command, sparrow_dataset, tmp_path, capsys):
    check_fgvc(fgvc_argv(shlex.split(command)), sparrow_dataset, tmp_path, capsys)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_make_command_runs_as_written(command, sparrow_dataset, tmp_path, capsys):
    args = shlex.split(command)[1:]
    unknown = [a.split("=")[0] for a in args if "=" in a and a.split("=")[0] not in make_variables()]
    assert not unknown, f"{command}: the Makefile reads no {unknown}"
    done = subprocess.run(["make", "-n", *args, "VENV=/nonexistent-venv"], cwd=ROOT, env=make_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{command}: {done.stderr.strip()}"
    for line in done.stdout.replace("\\\n", " ").splitlines():
        argv = fgvc_argv(shlex.split(line))
        if argv is not None:
            check_fgvc(argv, sparrow_dataset, tmp_path, capsys)
