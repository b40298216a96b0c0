"""Containers outlive celld: restarts (clean and kill -9) with running
containers, kill -9 in the middle of creates, the journal that makes
renames and restores crash-safe, start-up reconciliation of database vs
volumes vs lxcpath, autostart (priority, delay, last state), ephemeral
containers that stopped while celld was down, and host shutdown honouring
boot.host_shutdown_timeout and boot.stop.priority."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from cellenv import Celld
import images_fixture as fx
from images_fixture import create_busybox, state, unique, wait


@pytest.fixture
def celld():
    d = Celld().start()
    try:
        yield d
        if d.proc.poll() is None:
            rc = d.stop()
            assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])
    finally:
        fx.cleanup_celld(d)


def restart(d, sig=signal.SIGTERM):
    if sig == signal.SIGTERM:
        assert d.stop() == 0, d.stderr()[-3000:]
    else:
        d.proc.send_signal(sig)
        d.proc.wait()
    d.start()


def inst(d, name):
    r = d.get("/1.0/instances/" + name)
    return r.metadata if r.status == 200 else None


def pool_dir(d, *rel):
    return os.path.join(d.dir, "storage-pools", "default", *rel)


def consistent(d, name):
    """Either the whole instance exists (row, volume) or nothing of it does."""
    row = inst(d, name) is not None
    vol = os.path.isdir(pool_dir(d, "containers", name))
    lxc = os.path.isdir(os.path.join(d.dir, "containers", name))
    tmp = pool_dir(d, ".tmp")
    # Only the dir driver's spare image copies (its own background work) may
    # be in flight there; an interrupted create's debris must be gone.
    left = [e for e in (os.listdir(tmp) if os.path.isdir(tmp) else []) if not e.startswith("spare-")]
    assert left == [], left
    if row:
        assert vol, "row without volume"
    else:
        assert not vol and not lxc, (vol, lxc)
    return row


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restart_keeps_running_containers(celld, sig):
    a, b = unique("rs"), unique("rs")
    create_busybox(celld, a, start=True)
    create_busybox(celld, b)
    pid = celld.get("/1.0/instances/%s/state" % a).metadata["pid"]
    restart(celld, sig)
    assert inst(celld, a)["status"] == "Running"
    assert celld.get("/1.0/instances/%s/state" % a).metadata["pid"] == pid
    assert inst(celld, b)["status"] == "Stopped"
    # Reattached: the monitor sees a poweroff inside, and the verbs work.
    fx.attach(celld, a, "/bin/poweroff", "-f", check=False)
    assert fx.wait_status(celld, a, "Stopped", timeout=5)
    deadline = time.time() + 5   # the runtime state first, the record right after
    while inst(celld, a)["config"]["volatile.last_state.power"] != "STOPPED" and \
            time.time() < deadline:
        time.sleep(0.02)
    assert inst(celld, a)["config"]["volatile.last_state.power"] == "STOPPED"
    state(celld, a, "start")
    state(celld, b, "start")
    restart(celld, sig)
    for n in (a, b):
        assert inst(celld, n)["status"] == "Running"
        state(celld, n, "stop", force=True)


def big_tree(root, files=6000):
    d = os.path.join(root, "var", "big")
    os.makedirs(d, exist_ok=True)
    for i in range(files):
        with open(os.path.join(d, "f%05d" % i), "w") as f:
            f.write("x" * 512)


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.08, 0.2])
def test_kill_9_mid_create_then_clean_start(celld, delay):
    src = unique("big")
    create_busybox(celld, src, use_image=False)
    big_tree(fx.rootfs_path(celld, src))
    owner = fx.map_root(celld, src)
    subprocess.run(["chown", "-R", "%d:%d" % (owner, owner), fx.rootfs_path(celld, src)],
                   check=True)
    name = unique("mid")
    r = celld.request("POST", "/1.0/instances", {"name": name,
                                                 "source": {"type": "copy", "source": src}})
    assert r.status == 202, r
    time.sleep(delay)
    celld.proc.send_signal(signal.SIGKILL)
    celld.proc.wait()
    celld.start()
    if consistent(celld, name):
        state(celld, name, "start")   # a finished copy is a whole container
        state(celld, name, "stop", force=True)
        wait(celld, celld.request("DELETE", "/1.0/instances/" + name))
    assert celld.get("/1.0/instances/" + name).status == 404
    # The name is free again and a create works.
    create_busybox(celld, name)
    assert consistent(celld, name)


def test_kill_9_mid_image_create(celld):
    if not fx.images_api(celld):
        pytest.skip("no images API in this build")
    fx.import_busybox(celld)
    names = [unique("mi") for _ in range(6)]
    for n in names:
        r = celld.request("POST", "/1.0/instances",
                          {"name": n, "source": {"type": "image", "alias": "busybox"}})
        assert r.status == 202, r
    celld.proc.send_signal(signal.SIGKILL)
    celld.proc.wait()
    celld.start()
    for n in names:
        consistent(celld, n)


def test_journal_rename_and_restore_replay(celld):
    a, b, c = unique("ja"), unique("jb"), unique("jc")
    create_busybox(celld, a)
    create_busybox(celld, c, use_image=False)
    wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % c, {"name": "s0"}))
    marker = os.path.join(fx.rootfs_path(celld, c), "root", "after-snapshot")
    open(marker, "w").close()
    assert celld.stop() == 0
    jdir = os.path.join(celld.dir, "database", "instances.journal")
    os.makedirs(jdir, exist_ok=True)
    # A rename that crashed after moving the volume: rolled forward.
    os.rename(pool_dir(celld, "containers", a), pool_dir(celld, "containers", b))
    with open(os.path.join(jdir, "rename." + a), "w") as f:
        f.write(b)
    # A restore that crashed after the database step: the volume follows.
    with open(os.path.join(jdir, "restore." + c), "w") as f:
        f.write("s0")
    celld.start()
    assert inst(celld, a) is None and inst(celld, b) is not None
    assert os.listdir(jdir) == []
    assert not os.path.exists(marker)
    state(celld, b, "start")
    state(celld, b, "stop", force=True)


def test_reconcile_database_volumes_and_lxcpath(celld):
    keep, lost = unique("keep"), unique("lost")
    create_busybox(celld, keep, start=True)
    create_busybox(celld, lost)
    state(celld, keep, "stop", force=True)
    wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % keep, {"name": "s0"}))
    assert celld.stop() == 0
    orphan = "orphan-" + os.urandom(3).hex()
    os.makedirs(pool_dir(celld, "containers", orphan, "rootfs"))
    os.makedirs(os.path.join(celld.dir, "containers", orphan))
    os.makedirs(pool_dir(celld, "containers-snapshots", keep, "ghost"))
    shutil.rmtree(pool_dir(celld, "containers", lost))   # row without a volume
    celld.start()
    assert inst(celld, lost) is None
    assert not os.path.exists(pool_dir(celld, "containers", orphan))
    assert not os.path.exists(os.path.join(celld.dir, "containers", orphan))
    assert not os.path.exists(pool_dir(celld, "containers-snapshots", keep, "ghost"))
    snaps = celld.get("/1.0/instances/%s/snapshots" % keep).metadata
    assert snaps == ["/1.0/instances/%s/snapshots/s0" % keep]
    state(celld, keep, "start")
    state(celld, keep, "stop", force=True)


def test_autostart_priority_delay_and_last_state(celld):
    a, b, c, d, e = (unique(p) for p in ("asa", "asb", "asc", "asd", "ase"))
    create_busybox(celld, a, config={"boot.autostart": "true", "boot.autostart.priority": "10",
                                     "boot.autostart.delay": "1"})
    create_busybox(celld, b, config={"boot.autostart": "true", "boot.autostart.priority": "5"})
    create_busybox(celld, c, config={"boot.autostart": "false"}, start=True)
    create_busybox(celld, d, start=True)            # unset: restores last state
    create_busybox(celld, e, ephemeral=True, start=True)
    assert celld.stop() == 0
    fx.kill_containers(celld.dir)                    # as if the host rebooted
    celld.start()
    assert fx.wait_status(celld, a, "Running", timeout=10)
    assert fx.wait_status(celld, b, "Running", timeout=10)
    assert fx.wait_status(celld, d, "Running", timeout=10)
    assert inst(celld, c)["status"] == "Stopped"
    assert inst(celld, e) is None                    # ephemeral: gone with its stop

    def used(n):
        from datetime import datetime
        t = inst(celld, n)["last_used_at"][:26].rstrip("Z")
        return datetime.fromisoformat(t).timestamp()

    assert used(b) - used(a) >= 0.9, (used(a), used(b))
    for n in (a, b, d):
        state(celld, n, "stop", force=True)


def test_host_shutdown_honours_timeouts_and_restores(celld):
    a, b = unique("hs"), unique("hs")
    # b's init ignores the halt signal: only the timeout ends it.
    create_busybox(celld, a, config={"boot.stop.priority": "5"}, start=True)
    create_busybox(celld, b, config={"boot.host_shutdown_timeout": "1",
                                     "raw.lxc": "lxc.signal.halt = SIGWINCH"}, start=True)
    t0 = time.time()
    r = celld.request("PUT", "/internal/shutdown")
    assert r.status == 200, r
    rc = celld.proc.wait(60)
    took = time.time() - t0
    assert rc == 0, celld.stderr()[-3000:]
    assert took < 20, took
    for n in (a, b):
        p = subprocess.run(["lxc-info", "-P", fx.lxcpath(celld), "-n", n, "-s", "-H"],
                           capture_output=True, text=True)
        assert p.stdout.strip() == "STOPPED", (n, p)
    celld.start()
    for n in (a, b):
        assert fx.wait_status(celld, n, "Running", timeout=10), n
        assert inst(celld, n)["config"]["volatile.last_state.power"] == "RUNNING"
        state(celld, n, "stop", force=True)
