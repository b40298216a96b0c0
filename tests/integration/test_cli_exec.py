"""`cell exec` and `cell console` end to end against a real celld and a real
busybox container: interactive sessions on a real pty (echo, the window
size inside, resizes, ^C), non-interactive streams (binary-safe stdin to
stdout, stderr apart, exit codes, forwarded signals), options (--env,
--cwd, --user, --group, -n, -t/-T), 50 concurrent sessions, and the
console (input, output, ctrl+a q, --show-log).

One daemon and one container serve the whole module (starting them is the
slow part); the teardown removes both even when a test fails."""
import hashlib
import os
import signal
import subprocess
import threading
import time

import pytest

from cellenv import CELL, Celld
import images_fixture as fx
from images_fixture import unique
from ptyutil import PtyProc


@pytest.fixture(scope="module")
def box():
    d = Celld().start()
    try:
        r = d.request("POST", "/1.0/instances/no-such-instance/exec", {"command": ["true"]})
        if r.status == 404 and "not found" in (r.json or {}).get("error", "").lower() and \
                "instance" not in (r.json or {}).get("error", "").lower():
            pytest.skip("daemon endpoint /1.0/instances/<name>/exec is not served yet")
        name = unique("x")
        fx.create_busybox(d, name, start=True)
        d.box = name
        yield d
        rc = d.stop()
        assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])
    finally:
        fx.cleanup_celld(d)


def env_of(d, **extra):
    e = dict(os.environ, CELL_DIR=d.dir, CELL_CONF=os.path.join(d.dir, "client"), TERM="xterm")
    e.update(extra)
    return e


def run(d, *args, input=b"", timeout=60):
    """cell with stdin from `input` (a pipe, so never interactive)."""
    return subprocess.run([CELL] + list(args), input=input, capture_output=True, env=env_of(d),
                          timeout=timeout)


def popen(d, *args, **kw):
    return subprocess.Popen([CELL] + list(args), env=env_of(d), stdin=kw.pop("stdin", subprocess.PIPE),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def wait_line(stream, want, timeout=20):
    """Read lines from a pipe until one equals want (in a thread: pipes have no timeout)."""
    seen = []
    got = threading.Event()

    def reader():
        for line in iter(stream.readline, b""):
            seen.append(line)
            if line.strip() == want:
                got.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert got.wait(timeout), "never saw %r, got %r" % (want, seen)


# ---- non-interactive ---------------------------------------------------------------------------

def test_stdout_stderr_separate_and_exit_code(box):
    p = run(box, "exec", box.box, "--", "sh", "-c", "echo out; printf 'e\\000rr' >&2; exit 3")
    assert p.returncode == 3, p
    assert p.stdout == b"out\n"
    assert p.stderr == b"e\0rr"


@pytest.mark.parametrize("cmd,code", [
    (["true"], 0),
    (["false"], 1),
    (["no-such-command-anywhere"], 127),
    (["sh", "-c", "kill -9 $$"], 137),
    (["sh", "-c", "exit 42"], 42),
])
def test_exit_codes(box, cmd, code):
    p = run(box, "exec", box.box, "--", *cmd)
    assert p.returncode == code, p


def test_binary_stdin_to_stdout_10mb(box):
    data = os.urandom(10 << 20)
    p = run(box, "exec", box.box, "--", "cat", input=data, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == len(data)
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    assert p.stderr == b""


def test_binary_stderr_and_stdout_both_large(box):
    # Both streams at once, more than any pipe or socket buffer holds.
    p = run(box, "exec", box.box, "--", "sh", "-c",
            "head -c 3000000 /dev/zero | tr '\\000' o & head -c 3000000 /dev/zero | tr '\\000' e >&2; wait",
            timeout=120)
    assert p.returncode == 0
    assert p.stdout == b"o" * 3000000
    assert p.stderr == b"e" * 3000000


def test_stdin_not_read_does_not_block(box):
    # The command never reads stdin; we have far more of it than buffers hold.
    p = run(box, "exec", box.box, "--", "sh", "-c", "head -c 2000000 /dev/zero | wc -c",
            input=b"x" * (8 << 20))
    assert p.returncode == 0
    assert p.stdout.strip() == b"2000000"


def test_stdin_eof_reaches_command(box):
    p = run(box, "exec", box.box, "--", "sh", "-c", "cat; echo done", input=b"abc")
    assert p.stdout == b"abcdone\n"


def test_disable_stdin(box):
    # -n: the command reads an immediate EOF while our stdin stays open.
    p = popen(box, "exec", "-n", box.box, "--", "sh", "-c", "cat; echo eof")
    try:
        out, _ = p.communicate(timeout=20)
    finally:
        p.kill()
    assert out == b"eof\n" and p.returncode == 0


def test_env_cwd_user_group(box):
    p = run(box, "exec", box.box, "--env", "FOO=bar baz", "--env", "LIST=a,b", "--cwd", "/tmp",
            "--user", "1000", "--group", "1001", "--",
            "sh", "-c", "echo \"$FOO|$LIST|$TERM\"; pwd; id -u; id -g")
    assert p.returncode == 0, p
    assert p.stdout.decode().splitlines() == ["bar baz|a,b|xterm", "/tmp", "1000", "1001"]


def test_output_reader_gone_gets_sigpipe(box):
    # Our stdout closes early: the command sees a broken pipe, as it would locally.
    p = subprocess.run("%s exec %s -- sh -c 'yes | head -c 50000000' | head -c 10 >/dev/null; "
                       "echo ${PIPESTATUS[0]}" % (CELL, box.box), shell=True, executable="/bin/bash",
                       capture_output=True, env=env_of(box), timeout=60)
    assert p.stdout.strip() == b"141", p


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 7), (signal.SIGINT, 8), (signal.SIGHUP, 9)])
def test_signals_forwarded(box, sig, code):
    script = ("trap 'echo got; exit %d' %s; echo ready; while :; do sleep 0.1; done"
              % (code, sig.name[3:]))
    p = popen(box, "exec", box.box, "--", "sh", "-c", script)
    try:
        wait_line(p.stdout, b"ready")
        p.send_signal(sig)
        p.wait(20)
        assert p.stdout.read() == b"got\n"
        assert p.returncode == code
    finally:
        p.kill()


def test_concurrent_50(box):
    procs = [popen(box, "exec", box.box, "--", "sh", "-c", "echo n%d; exit %d" % (i, i % 7),
                   stdin=subprocess.DEVNULL) for i in range(50)]
    try:
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=120)
            assert (p.returncode, out, err) == (i % 7, b"n%d\n" % i, b""), (i, p.returncode, out, err)
    finally:
        for p in procs:
            p.kill()


def test_errors(box):
    p = run(box, "exec", "no-such-instance-" + unique(), "--", "true")
    assert p.returncode == 1 and p.stderr.startswith(b"Error: ")
    p = run(box, "exec", box.box)
    assert p.returncode == 1 and b"Invalid number of arguments" in p.stderr
    p = run(box, "exec", "-t", "-T", box.box, "--", "true")
    assert p.returncode == 1 and p.stderr == b"Error: You can't pass -t and -T at the same time\n"
    p = run(box, "exec", "--user", "x", box.box, "--", "true")
    assert p.returncode == 1 and b"--user" in p.stderr


def test_stopped_instance(box):
    name = unique("s")
    fx.create_busybox(box, name)
    try:
        p = run(box, "exec", name, "--", "true")
        assert p.returncode == 1 and p.stderr.startswith(b"Error: "), p
    finally:
        box.request("DELETE", "/1.0/instances/" + name)


# ---- interactive -------------------------------------------------------------------------------

def pty_exec(box, *args, rows=24, cols=80):
    return PtyProc([CELL, "exec"] + list(args), env=env_of(box), rows=rows, cols=cols)


def test_interactive_shell(box):
    t = pty_exec(box, box.box, "--", "sh", rows=33, cols=101)
    try:
        t.write(b"echo hel''lo\r")
        t.expect(b"hello")
        t.write(b"stty size; tty\r")
        t.expect(b"33 101")
        t.expect(b"/dev/pts/")
        t.set_size(40, 120)   # SIGWINCH to cell: forwarded as window-resize
        time.sleep(0.3)
        t.write(b"stty size\r")
        t.expect(b"40 120")
        # ^C is a byte on the pty: it interrupts the remote sleep, not us.
        t.write(b"sleep 30\r")
        time.sleep(0.5)
        t0 = time.time()
        t.write(b"\x03")
        t.write(b"echo rc=$?\r")
        t.expect(b"rc=130", timeout=10)
        assert time.time() - t0 < 5
        t.write(b"exit 5\r")
        assert t.wait() == 5
    finally:
        t.kill()


def test_interactive_binary_output(box):
    t = pty_exec(box, box.box, "--", "sh", "-c", "stty raw -echo; printf '\\001\\002\\377end'")
    try:
        assert t.wait() == 0
        assert b"\x01\x02\xffend" in t.out
    finally:
        t.kill()


def test_terminal_restored_after_session(box):
    # cell puts our terminal in raw mode and must put it back.
    t = PtyProc(["/bin/sh", "-c", "%s exec %s -- true; stty -a" % (CELL, box.box)], env=env_of(box))
    try:
        assert t.wait() == 0
        settings = t.out.decode(errors="replace")
        assert " icanon" in settings and " echo" in settings and "-icanon" not in settings
    finally:
        t.kill()


def test_force_noninteractive_on_a_terminal(box):
    t = pty_exec(box, "-T", box.box, "--", "sh", "-c", "tty; exit 4")
    try:
        assert t.wait() == 4
        assert b"not a tty" in t.out
    finally:
        t.kill()


def test_force_interactive_with_pipes(box):
    p = run(box, "exec", "-t", box.box, "--", "sh", "-c", "tty; read x; echo got-$x", input=b"abc\n")
    assert p.returncode == 0, p
    assert b"/dev/pts/" in p.stdout and b"got-abc" in p.stdout
    p = run(box, "exec", "--mode", "interactive", box.box, "--", "tty")
    assert b"/dev/pts/" in p.stdout


# ---- console -----------------------------------------------------------------------------------

def console_served(box):
    if not hasattr(box, "console_served"):
        r = box.request("POST", "/1.0/instances/no-such-instance/console", {"width": 80, "height": 24})
        box.console_served = not (r.status == 404 and
                                  "instance" not in (r.json or {}).get("error", "").lower())
    return box.console_served


def console_live(box, t):
    """`cell console` prints its banner before celld holds the console (a
    console just detached may take a moment to be free): what is written
    inside before that is only in the log.  Wait until output reaches t."""
    for i in range(200):
        run(box, "exec", box.box, "--", "sh", "-c", "echo live-%d > /dev/console" % i)
        try:
            t.expect(b"live-%d" % i, timeout=0.1)
            return
        except AssertionError:
            pass
    raise AssertionError("console output never reached the client: %r" % t.out[-2000:])


def test_console_io_and_detach(box):
    if not console_served(box):
        pytest.skip("daemon endpoint /1.0/instances/<name>/console is not served yet")
    t = PtyProc([CELL, "console", box.box], env=env_of(box))
    reader = None
    try:
        t.expect(b"To detach from the console, press: <ctrl>+a q")
        console_live(box, t)
        marker = "c-%s" % unique()
        reader = popen(box, "exec", box.box, "--", "sh", "-c",
                       "exec < /dev/console; echo reader-ready > /dev/console; read x; "
                       "echo got:$x > /dev/console")
        t.expect(b"reader-ready")
        t.write(b"typed-in\r")
        t.expect(b"got:typed-in")
        run(box, "exec", box.box, "--", "sh", "-c", "echo %s > /dev/console" % marker)
        t.expect(marker.encode())
        t0 = time.time()
        t.write(b"\x01q")
        assert t.wait(timeout=10) == 0
        assert time.time() - t0 < 5
        reader.wait(10)
        log = run(box, "console", box.box, "--show-log")
        assert log.returncode == 0
        assert log.stdout.startswith(b"\nConsole log:\n\n")
        assert marker.encode() in log.stdout
    finally:
        t.kill()
        if reader:
            reader.kill()


def test_console_ctrl_a_other_keys_pass(box):
    if not console_served(box):
        pytest.skip("daemon endpoint /1.0/instances/<name>/console is not served yet")
    t = PtyProc([CELL, "console", box.box], env=env_of(box))
    reader = None
    try:
        t.expect(b"To detach")
        console_live(box, t)
        reader = popen(box, "exec", box.box, "--", "sh", "-c",
                       "stty -F /dev/console raw -echo; exec < /dev/console; echo raw-ready > /dev/console; "
                       "head -c 3 | od -An -tx1 > /dev/console")
        t.expect(b"raw-ready")
        t.write(b"\x01")   # ctrl+a, then something else: both go through
        time.sleep(0.2)
        t.write(b"xy")
        t.expect(b"01 78 79")
        t.write(b"\x01q")
        assert t.wait(timeout=10) == 0
    finally:
        t.kill()
        if reader:
            reader.kill()


def test_console_errors(box):
    p = run(box, "console", "no-such-" + unique())
    assert p.returncode == 1 and p.stderr.startswith(b"Error: ")
    p = run(box, "console", box.box, "--type", "vga")
    assert p.returncode == 1 and p.stderr.startswith(b"Error: ")


# ---- over HTTPS --------------------------------------------------------------------------------

def test_exec_and_files_over_https_remote(box, tmp_path):
    """A TLS remote: websockets through OpenSSL (no splice/sendfile shortcuts)."""
    from cellenv import enable_https_tls
    port = getattr(box, "https_port", None) or enable_https_tls(box)
    r = box.request("PATCH", "/1.0", {"config": {"core.trust_password": "exec-pw"}})
    assert r.status == 200, r
    remote = "tls" + unique()[2:]
    p = run(box, "remote", "add", remote, "https://127.0.0.1:%d" % port, "--password", "exec-pw",
            "--accept-certificate")
    assert p.returncode == 0, p
    data = os.urandom(3 << 20)
    p = run(box, "exec", "%s:%s" % (remote, box.box), "--", "sh", "-c", "cat; echo err >&2; exit 6",
            input=data)
    assert p.returncode == 6, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    assert p.stderr == b"err\n"
    src, back = tmp_path / "src", tmp_path / "back"
    src.write_bytes(data)
    assert run(box, "file", "push", str(src), "%s:%s/root/tls-file" % (remote, box.box)).returncode == 0
    assert run(box, "file", "pull", "%s:%s/root/tls-file" % (remote, box.box), str(back)).returncode == 0
    assert back.read_bytes() == data
    p = run(box, "file", "pull", "%s:%s/root/tls-file" % (remote, box.box), "-")
    assert p.stdout == data
