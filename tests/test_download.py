"""data_prep.download against a local HTTP server on 127.0.0.1 that honours Range (no network)."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time

import pytest

from data_prep import download as dl
from data_prep._cli import run
from data_prep.download import download
from fgvc.errors import FGVCError

PAYLOAD = bytes(range(256)) * 3000 + b"tail"  # ~768 KB, not a multiple of the chunk size
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server:
    """Serves PAYLOAD at /CUB_200_2011.tgz; records every request's Range header."""

    def __init__(self):
        self.ranges: list[str | None] = []
        self.sent = 0
        self.honour_range = True
        self.cut_next = False  # send half of the body, then drop the connection
        self.delay = 0.0  # seconds before answering
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/CUB_200_2011.tgz":
                    self.send_error(404)
                    return
                time.sleep(server.delay)
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_next:
                    server.cut_next = False
                    body = body[: len(body) // 2]
                    self.close_connection = True
                server.sent += len(body)  # before writing: the client may finish before this thread resumes
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/CUB_200_2011.tgz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/CUB_200_2011.tgz"


def test_full_download(server, tmp_path):
    path = download(server.url, tmp_path / "data", MD5)
    assert path == tmp_path / "data" / "CUB_200_2011.tgz"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data" / "CUB_200_2011.tgz.part").exists()
    assert server.ranges == [None]


def test_resume_from_part_uses_range(server, tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "CUB_200_2011.tgz.part").write_bytes(PAYLOAD[:100_000])
    path = download(server.url, dest, MD5)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=100000-"]
    assert server.sent == len(PAYLOAD) - 100_000  # only the rest travelled


def test_interrupted_download_resumes(server, tmp_path):
    server.cut_next = True
    with pytest.raises(FGVCError, match="run the same command again"):
        download(server.url, tmp_path, MD5)
    part = tmp_path / "CUB_200_2011.tgz.part"
    assert 0 < part.stat().st_size < len(PAYLOAD) and not (tmp_path / "CUB_200_2011.tgz").exists()
    size = part.stat().st_size
    assert download(server.url, tmp_path, MD5).read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={size}-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    server.honour_range = False
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(b"junk that must not survive")
    assert download(server.url, tmp_path, MD5).read_bytes() == PAYLOAD


def test_complete_part_file(server, tmp_path):
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(PAYLOAD)
    assert download(server.url, tmp_path, MD5).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


@pytest.mark.parametrize("resume", [False, True])
def test_md5_mismatch_leaves_no_file(server, tmp_path, resume):
    if resume:
        (tmp_path / "CUB_200_2011.tgz.part").write_bytes(b"x" * 1000)  # wrong bytes, right length so far
    wrong = "0" * 32
    with pytest.raises(FGVCError, match=rf"md5 of .* is [0-9a-f]{{32}}, expected {wrong}"):
        download(server.url, tmp_path, wrong)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_reused(server, tmp_path):
    (tmp_path / "CUB_200_2011.tgz").write_bytes(PAYLOAD)
    assert download(server.url, tmp_path, MD5) == tmp_path / "CUB_200_2011.tgz"
    assert server.ranges == []  # no request at all
    with pytest.raises(FGVCError, match="exists but its md5"):
        download(server.url, tmp_path, "0" * 32)
    assert (tmp_path / "CUB_200_2011.tgz").read_bytes() == PAYLOAD


def test_unreachable_fails_fast_naming_cub(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(FGVCError, match=r"cannot reach .*CUB=/path/to/CUB_200_2011\.tgz"):
        download(closed_port_url(), tmp_path / "data", MD5)
    assert time.monotonic() - t0 < 5
    assert not (tmp_path / "data").exists()


def test_connect_timeout_is_short_read_timeout_is_not(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "CONNECT_TIMEOUT", 0.1)
    server.delay = 0.4  # a slow answer on an open connection is fine...
    assert download(server.url, tmp_path / "a", MD5, timeout=3).read_bytes() == PAYLOAD
    with pytest.raises(FGVCError, match="timed out"):  # ...unless it exceeds the read timeout
        download(server.url, tmp_path / "b", MD5, timeout=0.2)


def test_http_error(server, tmp_path):
    with pytest.raises(FGVCError, match="HTTP 404"):
        download(server.url.replace("CUB_200_2011", "other"), tmp_path, MD5)
    assert not (tmp_path / "other.tgz").exists()


def test_cli(server, tmp_path, capsys):
    assert run(dl.main, ["--dest", str(tmp_path), "--url", server.url, "--md5", MD5]) == 0
    assert capsys.readouterr().out.strip().endswith("CUB_200_2011.tgz")
    assert run(dl.main, ["--dest", str(tmp_path / "x"), "--url", closed_port_url()]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach") and err.count("\n") == 1 and "CUB=" in err


def test_defaults_are_the_official_archive():
    assert dl.CUB_URL == "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
    assert dl.CUB_MD5 == "97eceeb196236b17998738112f37df78" and dl.CUB_SIZE == 1_150_585_339
