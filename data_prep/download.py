"""Fetch the official CUB-200-2011 archive, resumably, and check its md5 before it is used.

The download goes to `<name>.part` and is resumed with an HTTP Range request when
interrupted; only a file whose md5 matches gets the final name, so a file under the final
name is always the right one. Standard library only (urllib), plus tqdm for the bar.

    python -m data_prep.download --dest data/
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from data_prep._cli import run
from fgvc.errors import FGVCError

CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CUB_MD5 = "97eceeb196236b17998738112f37df78"
CUB_SIZE = 1_150_585_339
CONNECT_TIMEOUT = 10.0  # seconds: with no network, fail at once rather than after minutes
_CHUNK = 1 << 20
_OFFLINE_HINT = (
    "no network? pass a local archive instead: make data CUB=/path/to/CUB_200_2011.tgz "
    "(or python -m data_prep.carve --source /path/to/CUB_200_2011.tgz)"
)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# urllib has one timeout for connect and read; a short connect timeout (no network: fail
# fast) with a longer read timeout (a slow mirror is fine) needs these two small classes.
class _HTTPConnection(http.client.HTTPConnection):
    read_timeout: float = 30.0

    def connect(self) -> None:
        self.timeout, read = min(CONNECT_TIMEOUT, self.read_timeout), self.read_timeout
        super().connect()
        self.sock.settimeout(read)


class _HTTPSConnection(http.client.HTTPSConnection):
    read_timeout: float = 30.0

    def connect(self) -> None:
        self.timeout, read = min(CONNECT_TIMEOUT, self.read_timeout), self.read_timeout
        super().connect()
        self.sock.settimeout(read)


def _opener(timeout: float) -> urllib.request.OpenerDirector:
    http_cls = type("_C", (_HTTPConnection,), {"read_timeout": timeout})
    https_cls = type("_CS", (_HTTPSConnection,), {"read_timeout": timeout})

    class H(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(http_cls, req)

    class HS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(https_cls, req, context=self._context)

    return urllib.request.build_opener(H, HS)


def _open(url: str, start: int, timeout: float, hint: str = _OFFLINE_HINT):
    req = urllib.request.Request(url, headers={"User-Agent": "fgvc-data-prep"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    try:
        return _opener(timeout).open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:
            return e  # range past the end: the .part file may already be complete
        raise FGVCError(f"download of {url} failed: HTTP {e.code} {e.reason}; check --url") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise FGVCError(f"cannot reach {url} ({reason}); {hint}") from None


def reachable(url: str) -> bool:
    """A fast DNS check of `url`'s host (no download). Behind a proxy it cannot tell: True."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                       "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.getaddrinfo(urlsplit(url).hostname or "", 443)
    except OSError:
        return False
    return True


def download(url: str, dest: Path, md5: str, *, timeout: float = 30, hint: str = _OFFLINE_HINT) -> Path:
    """Download `url` into the folder `dest` (file name from the URL) and return the file's path.

    An existing file with the right md5 is reused; a `.part` file is resumed with HTTP
    Range. The md5 is checked before the file gets its final name; on a mismatch both the
    partial file and the final name are left absent and FGVCError is raised. `hint` ends the
    error when the host cannot be reached (what to pass instead; CUB's by default).
    """
    dest = Path(dest)
    name = PurePosixPath(urlsplit(url).path).name or "download"
    final = dest / name
    part = dest / f"{name}.part"
    md5 = md5.lower()
    if final.exists():
        found = file_md5(final)
        if found == md5:
            print(f"{final} already present (md5 ok)")
            return final
        raise FGVCError(f"{final} exists but its md5 is {found}, expected {md5}; delete it and run again")

    h = hashlib.md5()
    start = part.stat().st_size if part.exists() else 0
    if start:
        with open(part, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    resp = _open(url, start, timeout, hint)
    dest.mkdir(parents=True, exist_ok=True)  # only once the server answered: offline leaves no trace
    if getattr(resp, "code", None) == 416:
        resp.close()
        total = start
    else:
        with resp:
            status = resp.status
            if start and status == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != start:
                    raise FGVCError(f"{url}: server answered a resume request with the wrong range "
                                    f"({resp.headers.get('Content-Range')!r}); delete {part} and run again")
                mode = "ab"
            else:  # 200: the server ignores Range (or nothing to resume): start over
                start, h, mode = 0, hashlib.md5(), "wb"
            length = resp.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=name, disable=None) as bar:
                try:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                except (socket.timeout, ConnectionError, http.client.HTTPException) as e:
                    raise FGVCError(f"download of {url} interrupted ({e}); run the same command again to resume "
                                    f"from {part}") from None
            if total is not None and part.stat().st_size < total:
                raise FGVCError(f"download of {url} ended early ({part.stat().st_size} of {total} bytes); "
                                f"run the same command again to resume")

    found = h.hexdigest()
    if found != md5:
        part.unlink(missing_ok=True)
        raise FGVCError(f"md5 of {url} is {found}, expected {md5}: the download is corrupt or not the expected "
                        f"file; it was deleted (check --url / --md5 and run again)")
    os.replace(part, final)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m data_prep.download",
        description="Download the official CUB-200-2011 archive (1.1 GB) with a progress bar; an interrupted "
        "download resumes; the md5 is checked before the file gets its final name.",
    )
    ap.add_argument("--dest", type=Path, default=Path("data"), help="folder to download into (default: %(default)s/)")
    ap.add_argument("--url", default=CUB_URL, help="archive URL, e.g. a mirror (default: the official Caltech URL)")
    ap.add_argument("--md5", default=CUB_MD5, help="expected md5 of the archive (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help=f"read timeout in seconds (default: %(default)s; connecting gives up after {CONNECT_TIMEOUT:g})")
    args = ap.parse_args(argv)
    path = download(args.url, args.dest, args.md5, timeout=args.timeout)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
