"""Stopping when told: Ctrl-C (SIGINT) and SIGTERM (what `kill` and Slurm send before they
kill a job) become a `Stopped` exception in the main thread, so a benchmark process stops
where it is, keeps every finished run and the last completed epoch of the one it was
training (every file is written atomically, so any point is a safe point), writes
runs.csv and exits 130 / 143. `--jobs` workers also stop when their parent dies, however
it died. Torch-free.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: no `except Exception`
    swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise Stopped once; later signals are ignored, so
    the cleanup the first one starts is not cut short. Main thread only (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Send ourselves SIGTERM when the process `parent_pid` is gone: at once on Linux
    (PR_SET_PDEATHSIG), otherwise within `poll_s` (a daemon thread watching getppid)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll_s):
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    if os.getppid() != parent_pid:  # died before we got here
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def message(signum: int) -> str:
    """The one line a stopped benchmark prints."""
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    return f"{what}: finished runs and the last completed epoch are kept; rerun the same command to resume"


__all__ = ["Stopped", "stop_on_signals", "die_with_parent", "message", "SIGNALS"]
