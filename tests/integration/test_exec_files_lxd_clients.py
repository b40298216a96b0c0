"""Debian's LXD 5.0.2 client and python3-pylxd against celld's exec,
console and files endpoints, on a real busybox container (unprivileged):
`lxc exec` non-interactive (stdout/stderr/exit code/stdin) and interactive
under a real pty (stty size, tty, ^C), `lxc file push/pull/delete` (single,
recursive, 130 MiB by SHA-256 (lxc sends it chunked, past the 100 MiB
libwebsockets would take), owners and modes), `lxc console --show-log` and
an interactive `lxc console` detached with ^a q; pylxd's
container.execute() and files.put/get/delete/recursive_put."""
import fcntl
import hashlib
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from urllib.parse import quote

import pytest

from cellenv import Celld
import images_fixture as fx
from images_fixture import unique
from test_instances_exec import run


@pytest.fixture(scope="module")
def env():
    d = Celld().start()
    try:
        name = unique("lx")
        fx.create_busybox(d, name, start=True)
        yield d, name
        assert d.stop() == 0, d.stderr()[-4000:]
    finally:
        fx.cleanup_celld(d)


def sh(d, name, script):
    op, out, err = run(d, name, ["sh", "-c", script])
    assert op["metadata"]["return"] == 0, (script, out, err)
    return out.decode()


# ---- the lxc client -------------------------------------------------------------------

needs_lxc = pytest.mark.skipif(shutil.which("lxc") is None, reason="no lxc client")


@pytest.fixture(scope="module")
def lxc_env(env, tmp_path_factory):
    d, _ = env
    home = tmp_path_factory.mktemp("lxchome")
    e = dict(os.environ, HOME=str(home), LXD_CONF=str(home / "lxc"), LXD_DIR=d.dir)
    # The first command prints a welcome to stderr: get it out of the way.
    subprocess.run(["lxc", "list"], env=e, capture_output=True, timeout=60)
    return e


@pytest.fixture
def lxc(lxc_env):
    def call(*args, check=True, input=None, timeout=120):
        p = subprocess.run(["lxc"] + list(args), capture_output=True, env=lxc_env,
                           input=input, timeout=timeout)
        if check:
            assert p.returncode == 0, "lxc %s: %r %r" % (" ".join(args), p.stdout, p.stderr)
        return p
    return call


class PtyProc:
    """A command on a real pty of the given size (as a user's terminal)."""

    def __init__(self, argv, env, rows=24, cols=80):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.out = b""

    def read_until(self, needle, timeout=15):
        deadline = time.time() + timeout
        while needle not in self.out and time.time() < deadline:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        return needle in self.out

    def write(self, data):
        os.write(self.fd, data)

    def wait(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.read_until(b"\0never\0", timeout=0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError("timed out; output so far: %r" % self.out)


@needs_lxc
def test_lxc_exec_non_interactive(env, lxc):
    d, name = env
    p = lxc("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3, p
    assert p.stdout == b"out\n" and p.stderr == b"err\n", p
    data = os.urandom(3 << 20)
    p = lxc("exec", name, "--", "cat", input=data)
    assert hashlib.sha256(p.stdout).digest() == hashlib.sha256(data).digest()
    assert lxc("exec", name, "--", "no-such-command", check=False).returncode == 127
    p = lxc("exec", name, "--env", "FOO=bar", "--user", "1000", "--group", "1000", "--cwd", "/tmp",
            "--", "sh", "-c", "echo $FOO; id -u; id -g; pwd")
    assert p.stdout == b"bar\n1000\n1000\n/tmp\n", p
    p = lxc("exec", name, "-T", "--", "sh", "-c", "kill -9 $$", check=False)
    assert p.returncode == 137, p


@needs_lxc
def test_lxc_exec_interactive_real_pty(env, lxc_env):
    d, name = env
    p = PtyProc(["lxc", "exec", name, "--", "sh", "-c", "stty size; tty; exit 4"], lxc_env,
                rows=33, cols=111)
    assert p.wait() == 4, p.out
    text = p.out.decode(errors="replace").replace("\r", "")
    assert "33 111\n" in text and "/dev/pts/" in text, text
    # ^C at the user's terminal interrupts the command inside.
    p = PtyProc(["lxc", "exec", name, "--", "sleep", "100"], lxc_env)
    time.sleep(1.5)
    p.write(b"\x03")
    assert p.wait() == 130, p.out
    # A shell: what is typed runs, its exit status comes back.
    p = PtyProc(["lxc", "exec", name, "--", "sh"], lxc_env)
    assert p.read_until(b"#"), p.out
    p.write(b"echo typed-$((40+2)); exit 9\r")
    assert p.wait() == 9
    assert b"typed-42" in p.out


@needs_lxc
def test_lxc_file_push_pull_delete(env, lxc, tmp_path):
    d, name = env
    src = tmp_path / "big"
    data = os.urandom(130 << 20)
    src.write_bytes(data)
    lxc("file", "push", str(src), "%s/root/big" % name, "--uid", "1000", "--gid", "1001",
        "--mode", "0640")
    assert sh(d, name, "stat -c '%u %g %a %s' /root/big") == "1000 1001 640 %d\n" % len(data)
    dst = tmp_path / "back"
    lxc("file", "pull", "%s/root/big" % name, str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    lxc("file", "delete", "%s/root/big" % name)
    assert d.get("/1.0/instances/%s/files?path=/root/big" % name).status == 404
    # Recursive both ways, symlinks included.
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"aaa")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(100000))
    (tree / "sub" / "deeper" / "c").write_bytes(b"")
    os.symlink("a.txt", tree / "link")
    os.chmod(tree / "a.txt", 0o600)
    lxc("file", "push", "-r", str(tree), "%s/root/" % name)
    assert sh(d, name, "cd /root/tree && find . | sort") == \
        ".\n./a.txt\n./link\n./sub\n./sub/b.bin\n./sub/deeper\n./sub/deeper/c\n"
    assert sh(d, name, "readlink /root/tree/link; stat -c %a /root/tree/a.txt") == "a.txt\n600\n"
    back = tmp_path / "pulled"
    back.mkdir()
    lxc("file", "pull", "-r", "%s/root/tree" % name, str(back))
    for rel in ("a.txt", "sub/b.bin", "sub/deeper/c"):
        assert (back / "tree" / rel).read_bytes() == (tree / rel).read_bytes(), rel
    # Errors come back as the client's errors.
    p = lxc("file", "pull", "%s/root/nope" % name, str(tmp_path / "x"), check=False)
    assert p.returncode != 0 and b"no such file" in p.stderr.lower(), p
    sh(d, name, "rm -rf /root/tree")


@needs_lxc
def test_lxc_console_show_log_and_attach(env, lxc, lxc_env):
    d, name = env
    marker = unique("con")
    sh(d, name, "echo %s > /dev/console" % marker)
    time.sleep(0.3)
    p = lxc("console", name, "--show-log")
    assert marker.encode() in p.stdout, p
    # Interactive: see console output, then detach with ^a q.
    p = PtyProc(["lxc", "console", name], lxc_env)
    assert p.read_until(b"detach"), p.out          # "To detach from the console, press: <ctrl>+a q"
    time.sleep(0.5)
    sh(d, name, "echo live-%s > /dev/console" % marker)
    assert p.read_until(("live-" + marker).encode()), p.out
    p.write(b"\x01")      # the client looks at the first byte of each read only
    time.sleep(0.3)
    p.write(b"q")
    assert p.wait() == 0, p.out
    assert fx.status(d, name) == "Running"


# ---- pylxd ------------------------------------------------------------------------------

@pytest.fixture
def pylxd_client(env, monkeypatch):
    pylxd = pytest.importorskip("pylxd")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    d, _ = env
    return pylxd.Client(endpoint="http+unix://" + quote(d.sock, safe=""))


def test_pylxd_execute(env, pylxd_client):
    d, name = env
    c = pylxd_client.containers.get(name)
    res = c.execute(["sh", "-c", "echo hi; echo err >&2; exit 2"])
    assert (res.exit_code, res.stdout, res.stderr) == (2, "hi\n", "err\n")
    res = c.execute(["sh", "-c", "echo $FOO"], environment={"FOO": "from-pylxd"})
    assert res.stdout == "from-pylxd\n" and res.exit_code == 0
    res = c.execute(["cat"], stdin_payload="piped through\n")
    assert res.stdout == "piped through\n"
    assert c.execute(["no-such-command"]).exit_code == 127


def test_pylxd_files(env, pylxd_client, tmp_path):
    d, name = env
    c = pylxd_client.containers.get(name)
    data = os.urandom(1 << 20)
    c.files.put("/root/py.bin", data, mode=0o600, uid=1000, gid=1000)
    assert c.files.get("/root/py.bin") == data
    assert sh(d, name, "stat -c '%u %g %a' /root/py.bin") == "1000 1000 600\n"
    assert c.files.delete_available()
    c.files.delete("/root/py.bin")
    assert d.get("/1.0/instances/%s/files?path=/root/py.bin" % name).status == 404
    tree = tmp_path / "pytree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"nested")
    c.files.recursive_put(str(tree), "/root/pytree")
    assert c.files.get("/root/pytree/d/f") == b"nested"
    sh(d, name, "rm -rf /root/pytree")
