"""Exec sessions (daemon/exec_io.c) end to end, on host processes.

/internal/testing/exec (CELL_TEST_HOOKS=1) takes LXD's exec body and runs
the command on the host through the same session code the containers'
POST /1.0/instances/<name>/exec uses, so the websocket protocol, EOF,
control messages, exit codes, flow control and clean-up are checked before
containers exist.
"""
import hashlib
import os
import statistics
import struct
import tempfile
import threading
import time

import pytest
import websocket

from cellenv import Celld
from wsutil import ws_unix

OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8
GONE = (BrokenPipeError, ConnectionResetError, websocket.WebSocketConnectionClosedException)


def start_exec(celld, command, **kw):
    body = {"command": command, "environment": {}, "wait-for-websocket": True,
            "interactive": False}
    body.update(kw)
    r = celld.request("POST", "/internal/testing/exec", body)
    assert r.status == 202, r
    assert r.json["type"] == "async"
    return r.json["operation"], r.metadata


def connect(celld, url, op, name):
    return ws_unix(celld, "%s/websocket?secret=%s" % (url, op["metadata"]["fds"][name]),
                   timeout=60)


class Session:
    """All of an exec's websockets, connected in LXD's client order."""

    def __init__(self, celld, command, names=None, **kw):
        self.celld = celld
        self.url, self.op = start_exec(celld, command, **kw)
        fds = self.op["metadata"]["fds"]
        self.ws = {}
        for name in names if names is not None else sorted(fds, key=lambda n: n != "control"):
            self.ws[name] = connect(celld, self.url, self.op, name)

    def send(self, data, name="0"):
        self.ws[name].send_binary(data)

    def eof(self, name="0", tolerant=False):
        try:
            self.ws[name].send("")   # LXD's barrier: an empty text message
        except GONE:
            # The command may be over already: celld then closes stdin too.
            if not tolerant:
                raise

    def control(self, msg):
        import json
        self.ws["control"].send(json.dumps(msg))

    def wait(self, timeout=60):
        return self.celld.wait_op(self.url, timeout)

    def close(self):
        for w in self.ws.values():
            try:
                w.close(timeout=1)
            except Exception:
                pass


def read_stream(ws):
    """Binary messages until the end of the websocket, which LXD's barrier
    (an empty text message) announces.  The end is a close frame or, as
    ws.c closes today, the connection going away right after the barrier."""
    out = bytearray()
    barrier = False
    while True:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            assert barrier, "closed without the barrier"
            return bytes(out), barrier
        if opcode == OP_CLOSE:
            return bytes(out), barrier
        if opcode == OP_TEXT:
            assert data == b"", data
            barrier = True
        else:
            assert not barrier, "data after the barrier"
            out += data


def run(celld, command, stdin=b"", **kw):
    s = Session(celld, command, **kw)
    try:
        res = {}
        readers = [threading.Thread(target=lambda n=n: res.__setitem__(n, read_stream(s.ws[n])))
                   for n in ("1", "2")]
        for t in readers:
            t.start()
        if stdin:
            s.send(stdin)
        s.eof(tolerant=True)
        for t in readers:
            t.join(60)
        op = s.wait()
        return op, res["1"][0], res["2"][0]
    finally:
        s.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p))
    return out


def check_concurrent_cat(d, sessions, payloads, io_timeout, join_timeout):
    """Every `cat` session echoes its own payload while all run at once, and the
    daemon keeps serving meanwhile; the sessions are closed afterwards."""
    results = [None] * len(sessions)

    def worker(i):
        s = sessions[i]
        got = {}
        t = threading.Thread(target=lambda: got.__setitem__(1, read_stream(s.ws["1"])))
        t.start()
        s.send(payloads[i])
        s.eof()
        t.join(io_timeout)
        results[i] = got.get(1, (None,))[0]

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sessions))]
        for t in threads:
            t.start()
        t0 = time.time()
        assert d.get("/1.0").status == 200
        assert time.time() - t0 < 2
        for t in threads:
            t.join(join_timeout)
        for i in range(len(sessions)):
            assert results[i] == payloads[i], i
            assert sessions[i].wait()["metadata"]["return"] == 0
    finally:
        for s in sessions:
            s.close()


def stop_and_check_children(d):
    """SIGTERM celld; it must exit 0 and leave no process it spawned alive."""
    spawned = children(d.proc.pid)
    assert spawned
    assert d.stop() == 0
    for p in spawned:
        assert not os.path.exists("/proc/%d" % p) or \
            open("/proc/%d/stat" % p).read().split()[2] == "Z"


def vm_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def test_metadata_and_secrets(celld):
    url, op = start_exec(celld, ["true"])
    assert op["class"] == "websocket"
    assert op["status"] == "Running"
    assert set(op["metadata"]["fds"]) == {"0", "1", "2", "control"}
    assert op["metadata"]["command"] == ["true"]
    assert op["metadata"]["interactive"] is False
    url2, op2 = start_exec(celld, ["true"], interactive=True)
    assert set(op2["metadata"]["fds"]) == {"0", "control"}
    for u, o in ((url, op), (url2, op2)):
        # Control first: once the others are in, `true` may be over already.
        names = sorted(o["metadata"]["fds"], key=lambda n: n != "control")
        ws = {n: connect(celld, u, o, n) for n in names}
        # Each secret opens exactly one websocket.
        with pytest.raises(websocket.WebSocketException):
            connect(celld, u, o, "0")
        for w in ws.values():
            w.close()
        celld.wait_op(u)


def test_stdout_stderr_and_return(celld):
    op, out, err = run(celld, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert op["status"] == "Success", op
    assert op["metadata"]["return"] == 3
    assert out == b"out\n" and err == b"err\n"


@pytest.mark.parametrize("command,code", [
    (["true"], 0),
    (["false"], 1),
    (["sh", "-c", "exit 3"], 3),
    (["/nonexistent/command"], 127),
    (["no-such-command-anywhere"], 127),
    (["/etc/passwd"], 126),
    (["sh", "-c", "kill -9 $$"], 137),
    (["sh", "-c", "kill -15 $$"], 143),
])
def test_exit_codes(celld, command, code):
    op, _, _ = run(celld, command)
    assert op["status"] == "Success", op
    assert op["metadata"]["return"] == code


@pytest.mark.parametrize("command,code", [(["true"], 0), (["sh", "-c", "exit 7"], 7),
                                          (["/nonexistent"], 127), (["sh", "-c", "kill -9 $$"], 137)])
def test_exit_codes_without_websockets(celld, command, code):
    url, op = start_exec(celld, command, **{"wait-for-websocket": False})
    assert op["class"] == "task"
    done = celld.wait_op(url)
    assert done["status"] == "Success", done
    assert done["metadata"]["return"] == code
    assert "output" not in done["metadata"]


def test_binary_stdin_to_stdout_sha256(celld):
    data = os.urandom(10 << 20)
    s = Session(celld, ["cat"])
    try:
        got = {}
        t = threading.Thread(target=lambda: got.__setitem__("1", read_stream(s.ws["1"])))
        t.start()
        for i in range(0, len(data), 256 << 10):
            s.send(data[i:i + (256 << 10)])
        s.eof()
        t.join(120)
        out, barrier = got["1"]
        assert barrier
        assert len(out) == len(data)
        assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest()
        assert read_stream(s.ws["2"])[0] == b""
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()


def test_closing_stdin_websocket_is_eof(celld):
    s = Session(celld, ["sh", "-c", "cat; echo done"])
    try:
        s.send(b"abc")
        s.ws["0"].close()
        assert read_stream(s.ws["1"])[0] == b"abcdone\n"
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()


def test_empty_binary_message_is_eof(celld):
    s = Session(celld, ["cat"])
    try:
        s.send(b"xyz")
        s.ws["0"].send_binary(b"")
        assert read_stream(s.ws["1"])[0] == b"xyz"
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()


def test_interactive_pty_size_and_tty(celld):
    s = Session(celld, ["sh", "-c", "stty size; tty; test -t 0 && echo isatty"],
                interactive=True, width=80, height=24)
    try:
        out, barrier = read_stream(s.ws["0"])
        assert barrier
        text = out.decode()
        assert "24 80" in text, text
        assert "/dev/pts/" in text and "isatty" in text, text
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()


def test_interactive_window_resize(celld):
    s = Session(celld, ["sh", "-c", "stty size; read x; stty size"], interactive=True,
                width=80, height=24)
    try:
        first = b""
        while b"24 80" not in first:
            first += s.ws["0"].recv_data()[1]
        s.control({"command": "window-resize", "args": {"width": "132", "height": "43"}})
        time.sleep(0.2)
        s.send(b"go\n")
        out, _ = read_stream(s.ws["0"])
        assert b"43 132" in out, out
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()


def test_interactive_stdin_eof_is_veof(celld):
    s = Session(celld, ["cat"], interactive=True)
    try:
        s.send(b"partial")
        s.eof()
        out, _ = read_stream(s.ws["0"])
        assert b"partial" in out
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()


def test_interactive_binary_output_unchanged(celld):
    # Output post-processing is the tty's (stty raw here); bytes pass untouched.
    blob = bytes(range(256)) * 64
    with tempfile.NamedTemporaryFile() as f:
        f.write(blob)
        f.flush()
        s = Session(celld, ["sh", "-c", "stty raw -echo; cat %s" % f.name], interactive=True)
        try:
            out, _ = read_stream(s.ws["0"])
            assert out == blob
            assert s.wait()["metadata"]["return"] == 0
        finally:
            s.close()


def test_signal_control_message(celld):
    s = Session(celld, ["sleep", "30"])
    try:
        time.sleep(0.2)
        t0 = time.time()
        s.control({"command": "signal", "signal": 15})
        assert read_stream(s.ws["1"])[0] == b""
        op = s.wait()
        assert op["metadata"]["return"] == 143
        assert time.time() - t0 < 5
    finally:
        s.close()


def test_closing_control_kills_command(celld):
    s = Session(celld, ["sleep", "30"])
    try:
        time.sleep(0.2)
        s.ws["control"].close()
        op = s.wait(timeout=10)
        assert op["metadata"]["return"] == 137
    finally:
        s.close()


def test_command_held_until_all_websockets_connect(celld, tmp_path):
    marker = tmp_path / "ran"
    url, op = start_exec(celld, ["touch", str(marker)])
    ws = [connect(celld, url, op, n) for n in ("control", "0", "1")]
    time.sleep(0.5)
    assert not marker.exists()
    ws.append(connect(celld, url, op, "2"))
    done = celld.wait_op(url)
    assert done["metadata"]["return"] == 0
    assert marker.exists()
    for w in ws:
        w.close()


def test_interactive_needs_control_connected(celld, tmp_path):
    marker = tmp_path / "ran"
    url, op = start_exec(celld, ["touch", str(marker)], interactive=True)
    w0 = connect(celld, url, op, "0")
    time.sleep(0.5)
    assert not marker.exists()
    wc = connect(celld, url, op, "control")
    celld.wait_op(url)
    assert marker.exists()
    w0.close()
    wc.close()


def test_connect_timeout_fails_without_running(celld, tmp_path):
    marker = tmp_path / "ran"
    url, op = start_exec(celld, ["touch", str(marker)])
    w = connect(celld, url, op, "0")
    t0 = time.time()
    done = celld.wait_op(url, timeout=20)
    assert 4 < time.time() - t0 < 10
    assert done["status"] == "Failure"
    assert done["err"] == "Timed out waiting for websockets to connect"
    assert "return" not in done["metadata"]
    time.sleep(0.2)
    assert not marker.exists()
    w.close()


def test_record_output(celld):
    url, op = start_exec(celld, ["sh", "-c", "echo out; printf 'e\\0r' >&2; exit 4"],
                         **{"wait-for-websocket": False, "record-output": True})
    done = celld.wait_op(url)
    md = done["metadata"]
    assert md["return"] == 4
    base = "/internal/testing/exec/logs/exec_%s" % op["id"]
    assert md["output"] == {"1": base + ".stdout", "2": base + ".stderr"}
    logdir = os.path.join(celld.dir, "logs", "testing-exec")
    with open(os.path.join(logdir, "exec_%s.stdout" % op["id"]), "rb") as f:
        assert f.read() == b"out\n"
    with open(os.path.join(logdir, "exec_%s.stderr" % op["id"]), "rb") as f:
        assert f.read() == b"e\0r"


def test_invalid_combinations(celld):
    r = celld.request("POST", "/internal/testing/exec",
                      {"command": ["true"], "wait-for-websocket": True, "record-output": True})
    assert r.status == 400
    r = celld.request("POST", "/internal/testing/exec", {"command": []})
    assert r.status == 400


def test_leftover_background_process_does_not_hold_session(celld):
    t0 = time.time()
    op, out, _ = run(celld, ["sh", "-c", "sleep 3 & echo hi"])
    assert out == b"hi\n"
    assert op["metadata"]["return"] == 0
    assert time.time() - t0 < 2.5


def test_stdout_backpressure_bounds_memory(celld):
    pid = celld.proc.pid
    before = vm_kb(pid, "VmRSS")
    s = Session(celld, ["head", "-c", str(200 << 20), "/dev/zero"])
    try:
        time.sleep(1.5)       # the process fills what celld lets it, then blocks
        grown = vm_kb(pid, "VmRSS") - before
        total = len(read_stream(s.ws["1"])[0])
        assert total == 200 << 20
        assert s.wait()["metadata"]["return"] == 0
        # Stalled, celld held a few MB of output at most, not 200.
        assert grown < 32 << 10, grown
    finally:
        s.close()


def test_stdin_backpressure_pauses_client(celld):
    pid = celld.proc.pid
    s = Session(celld, ["sh", "-c", "sleep 2; cat >/dev/null; echo ok"])
    try:
        before = vm_kb(pid, "VmRSS")
        chunk = b"\1" * (1 << 20)
        t0 = time.time()
        for _ in range(64):
            s.send(chunk)     # blocks while the process is not reading
        assert time.time() - t0 > 1.0, "celld buffered the whole stdin"
        grown = vm_kb(pid, "VmRSS") - before
        s.eof()
        assert read_stream(s.ws["1"])[0] == b"ok\n"
        assert s.wait()["metadata"]["return"] == 0
        assert grown < 48 << 10, grown
    finally:
        s.close()


def test_many_concurrent_sessions(celld):
    n = 50
    sessions = [Session(celld, ["cat"]) for _ in range(n)]
    check_concurrent_cat(celld, sessions, [os.urandom(200000 + i) for i in range(n)], 60, 120)


def test_no_fd_or_process_leaks(celld):
    pid = celld.proc.pid
    run(celld, ["true"])          # warm up lazily opened daemon fds
    time.sleep(0.3)
    before = fd_count(pid)
    for i in range(10):
        run(celld, ["sh", "-c", "echo %d" % i])
        s = Session(celld, ["cat"], interactive=True)
        s.send(b"x")
        s.eof()
        read_stream(s.ws["0"])
        s.wait()
        s.close()
        url, _ = start_exec(celld, ["true"], **{"wait-for-websocket": False, "record-output": True})
        celld.wait_op(url)
    s = Session(celld, ["sleep", "30"])
    s.ws["control"].close()
    s.wait()
    s.close()
    deadline = time.time() + 5
    while time.time() < deadline and fd_count(pid) != before:
        time.sleep(0.1)
    assert fd_count(pid) == before
    assert children(pid) == []


def shutdown_with(tmp_path, setup):
    """Stop celld (SIGTERM) while sessions are open: it must exit 0, clean
    under the sanitizers, with every process it spawned gone."""
    (tmp_path / "cell").mkdir()
    d = Celld(cell_dir=str(tmp_path / "cell")).start()
    try:
        keep = setup(d)
        time.sleep(0.3)
        stop_and_check_children(d)
        for w in keep:
            w.close()
    finally:
        d.cleanup()


def test_shutdown_with_running_sessions(tmp_path):
    def setup(d):
        running = Session(d, ["sleep", "1000"])
        interactive = Session(d, ["sleep", "1000"], interactive=True)
        start_exec(d, ["sleep", "1000"], **{"wait-for-websocket": False})
        return [running, interactive]
    shutdown_with(tmp_path, setup)


def test_shutdown_with_session_waiting_for_websockets(tmp_path):
    """Its connect-timeout timer is alive when the server shuts down: with
    libwebsockets 4.1 on a foreign loop that once left the lws context
    unfreed (lws_context_destroy() must finish after uv_run() returns)."""
    marker = tmp_path / "never"

    def setup(d):
        url, op = start_exec(d, ["touch", str(marker)])
        return [connect(d, url, op, "0")]
    shutdown_with(tmp_path, setup)
    assert not marker.exists()


# ---- measurements (printed; timings belong in bench/, not in assertions) ----

def fast_drain(ws):
    """Count payload bytes until the close frame, parsing frames directly."""
    sock = ws.sock
    hdr = bytearray(14)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0

    def exact(v, n):
        got = 0
        while got < n:
            k = sock.recv_into(v[got:n], n - got)
            if not k:
                raise EOFError
            got += k

    while True:
        exact(memoryview(hdr), 2)
        opcode = hdr[0] & 0x0F
        n = hdr[1] & 0x7F
        if n == 126:
            exact(memoryview(hdr)[2:], 2)
            n = struct.unpack(">H", hdr[2:4])[0]
        elif n == 127:
            exact(memoryview(hdr)[2:], 8)
            n = struct.unpack(">Q", hdr[2:10])[0]
        while n:
            k = min(n, len(buf))
            exact(view, k)
            if opcode in (OP_BINARY, 0):
                total += k
            n -= k
        if opcode in (OP_CLOSE, OP_TEXT):   # the barrier ends the stream
            return total


def test_measure_stdout_throughput(celld, tmp_path):
    size = 1 << 30
    s = Session(celld, ["head", "-c", str(size), "/dev/zero"])
    try:
        t0 = time.time()
        got = fast_drain(s.ws["1"])
        dt = time.time() - t0
        assert got == size
        assert s.wait()["metadata"]["return"] == 0
        print("\nexec stdout throughput: %.0f MB/s (%d bytes in %.2fs)" % (
            size / dt / 1e6, size, dt))
    finally:
        s.close()


def test_measure_exec_round_trip(celld):
    times = []
    for _ in range(50):
        t0 = time.time()
        op, _, _ = run(celld, ["true"])
        times.append(time.time() - t0)
        assert op["metadata"]["return"] == 0
    print("\nexec true round trip (POST, 4 websockets, wait): median %.2f ms, p90 %.2f ms" % (
        statistics.median(times) * 1e3, sorted(times)[int(len(times) * 0.9)] * 1e3))
