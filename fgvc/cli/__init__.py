"""`fgvc` command line: benchmark | train | validate | report | visualize | compare | leaderboard |
demo | speed.

One parser tree: `build_parser` here, each subcommand's parser and command in `run`
(benchmark, train), `tools` (validate, demo, speed) and `report` (report, visualize,
compare); the defaults they show are defined once, in `defaults` (import-free), which the
implementations read too. User errors (FGVCError) are printed on one line and exit with
status 2.

Torch-free on purpose: every module here imports no torch and imports its implementation
only when the command runs, so `fgvc --help` and `fgvc <command> --help` start fast
(tests/test_cli_fast.py checks it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fgvc import __version__
from fgvc.cli.report import add_compare_parser, add_leaderboard_parser, add_report_parser, add_visualize_parser
from fgvc.cli.run import add_benchmark_parser, add_train_parser
from fgvc.cli.tools import add_demo_parser, add_speed_parser, add_validate_parser
from fgvc.errors import FGVCError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgvc",
        description="Fine-grained visual classification benchmarks: fine-tune ImageNet CNNs with "
                    "cross-entropy and with center loss, then compare them honestly.")
    parser.add_argument("--version", action="version", version=f"fgvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_benchmark_parser(sub)
    add_train_parser(sub)
    add_validate_parser(sub)
    add_report_parser(sub)
    add_visualize_parser(sub)
    add_compare_parser(sub)
    add_leaderboard_parser(sub)
    add_demo_parser(sub)
    add_speed_parser(sub)
    return parser


def _quiet_stdout() -> None:
    """After the reader of a pipe left (`fgvc ... | head`): no more output, and no
    BrokenPipeError when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    from fgvc.grid.signals import Stopped, message

    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except FGVCError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(message(e.signum), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(message(2), file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, as a command killed by the closed pipe would end
    except OSError as e:  # a full disk wherever it was met: one line too
        from fgvc.io import is_no_space

        if not is_no_space(e):
            raise
        print(f"error: {_no_space(e, args)}", file=sys.stderr)
        return 2


def _no_space(e: OSError, args) -> str:
    """The full-disk line for `e`: the folder written to (the error's file, else --out)."""
    from fgvc.io import no_space_error
    from fgvc.runs.table import space_needed_mb

    folder = Path(e.filename).parent if e.filename else Path(getattr(args, "out", None) or ".")
    return str(no_space_error(folder, space_needed_mb(folder)))


if __name__ == "__main__":
    raise SystemExit(main())
