"""Every command in README.md's shell blocks runs as written, checked without training:

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
from fgvc.config import expand_grid, load_grid, parse_overrides
from tiny import make_env

ROOT = Path(__file__).resolve().parents[1]


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```bash / ```sh blocks: continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", markdown, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
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
        configs = expand_grid(load_grid(args.config, parse_overrides(args.overrides)))
        assert len(configs) == 1, f"fgvc {shlex.join(argv)}: expands to {len(configs)} runs, `fgvc train` runs one"
        configs[0].validate()


def make_variables() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Z_]+)\s*[?:]?=", text, flags=re.M))


COMMANDS = shell_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_has_the_commands_it_should():
    joined = "\n".join(COMMANDS)
    assert "make benchmark" in joined and "-m fgvc train" in joined and "TORCH_INDEX=" in joined
    quick = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu" in quick  # the CPU wheels beside it


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
