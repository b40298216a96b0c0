"""/1.0/instances/<name>/files on real busybox containers, unprivileged (ids
mapped), running and stopped: push/pull of 100 MB by SHA-256, recursive
trees with modes and owners checked from inside the container and on the
host, directories, symlinks, append, delete, HEAD, a symlink-escape suite
(links to /, /etc/shadow, ../../.., a parent swapped while requests run)
that never reads or writes a host file, read-only paths, a directory where
a file is expected, bad input, and no leaked fds."""
import hashlib
import json
import os
import threading
import time
import urllib.parse

import pytest

from cellenv import Celld, UnixHTTPConnection
import images_fixture as fx
from images_fixture import unique
from test_exec_io import fd_count
from test_instances_exec import run


@pytest.fixture(scope="module")
def env():
    """One daemon, a running and a stopped unprivileged container."""
    d = Celld().start()
    try:
        running, stopped = unique("fr"), unique("fs")
        fx.create_busybox(d, running, start=True)
        fx.create_busybox(d, stopped)
        yield d, running, stopped
        assert d.stop() == 0, d.stderr()[-4000:]
    finally:
        fx.cleanup_celld(d)


def furl(name, path):
    return "/1.0/instances/%s/files?path=%s" % (name, urllib.parse.quote(path, safe="/"))


def push(d, name, path, data=b"", **headers):
    h = {"X-LXD-" + k.replace("_", "-"): str(v) for k, v in headers.items()}
    h.setdefault("Content-Type", "application/octet-stream")
    return d.request("POST", furl(name, path), body=data, headers=h)


def pull(d, name, path, method="GET"):
    return d.request(method, furl(name, path))


def sh(d, name, script):
    op, out, err = run(d, name, ["sh", "-c", script])
    assert op["metadata"]["return"] == 0, (script, out, err)
    return out.decode()


def base_id(d, name):
    return fx.map_root(d, name)


# ---- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("which", ["running", "stopped"])
def test_push_pull_headers_and_owner(env, which):
    d, running, stopped = env
    name = running if which == "running" else stopped
    path = "/root/" + unique("f")
    r = push(d, name, path, b"hello\n", uid=1000, gid=1001, mode="0640")
    assert r.status == 200, r
    r = pull(d, name, path)
    assert r.status == 200 and r.body == b"hello\n", r
    assert (r.headers["x-lxd-uid"], r.headers["x-lxd-gid"]) == ("1000", "1001")
    assert r.headers["x-lxd-mode"] == "0640" and r.headers["x-lxd-type"] == "file"
    h = pull(d, name, path, method="HEAD")
    assert h.status == 200 and h.body == b"" and h.headers["x-lxd-mode"] == "0640"
    host = os.path.join(fx.rootfs_path(d, name), path.lstrip("/"))
    st = os.lstat(host)
    base = base_id(d, name)
    assert base > 0, "the container should be unprivileged"
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (base + 1000, base + 1001, 0o640)
    if which == "running":
        assert sh(d, name, "stat -c '%u %g %a' " + path) == "1000 1001 640\n"
    assert d.request("DELETE", furl(name, path)).status == 200
    assert not os.path.lexists(host)


def test_100mb_push_pull_sha256(env):
    d, name, _ = env
    data = os.urandom(100 << 20)
    want = hashlib.sha256(data).hexdigest()
    path = "/tmp/" + unique("big")
    r = push(d, name, path, data)
    assert r.status == 200, r
    assert sh(d, name, "sha256sum " + path).split()[0] == want
    c = UnixHTTPConnection(d.sock, timeout=120)
    try:
        c.request("GET", furl(name, path))
        resp = c.getresponse()
        assert resp.status == 200
        assert int(resp.getheader("Content-Length")) == len(data)
        h = hashlib.sha256()
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
        assert h.hexdigest() == want
    finally:
        c.close()
    assert d.request("DELETE", furl(name, path)).status == 200


# Permission bits only: LXD's file API carries no set-id or sticky bits.
TREE = [
    # (path, type, uid, gid, mode, content)
    ("/root/t", "directory", 0, 0, 0o755, None),
    ("/root/t/a", "directory", 1000, 1000, 0o750, None),
    ("/root/t/a/f1", "file", 1000, 1000, 0o600, b"one"),
    ("/root/t/a/f2", "file", 33, 44, 0o755, b"two"),
    ("/root/t/a/b", "directory", 2000, 3000, 0o770, None),
    ("/root/t/a/b/f3", "file", 65534, 65534, 0o444, b""),
    ("/root/t/link", "symlink", 1000, 1000, None, b"a/f1"),
    ("/root/t/abs", "symlink", 0, 0, None, b"/root/t/a/b"),
]


def push_tree(d, name):
    for path, typ, uid, gid, mode, content in TREE:
        hdr = {"type": typ, "uid": uid, "gid": gid}
        if mode is not None:
            hdr["mode"] = "0%o" % mode   # a leading 0: octal, as LXD parses it
        r = push(d, name, path, content or b"", **hdr)
        assert r.status == 200, (path, r)


def pull_tree(d, name, path="/root/t"):
    """Recursive GET, as `lxc file pull -r` walks: path -> (type, uid, gid, mode, data)."""
    out = {}
    r = pull(d, name, path)
    assert r.status == 200, (path, r)
    typ = r.headers["x-lxd-type"]
    out[path] = (typ, int(r.headers["x-lxd-uid"]), int(r.headers["x-lxd-gid"]),
                 int(r.headers["x-lxd-mode"], 8), r.body if typ != "directory" else None)
    if typ == "directory":
        for entry in r.metadata:
            out.update(pull_tree(d, name, path + "/" + entry))
    return out


@pytest.mark.parametrize("which", ["running", "stopped"])
def test_recursive_tree_modes_and_owners(env, which):
    d, running, stopped = env
    name = running if which == "running" else stopped
    push_tree(d, name)
    try:
        got = pull_tree(d, name)
        assert sorted(got) == sorted(p for p, *_ in TREE)
        for path, typ, uid, gid, mode, content in TREE:
            g = got[path]
            assert g[0] == typ and (g[1], g[2]) == (uid, gid), (path, g)
            if mode is not None:
                assert g[3] == mode, (path, oct(g[3]))
            if typ == "file":
                assert g[4] == content
        assert got["/root/t/link"][4] == b"/root/t/a/f1"   # LXD: absolute and clean
        assert got["/root/t/abs"][4] == b"/root/t/a/b"
        # On the host every id is the container's shifted by its map.
        base = base_id(d, name)
        root = fx.rootfs_path(d, name)
        for path, typ, uid, gid, mode, _ in TREE:
            st = os.lstat(os.path.join(root, path.lstrip("/")))
            assert (st.st_uid, st.st_gid) == (base + uid, base + gid), path
        if which == "running":
            out = sh(d, name, "cd /root/t && for f in a a/f1 a/f2 a/b a/b/f3; do "
                              "stat -c '%n %u %g %a' $f; done; readlink link")
            assert out.split("\n") == ["a 1000 1000 750", "a/f1 1000 1000 600",
                                       "a/f2 33 44 755", "a/b 2000 3000 770",
                                       "a/b/f3 65534 65534 444", "a/f1", ""]
    finally:
        for path, *_ in reversed(TREE):
            d.request("DELETE", furl(name, path))
    assert pull(d, name, "/root/t").status == 404


def test_append_overwrite_and_delete(env):
    d, name, _ = env
    path = "/root/" + unique("ap")
    assert push(d, name, path, b"one\n", uid=5, gid=6, mode="0600").status == 200
    assert push(d, name, path, b"two\n", write="append").status == 200
    assert pull(d, name, path).body == b"one\ntwo\n"
    # Overwrite keeps the existing owner and mode, as LXD.
    assert push(d, name, path, b"three\n", write="overwrite").status == 200
    r = pull(d, name, path)
    assert r.body == b"three\n" and r.headers["x-lxd-uid"] == "5" and r.headers["x-lxd-mode"] == "0600"
    assert sh(d, name, "cat " + path) == "three\n"
    assert d.request("DELETE", furl(name, path)).status == 200
    assert pull(d, name, path).status == 404
    assert d.request("DELETE", furl(name, path)).status == 404


def test_running_container_sees_its_own_mounts(env):
    d, name, _ = env
    # A bind mount made inside exists only in the container's mount namespace.
    sh(d, name, "mkdir -p /mnt/src /mnt/dst && echo in-src > /mnt/src/x && "
                "mount --bind /mnt/src /mnt/dst")
    try:
        assert pull(d, name, "/mnt/dst/x").body == b"in-src\n"
        assert push(d, name, "/mnt/dst/y", b"pushed").status == 200
        assert sh(d, name, "cat /mnt/src/y") == "pushed"
        root = fx.rootfs_path(d, name)
        assert os.path.exists(os.path.join(root, "mnt/src/y"))
        assert not os.path.exists(os.path.join(root, "mnt/dst/y"))
    finally:
        sh(d, name, "umount /mnt/dst; rm -rf /mnt/src /mnt/dst")


def test_push_into_tmpfs_mounted_by_the_container(env):
    """A filesystem the unprivileged container mounted itself belongs to its
    user namespace, where the host's root does not exist: files, directories
    and symlinks are created there as the container's root, then given the
    requested owner."""
    d, name, _ = env
    sh(d, name, "mkdir -p /mnt/tm && mount -t tmpfs none /mnt/tm")
    try:
        r = push(d, name, "/mnt/tm/y", b"pushed")
        assert r.status == 200, r
        assert push(d, name, "/mnt/tm/o", b"owned", uid=1000, gid=1001, mode="0640").status == 200
        assert push(d, name, "/mnt/tm/dir", type="directory", uid=33, gid=44,
                    mode="0711").status == 200
        assert push(d, name, "/mnt/tm/dir/link", b"../y", type="symlink").status == 200
        # Overwrite and append go through the same creation path.
        assert push(d, name, "/mnt/tm/o", b"again", write="overwrite").status == 200
        assert push(d, name, "/mnt/tm/y", b"+", write="append").status == 200
        assert sh(d, name, "cd /mnt/tm && cat y o && echo && "
                           "stat -c '%n %u %g %a' y o dir && readlink dir/link") == \
            "pushed+again\ny 0 0 644\no 1000 1001 640\ndir 33 44 711\n../y\n"
        r = pull(d, name, "/mnt/tm/o")
        assert r.body == b"again" and (r.headers["x-lxd-uid"], r.headers["x-lxd-gid"]) == \
            ("1000", "1001"), r
        for p in ("/mnt/tm/dir/link", "/mnt/tm/dir", "/mnt/tm/o", "/mnt/tm/y"):
            assert d.request("DELETE", furl(name, p)).status == 200, p
        assert sh(d, name, "ls -A /mnt/tm") == ""
        # Nothing of it ever reached the rootfs below the mount.
        assert os.listdir(os.path.join(fx.rootfs_path(d, name), "mnt/tm")) == []
    finally:
        sh(d, name, "umount /mnt/tm; rmdir /mnt/tm")


def test_pull_kernel_file(env):
    """Kernel files report no useful size (procfs 0, sysfs 4096): they are
    read to their end, as the container sees them (its UTS and network
    namespaces), with a Content-Length that matches."""
    d, name, _ = env
    r = pull(d, name, "/proc/sys/kernel/hostname")
    assert r.status == 200 and r.body == name.encode() + b"\n", r
    assert r.headers["x-lxd-type"] == "file" and int(r.headers["content-length"]) == len(r.body)
    assert name.encode() not in open("/proc/sys/kernel/hostname", "rb").read()
    h = pull(d, name, "/proc/sys/kernel/hostname", method="HEAD")
    assert h.status == 200 and h.body == b"" and h.headers["content-length"] == \
        r.headers["content-length"], h
    # Files whose content is the reader's namespace's or the container's.
    # A network-namespace sysctl: the container's value, not the host's.
    host_fwd = open("/proc/sys/net/ipv4/ip_forward", "rb").read()
    ct_fwd = b"0\n" if host_fwd == b"1\n" else b"1\n"
    sh(d, name, "echo %s > /proc/sys/net/ipv4/ip_forward" % ct_fwd.decode().strip())
    assert pull(d, name, "/proc/sys/net/ipv4/ip_forward").body == ct_fwd
    assert open("/proc/sys/net/ipv4/ip_forward", "rb").read() == host_fwd
    sysfs = "/sys/kernel/mm/transparent_hugepage/enabled"   # sysfs says 4096 bytes
    assert os.stat(sysfs).st_size == 4096 and len(open(sysfs, "rb").read()) < 4096
    for path in ("/proc/1/cmdline", "/proc/1/status", "/proc/sys/net/ipv4/ip_forward",
                 "/proc/sys/kernel/ostype", sysfs, "/proc/1/environ"):
        r = pull(d, name, path)
        assert r.status == 200 and r.body, (path, r)
        assert int(r.headers["content-length"]) == len(r.body), path
        if "status" not in path:   # its own counters move between two reads
            assert r.body == sh(d, name, "cat " + path).encode(), path
    # A size-0 regular file on disk is still answered (empty), stopped or running.
    for which in env[1:]:
        path = "/root/" + unique("empty")
        assert push(d, which, path, b"").status == 200
        r = pull(d, which, path)
        assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "0", r
        assert d.request("DELETE", furl(which, path)).status == 200


# ---- escapes ----------------------------------------------------------------------------

def host_marker_absent(marker):
    for base in ("/", "/tmp", "/root", "/etc", "/srv"):
        assert not os.path.lexists(os.path.join(base, marker)), os.path.join(base, marker)


def test_symlink_escapes_stay_inside(env):
    d, name, _ = env
    marker = unique("esc")
    sh(d, name, "mkdir -p /esc/deep/er && cd /esc && ln -sf / rootlink && "
                "ln -sf /etc/shadow shadow && ln -sf ../../.. deep/er/up && "
                "ln -sf /proc/1/root procroot && echo container-hostname > /etc/esc-probe")
    try:
        # Reads: every link resolves inside the container.
        assert pull(d, name, "/esc/rootlink/etc/esc-probe").body == b"container-hostname\n"
        assert pull(d, name, "/esc/deep/er/up/etc/esc-probe").body == b"container-hostname\n"
        assert pull(d, name, "/../../../etc/esc-probe").body == b"container-hostname\n"
        r = pull(d, name, "/esc/shadow/")
        assert r.status == 404, r                   # no /etc/shadow inside: not the host's
        r = pull(d, name, "/../../../etc/shadow")
        assert r.status == 404, r
        ours = pull(d, name, "/etc/hostname").body
        for p in ("/esc/rootlink/etc/hostname", "/esc/deep/er/up/etc/hostname"):
            assert pull(d, name, p).body == ours, p
        # A magic link (/proc/1/root) is refused, not followed to some root.
        r = pull(d, name, "/esc/procroot/etc/esc-probe")
        assert r.status in (400, 403, 404), r
        # The final symlink itself is what GET answers for.
        r = pull(d, name, "/esc/shadow")
        assert r.headers["x-lxd-type"] == "symlink" and r.body == b"/etc/shadow"
        # Writes: through each link, into the container only.
        for p in ("/esc/rootlink/tmp/%s", "/esc/deep/er/up/tmp/%s", "/../../tmp/%s",
                  "/esc/rootlink/%s"):
            r = push(d, name, p % marker, b"x")
            assert r.status == 200, (p, r)
        host_marker_absent(marker)
        assert sh(d, name, "ls /tmp/%s /%s" % (marker, marker)).count(marker) == 2
        # Pushing onto the symlink replaces the link, never its target.
        assert push(d, name, "/esc/shadow", b"replaced").status == 200
        assert pull(d, name, "/esc/shadow").headers["x-lxd-type"] == "file"
        assert pull(d, name, "/etc/shadow").status == 404
        # Deleting a link removes the link, not what it points to.
        assert d.request("DELETE", furl(name, "/esc/rootlink")).status == 200
        assert pull(d, name, "/etc/esc-probe").status == 200
    finally:
        sh(d, name, "rm -rf /esc /etc/esc-probe /tmp/%s /%s" % (marker, marker))
    host_marker_absent(marker)


def test_parent_swapped_mid_request(env):
    """A process inside swaps a directory with symlinks to / and ../../..
    while pushes and pulls run through it: everything lands inside."""
    d, name, _ = env
    marker = unique("swp")
    sh(d, name, "mkdir -p /sw/d && echo inside > /sw/d/probe && echo inside > /probe-" + marker)
    loop = ("echo $$ > /sw/pid; cd /sw; while :; do mv d d.real; ln -s / d; rm d; "
            "ln -s ../../.. d; rm d; mv d.real d; done")
    r = d.request("POST", "/1.0/instances/%s/exec" % name,
                  {"command": ["sh", "-c", loop], "wait-for-websocket": False})
    assert r.status == 202, r
    swapper = r.json["operation"]
    try:
        deadline = time.time() + 4
        reads = writes = 0
        while time.time() < deadline:
            r = push(d, name, "/sw/d/" + marker, b"x")
            writes += r.status == 200
            r = pull(d, name, "/sw/d/probe")
            assert r.status in (200, 404), r
            if r.status == 200:
                reads += 1
                assert r.body == b"inside\n", r.body
            r = pull(d, name, "/sw/d/probe-" + marker)
            if r.status == 200:
                assert r.body == b"inside\n"   # via the link to /: the container's root
        assert writes and reads
    finally:
        sh(d, name, "kill $(cat /sw/pid)")
        assert d.wait_op(swapper)["metadata"]["return"] == 143
        sh(d, name, "cd /sw; if [ -d d.real ]; then rm -f d; mv d.real d; fi; "
                    "rm -rf /sw /%s /probe-%s" % (marker, marker))
    host_marker_absent(marker)
    host_marker_absent("probe-" + marker)


# ---- refused requests ---------------------------------------------------------------------

def test_read_only_paths(env):
    d, name, _ = env
    # The kernel's filesystems inside: never written as the host's root.
    for path in ("/proc/sys/kernel/hostname", "/sys/fs/cgroup/cgroup.procs",
                 "/proc/1/oom_score_adj", "/proc/sys/net/ipv4/ip_forward"):
        for hdr in ({}, {"write": "append"}):
            r = push(d, name, path, b"1", **hdr)
            assert r.status == 400 and "kernel filesystem" in r.json["error"], (path, r)
        r = d.request("DELETE", furl(name, path))
        assert r.status == 400 and "kernel filesystem" in r.json["error"], (path, r)
    with open("/proc/sys/kernel/hostname") as f:
        assert f.read().strip() != "1"
    assert pull(d, name, "/proc/sys/kernel/hostname").status == 200   # reading is fine
    sh(d, name, "mkdir -p /ro && echo keep > /ro/f && mount -o bind /ro /ro && "
                "mount -o remount,bind,ro /ro")
    try:
        for hdr in ({}, {"write": "append"}, {"type": "directory"}):
            r = push(d, name, "/ro/f" if "type" not in hdr else "/ro/newdir", b"x", **hdr)
            assert r.status == 400 and "Read-only" in r.json["error"], (hdr, r)
        r = d.request("DELETE", furl(name, "/ro/f"))
        assert r.status == 400 and "Read-only" in r.json["error"], r
        assert sh(d, name, "cat /ro/f; ls /ro") == "keep\nf\n"
    finally:
        sh(d, name, "umount /ro; rm -rf /ro")


def test_directory_where_file_expected_and_other_refusals(env):
    d, name, _ = env
    sh(d, name, "mkdir -p /dd/sub && echo x > /dd/sub/f && echo f > /dd/file")
    try:
        r = push(d, name, "/dd/sub", b"data")
        assert r.status == 400 and "directory" in r.json["error"], r
        r = push(d, name, "/dd/sub", b"data", write="append")
        assert r.status == 400, r
        r = push(d, name, "/dd/file/child", b"data")
        assert r.status in (400, 404), r              # a file where a directory is expected
        r = push(d, name, "/dd/file", type="directory")
        assert r.status == 400 and "not a directory" in r.json["error"], r
        r = d.request("DELETE", furl(name, "/dd/sub"))
        assert r.status == 400 and "not empty" in r.json["error"], r
        r = push(d, name, "/dd/nope/f", b"data")
        assert r.status == 404, r
        r = push(d, name, "/dd/x", b"data", type="fifo")
        assert r.status == 400, r
        r = push(d, name, "/dd/x", b"data", uid="abc")
        assert r.status == 400, r
        assert sh(d, name, "cat /dd/sub/f /dd/file; ls /dd") == "x\nf\nfile\nsub\n"
    finally:
        sh(d, name, "rm -rf /dd")
    r = d.request("GET", "/1.0/instances/%s/files" % name)
    assert r.status == 400, r
    for m in ("GET", "DELETE"):
        r = d.request(m, furl("nope-" + name, "/etc/hostname"))
        assert r.status == 404 and r.json["error"] == "Instance not found", r
    r = push(d, "nope-" + name, "/x", b"data" * 1000)
    assert r.status == 404, r
    r = pull(d, name, "/dev/null")
    assert r.status == 400, r                         # devices are not streamed


def test_containers_path_alias(env):
    d, name, _ = env
    r = d.get("/1.0/containers/%s/files?path=/etc/hostname" % name)
    assert r.status == 200 and r.body, r


def test_no_fd_leaks(env):
    d, running, stopped = env
    pid = d.proc.pid
    for name in (running, stopped):
        pull(d, name, "/etc/hostname")
    time.sleep(0.3)
    before = fd_count(pid)
    for i in range(20):
        for name in (running, stopped):
            push(d, name, "/tmp/leak", b"x" * 1000)
            pull(d, name, "/tmp/leak")
            pull(d, name, "/tmp")
            pull(d, name, "/nope/nope")
            push(d, name, "/nope/nope", b"x")
            push(d, name, "/tmp", b"x")
            d.request("DELETE", furl(name, "/tmp/leak"))
    deadline = time.time() + 5
    while time.time() < deadline and fd_count(pid) != before:
        time.sleep(0.1)
    assert fd_count(pid) == before
