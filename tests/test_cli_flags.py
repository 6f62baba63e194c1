"""One way to set a run (issue 28): the common keys as flags beside --set, singular names,
`fgvc train CONFIG` positional like `fgvc benchmark GRID`."""

from __future__ import annotations

import argparse

import pytest

from fgvc.cli import build_parser
from fgvc.cli.run import KEY_FLAGS, overrides_of
from fgvc.config import expand_grid, load_grid
from fgvc.errors import FGVCError


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_every_key_flag_is_a_set_override(command):
    grid = [] if command == "train" else ["g.yaml"]
    args = parse(command, *grid, "--model", "test_resnet", "--method", "center", "--seed", "3", "--lr", "0.05",
                 "--epochs", "2", "--batch-size", "8", "--center-weight", "0.01", "--label-smoothing", "0.1",
                 "--val-fraction", "0.2")
    assert overrides_of(args) == dict(model="test_resnet", method="center", seed=3, lr=0.05, epochs=2, batch_size=8,
                                      center_weight=0.01, label_smoothing=0.1, val_fraction=0.2)
    assert len(KEY_FLAGS) == 9


def test_flags_pick_one_run_of_a_grid_and_lists_stay_lists():
    args = parse("train", "benchmarks/sparrows-lite0.yaml", "--method", "ce", "--seed", "0")
    assert args.config.name == "sparrows-lite0.yaml"
    (cfg,) = expand_grid(load_grid(args.config, overrides_of(args)))
    assert (cfg.method, cfg.seed) == ("ce", 0)
    assert overrides_of(parse("benchmark", "g.yaml", "--seed", "[0,1,2]"))["seed"] == [0, 1, 2]


def test_a_key_set_twice_is_one_clear_error():
    with pytest.raises(FGVCError, match="seed is set twice"):
        overrides_of(parse("benchmark", "g.yaml", "--seed", "1", "--set", "seeds=[0]"))


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_option_is_explained_and_help_names_no_machine_path(command):
    """`--help` is complete: every option has a help text, no flag's default reads as its
    opposite ("--no-X ... (default: True)"), and no path of our build machines appears."""
    parser = subparsers()[command]
    bare = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not bare, f"fgvc {command}: options without help: {bare}"
    text = parser.format_help()
    assert "../shared" not in text and "/work/" not in text
    for action in parser._actions:
        if any(s.startswith("--no-") for s in action.option_strings):
            shown = parser._get_formatter()._get_help_string(action)  # what --help prints, defaults added
            assert "%(default)" not in shown, f"fgvc {command} {action.option_strings}: shows its default"
