"""celld as a process: restarts keep state, one daemon per CELL_DIR, signals,
the socket's mode and group, logging options, crash recovery, --help/--version."""
import grp
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

from cellenv import (CELLD, Celld, cert_b64_der, cert_fingerprint, curl_https, enable_https_tls,
                     free_port, make_client_cert, port_open, stop_checked, wait_https)
from wsutil import ws_unix


@pytest.fixture
def cleanup_daemons():
    """Daemons a test starts itself: killed (by pid) and removed even on failure."""
    started = []
    yield started
    for d in started:
        d.kill()
        d.cleanup()


def run_celld(args, env=None, timeout=20):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([CELLD] + list(args), capture_output=True, text=True, env=e,
                          timeout=timeout)


# ---- restart ---------------------------------------------------------------------------

def test_restart_keeps_config_certificates_and_identity(tmp_path, cleanup_daemons):
    d = Celld()
    cleanup_daemons.append(d)
    d.start()
    port = free_port()
    pw = "restart-pw-" + uuid.uuid4().hex[:8]
    r = d.request("PATCH", "/1.0", {"config": {
        "core.https_address": "127.0.0.1:%d" % port, "core.trust_password": pw,
        "user.note": "kept", "images.remote_cache_expiry": "3"}})
    assert r.status == 200, r
    assert wait_https(port)
    a_crt, a_key = make_client_cert(str(tmp_path), "alpha")
    b_crt, _ = make_client_cert(str(tmp_path), "beta")
    r = curl_https(port, "POST", "/1.0/certificates", a_crt, a_key,
                   body={"type": "client", "password": pw})
    assert r.status == 201, r
    r = d.request("POST", "/1.0/certificates", {"type": "client", "name": "bee",
                                                "certificate": cert_b64_der(b_crt)})
    assert r.status == 201, r
    assert d.request("PATCH", "/1.0/certificates/" + cert_fingerprint(a_crt),
                     {"name": "alpha-renamed"}).status == 200

    before = d.get("/1.0").metadata
    certs_before = sorted(d.get("/1.0/certificates?recursion=1").metadata,
                          key=lambda c: c["fingerprint"])
    with open(os.path.join(d.dir, "server.crt"), "rb") as f:
        crt_before = f.read()
    old_pid = d.proc.pid

    stop_checked(d)
    assert not os.path.exists(d.sock)
    assert not port_open(port)

    d.start()
    assert d.proc.pid != old_pid
    after = d.get("/1.0").metadata
    assert after["config"] == before["config"] == {
        "core.https_address": "127.0.0.1:%d" % port, "core.trust_password": True,
        "user.note": "kept", "images.remote_cache_expiry": "3"}
    env_b, env_a = before["environment"], after["environment"]
    assert env_a["certificate_fingerprint"] == env_b["certificate_fingerprint"]
    assert env_a["certificate"] == env_b["certificate"]
    assert env_a["server_pid"] == d.proc.pid
    assert env_a["addresses"] == ["127.0.0.1:%d" % port]
    with open(os.path.join(d.dir, "server.crt"), "rb") as f:
        assert f.read() == crt_before
    certs_after = sorted(d.get("/1.0/certificates?recursion=1").metadata,
                         key=lambda c: c["fingerprint"])
    assert certs_after == certs_before
    assert {c["name"] for c in certs_after} == {"alpha-renamed", "bee"}

    # HTTPS is back on its own, the trusted client is still trusted, the password still works.
    assert wait_https(port)
    r = curl_https(port, "GET", "/1.0/certificates", a_crt, a_key)
    assert r.status == 200, r
    c_crt, c_key = make_client_cert(str(tmp_path), "gamma")
    r = curl_https(port, "POST", "/1.0/certificates", c_crt, c_key,
                   body={"type": "client", "password": "wrong"})
    assert r.status == 403, r
    r = curl_https(port, "POST", "/1.0/certificates", c_crt, c_key,
                   body={"type": "client", "password": pw})
    assert r.status == 201, r
    stop_checked(d)


def test_second_daemon_on_same_dir_refused(celld):
    st = os.stat(celld.sock)
    p = run_celld([], env={"CELL_DIR": celld.dir}, timeout=20)
    assert p.returncode != 0
    msg = p.stdout + p.stderr
    assert "already running" in msg, msg
    assert str(celld.proc.pid) in msg, msg
    # The first one is untouched: same socket, same process, still serving.
    st2 = os.stat(celld.sock)
    assert (st2.st_ino, st2.st_dev) == (st.st_ino, st.st_dev)
    assert celld.proc.poll() is None
    r = celld.get("/1.0")
    assert r.status == 200 and r.metadata["environment"]["server_pid"] == celld.proc.pid


# ---- signals ------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_clients_connected(sig, cleanup_daemons):
    d = Celld()
    cleanup_daemons.append(d)
    d.start()
    port = enable_https_tls(d)
    # Clients in every state: an event subscriber, a waiter on a running
    # operation, a half-sent request, an idle keep-alive HTTPS connection.
    ws = ws_unix(d, "/1.0/events")
    r = d.request("POST", "/internal/testing/operations", {"duration_ms": 30000, "cancellable": True})
    op = r.json["operation"]
    waiter = d.conn()
    waiter.request("GET", op + "/wait?timeout=60")
    half = socket.socket(socket.AF_UNIX)
    half.connect(d.sock)
    half.sendall(b"GET /1.0 HTTP/1.1\r\nHost: x\r\n")
    tls = d.https()
    tls.request("GET", "/1.0")
    assert tls.getresponse().read()
    time.sleep(0.2)

    t0 = time.time()
    rc = d.stop(sig, timeout=15)
    assert rc == 0, d.stderr()[-3000:]
    assert time.time() - t0 < 10
    assert not os.path.exists(d.sock)
    assert not port_open(port)
    for c in (ws, waiter, half, tls):
        try:
            c.close()
        except Exception:
            pass


def test_kill9_then_start(cleanup_daemons):
    d = Celld()
    cleanup_daemons.append(d)
    d.start()
    port = enable_https_tls(d)
    assert d.request("PATCH", "/1.0", {"config": {"user.before": "crash"}}).status == 200
    fp = d.get("/1.0").metadata["environment"]["certificate_fingerprint"]
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d._stderr.close()
    assert os.path.exists(d.sock), "stale socket expected after SIGKILL"
    with pytest.raises(OSError):      # nobody behind it
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(d.sock)
        finally:
            s.close()

    d.start()
    md = d.get("/1.0").metadata
    assert md["config"] == {"core.https_address": "127.0.0.1:%d" % port, "user.before": "crash"}
    assert md["environment"]["certificate_fingerprint"] == fp
    assert md["environment"]["server_pid"] == d.proc.pid
    assert wait_https(port)
    assert curl_https(port, "GET", "/1.0").status == 200
    stop_checked(d)
    assert not os.path.exists(d.sock)


# ---- the socket ---------------------------------------------------------------------------

def test_socket_mode_and_default_group(celld):
    st = os.stat(celld.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert st.st_uid == 0 and st.st_gid == 0


@pytest.fixture
def temp_group():
    name = "cellt%s" % uuid.uuid4().hex[:8]
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def test_group_option_sets_socket_group(temp_group, cleanup_daemons):
    d = Celld(args=["--group", temp_group])
    cleanup_daemons.append(d)
    d.start()
    st = os.stat(d.sock)
    assert st.st_gid == grp.getgrnam(temp_group).gr_gid
    assert stat.S_IMODE(st.st_mode) == 0o660
    stop_checked(d)


def test_unknown_group_refused(tmp_path):
    name = "nogroup%s" % uuid.uuid4().hex[:8]
    cell_dir = str(tmp_path / "state")
    p = run_celld(["--group", name], env={"CELL_DIR": cell_dir})
    assert p.returncode != 0
    assert name in p.stderr and "group" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(cell_dir, "unix.socket"))
    # The lock went with the process: a normal start works now.
    d = Celld(cell_dir=cell_dir)
    try:
        d.start()
        stop_checked(d)
    finally:
        d.kill()


# ---- logging ------------------------------------------------------------------------------

def start_op(d, **body):
    r = d.request("POST", "/internal/testing/operations", body)
    assert r.status == 202, r
    return r.json["operation"], r.metadata["id"]


def test_logfile_option(tmp_path, cleanup_daemons):
    log = str(tmp_path / "celld.log")
    d = Celld(args=["--logfile", log])
    cleanup_daemons.append(d)
    d.start()
    url, op_id = start_op(d, duration_ms=10)
    d.wait_op(url)
    stop_checked(d)
    with open(log) as f:
        text = f.read()
    assert "ready on " + d.sock in text
    assert op_id in text
    assert "celld stopped" in text
    assert "ready on" not in d.stderr()


def test_logfile_unwritable(tmp_path):
    cell_dir = str(tmp_path / "state")
    p = run_celld(["--logfile", str(tmp_path / "no" / "such" / "dir" / "log")],
                  env={"CELL_DIR": cell_dir})
    assert p.returncode != 0
    assert "log" in p.stderr.lower(), p.stderr
    assert not os.path.exists(os.path.join(cell_dir, "unix.socket"))


def run_with_flags(flags, tmp_path):
    """Start celld with exactly these flags (the harness always adds --debug),
    run one operation, stop it; returns its stderr."""
    cell_dir = tempfile.mkdtemp(prefix="cell-test-", dir=str(tmp_path))
    errpath = os.path.join(cell_dir, "celld.stderr")
    env = dict(os.environ, CELL_DIR=cell_dir, CELL_TEST_HOOKS="1")
    with open(errpath, "wb") as err:
        p = subprocess.Popen([CELLD] + flags, env=env, stdout=err, stderr=err)
    d = Celld(cell_dir=cell_dir)
    d.proc = p
    d._stderr = open(errpath, "ab")
    try:
        d.wait_ready()
        url, op_id = start_op(d, duration_ms=10)
        d.wait_op(url)
        assert d.get("/1.0/certificates").status == 200
        stop_checked(d)
        return d.stderr(), op_id
    finally:
        d.kill()


def test_log_levels(tmp_path):
    quiet, op = run_with_flags([], tmp_path)
    assert "ready on" not in quiet and op not in quiet, quiet
    assert not re.search(r"\b(info|debug)\b", quiet), quiet

    verbose, op = run_with_flags(["--verbose"], tmp_path)
    assert "ready on" in verbose
    assert not re.search(r"\bdebug\b", verbose), verbose

    debug, op = run_with_flags(["--debug"], tmp_path)
    assert "ready on" in debug
    op_lines = [line for line in debug.splitlines() if op in line]
    assert op_lines and any("debug" in line and "finished" in line for line in op_lines), debug


def test_debug_logs_requests(tmp_path):
    debug, _ = run_with_flags(["--debug"], tmp_path)
    assert re.search(r"GET\s+/1\.0/certificates", debug), debug


# ---- command line --------------------------------------------------------------------------

def test_help_and_version(tmp_path, celld):
    cell_dir = str(tmp_path / "never-created")
    for flag in ("--help", "-h"):
        p = run_celld([flag], env={"CELL_DIR": cell_dir})
        assert p.returncode == 0, p
        assert p.stdout.startswith("Usage: celld")
        for opt in ("--group", "--logfile", "--debug", "--verbose", "--version"):
            assert opt in p.stdout, opt
    p = run_celld(["--version"], env={"CELL_DIR": cell_dir})
    assert p.returncode == 0
    version = p.stdout.strip()
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", version), version
    assert version == celld.get("/1.0").metadata["environment"]["server_version"]
    assert not os.path.exists(cell_dir)


@pytest.mark.parametrize("args", [["--bogus"], ["extra-arg"], ["--group"], ["--logfile"]])
def test_bad_command_line(tmp_path, args):
    cell_dir = str(tmp_path / "never-created")
    p = run_celld(args, env={"CELL_DIR": cell_dir})
    assert p.returncode != 0
    assert p.stderr.strip(), p
    assert not os.path.exists(cell_dir)


def test_fresh_cell_dir_is_created(tmp_path, cleanup_daemons):
    cell_dir = str(tmp_path / "a" / "b" / "state")
    d = Celld(cell_dir=cell_dir)
    d.stderr_path = str(tmp_path / "celld.stderr")   # the dir does not exist yet
    cleanup_daemons.append(d)
    d.start()
    assert stat.S_IMODE(os.stat(cell_dir).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(os.path.join(cell_dir, "server.key")).st_mode) & 0o077 == 0
    assert os.path.isdir(os.path.join(cell_dir, "database"))
    with open(os.path.join(cell_dir, "celld.lock")) as f:
        assert f.read().strip() == str(d.proc.pid)
    stop_checked(d)
