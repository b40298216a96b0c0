"""The busybox test image and container helpers shared by the integration tests.

The image is built at test time from Debian's busybox-static: a unified LXD
tarball (metadata.yaml + rootfs/) whose rootfs has /bin/busybox and a
symlink per applet, /sbin/init -> busybox and an /etc/inittab that keeps
init up without a shell (`::respawn:/bin/sleep 1000000`).  `poweroff -f`
inside powers off at once (no /etc/init.d, no rc scripts).

import_busybox() puts it in a celld's image store through POST /1.0/images
(once per daemon); create_busybox() makes a container from it, or, when the
daemon has no images API, from `source: none` with the same tree copied in
by hand (owned by the container's root as its id map says).

cleanup_celld() is the teardown every test that starts containers needs:
it kills the containers still running under the daemon's lxcpath, stops
the daemon, unmounts what is mounted below its state dir, detaches its loop
devices and removes the dir.
"""
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid

BUSYBOX = "/bin/busybox"
INITTAB = "::sysinit:/bin/true\n::respawn:/bin/sleep 1000000\n"
_cache = {}


def unique(prefix="t"):
    """A container name that cannot clash with another run."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def _applets():
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return sorted(set(a for a in out.split() if a and "/" not in a and a != "busybox"))


def build_rootfs(root, owner=None):
    """A busybox system in `root` (created), optionally chowned to `owner`."""
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "root", "mnt", "run", "var"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    for a in _applets():
        p = os.path.join(root, "bin", a)
        if not os.path.lexists(p):
            os.symlink("busybox", p)
    init = os.path.join(root, "sbin", "init")
    if not os.path.lexists(init):
        os.symlink("../bin/busybox", init)
    files = {
        "etc/inittab": INITTAB,
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/hostname": "busybox\n",
    }
    for rel, text in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    if owner is not None:
        subprocess.run(["chown", "-R", "-h", "%d:%d" % (owner, owner), root], check=True)
    return root


def build_image(directory):
    """The unified tarball in `directory`; returns (path, sha256 fingerprint)."""
    if "image" in _cache and os.path.exists(_cache["image"][0]):
        return _cache["image"]
    work = tempfile.mkdtemp(prefix="cell-bbimg-", dir=directory)
    build_rootfs(os.path.join(work, "rootfs"))
    meta = ("architecture: x86_64\ncreation_date: %d\nproperties:\n"
            "  os: busybox\n  release: test\n  description: busybox test image\n"
            "templates: {}\n" % int(time.time()))
    with open(os.path.join(work, "metadata.yaml"), "w") as f:
        f.write(meta)
    path = os.path.join(directory, "busybox-%s.tar.gz" % uuid.uuid4().hex[:8])
    with tarfile.open(path, "w:gz") as t:
        t.add(os.path.join(work, "metadata.yaml"), "metadata.yaml")
        t.add(os.path.join(work, "rootfs"), "rootfs")
    shutil.rmtree(work)
    with open(path, "rb") as f:
        fp = hashlib.sha256(f.read()).hexdigest()
    _cache["image"] = (path, fp)
    return path, fp


def images_api(celld):
    """Does this celld serve the images API?"""
    return celld.get("/1.0/images").status == 200


def import_busybox(celld, alias="busybox"):
    """Import the busybox image (once per daemon) with `alias`; its fingerprint."""
    path, fp = build_image(tempfile.gettempdir())
    r = celld.get("/1.0/images/" + fp)
    if r.status != 200:
        with open(path, "rb") as f:
            data = f.read()
        r = celld.request("POST", "/1.0/images", body=data,
                          headers={"Content-Type": "application/octet-stream"})
        assert r.status == 202, r
        op = celld.wait_op(r.json["operation"], timeout=120)
        assert op["status"] == "Success", op
    if alias and celld.get("/1.0/images/aliases/" + alias).status != 200:
        r = celld.request("POST", "/1.0/images/aliases", {"name": alias, "target": fp})
        assert r.status in (200, 201), r
    return fp


def wait(celld, r, ok=True, timeout=120):
    """Wait for the operation of an async answer; returns the final operation."""
    assert r.status == 202, r
    op = celld.wait_op(r.json["operation"], timeout=timeout)
    if ok:
        assert op["status"] == "Success", op
    return op


def map_root(celld, name):
    """Host uid of the container's root from its rootfs id map (0: privileged)."""
    cfg = celld.get("/1.0/instances/" + name).metadata["config"]
    m = json.loads(cfg.get("volatile.last_state.idmap") or "[]")
    for e in m:
        if e["Isuid"] and e["Nsid"] == 0:
            return e["Hostid"]
    return 0


def rootfs_path(celld, name):
    inst = celld.get("/1.0/instances/" + name).metadata
    pool = inst["expanded_devices"]["root"]["pool"]
    for base in ("storage-pools/%s/containers/%s/rootfs" % (pool, name),):
        p = os.path.join(celld.dir, base)
        if os.path.isdir(p):
            return p
    raise AssertionError("no rootfs for " + name)


def create_busybox(celld, name, start=False, use_image=None, **fields):
    """A busybox container `name` (fields: profiles, config, devices,
    ephemeral, ...); started when asked.  Returns the create operation."""
    if use_image is None:
        use_image = images_api(celld)
    body = dict(fields, name=name)
    if use_image:
        import_busybox(celld)
        body["source"] = {"type": "image", "alias": "busybox"}
    else:
        body["source"] = {"type": "none"}
    op = wait(celld, celld.request("POST", "/1.0/instances", body))
    if not use_image:
        build_rootfs(rootfs_path(celld, name), owner=map_root(celld, name))
    if start:
        state(celld, name, "start")
    return op


def state(celld, name, action, ok=True, **kw):
    body = dict(kw, action=action)
    r = celld.request("PUT", "/1.0/instances/%s/state" % name, body)
    if not ok and r.status != 202:
        return r
    return wait(celld, r, ok=ok)


def status(celld, name):
    return celld.get("/1.0/instances/%s/state" % name).metadata["status"]


def wait_status(celld, name, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = celld.get("/1.0/instances/%s" % name)
        if r.status == 200 and r.metadata["status"] == want:
            return True
        time.sleep(0.05)
    return False


def lxcpath(celld):
    return os.path.join(celld.dir, "containers")


def attach(celld, name, *cmd, check=True, timeout=30):
    """Run a command in the container through lxc-attach (exec is not ours)."""
    p = subprocess.run(["lxc-attach", "-P", lxcpath(celld), "-n", name, "--"] + list(cmd),
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, p
    return p


def kill_containers(directory):
    """Kill every container running under a celld state dir (by lxcpath)."""
    path = os.path.join(directory, "containers")
    for d in glob.glob(os.path.join(path, "*")):
        n = os.path.basename(d)
        if os.path.isdir(d) and not n.startswith("."):
            subprocess.run(["lxc-stop", "-P", path, "-n", n, "-k"], capture_output=True,
                           timeout=60)


def _mounts_below(directory):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == directory or mp.startswith(directory.rstrip("/") + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def release_state_dir(directory):
    """Unmount what is mounted below a (stopped) celld's state dir, detach its
    loop devices and remove it."""
    d = os.path.realpath(directory)
    for mp in _mounts_below(d):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    for img in glob.glob(os.path.join(d, "disks", "*")):
        out = subprocess.run(["losetup", "-j", img], capture_output=True, text=True).stdout
        for line in out.splitlines():
            subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def cleanup_celld(celld):
    """Teardown that leaves nothing behind, even after a failed test."""
    try:
        kill_containers(os.path.realpath(celld.dir))
    finally:
        celld.kill()
        release_state_dir(celld.dir)


def events_socket(celld, types="lifecycle"):
    """A websocket on /1.0/events (wsutil), for lifecycle checks."""
    from wsutil import ws_unix
    return ws_unix(celld, "/1.0/events?type=" + types)


def collect_events(ws, until, timeout=15):
    """Lifecycle events read from ws until until(events) is true (or timeout)."""
    events = []
    deadline = time.time() + timeout
    ws.settimeout(0.5)
    while time.time() < deadline and not until(events):
        try:
            msg = ws.recv()
        except Exception:
            continue
        if msg:
            events.append(json.loads(msg))
    return events


def actions(events, source=None):
    return [e["metadata"]["action"] for e in events
            if e.get("type") == "lifecycle" and (source is None or
                                                 e["metadata"]["source"] == source)]
