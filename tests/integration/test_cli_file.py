"""`cell file push|pull|edit|delete` end to end against a real celld and a
real busybox container: a 100 MB file both ways compared by SHA-256,
recursive trees with modes, owners and symlinks, -p, --uid/--gid/--mode,
"-" for stdin and stdout, edit in $EDITOR (a script, on a real pty) and
from stdin, delete, atomic pulls, progress on a terminal, and lxc's
error messages.  What lands in the container is checked from inside
(`cell exec ... stat`), not only through the same API."""
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from cellenv import CELL, Celld
import images_fixture as fx
from images_fixture import unique
from ptyutil import PtyProc


@pytest.fixture(scope="module")
def box():
    d = Celld().start()
    try:
        r = d.get("/1.0/instances/no-such-instance/files?path=/")
        if r.status == 404 and "instance" not in (r.json or {}).get("error", "").lower():
            pytest.skip("daemon endpoint /1.0/instances/<name>/files is not served yet")
        name = unique("f")
        fx.create_busybox(d, name, start=True)
        d.box = name
        yield d
        rc = d.stop()
        assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])
    finally:
        fx.cleanup_celld(d)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="cell-file-test-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def env_of(d, **extra):
    e = dict(os.environ, CELL_DIR=d.dir, CELL_CONF=os.path.join(d.dir, "client"))
    e.update(extra)
    return e


def cell(d, *args, input=b"", ok=True, timeout=120):
    p = subprocess.run([CELL] + list(args), input=input, capture_output=True, env=env_of(d), timeout=timeout)
    if ok:
        assert p.returncode == 0, "cell %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr)
    else:
        assert p.returncode == 1, "cell %s should fail: %r %r" % (" ".join(args), p.stdout, p.stderr)
        assert p.stderr.startswith(b"Error: "), p.stderr
    return p


def inside(d, *cmd):
    return cell(d, "exec", d.box, "--", *cmd).stdout.decode()


def stat_inside(d, path):
    """(mode, uid, gid, type) of a path in the container, from inside."""
    mode, uid, gid, kind = inside(d, "stat", "-c", "%a %u %g %F", path).split(" ", 3)
    return int(mode, 8), int(uid), int(gid), kind.strip()


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write(path, data, mode=0o644, owner=None):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    if owner:
        os.chown(path, *owner)


# ---- single files ------------------------------------------------------------------------------

def test_100mb_push_pull_sha256(box, tmp):
    src, back = os.path.join(tmp, "big"), os.path.join(tmp, "back")
    with open(src, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    want = sha(src)
    cell(box, "file", "push", src, "%s/root/big" % box.box)
    assert inside(box, "sha256sum", "/root/big").split()[0] == want
    cell(box, "file", "pull", "%s/root/big" % box.box, back)
    assert sha(back) == want
    # to stdout, byte for byte
    p = cell(box, "file", "pull", "%s/root/big" % box.box, "-")
    assert hashlib.sha256(p.stdout).hexdigest() == want
    cell(box, "file", "delete", "%s/root/big" % box.box)


def test_push_keeps_local_owner_and_mode_or_flags(box, tmp):
    src = os.path.join(tmp, "f.txt")
    write(src, b"one\n", 0o640, (1234, 5678))
    cell(box, "file", "push", src, "%s/tmp/f.txt" % box.box)
    assert stat_inside(box, "/tmp/f.txt") == (0o640, 1234, 5678, "regular file")
    cell(box, "file", "push", "--uid", "10", "--gid", "20", "--mode", "600", src, "%s/tmp/g.txt" % box.box)
    assert stat_inside(box, "/tmp/g.txt") == (0o600, 10, 20, "regular file")
    assert inside(box, "cat", "/tmp/g.txt") == "one\n"


def test_push_into_directory_and_several_sources(box, tmp):
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    write(a, b"A")
    write(b, b"B")
    cell(box, "file", "push", a, b, "%s/tmp/" % box.box)
    assert inside(box, "cat", "/tmp/a", "/tmp/b") == "AB"
    p = cell(box, "file", "push", a, b, "%s/tmp/not-a-dir" % box.box, ok=False)
    assert p.stderr == b"Error: Missing target directory\n"


def test_push_create_dirs(box, tmp):
    src = os.path.join(tmp, "x")
    write(src, b"x", 0o600)
    p = cell(box, "file", "push", src, "%s/p1/p2/p3/x" % box.box, ok=False)
    cell(box, "file", "push", "-p", "--uid", "7", "--gid", "8", src, "%s/p1/p2/p3/x" % box.box)
    assert stat_inside(box, "/p1/p2/p3/x") == (0o600, 7, 8, "regular file")
    for d in ("/p1", "/p1/p2", "/p1/p2/p3"):
        mode, uid, gid, kind = stat_inside(box, d)
        assert (uid, gid, kind) == (7, 8, "directory"), d
    # a file in the way of a parent
    p = cell(box, "file", "push", "-p", src, "%s/p1/p2/p3/x/y" % box.box, ok=False)
    assert b"is not a directory" in p.stderr or b"Not a directory" in p.stderr


def test_stdin_and_stdout(box):
    data = bytes(range(256)) * 1000 + b"\0tail"
    cell(box, "file", "push", "-", "%s/root/from-stdin" % box.box, input=data)
    assert cell(box, "file", "pull", "%s/root/from-stdin" % box.box, "-").stdout == data
    mode, uid, gid, _ = stat_inside(box, "/root/from-stdin")
    assert (mode, uid, gid) == (0o644, 0, 0)   # stdin has no owner of its own: the server's defaults


def test_pull_keeps_mode_and_is_atomic(box, tmp):
    cell(box, "exec", box.box, "--", "sh", "-c", "printf new > /root/m; chmod 0751 /root/m")
    dest = os.path.join(tmp, "m")
    write(dest, b"old", 0o600)
    cell(box, "file", "pull", "%s/root/m" % box.box, dest)
    assert open(dest, "rb").read() == b"new"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o751
    # a failed pull leaves the destination alone and nothing beside it
    cell(box, "file", "pull", "%s/root/missing" % box.box, dest, ok=False)
    assert open(dest, "rb").read() == b"new"
    assert os.listdir(tmp) == ["m"]
    # into an existing directory, under the source's name
    cell(box, "file", "pull", "%s/root/m" % box.box, tmp + "/sub/")
    assert open(os.path.join(tmp, "sub", "m"), "rb").read() == b"new"


def test_pull_errors(box, tmp):
    p = cell(box, "file", "pull", "%s/etc" % box.box, tmp, ok=False)
    assert p.stderr == b"Error: Can't pull a directory without --recursive\n"
    p = cell(box, "file", "pull", "%s/etc" % box.box, "-", ok=False)
    assert p.stderr == b"Error: Can't pull a directory without --recursive\n"
    f = os.path.join(tmp, "file")
    write(f, b"")
    p = cell(box, "file", "pull", "%s/etc/passwd" % box.box, "%s/etc/group" % box.box, f, ok=False)
    assert p.stderr == b"Error: More than one file to download, but target is not a directory\n"
    p = cell(box, "file", "pull", box.box, tmp, ok=False)
    assert p.stderr == b"Error: Invalid source %s\n" % box.box.encode()
    p = cell(box, "file", "push", f, box.box, ok=False)
    assert p.stderr == b"Error: Invalid target %s\n" % box.box.encode()


# ---- trees -------------------------------------------------------------------------------------

def make_tree(root):
    os.makedirs(os.path.join(root, "sub", "deep"))
    write(os.path.join(root, "top.txt"), b"top", 0o640)
    write(os.path.join(root, "run.sh"), b"#!/bin/sh\n", 0o755)
    write(os.path.join(root, "sub", "owned"), b"owned", 0o600, (1234, 5678))
    write(os.path.join(root, "sub", "deep", "bin"), bytes(range(256)), 0o644)
    os.symlink("top.txt", os.path.join(root, "link"))
    os.chmod(os.path.join(root, "sub"), 0o711)
    os.chmod(os.path.join(root, "sub", "deep"), 0o750)
    os.chown(os.path.join(root, "sub", "deep"), 42, 43)


def test_recursive_push_and_pull(box, tmp):
    src = os.path.join(tmp, "tree")
    make_tree(src)
    cell(box, "file", "push", "-r", src, "%s/root/" % box.box)
    assert stat_inside(box, "/root/tree/top.txt") == (0o640, 0, 0, "regular file")
    assert stat_inside(box, "/root/tree/run.sh")[0] == 0o755
    assert stat_inside(box, "/root/tree/sub") == (0o711, 0, 0, "directory")
    assert stat_inside(box, "/root/tree/sub/deep") == (0o750, 42, 43, "directory")
    assert stat_inside(box, "/root/tree/sub/owned") == (0o600, 1234, 5678, "regular file")
    assert inside(box, "readlink", "/root/tree/link").strip() == "top.txt"
    assert inside(box, "sha256sum", "/root/tree/sub/deep/bin").split()[0] == \
        hashlib.sha256(bytes(range(256))).hexdigest()

    out = os.path.join(tmp, "out")
    cell(box, "file", "pull", "-r", "%s/root/tree" % box.box, out)
    back = os.path.join(out, "tree")
    for rel, mode in (("top.txt", 0o640), ("run.sh", 0o755), ("sub", 0o711), ("sub/deep", 0o750),
                      ("sub/owned", 0o600), ("sub/deep/bin", 0o644)):
        assert stat.S_IMODE(os.lstat(os.path.join(back, rel)).st_mode) == mode, rel
    assert open(os.path.join(back, "sub", "deep", "bin"), "rb").read() == bytes(range(256))
    assert os.path.islink(os.path.join(back, "link"))
    # LXD reports targets as absolute paths inside the container
    assert os.readlink(os.path.join(back, "link")) in ("top.txt", "/root/tree/top.txt")
    # pushing the same tree again overwrites files, keeps directories and links
    cell(box, "file", "push", "-r", src, "%s/root/" % box.box)


def test_recursive_create_dirs_and_flags(box, tmp):
    src = os.path.join(tmp, "t2")
    os.makedirs(src)
    write(os.path.join(src, "f"), b"f")
    p = cell(box, "file", "push", "-r", "--mode", "644", src, "%s/root/" % box.box, ok=False)
    assert p.stderr == b"Error: Can't supply uid/gid/mode in recursive mode\n"
    cell(box, "file", "push", "-r", "-p", src, "%s/q1/q2" % box.box)
    assert inside(box, "cat", "/q1/q2/t2/f") == "f"


# ---- edit and delete ---------------------------------------------------------------------------

def test_edit_in_editor(box, tmp):
    cell(box, "exec", box.box, "--", "sh", "-c",
         "printf 'hello world\\n' > /root/e.txt; chown 33:44 /root/e.txt; chmod 0604 /root/e.txt")
    editor = os.path.join(tmp, "ed.sh")
    with open(editor, "w") as f:
        f.write("#!/bin/sh\nsed -i 's/world/edited/' \"$1\"\n")
    os.chmod(editor, 0o755)
    t = PtyProc([CELL, "file", "edit", "%s/root/e.txt" % box.box], env=env_of(box, EDITOR=editor, VISUAL=""))
    try:
        assert t.wait() == 0, t.out
    finally:
        t.kill()
    assert inside(box, "cat", "/root/e.txt") == "hello edited\n"
    assert stat_inside(box, "/root/e.txt") == (0o604, 33, 44, "regular file")
    # an editor that fails changes nothing
    t = PtyProc([CELL, "file", "edit", "%s/root/e.txt" % box.box], env=env_of(box, EDITOR="false", VISUAL=""))
    try:
        assert t.wait() == 1
    finally:
        t.kill()
    assert inside(box, "cat", "/root/e.txt") == "hello edited\n"


def test_edit_from_stdin(box):
    cell(box, "exec", box.box, "--", "sh", "-c", "echo old > /root/s.txt; chmod 0640 /root/s.txt")
    cell(box, "file", "edit", "%s/root/s.txt" % box.box, input=b"from stdin\n")
    assert inside(box, "cat", "/root/s.txt") == "from stdin\n"
    assert stat_inside(box, "/root/s.txt")[0] == 0o640


def test_delete(box, tmp):
    cell(box, "exec", box.box, "--", "sh", "-c", "touch /root/d1 /root/d2; mkdir /root/dd")
    cell(box, "file", "delete", "%s/root/d1" % box.box, "%s/root/d2" % box.box, "%s/root/dd" % box.box)
    assert inside(box, "sh", "-c", "ls /root/d1 /root/d2 /root/dd 2>&1; true").count("No such file") == 3
    cell(box, "file", "delete", "%s/root/d1" % box.box, ok=False)
    cell(box, "file", "rm", "%s/root/nothing" % box.box, ok=False)


# ---- progress ----------------------------------------------------------------------------------

def test_progress_on_a_terminal_only(box, tmp):
    src = os.path.join(tmp, "p")
    with open(src, "wb") as f:
        f.write(os.urandom(32 << 20))
    t = PtyProc([CELL, "file", "push", src, "%s/root/p" % box.box], env=env_of(box))
    try:
        assert t.wait() == 0
    finally:
        t.kill()
    assert b"Pushing %s to /root/p: " % src.encode() in t.out and b"%" in t.out
    t = PtyProc([CELL, "file", "pull", "%s/root/p" % box.box, src + ".back"], env=env_of(box))
    try:
        assert t.wait() == 0
    finally:
        t.kill()
    assert b"Pulling %s.back from /root/p: " % src.encode() in t.out
    t = PtyProc([CELL, "file", "push", "-q", src, "%s/root/p" % box.box], env=env_of(box))
    try:
        assert t.wait() == 0
    finally:
        t.kill()
    assert b"Pushing" not in t.out
    # not a terminal: nothing but the data
    assert cell(box, "file", "push", src, "%s/root/p" % box.box).stdout == b""
