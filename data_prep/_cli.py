"""What every data_prep command shares: user errors as one line and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable

from fgvc.errors import FGVCError


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call `main(argv)`; an FGVCError becomes `error: <message>` on stderr and status 2."""
    try:
        return main(argv)
    except FGVCError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was left half-written", file=sys.stderr)
        return 130
