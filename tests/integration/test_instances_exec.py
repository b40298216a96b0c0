"""POST /1.0/instances/<name>/exec on real busybox containers (unprivileged,
ids mapped): websockets, binary stdin/stdout, separate stderr, exit codes,
the interactive pty inside the container's devpts (size, resize, ^C,
ownership), LXD's environment defaults, user/group/cwd, record-output
served under logs/exec-output, signals, 50 concurrent sessions, bad input
and no leaked fds or processes.  Helpers are shared with
test_exec_files_lxd_clients.py."""
import hashlib
import json
import os
import signal
import statistics
import threading
import time

import pytest
import websocket

from cellenv import Celld
import images_fixture as fx
from images_fixture import unique
from test_exec_io import GONE, children, fd_count, read_stream, stop_and_check_children,\
    check_concurrent_cat
from wsutil import ws_unix


@pytest.fixture(scope="module")
def env():
    """One daemon and one running unprivileged container for the module."""
    d = Celld().start()
    try:
        name = unique("ex")
        fx.create_busybox(d, name, start=True)
        yield d, name
        assert d.stop() == 0, d.stderr()[-4000:]
    finally:
        fx.cleanup_celld(d)


def post_exec(d, name, command, **kw):
    body = {"command": command, "environment": {}, "wait-for-websocket": True,
            "interactive": False}
    body.update(kw)
    return d.request("POST", "/1.0/instances/%s/exec" % name, body)


class Session:
    """An exec on a container with its websockets connected in LXD's order
    (control first, as the lxc client does)."""

    def __init__(self, d, name, command, connect=True, **kw):
        self.d = d
        r = post_exec(d, name, command, **kw)
        assert r.status == 202, r
        self.url = r.json["operation"]
        self.op = r.metadata
        self.ws = {}
        if connect:
            for fd in sorted(self.op["metadata"]["fds"], key=lambda n: n != "control"):
                self.ws[fd] = self.connect(fd)

    def connect(self, fd, secret=None):
        secret = secret or self.op["metadata"]["fds"][fd]
        return ws_unix(self.d, "%s/websocket?secret=%s" % (self.url, secret), timeout=60)

    def send(self, data, fd="0"):
        self.ws[fd].send_binary(data)

    def eof(self, fd="0"):
        try:
            self.ws[fd].send("")
        except GONE:
            pass

    def control(self, msg):
        self.ws["control"].send(json.dumps(msg))

    def wait(self, timeout=60):
        return self.d.wait_op(self.url, timeout)

    def close(self):
        for w in self.ws.values():
            try:
                w.close(timeout=1)
            except Exception:
                pass


def run(d, name, command, stdin=b"", **kw):
    """Non-interactive: (operation, stdout, stderr)."""
    s = Session(d, name, command, **kw)
    try:
        res = {}
        readers = [threading.Thread(target=lambda n=n: res.__setitem__(n, read_stream(s.ws[n])))
                   for n in ("1", "2")]
        for t in readers:
            t.start()
        if stdin:
            s.send(stdin)
        s.eof()
        for t in readers:
            t.join(120)
        return s.wait(), res["1"][0], res["2"][0]
    finally:
        s.close()


def run_tty(d, name, command, inputs=(), width=80, height=24, settle=0.3, **kw):
    """Interactive: (operation, everything the pty printed)."""
    s = Session(d, name, command, interactive=True, width=width, height=height, **kw)
    try:
        out = {}
        t = threading.Thread(target=lambda: out.__setitem__(0, read_stream(s.ws["0"])[0]))
        t.start()
        for i in inputs:
            time.sleep(settle)
            if isinstance(i, dict):
                s.control(i)
            else:
                s.send(i)
        t.join(60)
        return s.wait(), out.get(0, b"")
    finally:
        s.close()


# ---- non-interactive ------------------------------------------------------------------

def test_metadata_defaults_and_output(env):
    d, name = env
    r = post_exec(d, name, ["true"])
    assert r.status == 202 and r.json["type"] == "async", r
    op = r.metadata
    assert op["class"] == "websocket"
    assert sorted(op["metadata"]["fds"]) == ["0", "1", "2", "control"]
    assert op["metadata"]["command"] == ["true"]
    assert op["metadata"]["interactive"] is False
    assert op["metadata"]["environment"] == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root", "USER": "root", "LANG": "C.UTF-8"}
    assert op["resources"]["instances"] == ["/1.0/instances/" + name]
    # Nobody connects: LXD's 5 s connect timeout fails it without running anything.
    done = d.wait_op(r.json["operation"], timeout=20)
    assert done["status"] == "Failure" and "Timed out" in done["err"], done


def test_stdout_stderr_separate_and_environment(env):
    d, name = env
    fx.wait(d, d.request("PATCH", "/1.0/instances/" + name, {"config": {
        "environment.FROM_CONFIG": "cfg", "environment.LANG": "xx"}}))
    try:
        op, out, err = run(d, name, ["sh", "-c", "env; pwd; echo to-err >&2; exit 3"],
                           environment={"FROM_BODY": "body", "LANG": "body-lang"})
    finally:
        fx.wait(d, d.request("PATCH", "/1.0/instances/" + name, {"config": {
            "environment.FROM_CONFIG": "", "environment.LANG": ""}}))
        cfg = d.get("/1.0/instances/" + name).metadata["config"]
        assert "environment.LANG" not in cfg, cfg
    assert op["status"] == "Success", op
    assert op["metadata"]["return"] == 3
    lines = out.decode().split("\n")
    env_ = dict(l.split("=", 1) for l in lines if "=" in l)
    assert env_["FROM_BODY"] == "body" and env_["FROM_CONFIG"] == "cfg"
    assert env_["LANG"] == "body-lang"            # the request wins over the config
    assert env_["HOME"] == "/root" and env_["USER"] == "root"
    assert env_["PATH"].startswith("/usr/local/sbin:")
    assert "/root" in lines                       # cwd defaults to $HOME, as LXD
    assert err == b"to-err\n"


@pytest.mark.parametrize("command,code", [
    (["true"], 0),
    (["false"], 1),
    (["no-such-command-here"], 127),
    (["/etc/passwd"], 126),
    (["sh", "-c", "kill -9 $$"], 137),
    (["sh", "-c", "kill -15 $$"], 143),
    (["sh", "-c", "exit 42"], 42),
])
def test_exit_codes(env, command, code):
    d, name = env
    op, _, _ = run(d, name, command)
    assert op["status"] == "Success", op
    assert op["metadata"]["return"] == code, op


@pytest.mark.parametrize("command,code", [(["true"], 0), (["false"], 1),
                                          (["no-such-command-here"], 127)])
def test_exit_codes_without_websockets(env, command, code):
    d, name = env
    r = post_exec(d, name, command, **{"wait-for-websocket": False})
    assert r.status == 202, r
    assert r.metadata["class"] == "task" and "fds" not in r.metadata["metadata"]
    assert d.wait_op(r.json["operation"])["metadata"]["return"] == code


def test_binary_stdin_to_stdout_10mb_sha256(env):
    d, name = env
    data = os.urandom(10 << 20)
    op, out, err = run(d, name, ["cat"], stdin=data)
    assert op["metadata"]["return"] == 0
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(out) == len(data) and err == b""


def test_user_group_cwd(env):
    d, name = env
    op, out, _ = run(d, name, ["sh", "-c", "id -u; id -g; pwd; echo $HOME"],
                     user=1000, group=1001, cwd="/tmp")
    assert op["metadata"]["return"] == 0, op
    # HOME and USER are only defaulted for root, as LXD.
    assert out.decode().split("\n") == ["1000", "1001", "/tmp", "", ""]
    assert "HOME" not in op["metadata"]["environment"]


def test_runs_inside_every_namespace_and_cgroup(env):
    d, name = env
    op, out, _ = run(d, name, ["sh", "-c", "hostname; cat /proc/self/uid_map; "
                                             "cat /proc/self/cgroup; ls /proc | grep -c '^[0-9]'"])
    assert op["metadata"]["return"] == 0
    lines = out.decode().split("\n")
    assert lines[0] == name
    uid_map = lines[1].split()
    assert uid_map[0] == "0" and uid_map[1] != "0"      # the container's id map
    assert int(lines[-2]) < 20                           # its pid namespace
    # Inside the container's cgroups, seen from its cgroup namespace: the
    # same as its init's, or (cgroup2) liblxc's ".lxc" leaf below them.
    op, init_cg, _ = run(d, name, ["cat", "/proc/1/cgroup"])
    init_cg = init_cg.decode().split()
    assert len(lines[2:-2]) == len(init_cg)
    for ours, init in zip(lines[2:-2], init_cg):
        assert init.endswith(":/") and ours in (init, init + ".lxc"), (ours, init)


def test_record_output_served_and_deleted(env):
    d, name = env
    r = post_exec(d, name, ["sh", "-c", "printf out; printf err >&2; exit 5"],
                  **{"wait-for-websocket": False, "record-output": True})
    assert r.status == 202, r
    op = d.wait_op(r.json["operation"])
    assert op["metadata"]["return"] == 5
    urls = op["metadata"]["output"]
    assert urls["1"].startswith("/1.0/instances/%s/logs/exec-output/exec_" % name)
    assert d.get(urls["1"]).body == b"out"
    assert d.get(urls["2"]).body == b"err"
    # The /1.0/containers spelling serves the same file.
    assert d.get(urls["1"].replace("/instances/", "/containers/", 1)).body == b"out"
    listing = d.get("/1.0/instances/%s/logs/exec-output" % name)
    assert listing.status == 200 and urls["1"] in listing.metadata, listing
    # The runtime's own logs are still served by the logs API.
    assert d.get("/1.0/instances/%s/logs/lxc.log" % name).status == 200
    assert d.request("DELETE", urls["1"]).status == 200
    assert d.get(urls["1"]).status == 404
    for bad in ("..%2Fconfig", "lxc.log", "exec_x.txt", ".hidden.stdout"):
        r = d.get("/1.0/instances/%s/logs/exec-output/%s" % (name, bad))
        assert r.status in (400, 404), (bad, r)
        assert b"lxc.idmap" not in r.body


# ---- interactive ------------------------------------------------------------------------

def test_interactive_pty_in_container_devpts(env):
    d, name = env
    op, out = run_tty(d, name, ["sh", "-c", "stty size; tty; stat -c '%u %U' $(tty); "
                                             "ls -l /proc/self/fd/0"], width=123, height=45)
    assert op["metadata"]["return"] == 0, op
    text = out.decode().replace("\r", "")
    lines = text.split("\n")
    assert lines[0] == "45 123", text
    assert lines[1].startswith("/dev/pts/"), text       # the container's devpts
    assert lines[2].split()[0] == "0", text             # owned by the container's root


def test_interactive_has_two_websockets(env):
    d, name = env
    r = post_exec(d, name, ["true"], interactive=True)
    assert sorted(r.metadata["metadata"]["fds"]) == ["0", "control"]
    assert r.metadata["metadata"]["interactive"] is True
    d.wait_op(r.json["operation"], timeout=20)


def test_interactive_window_resize(env):
    d, name = env
    op, out = run_tty(d, name, ["sh", "-c", "read x; stty size"], inputs=[
        {"command": "window-resize", "args": {"width": "100", "height": "30"}}, b"go\n"])
    assert op["metadata"]["return"] == 0, op
    assert b"30 100" in out, out


def test_interactive_ctrl_c(env):
    d, name = env
    op, out = run_tty(d, name, ["sleep", "100"], inputs=[b"\x03"], settle=0.5)
    assert op["metadata"]["return"] == 130, op   # SIGINT from the pty's line discipline


def test_interactive_echo_and_exit_status(env):
    d, name = env
    op, out = run_tty(d, name, ["sh"], inputs=[b"echo hello-$((6*7))\n", b"exit 7\n"])
    assert op["metadata"]["return"] == 7, op
    assert b"hello-42" in out


def test_signal_control_message(env):
    d, name = env
    s = Session(d, name, ["sleep", "100"])
    try:
        time.sleep(0.3)
        s.control({"command": "signal", "signal": 15})
        assert s.wait()["metadata"]["return"] == 143
    finally:
        s.close()


def test_closing_control_kills_command(env):
    d, name = env
    s = Session(d, name, ["sleep", "100"])
    try:
        time.sleep(0.2)
        s.ws["control"].close()
        op = s.wait(20)
        assert op["metadata"]["return"] == 137, op
    finally:
        s.close()


def test_fifty_concurrent_sessions(env):
    d, name = env
    n = 50
    sessions = [Session(d, name, ["cat"]) for _ in range(n)]
    check_concurrent_cat(d, sessions, [os.urandom(100000 + i) for i in range(n)], 120, 180)


# ---- bad input ---------------------------------------------------------------------------

def test_bad_requests(env):
    d, name = env
    r = post_exec(d, "no-such-" + name, ["true"])
    assert r.status == 404 and r.json["error"] == "Instance not found", r
    for body, word in [
        ({"environment": {}}, "command"),
        ({"command": []}, "command"),
        ({"command": "true"}, "command"),
        ({"command": ["true", 1]}, "string"),
        ({"command": ["true"], "environment": {"A": 1}}, "string"),
        ({"command": ["true"], "environment": []}, "environment"),
        ({"command": ["true"], "user": -1}, "user"),
        ({"command": ["true"], "width": "x"}, "width"),
        ({"command": ["true"], "cwd": "relative"}, "cwd"),
        ({"command": ["true"], "wait-for-websocket": True, "record-output": True}, "record-output"),
        ({"command": ["true"], "interactive": True, "record-output": True}, "record-output"),
        ({"command": ["x" * (2 << 20)]}, "too long"),
    ]:
        r = d.request("POST", "/1.0/instances/%s/exec" % name, body)
        assert r.status == 400, (body, r)
        assert word in r.json["error"], (body, r.json["error"])
    r = d.request("POST", "/1.0/instances/%s/exec" % name, b"{not json",
                  headers={"Content-Type": "application/json"})
    assert r.status == 400, r


def test_stopped_and_frozen_instance(env):
    d, name = env
    other = unique("st")
    fx.create_busybox(d, other)
    try:
        r = post_exec(d, other, ["true"])
        assert r.status == 400 and r.json["error"] == "Instance is not running", r
        fx.state(d, other, "start")
        fx.state(d, other, "freeze")
        r = post_exec(d, other, ["true"])
        assert r.status == 400 and r.json["error"] == "Instance is frozen", r
        fx.state(d, other, "unfreeze")
        op, out, _ = run(d, other, ["echo", "ok"])
        assert out == b"ok\n"
    finally:
        fx.state(d, other, "stop", force=True)
        fx.wait(d, d.request("DELETE", "/1.0/instances/" + other))


def refused(connect):
    """The upgrade is refused (403 when the status line makes it to us)."""
    with pytest.raises(websocket.WebSocketException) as e:
        connect()
    if isinstance(e.value, websocket.WebSocketBadStatusException):
        assert e.value.status_code == 403


def test_bad_secret_and_second_connection(env):
    d, name = env
    marker = "/tmp/" + unique("m")
    s = Session(d, name, ["sh", "-c", "echo ran > %s" % marker], connect=False)
    try:
        refused(lambda: s.connect("0", secret="0" * 64))
        s.ws["control"] = s.connect("control")
        s.ws["0"] = s.connect("0")
        refused(lambda: s.connect("0"))           # each secret opens one websocket
        s.ws["1"] = s.connect("1")
        s.ws["2"] = s.connect("2")
        read_stream(s.ws["1"])
        assert s.wait()["metadata"]["return"] == 0
    finally:
        s.close()
    op, out, _ = run(d, name, ["cat", marker])
    assert out == b"ran\n"


def test_command_held_until_websockets_connect(env):
    d, name = env
    marker = "/tmp/" + unique("held")
    s = Session(d, name, ["touch", marker], connect=False)
    try:
        s.ws["control"] = s.connect("control")
        s.ws["0"] = s.connect("0")
        s.ws["1"] = s.connect("1")
        time.sleep(0.5)
        op, _, _ = run(d, name, ["test", "-e", marker])
        assert op["metadata"]["return"] == 1      # not run yet: "2" is missing
        s.ws["2"] = s.connect("2")
        assert s.wait()["metadata"]["return"] == 0
        op, _, _ = run(d, name, ["test", "-e", marker])
        assert op["metadata"]["return"] == 0
    finally:
        s.close()


def exec_server(pid):
    """celld's exec server: the one child that stays between execs."""
    for p in children(pid):
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                if f.read().split(b"\0")[1:2] == [b"forkexec-server"]:
                    return p
        except OSError:
            pass
    return None


def test_no_fd_or_process_leaks(env):
    d, name = env
    pid = d.proc.pid
    run(d, name, ["true"])
    run_tty(d, name, ["true"])
    time.sleep(0.5)
    server = exec_server(pid)
    assert server, children(pid)
    server_fds = fd_count(server)
    before = fd_count(pid)
    for i in range(5):
        run(d, name, ["sh", "-c", "echo %d" % i])
        run_tty(d, name, ["sh", "-c", "echo tty"])
        run(d, name, ["no-such-command"])
        r = post_exec(d, name, ["true"], **{"wait-for-websocket": False, "record-output": True})
        d.wait_op(r.json["operation"])
        post_exec(d, "missing-" + name, ["true"])
        d.request("POST", "/1.0/instances/%s/exec" % name, {"command": []})
    s = Session(d, name, ["sleep", "100"])
    s.ws["control"].close()
    s.wait()
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline and (fd_count(pid) != before or children(pid) != [server]):
        time.sleep(0.1)
    assert fd_count(pid) == before, os.listdir("/proc/%d/fd" % pid)
    assert children(pid) == [server]      # one server took every request
    assert fd_count(server) == server_fds, os.listdir("/proc/%d/fd" % server)


def cgroups_of_command(d, name):
    """The command's cgroups and its container init's, as the container sees them."""
    op, ours, _ = run(d, name, ["cat", "/proc/self/cgroup"])
    assert op["metadata"]["return"] == 0
    op, init, _ = run(d, name, ["cat", "/proc/1/cgroup"])
    return ours.decode().split(), init.decode().split()


@pytest.mark.parametrize("idle_ms", ["2000", "0"])
def test_exec_server_comes_and_goes(idle_ms):
    """The exec server starts with the first exec, leaves when idle and
    comes back, also after a crash; CELL_EXEC_SERVER_IDLE_MS=0 has celld
    exec each helper instead.  Same results and cgroups either way."""
    d = Celld(extra_env={"CELL_EXEC_SERVER_IDLE_MS": idle_ms}).start()
    try:
        name = unique("es")
        fx.create_busybox(d, name, start=True)
        pid = d.proc.pid
        for round in range(3):
            op, out, err = run(d, name, ["sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"in")
            assert (op["metadata"]["return"], out, err) == (3, b"in", b"err\n"), op
            ours, init = cgroups_of_command(d, name)
            assert len(ours) == len(init)
            for o, i in zip(ours, init):
                assert i.endswith(":/") and o in (i, i + ".lxc"), (o, i)
            server = exec_server(pid)
            assert (server is not None) == (idle_ms != "0"), children(pid)
            if round == 1 and server:
                # The next exec starts another (one sent while it dies is lost with it).
                os.kill(server, signal.SIGKILL)
                deadline = time.time() + 20
                while time.time() < deadline and server in children(pid):
                    time.sleep(0.05)
                continue
            deadline = time.time() + 20
            while time.time() < deadline and children(pid):
                time.sleep(0.05)
            assert children(pid) == []
        assert d.stop() == 0, d.stderr()[-4000:]
    finally:
        fx.cleanup_celld(d)


def test_measure_exec_round_trip(env):
    """POST exec `true` -> operation done (printed; timings belong in bench/)."""
    d, name = env
    ws_times, task_times = [], []
    for _ in range(30):
        t0 = time.time()
        op, _, _ = run(d, name, ["true"])
        ws_times.append(time.time() - t0)
        assert op["metadata"]["return"] == 0
        t0 = time.time()
        r = post_exec(d, name, ["true"], **{"wait-for-websocket": False})
        assert d.wait_op(r.json["operation"])["metadata"]["return"] == 0
        task_times.append(time.time() - t0)
    print("\ncontainer exec true: median %.1f ms with 4 websockets, %.1f ms without" % (
        statistics.median(ws_times) * 1e3, statistics.median(task_times) * 1e3))


def test_daemon_stops_with_sessions_open():
    """SIGTERM with interactive and non-interactive sessions running and one
    waiting for its websockets: celld exits 0, sanitizer-clean, every helper
    it spawned is gone, and the commands inside were killed."""
    d = Celld().start()   # not under tmp_path: the container's root must reach its rootfs
    try:
        name = unique("sd")
        fx.create_busybox(d, name, start=True)
        keep = [Session(d, name, ["sleep", "1001"]),
                Session(d, name, ["sleep", "1002"], interactive=True),
                Session(d, name, ["sleep", "1003"], connect=False)]
        post_exec(d, name, ["sleep", "1004"], **{"wait-for-websocket": False})
        time.sleep(0.5)
        stop_and_check_children(d)
        for s in keep:
            s.close()
        ps = fx.attach(d, name, "ps").stdout
        assert not any("sleep 100%d" % i in ps for i in range(1, 5)), ps
    finally:
        fx.cleanup_celld(d)
