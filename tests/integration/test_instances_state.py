"""/1.0/instances/<name>/state on real busybox containers: the state object,
start/stop (forced and clean), restart, freeze/unfreeze, the errors LXD
gives, a poweroff inside seen at once, ephemeral containers deleted when
they stop, and operations on one container serialised."""
import threading
import time

import images_fixture as fx
from images_fixture import create_busybox, state, unique


def st(celld, name):
    r = celld.get("/1.0/instances/%s/state" % name)
    assert r.status == 200, r
    return r.metadata


def test_state_object(celld):
    name = unique("st")
    create_busybox(celld, name)
    s = st(celld, name)
    assert s["status"] == "Stopped" and s["status_code"] == 102
    assert s["pid"] == 0 and s["processes"] == 0 and s["network"] is None
    assert s["memory"] == {"usage": 0, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0}
    state(celld, name, "start")
    deadline = time.time() + 5   # init, then its respawned sleep
    while st(celld, name)["processes"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    s = st(celld, name)
    assert s["status"] == "Running" and s["status_code"] == 103
    assert s["pid"] > 1 and s["processes"] >= 2
    assert s["cpu"]["usage"] > 0
    assert s["memory"]["usage"] > 0 and s["memory"]["usage_peak"] >= s["memory"]["usage"]
    lo = s["network"]["lo"]
    assert lo["type"] == "loopback" and "counters" in lo and "mtu" in lo
    assert "root" in s["disk"] and s["disk"]["root"]["usage"] > 0
    with open("/proc/%d/status" % s["pid"]) as f:
        assert "NSpid:\t%d\t1" % s["pid"] in f.read()
    state(celld, name, "stop", force=True)


def test_start_stop_restart_freeze_and_events(celld):
    name = unique("ss")
    src = "/1.0/instances/" + name
    create_busybox(celld, name)
    ws = fx.events_socket(celld)
    try:
        state(celld, name, "start")
        pid1 = st(celld, name)["pid"]
        state(celld, name, "restart", force=True)
        pid2 = st(celld, name)["pid"]
        assert pid2 != pid1 and fx.status(celld, name) == "Running"
        state(celld, name, "freeze")
        assert st(celld, name)["status"] == "Frozen"
        assert celld.get(src).metadata["status_code"] == 110
        state(celld, name, "unfreeze")
        assert fx.status(celld, name) == "Running"
        state(celld, name, "stop", timeout=30)   # clean: init halts
        assert fx.status(celld, name) == "Stopped"
        state(celld, name, "start")
        state(celld, name, "stop", force=True)
        evs = fx.collect_events(ws, lambda e: fx.actions(e, src).count("instance-stopped") >= 1)
    finally:
        ws.close()
    got = fx.actions(evs, src)
    for a in ("instance-started", "instance-restarted", "instance-paused", "instance-resumed",
              "instance-shutdown", "instance-stopped"):
        assert a in got, (a, got)
    assert celld.get(src).metadata["config"]["volatile.last_state.power"] == "STOPPED"


def test_state_errors(celld):
    name = unique("se")
    create_busybox(celld, name)
    put = lambda body: celld.request("PUT", "/1.0/instances/%s/state" % name, body)
    assert put({"action": "stop"}).status == 400
    assert put({"action": "freeze"}).status == 400
    assert put({"action": "unfreeze"}).status == 400
    assert put({"action": "dance"}).status == 400
    assert put({"action": "start", "stateful": True}).status == 400
    assert celld.request("PUT", "/1.0/instances/nosuch/state", {"action": "start"}).status == 404
    assert celld.get("/1.0/instances/nosuch/state").status == 404
    state(celld, name, "start")
    r = put({"action": "start"})
    assert r.status == 400 and "already running" in r.json["error"], r
    assert put({"action": "unfreeze"}).status == 400
    state(celld, name, "stop", force=True)
    assert fx.status(celld, name) == "Stopped"


def test_poweroff_inside_is_seen_within_a_second(celld):
    name = unique("off")
    src = "/1.0/instances/" + name
    create_busybox(celld, name, start=True)
    ws = fx.events_socket(celld)
    try:
        pid = st(celld, name)["pid"]
        fx.attach(celld, name, "/bin/poweroff", "-f", check=False)
        # init is gone now; the daemon must notice without being asked.
        t0 = time.time()
        while time.time() - t0 < 5:
            try:
                with open("/proc/%d/status" % pid):
                    pass
            except OSError:
                break
            time.sleep(0.01)
        gone = time.time()
        evs = fx.collect_events(ws, lambda e: "instance-shutdown" in fx.actions(e, src),
                                timeout=5)
        seen = time.time()
    finally:
        ws.close()
    assert "instance-shutdown" in fx.actions(evs, src), evs
    assert seen - gone < 1.0, seen - gone
    inst = celld.get(src).metadata
    assert inst["status"] == "Stopped"
    assert inst["config"]["volatile.last_state.power"] == "STOPPED"
    state(celld, name, "start")   # and it starts again
    state(celld, name, "stop", force=True)


def test_ephemeral_deleted_on_stop_and_on_poweroff(celld):
    a, b = unique("eph"), unique("eph")
    create_busybox(celld, a, ephemeral=True, start=True)
    create_busybox(celld, b, ephemeral=True, start=True)
    assert celld.get("/1.0/instances/" + a).metadata["ephemeral"] is True
    state(celld, a, "restart", force=True)   # a restart keeps it
    assert fx.status(celld, a) == "Running"
    state(celld, a, "stop", force=True)
    assert celld.get("/1.0/instances/" + a).status == 404
    fx.attach(celld, b, "/bin/poweroff", "-f", check=False)
    deadline = time.time() + 10
    while celld.get("/1.0/instances/" + b).status != 404 and time.time() < deadline:
        time.sleep(0.05)
    assert celld.get("/1.0/instances/" + b).status == 404
    for n in (a, b):
        assert not fx.os.path.exists(fx.os.path.join(celld.dir, "containers", n))
        assert not fx.os.path.exists(fx.os.path.join(celld.dir, "storage-pools/default/containers",
                                                     n))


def test_operations_on_one_container_are_serialised(celld):
    name = unique("ser")
    create_busybox(celld, name, start=True)
    results = []

    def restart():
        r = celld.request("PUT", "/1.0/instances/%s/state" % name,
                          {"action": "restart", "force": True})
        results.append(celld.wait_op(r.json["operation"])["status"] if r.status == 202
                       else r.status)

    threads = [threading.Thread(target=restart) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["Success"] * 4, results
    assert fx.status(celld, name) == "Running"
    # A config change racing a stop: both land, in some order.
    r1 = celld.request("PATCH", "/1.0/instances/" + name, {"config": {"user.k": "v"}})
    r2 = celld.request("PUT", "/1.0/instances/%s/state" % name, {"action": "stop", "force": True})
    assert celld.wait_op(r1.json["operation"])["status"] == "Success"
    assert celld.wait_op(r2.json["operation"])["status"] == "Success"
    inst = celld.get("/1.0/instances/" + name).metadata
    assert inst["config"]["user.k"] == "v" and inst["status"] == "Stopped"
    assert inst["config"]["volatile.last_state.power"] == "STOPPED"
