"""exec record-output files as logs of the instance, on a real container:
listed by GET /1.0/instances/<name>/logs as LXD 5.0 lists them
(/logs/exec_<op>.stdout), served and deleted there and under
/logs/exec-output/ (the URLs in the operation's metadata), and removed
48 hours after their last write, by the hourly sweep and at start-up.
Age is given to files with os.utime; POST /internal/testing/logs/expire
(CELL_TEST_HOOKS=1) runs the sweep now."""
import os
import time

import pytest

from cellenv import Celld
import images_fixture as fx
from images_fixture import unique
from test_instances_exec import post_exec

HOUR = 3600


@pytest.fixture(scope="module")
def env():
    d = Celld().start()
    try:
        name = unique("xo")
        fx.create_busybox(d, name, start=True)
        yield d, name
        assert d.stop() == 0, d.stderr()[-4000:]
    finally:
        fx.cleanup_celld(d)


def record(d, name, script):
    """Run script with record-output; the basenames of its stdout/stderr files."""
    r = post_exec(d, name, ["sh", "-c", script],
                  **{"wait-for-websocket": False, "record-output": True})
    assert r.status == 202, r
    op = d.wait_op(r.json["operation"])
    assert op["status"] == "Success", op
    out = op["metadata"]["output"]
    prefix = "/1.0/instances/%s/logs/exec-output/" % name
    assert out["1"].startswith(prefix) and out["2"].startswith(prefix), out
    return out["1"][len(prefix):], out["2"][len(prefix):]


def logs(d, name, kind="instances"):
    r = d.get("/1.0/%s/%s/logs" % (kind, name))
    assert r.status == 200, r
    return r.metadata


def out_dir(d, name):
    return os.path.join(fx.lxcpath(d), name, "exec-output")


def age(d, name, files, hours):
    t = time.time() - hours * HOUR
    for f in files:
        os.utime(os.path.join(out_dir(d, name), f), (t, t))


def expire(d):
    r = d.request("POST", "/internal/testing/logs/expire")
    assert r.status == 200, r
    return r.metadata["removed"]


def test_listed_and_served_as_lxd_5_0_does(env):
    d, name = env
    so, se = record(d, name, "printf out; printf err >&2")
    base = "/1.0/instances/%s/logs/" % name
    listed = logs(d, name)
    assert base + so in listed and base + se in listed, listed
    assert base + "lxc.log" in listed
    assert all(u.startswith(base) and "/" not in u[len(base):] for u in listed), listed
    # Every entry is fetchable where it is listed, and the two URLs agree.
    for u in listed:
        assert d.get(u).status == 200, u
    assert d.get(base + so).body == b"out" and d.get(base + se).body == b"err"
    assert d.get(base + "exec-output/" + so).body == b"out"
    # The 2.0-era spelling lists and serves under its own prefix.
    old = logs(d, name, "containers")
    assert "/1.0/containers/%s/logs/%s" % (name, so) in old, old
    assert d.get("/1.0/containers/%s/logs/%s" % (name, se)).body == b"err"
    # LXD 5.15's listing still has them, sorted like the directory read it is.
    xo = d.get(base + "exec-output").metadata
    assert base + "exec-output/" + so in xo and xo == sorted(xo), xo


def test_delete_through_logs(env):
    d, name = env
    so, se = record(d, name, "echo gone; echo gone >&2")
    base = "/1.0/instances/%s/logs/" % name
    ws = fx.events_socket(d)
    try:
        assert d.request("DELETE", base + so).status == 200
        events = fx.collect_events(ws, lambda ev: "instance-log-deleted" in fx.actions(ev))
    finally:
        ws.close()
    assert "instance-log-deleted" in fx.actions(events, base + so), events
    assert d.get(base + so).status == 404
    assert d.get(base + "exec-output/" + so).status == 404
    assert d.request("DELETE", base + so).status == 404
    assert base + so not in logs(d, name) and base + se in logs(d, name)
    assert not os.path.exists(os.path.join(out_dir(d, name), so))
    # The exec-output spelling deletes the same files.
    assert d.request("DELETE", base + "exec-output/" + se).status == 200
    assert d.get(base + se).status == 404
    # The runtime's own logs keep LXD's rule; bad names touch nothing.
    assert d.request("DELETE", base + "lxc.log").status == 400
    keep, _ = record(d, name, "echo keep")
    for bad in ("exec_x.txt", "exec_..stdout", "exec_%2F..%2Fconfig.stdout", "exec_a%20b.stdout"):
        r = d.request("DELETE", base + bad)
        assert r.status in (400, 404), (bad, r)
        r = d.get(base + bad)
        assert r.status in (400, 404) and b"lxc.idmap" not in r.body, (bad, r)
    assert d.get(base + keep).body == b"keep\n"
    assert os.path.exists(os.path.join(fx.lxcpath(d), name, "config"))
    r = d.request("DELETE", "/1.0/instances/nope-%s/logs/%s" % (name, keep))
    assert r.status == 404, r


def test_expiry_after_48_hours(env):
    d, name = env
    old = record(d, name, "echo old")
    young = record(d, name, "echo young")
    fresh = record(d, name, "echo fresh")
    age(d, name, old, 49)
    age(d, name, young, 47)
    # Only record-output files are ever removed from the directory.
    other = os.path.join(out_dir(d, name), "notes.txt")
    with open(other, "w") as f:
        f.write("not exec output")
    age(d, name, ["notes.txt"], 100)
    try:
        assert expire(d) == 2
        listed = logs(d, name)
        base = "/1.0/instances/%s/logs/" % name
        for f in old:
            assert base + f not in listed, listed
            assert d.get(base + "exec-output/" + f).status == 404
        for f in young + fresh:
            assert base + f in listed, (f, listed)
        assert d.get(base + fresh[0]).body == b"fresh\n"
        assert os.path.exists(other)
        assert expire(d) == 0
    finally:
        os.unlink(other)


def test_expired_at_start_up(env):
    """The sweep also runs right after celld starts, as LXD's expiry task."""
    d, name = env
    old = record(d, name, "echo before-restart")
    keep = record(d, name, "echo kept")
    assert d.stop() == 0, d.stderr()[-4000:]
    age(d, name, old, 72)
    d.start()
    base = "/1.0/instances/%s/logs/" % name
    deadline = time.time() + 60
    while base + old[0] in logs(d, name) and time.time() < deadline:
        time.sleep(0.1)
    listed = logs(d, name)
    assert base + old[0] not in listed and base + old[1] not in listed, listed
    assert base + keep[0] in listed and d.get(base + keep[0]).body == b"kept\n"
    # The container kept running through the restart; exec still records.
    assert record(d, name, "true")
