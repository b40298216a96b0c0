"""/1.0/instances/<name>/console on real busybox containers: attach over
websockets "0" + "control" (output, input, window-resize, detach, one
client at a time, the container stopping underneath), the console log
(GET while running and stopped, DELETE clears it and logging goes on),
bad input and no leaked fds."""
import json
import threading
import time

import pytest
import websocket

from cellenv import Celld
import images_fixture as fx
from images_fixture import unique
from test_exec_io import GONE, fd_count
from test_instances_exec import run
from wsutil import ws_unix


@pytest.fixture(scope="module")
def env():
    d = Celld().start()
    try:
        name = unique("co")
        fx.create_busybox(d, name, start=True)
        yield d, name
        assert d.stop() == 0, d.stderr()[-4000:]
    finally:
        fx.cleanup_celld(d)


def sh(d, name, script):
    op, out, err = run(d, name, ["sh", "-c", script])
    assert op["metadata"]["return"] == 0, (script, out, err)
    return out.decode()


class Console:
    def __init__(self, d, name, **body):
        self.d = d
        r = d.request("POST", "/1.0/instances/%s/console" % name, body)
        assert r.status == 202, r
        self.url = r.json["operation"]
        self.op = r.metadata
        self.ws = {}
        self.out = bytearray()
        self.reader = None

    def connect(self, fd):
        self.ws[fd] = ws_unix(self.d, "%s/websocket?secret=%s" % (
            self.url, self.op["metadata"]["fds"][fd]), timeout=30)
        return self.ws[fd]

    def attach(self):
        self.connect("control")
        self.connect("0")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        try:
            while True:
                opcode, data = self.ws["0"].recv_data()
                if opcode == 0x8:
                    return
                self.out += data
        except (websocket.WebSocketException, OSError):
            return

    def wait_for(self, needle, timeout=10):
        deadline = time.time() + timeout
        while needle not in self.out and time.time() < deadline:
            time.sleep(0.05)
        return needle in self.out

    def close(self):
        for w in self.ws.values():
            try:
                w.close(timeout=1)
            except Exception:
                pass


def test_attach_output_input_and_detach(env):
    d, name = env
    c = Console(d, name, width=100, height=30)
    assert c.op["class"] == "websocket"
    assert sorted(c.op["metadata"]["fds"]) == ["0", "control"]
    assert c.op["resources"]["instances"] == ["/1.0/instances/" + name]
    c.attach()
    try:
        time.sleep(0.3)
        sh(d, name, "echo hello-from-console > /dev/console")
        assert c.wait_for(b"hello-from-console"), bytes(c.out)
        # Input typed on "0" reaches the console's readers.
        r = d.request("POST", "/1.0/instances/%s/exec" % name,
                      {"command": ["sh", "-c", "head -n 1 /dev/console > /tmp/typed"],
                       "wait-for-websocket": False})
        reader = r.json["operation"]
        time.sleep(0.5)
        c.ws["0"].send_binary(b"typed-line\r")
        assert d.wait_op(reader, timeout=15)["metadata"]["return"] == 0
        assert sh(d, name, "cat /tmp/typed").strip() == "typed-line"
        c.ws["control"].send(json.dumps({"command": "window-resize",
                                         "args": {"width": "120", "height": "40"}}))
        c.ws["control"].send("not json")   # ignored, as LXD does
        assert d.get(c.url).metadata["status"] == "Running"
        # Detaching (closing control, as `lxc console` does) ends the operation.
        c.ws["control"].close()
        op = d.wait_op(c.url, timeout=10)
        assert op["status"] == "Success", op
    finally:
        c.close()
    # The console is free again for the next client.
    c2 = Console(d, name).attach()
    try:
        time.sleep(0.3)
        sh(d, name, "echo second-client > /dev/console")
        assert c2.wait_for(b"second-client")
    finally:
        c2.close()
        assert d.wait_op(c2.url, timeout=10)["status"] == "Success"


def test_one_client_at_a_time(env):
    d, name = env
    first = Console(d, name).attach()
    try:
        time.sleep(0.3)
        second = Console(d, name).attach()
        op = d.wait_op(second.url, timeout=10)
        assert op["status"] == "Failure" and "in use" in op["err"], op
        second.close()
        sh(d, name, "echo still-first > /dev/console")
        assert first.wait_for(b"still-first")
    finally:
        first.close()
        d.wait_op(first.url, timeout=10)


def test_console_log_get_and_delete(env):
    d, name = env
    marker = unique("log")
    sh(d, name, "echo %s > /dev/console" % marker)
    deadline = time.time() + 5
    while time.time() < deadline:
        r = d.get("/1.0/instances/%s/console" % name)
        if marker.encode() in r.body:
            break
        time.sleep(0.1)
    assert r.status == 200 and marker.encode() in r.body, r
    assert r.headers["content-type"] == "application/octet-stream"
    r = d.request("DELETE", "/1.0/instances/%s/console" % name)
    assert r.status == 200 and r.json["type"] == "sync", r
    assert d.get("/1.0/instances/%s/console" % name).body == b""
    # liblxc keeps appending after the clear: no hole of NULs where the old log was.
    sh(d, name, "echo after-clear > /dev/console")
    deadline = time.time() + 5
    while time.time() < deadline and b"after-clear" not in r.body:
        r = d.get("/1.0/instances/%s/console" % name)
        time.sleep(0.1)
    assert b"after-clear" in r.body and b"\0" not in r.body, r.body[:200]
    assert d.get("/1.0/containers/%s/console" % name).status == 200


def test_stopped_and_never_started(env):
    d, name = env
    other = unique("cs")
    fx.create_busybox(d, other)
    try:
        r = d.get("/1.0/instances/%s/console" % other)
        assert r.status == 200 and r.body == b"", r          # never started: empty log
        assert d.request("DELETE", "/1.0/instances/%s/console" % other).status == 200
        r = d.request("POST", "/1.0/instances/%s/console" % other, {})
        assert r.status == 400 and r.json["error"] == "Instance is not running", r
        fx.state(d, other, "start")
        sh(d, other, "echo before-stop > /dev/console")
        c = Console(d, other).attach()
        time.sleep(0.3)
        # The container stopping under an attached client ends the session.
        fx.state(d, other, "stop", force=True)
        op = d.wait_op(c.url, timeout=15)
        assert op["status"] == "Success", op
        c.close()
        assert d.get("/1.0/instances/%s/console" % other).status == 200
    finally:
        fx.state(d, other, "stop", force=True, ok=False)
        fx.wait(d, d.request("DELETE", "/1.0/instances/" + other))


def test_console_log_kept_after_stop(env):
    d, _ = env
    other = unique("cl")
    fx.create_busybox(d, other, start=True)
    try:
        sh(d, other, "echo before-stop > /dev/console")
        fx.state(d, other, "stop", force=True)
        r = d.get("/1.0/instances/%s/console" % other)
        assert r.status == 200 and b"before-stop" in r.body, r
    finally:
        fx.state(d, other, "stop", force=True, ok=False)
        fx.wait(d, d.request("DELETE", "/1.0/instances/" + other))


def test_bad_requests(env):
    d, name = env
    for m in ("GET", "DELETE", "POST"):
        r = d.request(m, "/1.0/instances/nope-%s/console" % name, {} if m == "POST" else None)
        assert r.status == 404 and r.json["error"] == "Instance not found", (m, r)
    for body, word in [({"type": "vga"}, "VGA"), ({"type": "serial"}, "Unknown console type"),
                       ({"width": -1}, "width"), ({"height": "x"}, "height")]:
        r = d.request("POST", "/1.0/instances/%s/console" % name, body)
        assert r.status == 400 and word in r.json["error"], (body, r)
    # Nobody connects: the operation gives up and the console stays free.
    c = Console(d, name)
    op = d.wait_op(c.url, timeout=20)
    assert op["status"] == "Failure" and "Timed out" in op["err"], op
    with pytest.raises(websocket.WebSocketException):
        c.connect("0")
    # A wrong secret and a second connection on a used secret are refused.
    c = Console(d, name)
    try:
        with pytest.raises(websocket.WebSocketException):
            ws_unix(d, "%s/websocket?secret=%s" % (c.url, "0" * 64))
        c.attach()
        with pytest.raises(websocket.WebSocketException):
            c.connect("0")
    finally:
        for w in list(c.ws.values()):
            try:
                w.close()
            except GONE:
                pass
        d.wait_op(c.url, timeout=10)


def test_no_fd_leaks(env):
    d, name = env
    pid = d.proc.pid
    c = Console(d, name).attach()
    time.sleep(0.3)
    c.close()
    d.wait_op(c.url, timeout=10)
    time.sleep(0.3)
    before = fd_count(pid)
    for i in range(10):
        c = Console(d, name).attach()
        time.sleep(0.1)
        c.ws["0"].send_binary(b"\r")
        c.close()
        d.wait_op(c.url, timeout=10)
        d.get("/1.0/instances/%s/console" % name)
        d.request("POST", "/1.0/instances/%s/console" % name, {"type": "vga"})
    deadline = time.time() + 5
    while time.time() < deadline and fd_count(pid) != before:
        time.sleep(0.1)
    assert fd_count(pid) == before
    # Detaching right after typing must not take the container down (see
    # CON_LINGER_MS in inst_console.c).
    assert fx.status(d, name) == "Running"


def test_daemon_stops_with_consoles_open():
    """SIGTERM with one console attached and one waiting for its websockets:
    celld exits 0, sanitizer-clean, and the container keeps running."""
    d = Celld().start()   # not under tmp_path: the container's root must reach its rootfs
    try:
        name = unique("cd")
        fx.create_busybox(d, name, start=True)
        attached = Console(d, name).attach()
        time.sleep(0.3)
        Console(d, name)   # never connected
        assert d.stop() == 0
        attached.close()
        assert fx.attach(d, name, "true").returncode == 0   # still running
    finally:
        fx.cleanup_celld(d)
