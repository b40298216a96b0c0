"""Large and chunked request bodies of streamed routes (daemon/server_body.c).

libwebsockets 4.1 alone stops a body without Content-Length at 100 MiB; the
server reads such bodies (and large ones) itself, over the unix socket and
over TLS, answers on the same connection and then closes it.  Checked through
the files test hook (/internal/testing/files, as in test_files_io.py): bytes
arrive intact past 100 MiB, a client that vanishes or stalls mid-body leaves
nothing behind and no descriptor open, and small bodies keep their
keep-alive connection.
"""
import hashlib
import os
import socket
import time

import pytest

from cellenv import cert_b64_der, enable_https_tls, make_client_cert
from test_files_io import fd_count, furl

MIB = 1 << 20


def chunks(total, seed=b"cell"):
    """total bytes of pseudo-random data in uneven chunks, and their SHA-256."""
    h = hashlib.sha256()
    block = hashlib.sha512(seed).digest() * (MIB // 64)
    parts, left, i = [], total, 0
    while left:
        n = min(left, MIB - 8192 + (i % 7) * 1000)
        parts.append(block[:n])
        left -= n
        i += 1
    for p in parts:
        h.update(p)
    return parts, h.hexdigest()


def post_chunked(conn, url, parts):
    conn.request("POST", url, body=iter(parts), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()


def sha_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(MIB), b""):
            h.update(b)
    return h.hexdigest()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return r


def test_chunked_past_100_mib_over_unix(celld, root):
    parts, digest = chunks(130 * MIB)
    c = celld.conn(timeout=120)
    try:
        status, headers, body = post_chunked(c, furl(root, "/big"), parts)
    finally:
        c.close()
    assert status == 200, body
    assert headers.get("connection") == "close"
    assert os.path.getsize(root / "big") == 130 * MIB
    assert sha_of(root / "big") == digest


def test_chunked_past_100_mib_over_https(celld, root, tmp_path):
    crt, key = make_client_cert(str(tmp_path), "stream-client")
    with open(crt) as f:
        r = celld.request("POST", "/1.0/certificates",
                          {"type": "client", "certificate": cert_b64_der(f.read())})
    assert r.status in (200, 201), r
    enable_https_tls(celld)
    parts, digest = chunks(110 * MIB, b"tls")
    c = celld.https(crt, key)
    try:
        status, headers, body = post_chunked(c, furl(root, "/big"), parts)
    finally:
        c.close()
    assert status == 200, body
    assert sha_of(root / "big") == digest
    # The next request over a new TLS connection is served as usual.
    c = celld.https(crt, key)
    try:
        c.request("GET", furl(root, "/big"))
        r = c.getresponse()
        assert r.status == 200 and int(r.getheader("Content-Length")) == 110 * MIB
        r.read()
    finally:
        c.close()


def test_large_body_in_slow_pieces_arrives_whole(celld, root):
    """Part of the body comes with the headers (lws delivers it), the rest
    later in pieces (our reader): nothing lost, duplicated or reordered."""
    data = os.urandom(3 * MIB + 12345)
    s = socket.socket(socket.AF_UNIX)
    s.connect(celld.sock)
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % (furl(root, "/pieces"), len(data))).encode()
    s.sendall(head + data[:1000])
    for off in range(1000, len(data), 700 * 1024):
        time.sleep(0.05)
        s.sendall(data[off:off + 700 * 1024])
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += s.recv(65536)
    s.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert (root / "pieces").read_bytes() == data


def wait_fds(pid, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and fd_count(pid) != want:
        time.sleep(0.05)
    return fd_count(pid)


def test_client_vanishing_mid_chunked_body_leaves_nothing(celld, root):
    pid = celld.proc.pid
    celld.get("/1.0")
    time.sleep(0.2)
    before = fd_count(pid)
    (root / "f").write_bytes(b"old")
    s = socket.socket(socket.AF_UNIX)
    s.connect(celld.sock)
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               % furl(root, "/f")).encode())
    for _ in range(8):
        s.sendall(b"100000\r\n" + b"z" * 0x100000 + b"\r\n")
    time.sleep(0.2)
    s.close()
    assert wait_fds(pid, before) == before
    assert (root / "f").read_bytes() == b"old"
    assert os.listdir(root) == ["f"]
    assert celld.get("/1.0").status == 200


def test_stalled_body_is_dropped(celld, root):
    pid = celld.proc.pid
    celld.get("/1.0")
    time.sleep(0.2)
    before = fd_count(pid)
    s = socket.socket(socket.AF_UNIX)
    s.connect(celld.sock)
    s.settimeout(30)
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (furl(root, "/stall"), 4 * MIB)).encode() + b"s" * MIB)
    t0 = time.time()
    assert s.recv(4096) == b"", "celld kept a stalled upload open"
    waited = time.time() - t0
    s.close()
    assert 5 < waited < 25, waited
    assert wait_fds(pid, before) == before
    assert os.listdir(root) == []


def test_small_bodies_keep_the_connection(celld, root):
    c = celld.conn()
    try:
        for i in range(3):
            c.request("POST", furl(root, "/small%d" % i), body=b"x" * 100000)
            r = c.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("Connection") != "close"
            if i == 0:
                sock = c.sock
            assert c.sock is sock      # http.client reconnects after a close
    finally:
        c.close()
    assert all((root / ("small%d" % i)).read_bytes() == b"x" * 100000 for i in range(3))
