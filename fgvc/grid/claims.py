"""Work-queue claims on a shared results folder: a worker trains a run only while it holds
the run's claim, so any number of uncoordinated workers (`fgvc benchmark` processes,
`--jobs` slots, shards, Slurm jobs on other hosts) on one OUT train each run once.

A claim is the file `OUT/claims/<run_id>.claim`, a JSON record of its holder (pid, host,
machine id, process start time, a random token). It is created atomically and complete:
the record is written to a private temporary file, then hard-linked to the claim's name,
which fails if the name exists (link is atomic on local file systems and on NFS). Where
hard links are refused (some FUSE / SMB mounts) the name is created with O_CREAT|O_EXCL
instead, and a claim that is still empty is read as held while it is fresh.

While it trains, the holder touches the file every `HEARTBEAT_S` seconds (a daemon
thread). A claim is dead, and another worker takes it over, when
- its heartbeat (the file's modification time) is older than `STALE_S` seconds, on every
  host, the holder's own included: a holder that is alive but stopped (SIGSTOP, a stuck
  file system, a deadlock) beats no more and loses its claim like one that is gone. It is
  how claims of other hosts die (a shared file system is the case that matters on
  clusters): keep the clocks of the hosts within a fraction of it; or, sooner,
- its holder ran on this machine (same host name, boot id and pid namespace) and that
  process is gone (or the pid now belongs to a process started at another time): the
  fast path, which needs no timeout.

Takeover never leaves the claim's name free: under a takeover lock (a directory made with
mkdir, also atomic) the worker checks that the claim still holds the dead holder's token
and replaces it in one rename. A holder whose claim was taken over (it stalled for longer
than STALE_S) sees another token at its next heartbeat and reports `lost`; the benchmark
then stops that run at its next epoch end. Releasing removes the claim only if it is still
the holder's. Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CLAIMS_DIR = "claims"
HEARTBEAT_S = float(os.environ.get("FGVC_CLAIM_HEARTBEAT", 30))
STALE_S = float(os.environ.get("FGVC_CLAIM_TIMEOUT", 600))
TAKEOVER_LOCK_STALE_S = 60.0  # a takeover takes milliseconds; a lock this old was left by a killed worker


def machine_id() -> str:
    """This host and pid namespace: pids are comparable only between processes that share it
    (two containers may share a host name but not their pids)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Is `pid` a running process on this machine (and the same one, when its start time is known)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie has finished
    now = process_start(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, as its file says (`record` may be {} for an unreadable file)."""

    path: Path
    record: dict
    mtime: float

    @property
    def token(self) -> str | None:
        return self.record.get("token")

    def describe(self) -> str:
        r = self.record
        if not r:
            return f"an unreadable claim ({self.path})"
        return f"pid {r.get('pid')} on {r.get('host')}, heartbeat {max(0, time.time() - self.mtime):.0f}s ago"

    def dead(self, now: float | None = None) -> bool:
        """An old heartbeat makes a claim dead on any host (a live but stopped holder too); on
        this machine a holder process that is gone does at once."""
        age = (time.time() if now is None else now) - self.mtime
        if age > STALE_S:
            return True
        r = self.record
        if r and r.get("machine") == machine_id() and isinstance(r.get("pid"), int):
            return not pid_alive(r["pid"], r.get("pid_start"))
        return False


def read_holder(path: Path) -> Holder | None:
    """The claim at `path`, or None when there is none."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = {}
    return Holder(path, record if isinstance(record, dict) else {}, st.st_mtime)


@dataclass
class Claim:
    """A claim this process holds; `release()` (or leaving the `with` block) gives it up."""

    path: Path
    token: str
    took_over: Holder | None = None
    lost: Holder | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_heartbeat(self, interval: float = HEARTBEAT_S) -> "Claim":
        self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                        name=f"claim-heartbeat-{self.path.stem}")
        self._thread.start()
        return self

    def check(self) -> bool:
        """Touch the claim if it is still ours; otherwise note who has it (`lost`)."""
        holder = read_holder(self.path)
        if holder is None or holder.token != self.token:
            self.lost = holder or Holder(self.path, {}, time.time())
            return False
        with contextlib.suppress(OSError):
            os.utime(self.path)
        return True

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self.check():
                return

    def release(self) -> None:
        self._stop.set()
        holder = read_holder(self.path)
        if holder is not None and holder.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_path(out: Path, run_id: str) -> Path:
    return Path(out) / CLAIMS_DIR / f"{run_id}.claim"


def _record(token: str) -> bytes:
    pid = os.getpid()
    return json.dumps(dict(pid=pid, host=socket.gethostname(), machine=machine_id(), pid_start=process_start(pid),
                           token=token, claimed=time.strftime("%Y-%m-%dT%H:%M:%S%z"))).encode() + b"\n"


def _temp_record(folder: Path, token: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".claim.{token}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(_record(token))
        f.flush()
        os.fsync(f.fileno())
    return Path(tmp)


def _create(path: Path, token: str) -> bool:
    """Create the claim if the name is free; False if it exists."""
    tmp = _temp_record(path.parent, token)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here: exclusive create (briefly empty; read as fresh and held)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(tmp.read_bytes())
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _takeover_lock(path: Path):
    """Yield True while holding the takeover lock of `path`, False when another worker holds it."""
    lock = path.with_suffix(".takeover")
    try:
        lock.mkdir()
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > TAKEOVER_LOCK_STALE_S:
                lock.rmdir()  # left by a worker killed during a takeover
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            lock.rmdir()


def _take_over(path: Path, dead: Holder, token: str) -> bool:
    """Replace the dead claim `dead` by ours in one rename; False if it changed meanwhile."""
    with _takeover_lock(path) as locked:
        if not locked:
            return False
        now = read_holder(path)
        if now is None:
            return _create(path, token)
        if now.token != dead.token or now.record != dead.record or not now.dead():
            return False
        tmp = _temp_record(path.parent, token)
        os.replace(tmp, path)
        return True


def remove_dead_claims(out: Path) -> list[Holder]:
    """Remove the dead claims in OUT/claims (each under its takeover lock, and only while it
    still holds the dead holder's record, so a claim taken over meanwhile is left alone);
    the holders removed."""
    removed = []
    folder = Path(out) / CLAIMS_DIR
    for path in sorted(folder.glob("*.claim")) if folder.is_dir() else []:
        dead = read_holder(path)
        if dead is None or not dead.dead():
            continue
        with _takeover_lock(path) as locked:
            now = read_holder(path) if locked else None
            if now is not None and now.token == dead.token and now.record == dead.record and now.dead():
                path.unlink()
                removed.append(dead)
    return removed


def try_claim(out: Path, run_id: str, attempts: int = 5) -> Claim | Holder:
    """Claim run `run_id` of results folder `out`: our Claim (heartbeat running), or the
    Holder of a live claim held by someone else."""
    path = claim_path(out, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    holder = None
    for _ in range(attempts):
        if _create(path, token):
            return Claim(path, token).start_heartbeat()
        holder = read_holder(path)
        if holder is None:
            continue  # released meanwhile: try again
        if not holder.dead():
            return holder
        if _take_over(path, holder, token):
            return Claim(path, token, took_over=holder).start_heartbeat()
    return holder or Holder(path, {}, time.time())


__all__ = ["CLAIMS_DIR", "HEARTBEAT_S", "STALE_S", "Claim", "Holder", "claim_path", "try_claim", "read_holder",
           "remove_dead_claims",
           "machine_id", "pid_alive", "process_start"]
